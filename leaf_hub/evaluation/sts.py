"""Semantic textual similarity: Spearman correlation of cosine similarity with gold scores.

Pair files come in two layouts, told apart by their columns:

- the STS Benchmark release (``sts-dev.csv``): tab-separated, no header, quoting disabled (sentences contain
  quote marks), columns genre, file, year, id, score (0-5), sentence 1, sentence 2; a few rows carry extra
  columns, of which only the first seven are read;
- a plain ``score<TAB>sentence1<TAB>sentence2`` TSV, with or without a header line.

The Hub's STS-B (``hf:sentence-transformers/stsb``, or just ``stsb``; split ``test`` unless ``:SPLIT``) is
loaded when the Hub is reachable. Scores are reported raw: Spearman's rho in [-1, 1] (not x100), like every
other metric in the report. Sentences are encoded without a query/document prompt (plain ``encode``), each
distinct sentence once.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leaf_hub.errors import LeafHubError
from leaf_hub.offline import hub_offline

logger = logging.getLogger(__name__)

STSB_HUB_ID = "sentence-transformers/stsb"


@dataclass
class StsDataset:
    name: str
    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]
    source: str = ""

    def unique_sentences(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Distinct sentences (first-seen order) and the positions of each pair's two sentences in them."""
        index: dict[str, int] = {}
        for s in (*self.sentences1, *self.sentences2):
            index.setdefault(s, len(index))
        a = np.array([index[s] for s in self.sentences1], dtype=np.int64)
        b = np.array([index[s] for s in self.sentences2], dtype=np.int64)
        return list(index), a, b


def _float(value: str) -> float | None:
    try:
        x = float(value)
    except ValueError:
        return None
    return x if np.isfinite(x) else None


def read_pairs_file(path: str | Path, name: str | None = None) -> StsDataset:
    """Read an STS-B layout file or a plain score/s1/s2 TSV (see the module docstring)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LeafHubError(
            f"STS file {str(path)!r} does not exist; give an STS-B csv, a score/s1/s2 TSV or hf:ID"
        )
    s1, s2, scores = [], [], []
    layout = None
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for lineno, row in enumerate(reader, start=1):
            if not row or not "".join(row).strip():
                continue
            if layout is None:
                if len(row) >= 7 and _float(row[4]) is not None:
                    layout = "stsb"
                elif len(row) == 3:
                    layout = "plain"
                    if _float(row[0]) is None:  # a header line
                        continue
                else:
                    raise LeafHubError(
                        f"{path} line {lineno} has {len(row)} tab-separated columns; expected the STS-B layout "
                        "(genre, file, year, id, score, s1, s2) or score<TAB>s1<TAB>s2"
                    )
            if layout == "stsb":
                if len(row) < 7:
                    raise LeafHubError(f"{path} line {lineno} has {len(row)} columns; STS-B rows have 7")
                score, a, b = _float(row[4]), row[5], row[6]
            else:
                if len(row) != 3:
                    raise LeafHubError(f"{path} line {lineno} has {len(row)} columns; expected score, s1, s2")
                score, a, b = _float(row[0]), row[1], row[2]
            if score is None:
                raise LeafHubError(f"{path} line {lineno}: the score is not a number")
            s1.append(a)
            s2.append(b)
            scores.append(score)
    if len(scores) < 2:
        raise LeafHubError(f"{path} holds {len(scores)} sentence pairs; a correlation needs at least two")
    if len(set(scores)) < 2:
        raise LeafHubError(f"{path}: every pair has the same score; a correlation needs varying gold scores")
    return StsDataset(name or default_name(path), s1, s2, scores, str(path))


def default_name(path: Path) -> str:
    """``stsb/sts-dev.csv`` -> ``stsb-dev``; other files -> their stem."""
    stem = path.stem
    parent = path.parent.name
    if stem.startswith("sts-") and parent.lower().startswith("sts"):
        return f"{parent}-{stem[4:]}"
    return stem


def load_hub_sts(dataset_id: str = STSB_HUB_ID, split: str = "test", name: str | None = None) -> StsDataset:
    from datasets import load_dataset

    try:
        ds = load_dataset(dataset_id, split=split)
    except Exception as exc:  # unknown id, unknown split, unreachable Hub: all user-fixable
        if hub_offline(datasets=True):
            raise LeafHubError(
                f"Hub dataset {dataset_id!r} is not available offline (the Hub is unreachable and it is not "
                "in the local cache); connect to the Hub or give a local STS file"
            ) from exc
        raise LeafHubError(
            f"could not load {dataset_id!r} split {split!r} ({exc}); check the id and split"
        ) from exc
    cols = set(ds.column_names)
    need = {"sentence1", "sentence2", "score"}
    if not need <= cols:
        raise LeafHubError(
            f"Hub dataset {dataset_id!r} lacks columns {sorted(need - cols)}; it is not STS pairs"
        )
    short = dataset_id.rsplit("/", 1)[-1]
    return StsDataset(
        name or f"{short}-{split}",
        list(ds["sentence1"]),
        list(ds["sentence2"]),
        [float(x) for x in ds["score"]],
        f"hf:{dataset_id}:{split}",
    )


def load_sts(spec: str) -> StsDataset:
    """``[NAME=]FILE``, ``hf:ORG/NAME[:SPLIT]`` or ``stsb[:SPLIT]`` (the Hub's STS-B)."""
    name = None
    if "=" in spec and not Path(spec).exists():
        name, spec = spec.split("=", 1)
    if spec == "stsb" or spec.startswith("stsb:"):
        return load_hub_sts(STSB_HUB_ID, spec.partition(":")[2] or "test", name)
    if spec.startswith("hf:"):
        dataset_id, _, split = spec[3:].partition(":")
        return load_hub_sts(dataset_id, split or "test", name)
    return read_pairs_file(spec, name)


def spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(pred, gold).statistic)


def cosine_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.sum(a * b, axis=1)


def evaluate_sts(dataset: StsDataset, emb_first: np.ndarray, emb_second: np.ndarray) -> dict[str, float]:
    """Spearman of cos(first[i], second[i]) with the gold scores; rows are in ``unique_sentences`` order.

    ``emb_first`` and ``emb_second`` are the same matrix for one model; for the asymmetric pair sentence 1
    comes from the leaf and sentence 2 from the teacher.
    """
    _, ia, ib = dataset.unique_sentences()
    cos = cosine_pairs(emb_first[ia], emb_second[ib])
    return {"spearman": spearman(cos, np.asarray(dataset.scores))}
