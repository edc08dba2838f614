"""Evaluate a leaf, or the asymmetric leaf/teacher pair, with ``mteb`` (>= 2): query/document routing.

mteb calls an encoder's ``encode(dataloader, task_metadata=..., prompt_type=...)`` with ``prompt_type`` =
``query`` for retrieval queries, ``document`` for the corpus and ``None`` for symmetric tasks (STS,
clustering, classification). :class:`LeafMtebEncoder` routes each call:

- ``query``    -> the query model's ``encode_query`` (the leaf; its query prompt applies);
- ``document`` -> the document model's ``encode_document`` (the teacher in asymmetric mode, else the leaf);
- ``None``     -> ``symmetric`` ("query" by default: the leaf) with plain ``encode``.

Usage (users online; mteb downloads the tasks)::

    import mteb
    from leaf_hub.evaluation.mteb_adapter import mteb_encoder
    pair = mteb_encoder("runs/x/leaf", "sentence-transformers/all-mpnet-base-v2")   # asymmetric
    leaf = mteb_encoder("runs/x/leaf")                                               # standard
    mteb.evaluate(pair, mteb.get_tasks(tasks=["SciFact", "NFCorpus"]))

mteb is imported lazily (``pip install "leaf-hub[mteb]"``), so leaf-hub works without it.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np

from leaf_hub.errors import LeafHubError


def _require_mteb():
    try:
        import mteb
    except ImportError as exc:
        raise LeafHubError('mteb is not installed; run `pip install "leaf-hub[mteb]"` (mteb >= 2)') from exc
    return mteb


class LeafMtebEncoder:
    """An mteb ``EncoderProtocol`` over sentence-transformers models, routing queries and documents.

    Embeddings are returned as float32 numpy arrays; similarity is cosine (leaf and teacher share the
    teacher's space, so leaf queries and teacher documents are directly comparable).
    """

    def __init__(
        self,
        query_model,
        document_model=None,
        *,
        name: str | None = None,
        revision: str | None = None,
        symmetric: Literal["query", "document"] = "query",
    ) -> None:
        from leaf_hub.models import model_id

        self.query_model = query_model
        self.document_model = document_model if document_model is not None else query_model
        if symmetric not in ("query", "document"):
            raise LeafHubError(f"symmetric={symmetric!r}; choose 'query' (the leaf) or 'document'")
        self.symmetric = symmetric
        d_q = query_model.get_embedding_dimension()
        d_d = self.document_model.get_embedding_dimension()
        if d_q != d_d:
            raise LeafHubError(
                f"query model outputs {d_q}-d and document model {d_d}-d embeddings: the leaf was not distilled "
                "from this teacher, so the pair cannot be evaluated together"
            )
        self.asymmetric = self.document_model is not query_model
        source = getattr(query_model, "_model_name_or_path", None) or model_id(query_model)
        self.name = name or _mteb_name(str(source)) + ("-asymmetric" if self.asymmetric else "")
        self.model = query_model  # mteb wrappers expose the wrapped model as .model
        _require_mteb()
        from mteb.models import ModelMeta

        fields = {
            "name": self.name,
            "revision": revision or "local",
            "embed_dim": int(d_q),
            "max_tokens": int(query_model.max_seq_length or 0) or None,
            "similarity_fn_name": "cosine",
            "framework": ["Sentence Transformers", "PyTorch"],
        }
        try:
            self.mteb_model_meta = ModelMeta.create_empty(overwrites=fields)
        except TypeError:  # mteb releases before create_empty took overwrites
            self.mteb_model_meta = ModelMeta.create_empty().model_copy(update=fields)

    def _route(self, prompt_type) -> tuple[Any, str]:
        kind = getattr(prompt_type, "value", prompt_type)
        if kind == "query":
            return self.query_model, "query"
        if kind == "document":
            return self.document_model, "document"
        if kind is None:
            return (self.query_model if self.symmetric == "query" else self.document_model), "text"
        raise LeafHubError(f"unknown mteb prompt_type {prompt_type!r}; expected query, document or None")

    def encode(
        self,
        inputs,
        *,
        task_metadata=None,
        hf_split: str | None = None,
        hf_subset: str | None = None,
        prompt_type=None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Encode every text of an mteb dataloader (batches with a ``text`` column)."""
        texts = [text for batch in inputs for text in batch["text"]]
        model, task = self._route(prompt_type)
        fn = {"query": model.encode_query, "document": model.encode_document, "text": model.encode}[task]
        emb = fn(
            texts,
            batch_size=int(kwargs.get("batch_size", 32)),
            show_progress_bar=bool(kwargs.get("show_progress_bar", False)),
            convert_to_numpy=True,
        )
        return np.asarray(emb, dtype=np.float32)

    def similarity(self, embeddings1, embeddings2):
        from sentence_transformers.util import cos_sim

        return cos_sim(_tensor(embeddings1), _tensor(embeddings2))

    def similarity_pairwise(self, embeddings1, embeddings2):
        from sentence_transformers.util import pairwise_cos_sim

        return pairwise_cos_sim(_tensor(embeddings1), _tensor(embeddings2))


def _tensor(x):
    import torch

    if isinstance(x, torch.Tensor):
        return x.float()
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


def _mteb_name(name: str) -> str:
    """mteb wants ``org/name``: a Hub id stays, a local folder becomes ``local/<folder name>``."""
    if os.path.exists(name) or name.count("/") != 1:
        return f"local/{os.path.basename(os.path.normpath(name)) or 'model'}"
    return name


def mteb_encoder(
    leaf: str | os.PathLike | Any,
    teacher: str | os.PathLike | Any | None = None,
    *,
    device: str | None = None,
    name: str | None = None,
    symmetric: Literal["query", "document"] = "query",
) -> LeafMtebEncoder:
    """An mteb encoder for the leaf alone (``teacher=None``) or the asymmetric pair (leaf queries, teacher
    documents). Models may be given loaded or as Hub ids / folders."""
    from leaf_hub.models import load_model

    leaf_model = load_model(leaf, device=device) if isinstance(leaf, (str, os.PathLike)) else leaf
    teacher_model = load_model(teacher, device=device) if isinstance(teacher, (str, os.PathLike)) else teacher
    return LeafMtebEncoder(leaf_model, teacher_model, name=name, symmetric=symmetric)
