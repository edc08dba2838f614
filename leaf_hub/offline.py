"""Whether the Hugging Face Hub can be used, decided in one place.

leaf-hub works offline from local folders and the local Hugging Face cache. :func:`hub_offline` is the one
test of offline mode (``HF_HUB_OFFLINE``, read when asked, by huggingface_hub's own rules);
:func:`ensure_hub_reachable_or_offline` turns offline mode on when the Hub does not answer, so cached
models load at once instead of after minutes of retries, and :func:`quiet_offline_warnings` drops
huggingface_hub's per-load "Could not reach the Hub" warning once leaf-hub has said so.
"""

from __future__ import annotations

import logging
import os
import socket
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # huggingface_hub.constants.ENV_VARS_TRUE_VALUES


def hub_offline(datasets: bool = False) -> bool:
    """Whether huggingface_hub's offline mode is on (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``; with
    ``datasets``, also the ``datasets`` library's own ``HF_DATASETS_OFFLINE``)."""
    names = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"] + (["HF_DATASETS_OFFLINE"] if datasets else [])
    return any(os.environ.get(name, "").strip().upper() in TRUE_VALUES for name in names)


def go_offline() -> None:
    """Switch huggingface_hub (and libraries that read the variable later) to offline mode."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    except ImportError:  # pragma: no cover
        pass


def ensure_hub_reachable_or_offline(timeout: float = 2.0) -> bool:
    """Return True when the Hub answers; otherwise switch to offline mode and return False.

    Must run before ``huggingface_hub`` is imported to take full effect (it reads the variable at import);
    the constant is patched too in case it was imported already.
    """
    if hub_offline():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        logger.warning("the Hub at %s is unreachable: using local folders and the local cache only", endpoint)
        go_offline()
        return False


class _OfflineNoise(logging.Filter):
    """Drops "Could not reach the Hub ... Using cached commit hash" while offline mode is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (hub_offline() and str(record.msg).startswith("Could not reach the Hub"))


def quiet_offline_warnings() -> None:
    """One line per problem: huggingface_hub's records go through the command line's handler only, and its
    per-model "Could not reach the Hub" warning is dropped in offline mode (leaf-hub said it once)."""
    try:
        from huggingface_hub.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        return
    hf_logging.disable_propagation()
    logging.getLogger("huggingface_hub.hf_api").addFilter(_OfflineNoise())
