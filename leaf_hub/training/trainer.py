"""Training the leaf: sentence-transformers' trainer, plus what distilling into a leaf needs that it lacks.

The loop is ``SentenceTransformerTrainer`` (transformers' Trainer under Accelerate: one CPU or GPU, or DDP
under ``accelerate launch``; bf16/fp16; gradient accumulation; fused AdamW; checkpoints and resume) with
``EmbedDistillLoss``'s L2 distance (:mod:`~leaf_hub.training.loss`). Measured against it, a hand-written
loop was no faster (bench/train_throughput.py), so leaf-hub keeps only what the trainer lacks:

- batches from pre-tokenized :class:`TrainData` (token ids and cached teacher vectors), grouped by length
  (:mod:`~leaf_hub.training.sampler`), the backbone's dropout off (``dropout``), unused parameters frozen;
- the paper's cycles fitted into the steps or run on the clock, per-group rates for the backbone and the
  projection, warm-up (:mod:`~leaf_hub.training.schedule`);
- validation, the best leaf, epoch checkpoints, ``metrics.jsonl`` (:mod:`~leaf_hub.training.callbacks`);
- exact resume: the state is swapped in whole (:mod:`~leaf_hub.training.state`), dropout masks are a pure
  function of the step, and times and losses count every invocation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import broadcast_object_list
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import PrinterCallback, ProgressCallback

from leaf_hub.errors import ConfigError, LeafHubError
from leaf_hub.leaf import projection
from leaf_hub.training.callbacks import LeafCallback
from leaf_hub.training.config import TrainConfig
from leaf_hub.training.data import TrainData
from leaf_hub.training.loss import LeafDistillLoss
from leaf_hub.training.sampler import LengthGroupedBatchSampler, TrainDataset, train_loader, whole_batch
from leaf_hub.training.schedule import Clock, Schedule
from leaf_hub.training.state import (
    STATE,
    Evaluation,
    Progress,
    has_saved_state,
    move_into_place,
    saved_step,
    state_dir,
)

__all__ = ["LeafTrainer", "TrainResult", "has_saved_state", "set_dropout", "train"]

logger = logging.getLogger(__name__)

STAGING = ".trainer"  # transformers writes each checkpoint here before it is swapped into state/


@dataclass
class TrainResult:
    """What :func:`train` did, counted over every invocation of the run (a resume continues the counts)."""

    steps: int
    epochs: float
    texts_seen: int
    train_time_s: float  # training seconds
    prior_run_time_s: float  # seconds the whole job ran in earlier invocations, up to the resumed state
    best_val_l2: float | None
    final: Evaluation  # the last validation
    train_loss: float | None  # mean training loss over all batches
    warm_start: dict[str, Any] | None  # the warm start's facts, kept in the saved state
    invocations: int
    num_processes: int
    device: str
    config: TrainConfig

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["final"] = self.final.to_json()
        return out


class LossMeter:
    """The training loss, summed on the device (no sync per step) and folded into :class:`Progress` on demand."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._sum: torch.Tensor | None = None
        self._batches = 0

    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self._sum = loss if self._sum is None else self._sum + loss
        self._batches += 1

    def flush(self) -> None:
        if self._sum is None:
            return
        value = float(self._sum.item())
        p = self.progress
        p.loss_sum += value
        p.window_loss_sum += value
        p.loss_batches += self._batches
        p.window_batches += self._batches
        self._sum, self._batches = None, 0

    def window_mean(self) -> float:
        self.flush()
        p = self.progress
        return p.window_loss_sum / p.window_batches if p.window_batches else float("nan")

    def take_window(self) -> float:
        """The mean loss since the last call (over invocations: the window is in the saved state)."""
        mean = self.window_mean()
        self.progress.window_loss_sum, self.progress.window_batches = 0.0, 0
        return mean


