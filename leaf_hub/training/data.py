"""What training reads: each text's token ids (the leaf's tokenizer, prompts applied) and teacher vector.

The training loop, validation and the warm start only ask a :class:`TrainData` for the token lengths of
its rows and for padded batches of rows (``batch``); how the ids and vectors are stored is this
module's business. This in-memory form holds Python lists and a float32 array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch


def collate(input_ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad token-id rows to the longest one: ``input_ids`` and ``attention_mask`` tensors."""
    width = max(len(ids) for ids in input_ids)
    ids = torch.full((len(input_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(input_ids), width), dtype=torch.long)
    for row, seq in enumerate(input_ids):
        ids[row, : len(seq)] = torch.as_tensor(seq)
        mask[row, : len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask}


@dataclass
class TrainData:
    """Pre-tokenized texts and their teacher embeddings, with the rows that train and that validate."""

    input_ids: list[list[int]]
    targets: np.ndarray  # (n, d_teacher)
    train_idx: np.ndarray
    val_idx: np.ndarray
    pad_token_id: int
    lengths: np.ndarray = field(init=False, repr=False)  # token count of every row

    def __post_init__(self) -> None:
        self.lengths = np.fromiter(
            (len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids)
        )

    def __len__(self) -> int:
        return len(self.input_ids)

    def batch(self, rows: Sequence[int] | np.ndarray, with_target: bool = True) -> dict[str, torch.Tensor]:
        """Rows ``rows`` padded to their longest: ``input_ids``, ``attention_mask`` and float32 ``target``."""
        rows = np.asarray(rows)
        out = collate([self.input_ids[i] for i in rows], self.pad_token_id)
        if with_target:
            out["target"] = torch.from_numpy(np.asarray(self.targets[rows], dtype=np.float32))
        return out
