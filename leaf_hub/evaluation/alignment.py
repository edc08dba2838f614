"""Label-free alignment of a leaf with its teacher: how close the leaf's vectors are to the teacher's.

Two measures need no relevance judgments at all:

- on held-out texts, the mean L2 distance and mean cosine between the leaf's and the teacher's embedding of
  the same text (the quantity LEAF minimizes; a run's validation split is the natural input);
- on any corpus plus queries, the share of the teacher's top-10 documents that the leaf also ranks in its
  top-10, in standard mode (leaf queries against leaf documents) and asymmetric mode (leaf queries against
  teacher documents), as in the paper's Table 6 example. See :func:`leaf_hub.evaluation.retrieval.topk_overlap`.

Held-out texts come from a text file (one per line), a JSON-lines file (optionally gzipped) with a ``text``
field and optionally ``type`` = ``query`` | ``document`` (which picks the prompt), or a run folder whose
``validation.jsonl`` holds the run's validation split.
"""

from __future__ import annotations

import gzip
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leaf_hub.errors import LeafHubError

logger = logging.getLogger(__name__)


@dataclass
class AlignmentTexts:
    """Held-out texts split by how they are encoded: queries (query prompt), documents, untyped (no prompt)."""

    source: str
    queries: list[str]
    documents: list[str]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.queries) + len(self.documents) + len(self.texts)


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def load_alignment_texts(path: str | Path, limit: int | None = None) -> AlignmentTexts:
    """Read held-out texts from a file or a run folder (``validation.jsonl``); keep the first ``limit``."""
    p = Path(path).expanduser()
    if p.is_dir():
        candidate = p / "validation.jsonl"
        if not candidate.is_file():
            raise LeafHubError(
                f"{p} has no validation.jsonl; give a distillation run folder, or a text/JSON-lines file"
            )
        p = candidate
    if not p.is_file():
        raise LeafHubError(f"alignment texts {str(path)!r} do not exist; give a text or JSON-lines file")
    jsonl = ".jsonl" in p.suffixes or ".json" in p.suffixes
    queries, documents, texts = [], [], []
    seen = 0
    with _open_text(p) as f:
        for lineno, line in enumerate(f, start=1):
            if limit is not None and seen >= limit:
                break
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if jsonl:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LeafHubError(f"{p} line {lineno} is not valid JSON ({exc.msg})") from exc
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise LeafHubError(
                        f"{p} line {lineno} has no 'text' string; JSON lines need a text field"
                    )
                kind = row.get("type")
                {"query": queries, "document": documents}.get(kind, texts).append(row["text"])
            else:
                texts.append(line)
            seen += 1
    if not seen:
        raise LeafHubError(f"{p} holds no texts; alignment needs held-out texts")
    return AlignmentTexts(str(p), queries, documents, texts)


def embedding_distance(teacher: np.ndarray, leaf: np.ndarray) -> dict[str, float]:
    """Mean L2 distance and mean cosine between row-aligned teacher and leaf embeddings (as output)."""
    if teacher.shape != leaf.shape:
        raise LeafHubError(
            f"teacher embeddings are {teacher.shape[1]}-d and the leaf's {leaf.shape[1]}-d; the leaf was not "
            "distilled from this teacher"
        )
    teacher = teacher.astype(np.float32, copy=False)
    leaf = leaf.astype(np.float32, copy=False)
    l2 = np.linalg.norm(teacher - leaf, axis=1)
    denom = np.maximum(np.linalg.norm(teacher, axis=1) * np.linalg.norm(leaf, axis=1), 1e-12)
    cosine = np.sum(teacher * leaf, axis=1) / denom
    return {"l2": float(l2.mean()), "cosine": float(cosine.mean()), "num_texts": int(len(l2))}