class LeafTrainer(SentenceTransformerTrainer):
    """``SentenceTransformerTrainer`` fed from a :class:`TrainData`, with leaf-hub's schedule and run folder."""

    def __init__(
        self,
        *,
        model,
        args: SentenceTransformerTrainingArguments,
        data: TrainData,
        config: TrainConfig,
        out: Path,
        progress: Progress,
        run_started: float | None = None,
    ) -> None:
        self.data, self.config, self.out, self.progress = data, config, out, progress
        self.run_started = run_started
        self.prior_run_time_s = progress.run_time_s
        self.meter = LossMeter(progress)
        self.metrics_path = out / "metrics.jsonl"
        dataset = TrainDataset(data, data.train_idx)
        self.sampler = LengthGroupedBatchSampler(
            dataset,
            config.batch_size,
            seed=config.seed,
            grouped=config.length_grouping,
            num_processes=args.world_size,
            process_index=args.process_index,
        )
        self.loader = train_loader(
            self.sampler, workers=config.dataloader_workers, pin_memory=model.device.type == "cuda"
        )
        accumulate = config.gradient_accumulation_steps
        self.steps_per_epoch = max(1, math.ceil(len(self.sampler) / accumulate))
        total = config.cycles * config.epochs_per_cycle * self.steps_per_epoch
        args.max_steps = min(total, config.max_steps) if config.max_steps else total
        self.schedule = Schedule(
            config, args.max_steps, Clock(progress.train_time_s), warm_started=progress.warm_start is not None
        )
        self.head_ids = {id(p) for p in projection(model).parameters()}
        self._seeded_step, self._micro = -1, 0
        super().__init__(
            model=model,
            args=args,
            train_dataset=dataset,
            loss=LeafDistillLoss(model),
            data_collator=whole_batch,
        )
        # leaf-hub draws its own bar and prints its own lines; transformers' would print log dicts.
        self.remove_callback(ProgressCallback)
        self.remove_callback(PrinterCallback)
        self.leaf_callback = LeafCallback(self)
        self.add_callback(self.leaf_callback)

    @property
    def is_main(self) -> bool:
        return self.is_world_process_zero()

    # -- what the trainer reads -----------------------------------------------------------------------------

    def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
        """No sentence-transformers model card: leaf-hub writes the leaf's card from the run's facts."""

    def preprocess_dataset(self, dataset=None, dataset_name: str | None = None):
        return dataset  # a TrainDataset, not a datasets.Dataset: nothing to add

    def get_train_dataloader(self):
        return self.loader  # this process's share already (the sampler splits)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None:
            self.lr_scheduler = self.schedule.scheduler(optimizer or self.optimizer, self.head_ids)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def _is_head(self, group: dict) -> bool:
        return any(id(p) in self.head_ids for p in group["params"])

    def peak_rate(self, group: dict) -> float:
        head_lr = self.config.lr if self.config.head_lr is None else self.config.head_lr
        return head_lr if self._is_head(group) else self.config.lr

    def set_rates(self, step: int) -> None:
        """The rates of ``step`` from this run's options (the resumed optimizer holds the saved run's)."""
        scheduler = self.lr_scheduler
        for i, group in enumerate(self.optimizer.param_groups):
            group["initial_lr"] = scheduler.base_lrs[i] = self.peak_rate(group)
            group["lr"] = group["initial_lr"] * scheduler.lr_lambdas[i](step)
        scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def rates(self) -> tuple[float, float]:
        """The current rates of the backbone and of the projection."""
        groups = self.optimizer.param_groups
        body = next((g["lr"] for g in groups if not self._is_head(g)), 0.0)
        head = next((g["lr"] for g in groups if self._is_head(g)), body)
        return body, head

    def elapsed(self) -> float:
        """Read the clock once (the main process's reading under DDP, so every replica takes the same rate)."""
        elapsed = self.schedule.clock.tick()
        if self.args.world_size > 1 and self.config.max_minutes is not None:
            elapsed = broadcast_object_list([elapsed])[0]
            self.schedule.clock.elapsed_s = elapsed
        return elapsed

    # -- a step ---------------------------------------------------------------------------------------------

    def training_step(self, model, inputs, num_items_in_batch=None):
        # Dropout masks are a pure function of (seed, step, micro-batch, process): a resumed run replays them
        # exactly, whatever else touched the global RNG in between (loading a checkpoint initializes modules).
        step = self.state.global_step
        if step != self._seeded_step:
            self._seeded_step, self._micro = step, 0
        torch.manual_seed(hash((self.config.seed, step, self._micro, self.args.process_index)) % 2**63)
        self._micro += 1
        self.progress.texts_seen += len(inputs["label"]) * self.args.world_size
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self.meter.add(loss[0] if return_outputs else loss)
        return loss

    # -- records and state ----------------------------------------------------------------------------------

    def log_record(self, record: Evaluation) -> None:
        if self.is_main:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record.to_json()) + "\n")

    def _save_checkpoint(self, model, trial) -> None:
        """transformers' checkpoint, written into a staging folder and swapped into ``state/`` whole."""
        staging = Path(self.args.output_dir)
        self.accelerator.wait_for_everyone()
        if self.is_main:
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()
        if self.is_main:
            self.meter.flush()
            if self.run_started is not None:
                self.progress.run_time_s = self.prior_run_time_s + time.time() - self.run_started
            folder = staging / f"checkpoint-{self.state.global_step}"
            self.progress.write(folder)
            move_into_place(folder, self.out / STATE)
            logger.info("state saved at step %d", self.state.global_step)
        self.accelerator.wait_for_everyone()


