"""Feeding the trainer: a map-style dataset over :class:`TrainData` and a length-grouped batch sampler.

The DataLoader asks the sampler for the rows of one batch and the dataset for all of them at once
(``__getitems__``), which :meth:`TrainData.batch` pads in one call: no per-row Python work, and the same
code runs in DataLoader workers. The keys are those sentence-transformers' trainer collects: one text
column (``text_input_ids``, ``text_attention_mask``) and the teacher's vector as ``label``.

sentence-transformers has no length-grouped sampler (and its samplers bypass transformers'
``group_by_length``), so :class:`LengthGroupedBatchSampler` is one, a ``DefaultBatchSampler``: texts of
similar length share a batch (padding on the shared training mix: 1.2x the real tokens against 6.2x for
random batches). It also makes each process's share: every ``num_processes``-th batch, the same count for
all, so DDP's collectives stay in step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sentence_transformers.base.sampler import DefaultBatchSampler
from torch.utils.data import DataLoader, Dataset

from leaf_hub.training.batching import EpochBatches, length_grouped_batches, random_batches
from leaf_hub.training.data import TrainData

GROUP = 64  # batches per mega-batch sorted by length (transformers' LengthGroupedSampler uses 50)


class TrainDataset(Dataset):
    """The rows ``rows`` of a :class:`TrainData`, indexed 0..len-1, served a batch at a time."""

    def __init__(self, data: TrainData, rows: np.ndarray) -> None:
        self.data = data
        self.rows = np.asarray(rows)

    @property
    def lengths(self) -> np.ndarray:
        return self.data.lengths[self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        batch = self.data.batch(self.rows[np.asarray(positions)])
        return {
            "text_input_ids": batch["input_ids"],
            "text_attention_mask": batch["attention_mask"],
            "label": batch["target"],
        }

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([position])


def whole_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The DataLoader's collate function: the dataset already returns the padded batch."""
    return batch


class LengthGroupedBatchSampler(DefaultBatchSampler):
    """One epoch of batches for this process: length-grouped (or, ``grouped=False``, plain random ones).

    Everything derives from (seed, epoch), so a resumed run sees exactly the batches an uninterrupted run
    would; the trainer sets the epoch (:meth:`set_epoch`).
    """

    def __init__(
        self,
        dataset: TrainDataset,
        batch_size: int,
        drop_last: bool = False,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        grouped: bool = True,
        num_processes: int = 1,
        process_index: int = 0,
    ) -> None:
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        self.lengths = dataset.lengths
        self.grouped = grouped
        self.num_processes = num_processes
        self.process_index = process_index

    def all_batches(self) -> EpochBatches:
        """The epoch's batches of every process, in order."""
        if self.grouped:
            return length_grouped_batches(self.lengths, self.batch_size, self.seed, self.epoch, GROUP)
        return random_batches(len(self.lengths), self.batch_size, self.seed, self.epoch)

    def __iter__(self):
        batches = self.all_batches()
        n = len(self)
        # Process i takes batches i, i + P, ...; the tail that would leave processes unequal is dropped.
        mine = batches[self.process_index :: self.num_processes][:n]
        if len(mine) < n:  # fewer batches than processes: reuse from the start
            mine = [batches[self.process_index % len(batches)]]
        yield from mine

    def __len__(self) -> int:
        n, size = len(self.lengths), self.batch_size
        if self.grouped:  # each mega-batch of GROUP batches keeps its own last, smaller batch
            mega = size * GROUP
            total = (n // mega) * GROUP + math.ceil((n % mega) / size)
        else:
            total = math.ceil(n / size)
        return max(1, total // self.num_processes)


class TrainLoader(DataLoader):
    """A DataLoader that passes the trainer's ``set_epoch`` on to its batch sampler."""

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)


def train_loader(
    sampler: LengthGroupedBatchSampler, workers: int = 0, pin_memory: bool = False
) -> TrainLoader:
    """The training DataLoader over ``sampler``'s dataset; ``workers`` > 0 pads batches in subprocesses."""
    return TrainLoader(
        sampler.sampler,  # DefaultBatchSampler keeps the dataset as its "sampler"
        batch_sampler=sampler,
        collate_fn=whole_batch,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
    )
