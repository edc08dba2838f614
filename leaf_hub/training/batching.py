"""Batches of similar token length, in random order.

Training texts range from one token (a vocabulary entry) to hundreds (a document). Padding every batch to
its longest member wastes most of the compute on mixed data; grouping texts of similar length removes that
waste. To keep batches random, texts are shuffled, cut into "mega-batches" of ``group`` batches, sorted by
length inside each mega-batch, split into batches, and the batches are shuffled again (the scheme of
transformers' LengthGroupedSampler). Everything derives from (seed, epoch), so a resumed run sees exactly
the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group: int = 64
) -> list[list[int]]:
    """Index batches for one epoch; the last, smaller batch of each mega-batch is kept."""
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    lengths = np.asarray(lengths)
    batches: list[list[int]] = []
    mega = batch_size * group
    for start in range(0, n, mega):
        chunk = perm[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def random_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Plain shuffled batches (the paper's recipe; the baseline in ``bench/``)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return [perm[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