def train(
    leaf,
    data: TrainData,
    out: Path,
    config: TrainConfig,
    resume: bool = False,
    *,
    warm_start: dict[str, Any] | None = None,
    run_started: float | None = None,
) -> TrainResult:
    """Train ``leaf`` in place; writes the best leaf (``out/leaf``), checkpoints, metrics and state under ``out``.

    ``resume`` continues the state saved in ``out`` (refused without it when there is one). ``warm_start``
    (the warm start's facts) is kept in the state, so a resumed run still reports it; ``run_started`` (the
    ``time.time()`` the job began) lets the state count the job's seconds over all invocations.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    saved = state_dir(out)
    if saved is not None and not resume:
        raise ConfigError(
            "resume",
            f"{out} holds the saved state of an earlier run; set {{option}} to continue it, or choose another output",
        )
    if config.dropout is not None:
        set_dropout(leaf, config.dropout)
    _freeze_unused_parameters(leaf, data.batch(data.train_idx[: config.batch_size]))
    progress = Progress(warm_start=warm_start)
    if saved is not None:
        progress = Progress.read(saved)
        progress.invocations += 1
        logger.info("resuming from %s at step %d", saved, saved_step(saved))
    trainer = LeafTrainer(
        model=leaf,
        args=_arguments(leaf, out, config),
        data=data,
        config=config,
        out=out,
        progress=progress,
        run_started=run_started,
    )
    if saved is not None and saved_step(saved) >= trainer.args.max_steps:
        # Nothing left to do (options may have shortened the run): the saved leaf, validated.
        leaf.load_state_dict(type(leaf)(str(saved), device=str(leaf.device)).state_dict())
        step = trainer.state.global_step = saved_step(saved)
        body, head = (trainer.schedule.factor(step - 1, head=h) for h in (False, True))
        trainer.leaf_callback.step_lrs = (config.lr * body, (config.head_lr or config.lr) * head)
    else:
        with _one_progress_bar():
            trainer.train(resume_from_checkpoint=str(saved) if saved is not None else None)
    final = trainer.leaf_callback.last
    if trainer.is_main and final is None:
        final = trainer.leaf_callback.evaluate(trainer.state, "final")
    trainer.meter.flush()
    if trainer.is_main:
        shutil.rmtree(out / STAGING, ignore_errors=True)
    steps = trainer.state.global_step
    return TrainResult(
        steps=steps,
        epochs=round(steps / trainer.steps_per_epoch, 3),
        texts_seen=progress.texts_seen,
        train_time_s=round(progress.train_time_s, 1),
        prior_run_time_s=round(trainer.prior_run_time_s, 1),
        best_val_l2=progress.best_val_l2,
        final=final,  # type: ignore[arg-type]  # None only on processes other than the main one
        train_loss=progress.loss_sum / progress.loss_batches if progress.loss_batches else None,
        warm_start=progress.warm_start,
        invocations=progress.invocations,
        num_processes=trainer.args.world_size,
        device=str(trainer.args.device),
        config=config,
    )


@contextlib.contextmanager
def _one_progress_bar():
    """While training, the training bar is the only one: log lines go through ``tqdm.write`` (above the bar,
    not onto its line) and transformers' bar for writing each checkpoint's weights stays off."""
    from transformers.utils import logging as transformers_logging

    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        with logging_redirect_tqdm(loggers=[logging.getLogger(), logging.getLogger("transformers")]):
            yield
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


def _arguments(leaf, out: Path, config: TrainConfig) -> SentenceTransformerTrainingArguments:
    """The trainer's arguments for ``config`` (``max_steps`` is set by the trainer: it needs the batches)."""
    device = leaf.device.type
    head_lr = config.lr if config.head_lr is None else config.head_lr
    head_name = next(name for name, p in leaf.named_parameters() if p is projection(leaf).weight)
    return SentenceTransformerTrainingArguments(
        output_dir=str(out / STAGING),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_steps=1,
        learning_rate=config.lr,
        # sentence-transformers' per-parameter rates: the projection learns at its own (parameter names are
        # the loss's, whose model is "model").
        learning_rate_mapping={"^" + ("model." + head_name).replace(".", r"\.") + "$": head_lr},
        weight_decay=config.weight_decay,
        adam_beta1=config.beta1,
        adam_beta2=config.beta2,
        # The fused kernel updates all parameters in one pass: 4x faster than foreach on CPU, where the
        # optimizer step is otherwise 15% of a length-grouped step.
        optim="adamw_torch_fused" if device in ("cpu", "cuda") else "adamw_torch",
        max_grad_norm=config.max_grad_norm or 0.0,
        bf16=config.mixed_precision == "bf16",
        fp16=config.mixed_precision == "fp16",
        save_strategy="steps",
        save_steps=config.save_every,
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=config.seed,
        use_cpu=device == "cpu",
        ddp_find_unused_parameters=False,
        dataloader_num_workers=config.dataloader_workers,
    )


