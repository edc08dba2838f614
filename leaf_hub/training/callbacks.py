"""What leaf-hub adds to each step of transformers' training loop, as one TrainerCallback.

- the clock: training seconds over all invocations, read once per step, which the time-bounded schedule
  and ``max_minutes`` follow;
- validation on the held-out texts every ``eval_every`` steps, at each epoch's end and at the end; each
  result is a line of ``metrics.jsonl``, and the best leaf by validation L2 is saved to ``out/leaf``;
- a leaf per finished epoch in ``checkpoints/`` (the last ``keep_checkpoints``);
- the stop when ``max_minutes`` are spent (with a save of the state), and a progress bar with the loss.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tqdm.auto import tqdm
from transformers import TrainerCallback

from leaf_hub.training.schedule import Clock
from leaf_hub.training.state import Evaluation, atomic_save_dir, prune_checkpoints, truncate_metrics
from leaf_hub.training.validation import validate

if TYPE_CHECKING:
    from leaf_hub.training.trainer import LeafTrainer

logger = logging.getLogger(__name__)


class LeafCallback(TrainerCallback):
    """Clock, validation, best leaf, epoch checkpoints, time limit and progress bar of a :class:`LeafTrainer`."""

    def __init__(self, trainer: LeafTrainer) -> None:
        self.trainer = trainer
        self.bar: tqdm | None = None
        self.step_lrs = (0.0, 0.0)  # the rates of the last step taken
        self.last: Evaluation | None = None  # the last validation of this invocation

    # -- the loop's events --------------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, **kwargs):
        t = self.trainer
        t.schedule.clock = Clock(t.progress.train_time_s)
        # The rates follow this run's options from the resumed step on (a resume may extend max_steps).
        t.set_rates(state.global_step)
        self.step_lrs = t.rates()
        if t.is_main:
            truncate_metrics(t.metrics_path, state.global_step)
        t.accelerator.wait_for_everyone()  # one writer: another process rewriting races with the first line
        if state.global_step == 0:
            first = self.evaluate(state, "start")
            if first is not None:
                logger.info("step 0: validation L2 %.4f, cosine %.4f", first.val_l2, first.val_cosine)
        self.bar = tqdm(
            total=state.max_steps,
            initial=state.global_step,
            desc="training",
            unit="step",
            disable=not t.is_main,
        )

    def on_optimizer_step(self, args, state, control, **kwargs):
        # After the optimizer's step, before the scheduler's: this step's rates, and the time the next
        # step's rate is computed from.
        self.step_lrs = self.trainer.rates()
        self.trainer.progress.train_time_s = self.trainer.schedule.clock.tick()

    def on_step_end(self, args, state, control, **kwargs):
        t = self.trainer
        config = t.config
        step = state.global_step
        elapsed = t.progress.train_time_s
        if (
            t.schedule.by_time and self.bar is not None
        ):  # the bar's total: the steps that fit at the rate so far
            done = elapsed / (60 * config.max_minutes)
            self.bar.total = max(step, min(state.max_steps, int(step / max(done, 1e-6))))
        if self.bar is not None:
            self.bar.update(1)
            if step % 10 == 0:
                self.bar.set_postfix(loss=f"{t.meter.window_mean():.4f}")
        out_of_time = config.max_minutes is not None and elapsed > 60 * config.max_minutes
        stop = step >= state.max_steps or out_of_time
        if step % config.eval_every == 0 or stop:
            record = self.evaluate(state, "eval", with_loss=True)
            if record is not None and self.bar is not None:
                self.bar.write(
                    f"step {step}: loss {record.loss:.4f}  val L2 {record.val_l2:.4f}  "
                    f"cosine {record.val_cosine:.4f}"
                )
        if out_of_time:
            logger.info("stopping after %.1f minutes (max_minutes)", elapsed / 60)
            control.should_training_stop = True
            control.should_save = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        t = self.trainer
        if state.global_step == 0 or state.global_step % t.steps_per_epoch:
            return control  # stopped part-way through the epoch
        if t.is_main:
            epoch = state.global_step // t.steps_per_epoch
            atomic_save_dir(lambda p: t.model.save(str(p)), t.out / "checkpoints" / f"epoch-{epoch:03d}")
            prune_checkpoints(t.out / "checkpoints", t.config.keep_checkpoints)
        self.evaluate(state, "epoch")
        control.should_save = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # -- validation and the best leaf -----------------------------------------------------------------------

    def evaluate(self, state, event: str, with_loss: bool = False) -> Evaluation | None:
        """Validate (main process only), log the record, keep the best leaf; the record, None elsewhere."""
        t = self.trainer
        if not t.is_main:
            return None
        stats = validate(t.model, t.data, t.config.batch_size * 2, t.model.device)
        lr, head_lr = self.step_lrs
        record = Evaluation(
            step=state.global_step,
            epoch=state.global_step // t.steps_per_epoch,
            event=event,
            val_l2=stats["val_l2"],
            val_cosine=stats["val_cosine"],
            lr=lr,
            head_lr=head_lr,
            texts_seen=t.progress.texts_seen,
            elapsed_s=round(t.progress.train_time_s, 2),
            loss=t.meter.take_window() if with_loss else None,
        )
        t.log_record(record)
        best = t.progress.best_val_l2
        if best is None or record.val_l2 < best or not (t.out / "leaf").exists():
            t.progress.best_val_l2 = record.val_l2 if best is None else min(record.val_l2, best)
            atomic_save_dir(lambda p: t.model.save(str(p)), t.out / "leaf")
        t.model.train()  # saving a SentenceTransformer switches its modules to eval mode
        self.last = record
        return record
