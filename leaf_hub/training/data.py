"""What training reads: each text's token ids (the leaf's tokenizer, prompts applied) and teacher vector.

The training loop, validation and the warm start only ask a :class:`TrainData` for the token lengths of
its rows (``lengths``), for padded batches of rows (``batch``), and for which rows train and which
validate (``train_idx``, ``val_idx``); how the ids and vectors are stored is this module's business.

Ids are held flat (one id array plus row offsets) and collated without a Python loop over rows: the
memory-mapped token store of a paper-scale run (:mod:`leaf_hub.data.tokens`) and a small in-memory list
of lists look the same. Teacher vectors come from anything indexable by an array of rows -- a float32
array, or the memory-mapped float16 cache (:class:`~leaf_hub.teachers.cache.CachedTargets`), converted a
batch at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from leaf_hub.data.tokens import collate_flat
from leaf_hub.errors import LeafHubError

logger = logging.getLogger(__name__)


def collate(input_ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad token-id rows to the longest one: ``input_ids`` and ``attention_mask`` tensors."""
    flat = FlatIds.from_lists(input_ids)
    return flat.collate(np.arange(len(flat)), pad_id)


class FlatIds:
    """Token ids of many rows back to back: row ``i`` is ``ids[offsets[i]:offsets[i + 1]]``."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, lengths: np.ndarray | None = None):
        self.ids, self.offsets = ids, offsets
        self.lengths = np.diff(np.asarray(offsets)).astype(np.int32) if lengths is None else lengths

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]]) -> FlatIds:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(offsets[-1]))
        return cls(ids, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> list[int]:
        return np.asarray(self.ids[self.offsets[i] : self.offsets[i + 1]]).tolist()

    def collate(self, rows: Sequence[int] | np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
        ids, mask = collate_flat(self.ids, self.offsets, rows, pad_id)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


class StoredIds(FlatIds):
    """The rows of a token store (:class:`~leaf_hub.data.tokens.TokenStore`), read through its ``take``:
    through the maps when the store is small, with positional reads when it is not (see ``files.py``)."""

    def __init__(self, store: Any):
        super().__init__(store.ids, store.offsets, store.lengths)
        self.store = store

    def __getitem__(self, i: int) -> list[int]:
        return self.store.row(i)

    def collate(self, rows: Sequence[int] | np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
        flat, local = self.store.take(rows)
        ids, mask = collate_flat(flat, local, np.arange(len(local) - 1), pad_id)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


class TrainData:
    """Pre-tokenized texts and their teacher embeddings, with the rows that train and that validate.

    ``input_ids`` is a list of token-id lists, a :class:`FlatIds`, or a token store
    (:class:`~leaf_hub.data.tokens.TokenStore`); ``targets`` an (n, d) array or anything that answers
    ``targets[rows]`` with float32 rows.
    """

    def __init__(
        self,
        input_ids: Sequence[Sequence[int]] | FlatIds | Any,
        targets: Any,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        pad_token_id: int,
    ):
        if isinstance(input_ids, FlatIds):
            self.input_ids = input_ids
        elif hasattr(input_ids, "ids") and hasattr(input_ids, "offsets"):  # a TokenStore
            self.input_ids = StoredIds(input_ids)
        else:
            self.input_ids = FlatIds.from_lists(input_ids)
        if len(targets) != len(self.input_ids):
            raise LeafHubError(f"{len(self.input_ids)} token rows but {len(targets)} teacher vectors")
        self.targets = targets
        self.train_idx = np.asarray(train_idx)
        self.val_idx = np.asarray(val_idx)
        self.pad_token_id = pad_token_id
        self.lengths = self.input_ids.lengths  # token count of every row

    def __len__(self) -> int:
        return len(self.input_ids)

    def batch(self, rows: Sequence[int] | np.ndarray, with_target: bool = True) -> dict[str, torch.Tensor]:
        """Rows ``rows`` padded to their longest: ``input_ids``, ``attention_mask`` and float32 ``target``."""
        rows = np.asarray(rows)
        out = self.input_ids.collate(rows, self.pad_token_id)
        if with_target:
            out["target"] = torch.from_numpy(np.asarray(self.targets[rows], dtype=np.float32))
        return out


@dataclass
class PreparedData:
    """Everything :func:`prepare_train_data` set up: the stores on disk and the TrainData over them."""

    texts: Any  # leaf_hub.data.store.TextStore
    tokens: Any  # leaf_hub.data.tokens.TokenStore
    targets: Any  # leaf_hub.teachers.cache.CachedTargets
    data: TrainData
    token_report: Any  # leaf_hub.data.tokens.TokenReport: texts truncated / unreadable, by kind


def _main_first(state: Any, make):
    """``make()`` on the main process, then on the others (which find its result on disk)."""
    main = state is None or state.is_main_process
    if not main:
        state.wait_for_everyone()
    made = make()
    if main and state is not None:
        state.wait_for_everyone()
    return made


def read_texts(config: Any, *, student_tokenizer: Any = None, state: Any = None):
    """The text store of ``config.data`` in ``config.cache_dir / "texts"`` (read once, reused after).

    ``config`` is a :class:`~leaf_hub.training.config.DistillConfig`; ``student_tokenizer`` is needed for
    ``bert-tokens``. Under ``accelerate launch`` the main process reads, the others open its store.
    """
    from leaf_hub.data.store import ingest

    return _main_first(
        state,
        lambda: ingest(
            config.data,
            config.cache_dir / "texts",
            student_tokenizer=student_tokenizer,
            seed=config.training.seed,
            max_texts=config.max_texts,
        ),
    )


def prepare_train_data(
    config: Any, *, texts: Any, teacher: Any, leaf: Any, state: Any = None
) -> PreparedData:
    """Teacher cache -> token ids -> validation split -> :class:`TrainData`, all out of core.

    ``config`` is a :class:`~leaf_hub.training.config.DistillConfig`, ``texts`` the text store from
    :func:`read_texts`. The teacher cache and the token store live in ``config.cache_dir`` beside the text
    store and are reused by a rerun (``resume``) and by later runs on the same data, teacher and student.
    Under ``accelerate launch`` (``state``: Accelerate's PartialState) the teacher's shards are shared
    round-robin, the main process tokenizes, and every process maps the same files. Texts the leaf cannot
    read (only ``[UNK]``: emoji, zero-width characters) are left out of both the training and the
    validation rows, with a warning that counts them.
    """
    from leaf_hub.data.tokens import build_tokens
    from leaf_hub.teachers.cache import TeacherCache
    from leaf_hub.training.distill import split_validation

    root = config.cache_dir
    recipe = config.training
    barrier = state.wait_for_everyone if state is not None else None
    targets = TeacherCache(root, shard_size=config.cache_shard_size).prepare(
        teacher,
        texts,
        dtype=config.cache_dtype,
        process_index=state.process_index if state is not None else 0,
        num_processes=state.num_processes if state is not None else 1,
        barrier=barrier,
    )
    tokens = _main_first(
        state,
        lambda: build_tokens(
            texts, leaf[0].tokenizer, dict(teacher.prompts), leaf.max_seq_length, root / "tokens"
        ),
    )
    report = tokens.report
    usable = tokens.usable_rows()
    if report.unreadable_total:
        logger.warning(
            "left out %d of %d texts that the leaf's tokenizer reads as nothing but [UNK] or no token at "
            "all (%s; e.g. only emoji or zero-width characters): they would all look the same to the leaf",
            report.unreadable_total,
            len(texts),
            ", ".join(f"{n:,} {kind}" for kind, n in report.unreadable.items() if n),
        )
    if report.truncated_total:
        logger.info(
            "%d texts (%s) are longer than the leaf's %d tokens and were cut to their first %d (longest: %d)",
            report.truncated_total,
            ", ".join(f"{n:,} {kind}" for kind, n in report.truncated.items() if n),
            report.max_length,
            report.max_length,
            report.longest_tokens,
        )
    if not len(usable):
        raise LeafHubError(
            f"none of the {len(texts):,} training texts is readable by the leaf's tokenizer (all are only "
            "[UNK] or empty to it: emoji, zero-width or unknown characters); give data in its language"
        )
    train, val = split_validation(len(usable), config.val_batches, recipe.batch_size, recipe.seed)
    data = TrainData(tokens, targets, usable[train], usable[val], tokens.pad_token_id)
    return PreparedData(texts=texts, tokens=tokens, targets=targets, data=data, token_report=report)
