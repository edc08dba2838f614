"""Loading sentence-transformers models by Hub id or local folder, with errors a user can act on.

Every command resolves models through :func:`load_model`, so a typo in a model id, a folder that is not
a model, or a Hub that cannot be reached all end in one :class:`~leaf_hub.errors.LeafHubError` that says
what to do (:mod:`leaf_hub.offline` decides whether the Hub is used at all).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from leaf_hub.errors import LeafHubError
from leaf_hub.offline import hub_offline

logger = logging.getLogger(__name__)

# How a model runs: PyTorch (sentence-transformers), or its ONNX export with fp32 or int8 weights.
BACKENDS = ("torch", "onnx", "onnx-int8")


def load_model(name_or_path: str | os.PathLike, device: str | None = None, **kwargs):
    """Load a :class:`~sentence_transformers.SentenceTransformer` from a Hub id or a local folder.

    A plain transformers folder (no ``modules.json``) loads too: sentence-transformers wraps it with mean
    pooling, which is what a student backbone needs.
    """
    from sentence_transformers import SentenceTransformer

    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.exists() and not path.is_dir():
        raise LeafHubError(f"model {name!r} is a file; give a model folder or a Hub id")
    if path.is_dir() and not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise LeafHubError(
            f"model folder {name!r} has neither modules.json nor config.json: it is not a "
            "sentence-transformers or transformers model folder"
        )
    looks_local = path.is_dir() or name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local and not path.is_dir():
        raise LeafHubError(f"model folder {name!r} does not exist")
    try:
        return SentenceTransformer(str(path) if path.is_dir() else name, device=device, **kwargs)
    except OSError as exc:
        offline = hub_offline()
        hint = (
            "the Hub is unreachable and it is not in the local cache; run `leaf-hub models install-offline` "
            "for the default models, or give a local folder"
            if offline
            else "check the id on https://huggingface.co, log in with `hf auth login` for gated or private "
            "models, or give a local folder"
        )
        raise LeafHubError(f"unknown model {name!r}: {hint}") from exc


def model_id(model) -> str:
    """The Hub id or folder the model was loaded from (for manifests and cards)."""
    card = getattr(model, "model_card_data", None)
    for attr in ("base_model", "model_id", "model_name"):
        value = getattr(card, attr, None)
        if value:
            return str(value)
    return getattr(model, "_model_name_or_path", None) or "unknown"


def is_onnx_graph(model) -> bool:
    """Whether ``model`` is an :class:`~leaf_hub.export.onnx_encoder.OnnxEncoder` (an exported graph, no torch weights).

    Told apart by its ``fingerprint`` method, not by importing the class: the Space vendors this module
    without ONNX Runtime.
    """
    return callable(getattr(model, "fingerprint", None))


def weights_fingerprint(model) -> str:
    """A short hash of the model's parameters: identifies a teacher independent of where it came from.

    For an exported graph (:func:`is_onnx_graph`), the hash of its graph file (weights included) instead.
    """
    if is_onnx_graph(model):
        return model.fingerprint()
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        flat = tensor.detach().float().flatten()
        # Hashing a strided sample keeps this fast for large models and still changes with any retraining.
        digest.update(flat[:: max(1, flat.numel() // 4096)].cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def is_normalized(model) -> bool:
    """Whether the model's embeddings are unit length (it ends with a Normalize module)."""
    normalized = getattr(model, "normalized", None)  # an OnnxEncoder knows it from the model's modules.json
    if isinstance(normalized, bool):
        return normalized
    from sentence_transformers.sentence_transformer.modules import Normalize

    return any(isinstance(module, Normalize) for module in model)


def query_prompt(model) -> str:
    """The model's query prompt (``""`` when it has none)."""
    prompts = getattr(model, "prompts", None) or {}
    return prompts.get("query", "")


def document_prompt(model) -> str:
    prompts = getattr(model, "prompts", None) or {}
    return prompts.get("document", prompts.get("passage", ""))