def set_dropout(model: torch.nn.Module, p: float) -> int:
    """Set the probability of every dropout module in ``model`` (attention dropout included: transformers'
    attention reads its Dropout module's ``p``); returns how many were set. The saved config keeps its own
    values, so whoever fine-tunes the leaf later gets the backbone's usual dropout."""
    if not 0.0 <= p < 1.0:
        raise LeafHubError(f"dropout must be in [0, 1), got {p}")
    modules = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    for m in modules:
        m.p = p
    return len(modules)


def _freeze_unused_parameters(leaf, batch: dict) -> None:
    """Freeze parameters the leaf's embedding does not depend on (e.g. BERT's pooler, which mean pooling
    ignores): DistributedDataParallel refuses parameters that never get a gradient, and the optimizer
    would carry state for them."""
    batch = {k: v.to(leaf.device) for k, v in batch.items() if k != "target"}
    leaf.zero_grad(set_to_none=True)
    leaf(batch)["sentence_embedding"].float().sum().backward()
    unused = [name for name, p in leaf.named_parameters() if p.requires_grad and p.grad is None]
    for name, p in leaf.named_parameters():
        if name in unused:
            p.requires_grad_(False)
    leaf.zero_grad(set_to_none=True)
    if unused:
        logger.info("frozen (no effect on the embedding): %s", ", ".join(unused))
