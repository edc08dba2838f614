"""leaf-hub: distil a text-embedding teacher into a small leaf model aligned to its vector space (LEAF)."""

from leaf_hub.errors import LeafHubError

__version__ = "0.1.0"
__all__ = ["LeafHubError", "__version__"]
