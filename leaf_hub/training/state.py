"""What a training run keeps in its folder, written so that a kill at any moment loses nothing saved.

``state/`` is the resumable state (transformers' checkpoint: weights, optimizer, scheduler, RNG, trainer
state, plus leaf-hub's :class:`Progress`), ``leaf/`` the best leaf so far, ``checkpoints/epoch-N`` a leaf per
finished epoch, ``metrics.jsonl`` one validation record per line. Folders are written whole under a
temporary name and swapped in (:func:`atomic_save_dir`): transformers' own checkpointing writes straight
into ``checkpoint-N`` and its resume picks the highest-numbered folder, so a kill in the middle of a save
would leave a half-written checkpoint that the next run trusts.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

STATE = "state"
PROGRESS = "leaf_progress.json"
TRAINER_STATE = "trainer_state.json"  # transformers' TRAINER_STATE_NAME, written last into a checkpoint


@dataclass
class Progress:
    """leaf-hub's part of the resumable state: what transformers' TrainerState does not hold.

    Times and losses count every invocation of a run (a resumed run continues the counts), so the facts of a
    run that was interrupted and resumed read like those of one uninterrupted run.
    """

    best_val_l2: float | None = None
    texts_seen: int = 0
    train_time_s: float = 0.0  # training seconds, the clock of the time-bounded schedule
    run_time_s: float = 0.0  # seconds of the whole job (loading, teacher cache, warm start, training)
    loss_sum: float = 0.0  # training loss summed over all batches so far
    loss_batches: int = 0
    window_loss_sum: float = 0.0  # since the last validation: the loss printed beside it
    window_batches: int = 0
    invocations: int = 1
    warm_start: dict[str, Any] | None = None  # the warm start's facts (it runs before the first invocation)

    @classmethod
    def read(cls, folder: Path) -> Progress:
        path = folder / PROGRESS
        if not path.is_file():
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})

    def write(self, folder: Path) -> None:
        (folder / PROGRESS).write_text(json.dumps(asdict(self)))


def state_dir(out: Path) -> Path | None:
    """The saved state in ``out``, if any (``.state.old`` survives a kill between the two renames of a swap)."""
    for name in (STATE, f".{STATE}.old"):
        if (out / name / TRAINER_STATE).is_file():
            return out / name
    return None


def has_saved_state(out: str | os.PathLike) -> bool:
    """Whether ``out`` holds the resumable state of an earlier run."""
    return state_dir(Path(out)) is not None


def saved_step(folder: Path) -> int:
    """The optimizer steps done when the state in ``folder`` was saved."""
    return int(json.loads((folder / TRAINER_STATE).read_text())["global_step"])


def atomic_save_dir(save: Callable[[Path], Any], target: Path) -> None:
    """Write a folder via ``save(tmp)`` and swap it in, so a kill never leaves a half-written folder.

    Files get the mode a normally created file has: transformers writes weights through a temporary file
    (mode 0600), which left a leaf's ``model.safetensors`` unreadable to others beside 0644 configs.
    """
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    move_into_place(tmp, target)


def move_into_place(tmp: Path, target: Path) -> None:
    """Replace ``target`` by the complete folder ``tmp`` (two renames; the old copy is kept until the second)."""
    old = target.with_name(f".{target.name}.old")
    _usual_modes(tmp)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _usual_modes(folder: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    for path in folder.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o666 & ~mask)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the resumed step (they will be written again)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


def prune_checkpoints(folder: Path, keep: int | None) -> None:
    """Keep only the last ``keep`` epoch checkpoints (all when None)."""
    if not keep:
        return
    for old in sorted(folder.glob("epoch-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class Evaluation:
    """One line of ``metrics.jsonl``: the leaf against the teacher on the held-out texts at a step.

    ``event`` says why it was taken: ``start`` (before the first step), ``eval`` (every ``eval_every``
    steps and at the end), ``epoch`` (an epoch finished) or ``final`` (a run resumed at its last step).
    ``lr`` / ``head_lr`` are the rates of the step just taken; ``loss`` the mean training loss since the
    previous validation.
    """

    step: int
    epoch: int
    event: str
    val_l2: float
    val_cosine: float
    lr: float
    head_lr: float
    texts_seen: int
    elapsed_s: float
    loss: float | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        if record["loss"] is None:
            del record["loss"]
        return record
