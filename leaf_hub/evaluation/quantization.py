"""Embeddings as an index stores them: Matryoshka truncation, int8 and binary quantization, in one place.

``leaf-hub evaluate`` (its MRL / quantization table) and the Space (its dimension slider and precision
toggle) both score quantized embeddings through this module, so a leaf's int8 figure in a report and in the
Space come from the same computation (they used to differ: the report took the cosine of the raw int8
codes, the Space that of the values the codes stand for).

- **Truncation** keeps the first ``dim`` dimensions and renormalizes them, as Matryoshka retrieval does.
- **int8** uses sentence-transformers' ``quantize_embeddings`` with per-dimension (min, max) ranges
  calibrated on the documents of the index (an index is built, and calibrated, on its corpus; the queries
  are quantized with the same buckets). Each code is mapped back to the centre of its bucket, so the usual
  cosine scores what the index holds. Scoring the raw codes instead would weigh each dimension by the
  inverse of its range: another metric, not a quantization of this one.
- **binary** keeps the sign bits (``quantize_embeddings`` ``"binary"``) as +-1 vectors, whose dot product
  is ``dim - 2 * hamming``: ranking by it is ranking by Hamming distance.

numpy only at import time: the Space vendors this module (``leaf-hub space --export``).
"""

from __future__ import annotations

import numpy as np

from leaf_hub.errors import LeafHubError

# "none" is the Space's name for float32.
PRECISIONS = ("float32", "int8", "binary")
_ALIASES = {"none": "float32"}


def precision_name(precision: str) -> str:
    """The canonical name of a precision (``none`` -> ``float32``); an error for anything else."""
    name = _ALIASES.get(precision, precision)
    if name not in PRECISIONS:
        raise LeafHubError(f"precision must be one of {', '.join(PRECISIONS)} (or none), got {precision!r}")
    return name


def int8_ranges(*embeddings: np.ndarray) -> np.ndarray:
    """Per-dimension (min, max) over the given embeddings, shape ``(2, dim)``: the buckets of int8.

    Computed here rather than by ``quantize_embeddings(calibration_embeddings=...)`` (which takes the same
    min and max) so that a handful of texts calibrate without its small-sample warning, and so that one set
    of ranges can quantize both sides of an index.
    """
    stacked = np.concatenate([np.asarray(e, dtype=np.float32) for e in embeddings], axis=0)
    return np.vstack((stacked.min(axis=0), stacked.max(axis=0)))


def transform(
    embeddings: np.ndarray,
    dim: int | None = None,
    precision: str = "float32",
    ranges: np.ndarray | None = None,
) -> np.ndarray:
    """Truncate to ``dim`` and quantize, returning float32 vectors that score as the stored ones do.

    ``ranges``: the int8 buckets, ``(2, full or dim)`` (default: calibrated on ``embeddings`` themselves).
    float32 vectors are renormalized only when truncated; int8 codes become the centres of their buckets;
    binary codes become +-1.
    """
    from sentence_transformers import quantize_embeddings

    precision = precision_name(precision)
    full = np.asarray(embeddings, dtype=np.float32)
    dim = full.shape[1] if dim is None else int(dim)
    emb = full[:, :dim]
    if precision == "float32":
        if dim < full.shape[1]:
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb
    if precision == "int8":
        ranges = int8_ranges(emb) if ranges is None else np.asarray(ranges, dtype=np.float32)[:, :dim]
        codes = quantize_embeddings(emb, precision="int8", ranges=ranges).astype(np.float32)
        steps = (ranges[1] - ranges[0]) / 255
        steps = np.where(steps == 0, 1, steps)
        return ((codes + 128.0 + 0.5) * steps + ranges[0]).astype(np.float32)
    packed = quantize_embeddings(emb, precision="binary")
    bits = np.unpackbits((packed.astype(np.int16) + 128).astype(np.uint8), axis=-1)[:, :dim]
    return bits.astype(np.float32) * 2.0 - 1.0


def index_view(
    queries: np.ndarray,
    documents: np.ndarray,
    dim: int | None = None,
    precision: str = "float32",
    calibration: tuple[np.ndarray, ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Queries and documents as an index of ``documents`` holds and searches them.

    int8 buckets are calibrated on the documents (plus ``calibration``, more embeddings of the same space
    when the documents are few, as in one Space request) and quantize both sides.
    """
    ranges = int8_ranges(documents, *calibration) if precision_name(precision) == "int8" else None
    return transform(queries, dim, precision, ranges), transform(documents, dim, precision, ranges)
