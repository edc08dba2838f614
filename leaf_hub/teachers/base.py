"""What distillation needs from a teacher, whatever produces its vectors.

A teacher is either a sentence-transformers model (:mod:`leaf_hub.teachers.local`) or a black box, an
OpenAI-style embeddings API (:mod:`leaf_hub.teachers.api`). Both look the same to the rest of leaf-hub:
:class:`Teacher` says how to encode texts (applying the query/document prompt itself) and describes the
vector space (dimension, unit length or not) and the teacher's identity (``fingerprint``), which the
teacher cache records so that embeddings from different teachers are never mixed.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from leaf_hub.data.texts import Kind


@runtime_checkable
class Teacher(Protocol):
    """What distillation needs from a teacher."""

    name: str  # Hub id, folder, or API model name
    fingerprint: str  # revision / weights hash, or "api:<base_url>:<model>"
    dimension: int
    normalized: bool  # whether every embedding has unit length
    prompts: dict[str, str]  # {"query": ..., "document": ...}; "" when none
    max_seq_length: int | None

    def encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        """float32 array (len(texts), dimension); the prompt of ``kind`` is applied here."""
        ...

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Approximate input length of each text, for length-sorted batching."""
        ...


def _check_kind(kind: str) -> None:
    if kind not in ("query", "document"):
        raise ValueError(f"kind must be 'query' or 'document', not {kind!r}")


def check_kind(kind: str) -> None:
    if kind not in ("query", "document"):
        raise ValueError(f"kind must be 'query' or 'document', not {kind!r}")
