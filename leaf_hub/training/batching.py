"""Batches of similar token length, in random order.

Training texts range from one token (a vocabulary entry) to hundreds (a document). Padding every batch to
its longest member wastes most of the compute on mixed data; grouping texts of similar length removes that
waste. To keep batches random, texts are shuffled, cut into "mega-batches" of ``group`` batches, sorted by
length inside each mega-batch, split into batches, and the batches are shuffled again (the scheme of
transformers' LengthGroupedSampler). Everything derives from (seed, epoch), so a resumed run sees exactly
the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from leaf_hub.data.store import shuffled_rows


class EpochBatches(Sequence):
    """One epoch's batches of row indices, held as flat arrays: about 4 bytes a row, not a list per batch.

    Batch ``i`` is ``rows[bounds[order[i]] : bounds[order[i] + 1]]``, a list of ints when read. At the
    paper's 6.4M texts a Python list per batch took ~43 bytes a text (2.7 GB at 64M); this takes ~4.5.
    """

    def __init__(self, rows: np.ndarray, bounds: np.ndarray, order: np.ndarray):
        self.rows, self.bounds, self.order = rows, bounds, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return EpochBatches(self.rows, self.bounds, self.order[i])
        k = int(self.order[i])
        return self.rows[self.bounds[k] : self.bounds[k + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for k in self.order.tolist():
            yield self.rows[self.bounds[k] : self.bounds[k + 1]].tolist()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(self) != len(other):
            return False
        return all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # mutable arrays inside


def length_grouped_batches(
    lengths: Sequence[int] | np.ndarray, batch_size: int, seed: int, epoch: int, group: int = 64
) -> EpochBatches:
    """Index batches for one epoch; the last, smaller batch of each mega-batch is kept."""
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    perm = shuffled_rows(rng, n)
    lengths = np.asarray(lengths)
    rows = np.empty(n, dtype=perm.dtype)
    mega = batch_size * group
    for start in range(0, n, mega):
        chunk = perm[start : start + mega]
        rows[start : start + len(chunk)] = chunk[np.argsort(-lengths[chunk], kind="stable")]
    del perm
    # Batches start every batch_size rows inside each mega-batch (its last batch may be smaller).
    starts = np.arange(0, n, mega)[:, None] + np.arange(0, mega, batch_size)[None, :]
    starts = starts[starts < n]
    bounds = np.append(starts, n).astype(np.int64)
    order = rng.permutation(len(starts))
    return EpochBatches(rows, bounds, order)


def random_batches(n: int, batch_size: int, seed: int, epoch: int) -> EpochBatches:
    """Plain shuffled batches (the paper's recipe; the baseline in ``bench/``)."""
    perm = shuffled_rows(np.random.default_rng([seed, epoch]), n)
    bounds = np.append(np.arange(0, n, batch_size), n).astype(np.int64)
    return EpochBatches(perm, bounds, np.arange(len(bounds) - 1))
