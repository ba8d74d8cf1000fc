"""Ignite handler that ends a run after a wall-clock budget (and is the run's clock)."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

from ignite.engine import Engine, Events

__all__ = ["StopAfterSeconds"]

logger = logging.getLogger(__name__)


class StopAfterSeconds:
    """Ends a training run once a wall-clock budget is spent, so that models are compared under equal time.

    Checked after every iteration: when ``seconds`` have passed since the run started, the running epoch is
    ended early with ``terminate_epoch`` (so its ``EPOCH_COMPLETED`` handlers, validation and checkpoints,
    still run on the weights reached) and the run then terminates. A run may therefore overshoot the budget
    by one validation pass. The epoch budget (``max_epochs``) still applies: whichever comes first stops.

    With ``elapsed_path``, the time spent is written there (JSON) after every epoch and, with ``resume``, read
    back when the run starts, so a killed run resumed from its last checkpoint gets only the remaining budget.

    ``seconds=None`` never stops: the handler is then only the run's clock (e.g. for :class:`BudgetCosineLR`
    when the recipe trains for a number of epochs rather than minutes).

    Args:
        seconds: wall-clock budget of the run, > 0, or ``None`` for no limit.
        elapsed_path: optional file keeping the seconds spent across restarts.
        resume: read the seconds spent earlier from ``elapsed_path`` (``False``: a fresh run starts at 0 s).

    Example (bundle config)::

        "wall_time_stopper": {"_target_": "transforms.StopAfterSeconds", "seconds": 600},
        "initialize": ["...", "$@wall_time_stopper.attach(@train#trainer)"]
    """

    def __init__(
        self, seconds: float | None, elapsed_path: str | os.PathLike | None = None, resume: bool = True
    ) -> None:
        if seconds is not None and not (
            isinstance(seconds, (int, float))
            and not isinstance(seconds, bool)
            and math.isfinite(seconds)
            and seconds > 0
        ):
            raise ValueError(f"StopAfterSeconds needs a finite budget > 0 seconds (or None), got {seconds!r}.")
        self.seconds = None if seconds is None else float(seconds)
        self.elapsed_path = Path(elapsed_path) if elapsed_path is not None else None
        self.resume = bool(resume)
        self.spent_before = 0.0
        self.started_at: float | None = None
        self.stopping = False

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.on_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.on_iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.on_epoch_completed)

    def elapsed(self) -> float:
        """Seconds spent by this run and by the earlier runs recorded in ``elapsed_path``."""
        running = 0.0 if self.started_at is None else time.monotonic() - self.started_at
        return self.spent_before + running

    def _read_spent_before(self) -> float:
        if not self.resume or self.elapsed_path is None or not self.elapsed_path.is_file():
            return 0.0
        try:
            return float(json.loads(self.elapsed_path.read_text())["elapsed_seconds"])
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            logger.warning("ignoring unreadable elapsed-time record %s", self.elapsed_path)
            return 0.0

    def on_started(self, engine: Engine) -> None:
        self.spent_before = self._read_spent_before()
        self.started_at = time.monotonic()
        self.stopping = False
        if self.seconds is not None and self.elapsed() >= self.seconds:
            engine.logger.info(f"wall-time budget of {self.seconds:.0f} s already spent: nothing left to train")
            engine.terminate()

    def on_iteration_completed(self, engine: Engine) -> None:
        if not self.stopping and self.seconds is not None and self.elapsed() >= self.seconds:
            self.stopping = True
            engine.logger.info(
                f"wall-time budget of {self.seconds:.0f} s spent at epoch {engine.state.epoch}, "
                f"iteration {engine.state.iteration}: ending the epoch and stopping"
            )
            engine.terminate_epoch()

    def on_epoch_completed(self, engine: Engine) -> None:
        if self.elapsed_path is not None:
            self.elapsed_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.elapsed_path.with_name(self.elapsed_path.name + ".tmp")
            tmp.write_text(json.dumps({"elapsed_seconds": self.elapsed(), "epoch": int(engine.state.epoch)}))
            os.replace(tmp, self.elapsed_path)
        if self.stopping:
            engine.terminate()
