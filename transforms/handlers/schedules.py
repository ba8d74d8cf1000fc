"""Learning-rate schedule over a training budget of steps or of wall time."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["BudgetCosineLR"]


class BudgetCosineLR(LRScheduler):
    """Cosine decay of the learning rate over a budget of optimiser steps or of wall time, whichever runs out first.

    The half-cosine of SGDR without restarts (Loshchilov & Hutter, ICLR 2017, Eq. 5) with the progress measured
    against the budget: ``p = max(step / total_steps, elapsed / seconds)`` clipped to [0, 1] and

        ``lr = min_lr_ratio * base_lr + (1 - min_lr_ratio) * base_lr * (1 + cos(pi * p)) / 2``,

    times a linear warm-up factor ``min(1, (step + 1) / warmup_steps)``. With a wall-time budget the schedule
    ends where :class:`StopAfterSeconds` stops the run, so a recipe trained "for 45 minutes" anneals fully on
    any machine; without one (``clock`` None, or a clock without a limit) it is the usual cosine over
    ``total_steps``. Step it once per iteration (``LrScheduleHandler(..., epoch_level=False)``).

    Args:
        optimizer: the wrapped optimiser.
        total_steps: optimiser steps of the whole run (e.g. ``epochs * len(dataloader)``), > 0.
        clock: an object with ``elapsed()`` (seconds spent) and ``seconds`` (the budget, or ``None``), e.g. the
            run's :class:`StopAfterSeconds`.
        warmup_steps: steps of linear warm-up from ``base_lr / warmup_steps``.
        min_lr_ratio: floor of the learning rate as a fraction of the initial one.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        clock=None,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if int(total_steps) < 1:
            raise ValueError(f"BudgetCosineLR needs total_steps >= 1, got {total_steps!r}.")
        if not 0.0 <= float(min_lr_ratio) <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio!r}.")
        self.total_steps = int(total_steps)
        self.clock = clock
        self.warmup_steps = max(0, int(warmup_steps))
        self.min_lr_ratio = float(min_lr_ratio)
        super().__init__(optimizer, last_epoch)

    def progress(self) -> float:
        """Fraction of the budget spent, in [0, 1]."""
        spent = self.last_epoch / self.total_steps
        budget = getattr(self.clock, "seconds", None)
        if self.clock is not None and budget:
            spent = max(spent, self.clock.elapsed() / budget)
        return min(max(spent, 0.0), 1.0)

    def get_lr(self) -> list[float]:
        cosine = 0.5 * (1.0 + math.cos(math.pi * self.progress()))
        factor = self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine
        if self.warmup_steps:
            factor *= min(1.0, (self.last_epoch + 1) / self.warmup_steps)
        return [base * factor for base in self.base_lrs]

    def state_dict(self) -> dict:
        # the clock is restored from its own record (StopAfterSeconds' elapsed_path), not pickled with the weights
        return {key: value for key, value in super().state_dict().items() if key != "clock"}
