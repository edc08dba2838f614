"""The learning-rate schedule: the paper's cycles of linear decay, on the step count or on the clock.

AdamW's rate runs ``cycles`` linear decays from its peak down towards ``min_lr`` (the projection's from
``head_lr`` by the same factor), after an optional linear warm-up. A run bounded by steps fits the cycles
into its steps; a run bounded only by minutes runs them on the clock, so the schedule fits the time
whatever the speed of the steps (texts of all lengths make it vary several-fold) instead of being cut off
part-way down the paper's 30 epochs at a high rate. The factor is a pure function of the step and of the
training seconds, both in the saved state, so a resumed run continues on the same curve.
"""

from __future__ import annotations

import math
import time

import torch

from leaf_hub.training.config import WARM_START_WARMUP, TrainConfig


def lr_factor(step: int, total: int, cycles: int, lr: float, min_lr: float, warmup: int) -> float:
    """Multiplier on ``lr``: optional linear warm-up, then ``cycles`` linear decays from lr to min_lr."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    cycle_len = max(1, math.ceil(total / max(1, cycles)))
    return _linear_decay((step % cycle_len) / cycle_len, lr, min_lr)


def lr_factor_at(fraction: float, cycles: int, lr: float, min_lr: float) -> float:
    """The same cycles as :func:`lr_factor`, at a fraction of the run (of its time, for ``max_minutes``)."""
    pos = (min(max(fraction, 0.0), 1.0 - 1e-9) * max(1, cycles)) % 1.0
    return _linear_decay(pos, lr, min_lr)


def _linear_decay(pos: float, lr: float, min_lr: float) -> float:
    """Multiplier on ``lr`` at position ``pos`` in [0, 1) of one cycle: lr at 0, down towards min_lr."""
    return (min_lr + (lr - min_lr) * (1.0 - pos)) / lr


class Clock:
    """Training seconds over all invocations of a run; a resumed run continues from the saved count.

    Read once per optimizer step (:meth:`tick`): the schedule, the time limit and the records all use that
    one reading.
    """

    def __init__(self, elapsed_s: float = 0.0) -> None:
        self._start = time.monotonic() - elapsed_s
        self.elapsed_s = elapsed_s

    def tick(self) -> float:
        self.elapsed_s = time.monotonic() - self._start
        return self.elapsed_s


class Schedule:
    """The factor on each parameter group's peak rate at each step, for a run of ``total`` steps."""

    def __init__(self, config: TrainConfig, total: int, clock: Clock, warm_started: bool = False) -> None:
        self.config = config
        self.total = total
        self.clock = clock
        # Bounded by minutes only, the cycles run on the clock.
        self.by_time = config.max_minutes is not None and not config.max_steps
        backbone = config.backbone_warmup_steps
        if backbone is None:  # the default: keep a warm start's head start
            backbone = WARM_START_WARMUP if warm_started else 0
        self.warmup = {False: max(config.warmup_steps, backbone), True: config.warmup_steps}

    def factor(self, step: int, head: bool = False) -> float:
        """Multiplier on the peak rate of the backbone (or of the projection, ``head``) at ``step``."""
        c = self.config
        warmup = self.warmup[head]
        if warmup and step < warmup:
            return (step + 1) / warmup
        if self.by_time:
            return lr_factor_at(self.clock.elapsed_s / (60 * c.max_minutes), c.cycles, c.lr, c.min_lr)
        return lr_factor(step, self.total, c.cycles, c.lr, c.min_lr, 0)

    def scheduler(
        self, optimizer: torch.optim.Optimizer, head: set[int]
    ) -> torch.optim.lr_scheduler.LambdaLR:
        """A LambdaLR over ``optimizer``'s groups; groups holding a parameter whose id is in ``head`` follow
        the projection's factor. (Plain functions: LambdaLR saves nothing of them, the state holds the step.)"""

        def body(step: int) -> float:
            return self.factor(step)

        def projection(step: int) -> float:
            return self.factor(step, head=True)

        lambdas = [
            projection if any(id(p) in head for p in group["params"]) else body
            for group in optimizer.param_groups
        ]
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
