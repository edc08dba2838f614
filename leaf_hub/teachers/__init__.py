"""Teachers: whatever produces the target embeddings, behind one small interface.

:class:`~leaf_hub.teachers.base.Teacher` is the interface; :func:`load_teacher` gives one from a Hub id, a
local folder (:mod:`leaf_hub.teachers.local`: PyTorch or ONNX Runtime) or the URL of an OpenAI-style
embeddings API (:mod:`leaf_hub.teachers.api`); :mod:`leaf_hub.teachers.cache` keeps its vectors on disk.
"""

from __future__ import annotations

import os
from typing import Any

from leaf_hub.errors import LeafHubError
from leaf_hub.teachers.api import ENV_KEY, ENV_MODEL, ENV_URL, HttpTeacher
from leaf_hub.teachers.base import Teacher
from leaf_hub.teachers.local import OnnxRuntimeTeacher, SentenceTransformerTeacher

__all__ = [
    "ENV_KEY",
    "ENV_MODEL",
    "ENV_URL",
    "HttpTeacher",
    "OnnxRuntimeTeacher",
    "SentenceTransformerTeacher",
    "Teacher",
    "load_teacher",
]


def load_teacher(
    spec: str,
    *,
    device: str | None = None,
    api_key: str | None = None,
    api_model: str | None = None,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    batch_size: int = 64,
    backend: str = "torch",
    **http_options: Any,
) -> Teacher:
    """A teacher from a Hub id, a local folder, or an ``http(s)://`` embeddings API base URL.

    ``spec`` ``"api"`` (or empty) means the URL in ``LEAF_HUB_TEACHER_URL``. ``query_prompt`` /
    ``document_prompt`` override the model's prompts when given (an API has none of its own).
    ``http_options`` go to :class:`HttpTeacher` (``max_retries``, ``timeout``, ``dimensions``,
    ``concurrency``, ``backoff``, ``max_backoff``).
    """
    spec = (spec or "").strip()
    if spec in ("", "api"):
        spec = os.environ.get(ENV_URL, "").strip()
        if not spec:
            raise LeafHubError(
                f"no teacher given; pass a model id, a model folder or an API URL, or set {ENV_URL}"
            )
    if spec.startswith(("http://", "https://")):
        return HttpTeacher(
            spec,
            model=api_model,
            api_key=api_key,
            batch_size=batch_size,
            query_prompt=query_prompt or "",
            document_prompt=document_prompt or "",
            **http_options,
        )
    if http_options:
        raise LeafHubError(
            f"options {', '.join(sorted(http_options))} apply to API teachers only, not to {spec!r}"
        )
    from leaf_hub.models import load_model

    if backend not in ("torch", "onnx"):
        raise LeafHubError(f"teacher backend {backend!r} is not one of torch, onnx")
    model = load_model(spec, device=device if backend == "torch" else "cpu")
    overrides = {"query": query_prompt, "document": document_prompt}
    if backend == "onnx":
        return OnnxRuntimeTeacher(model, spec, batch_size=batch_size, prompts=overrides, name=spec)
    return SentenceTransformerTeacher(model, batch_size=batch_size, prompts=overrides, name=spec)
