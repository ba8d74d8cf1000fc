"""Ignite handlers that make bundle training safe to interrupt.

MONAI's ``CheckpointSaver`` writes checkpoints in place (``atomic=False``), so a run killed while
writing leaves a truncated file, and ``CheckpointLoader`` fails when the file is not there yet.
These two handlers close that gap: every checkpoint is written to a temporary file in the same
folder and moved over the old one with ``os.replace`` (atomic on POSIX and Windows), and a run
started again with the same ``ckpt_dir`` continues from the last finished epoch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

__all__ = ["atomic_torch_save", "AtomicCheckpointSaver", "ResumeFromCheckpoint"]

logger = logging.getLogger(__name__)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` so that readers only ever see the old or the complete new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; checkpoints are shared artefacts
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
        raise


def _state_of(obj: Any) -> Any:
    return obj.state_dict() if hasattr(obj, "state_dict") else obj


def _unwrap(module: Any) -> Any:
    """Saves the inner network of DataParallel/DDP so checkpoints load without the wrapper."""
    return module.module if hasattr(module, "module") and isinstance(module, torch.nn.Module) else module


class AtomicCheckpointSaver:
    """Writes checkpoints atomically, either after every ``save_interval`` epochs or on a new best metric.

    Two uses in a bundle:

    * attached to the trainer (``key_metric=False``): writes ``{name: obj.state_dict()}`` for the whole
      ``save_dict`` (network, optimizer, trainer, lr scheduler) to ``filename`` every ``save_interval``
      epochs, so :class:`ResumeFromCheckpoint` can continue a killed run;
    * attached to the evaluator (``key_metric=True``): writes the network's plain ``state_dict`` (the model
      zoo's ``model.pt`` convention, loadable by ``CheckpointLoader`` and ``ckpt_export``) whenever the
      evaluator's key metric improves. The best value is kept in ``<filename>.json`` beside the weights so a
      resumed run does not overwrite a better model with a worse one.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: objects to save, e.g. ``{"model": net, "optimizer": opt, "trainer": trainer}``.
        filename: checkpoint file name inside ``save_dir``.
        key_metric: save on improvement of the attached engine's key metric instead of periodically.
        greater_is_better: direction of the key metric (``False`` for errors such as Rand error).
        save_interval: with ``key_metric=False``, the number of epochs between saves.
        keep_previous_best: with ``key_metric=True``, start from the best value recorded in ``<filename>.json`` by
            an earlier run (a resumed run); ``False`` starts afresh, so the new run always writes its own model.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        filename: str = "checkpoint_last.pt",
        key_metric: bool = False,
        greater_is_better: bool = True,
        save_interval: int = 1,
        keep_previous_best: bool = True,
    ) -> None:
        if not save_dict:
            raise ValueError("AtomicCheckpointSaver needs at least one object in save_dict.")
        if save_interval < 1:
            raise ValueError(f"save_interval must be >= 1, got {save_interval}.")
        self.path = Path(save_dir) / filename
        self.save_dict = dict(save_dict)
        self.key_metric = key_metric
        self.greater_is_better = greater_is_better
        self.save_interval = save_interval
        self.best_metric = self._read_best_metric() if keep_previous_best else None

    @property
    def metric_path(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def _read_best_metric(self) -> float | None:
        if not self.key_metric or not self.metric_path.is_file():
            return None
        try:
            return float(json.loads(self.metric_path.read_text())["metric"])
        except (ValueError, KeyError, json.JSONDecodeError):
            logger.warning("ignoring unreadable best-metric record %s", self.metric_path)
            return None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _is_improvement(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best_metric is None:
            return True
        return value > self.best_metric if self.greater_is_better else value < self.best_metric

    def _payload(self) -> Any:
        if len(self.save_dict) == 1:
            return _state_of(_unwrap(next(iter(self.save_dict.values()))))
        return {name: _state_of(_unwrap(obj)) for name, obj in self.save_dict.items()}

    def __call__(self, engine: Engine) -> None:
        epoch = int(engine.state.epoch)
        if not self.key_metric:
            if epoch % self.save_interval == 0:
                atomic_torch_save(self._payload(), self.path)
                logger.info("epoch %d: saved %s", epoch, self.path)
            return
        name = getattr(engine.state, "key_metric_name", None)
        if name is None or name not in engine.state.metrics:
            raise RuntimeError(f"AtomicCheckpointSaver(key_metric=True) found no key metric on {engine}.")
        value = float(engine.state.metrics[name])
        if not self._is_improvement(value):
            return
        self.best_metric = value
        atomic_torch_save(self._payload(), self.path)
        record = json.dumps({"metric_name": name, "metric": value, "epoch": epoch})
        tmp = self.metric_path.with_name(self.metric_path.name + ".tmp")
        tmp.write_text(record)
        os.replace(tmp, self.metric_path)
        logger.info("epoch %d: new best %s = %.4f, saved %s", epoch, name, value, self.path)


class ResumeFromCheckpoint(CheckpointLoader):
    """MONAI ``CheckpointLoader`` that starts fresh when the checkpoint does not exist yet.

    Attach it to the trainer with the same ``load_dict`` that :class:`AtomicCheckpointSaver` saves: a run
    restarted after being killed loads network, optimizer, scheduler and trainer state (epoch and iteration
    counters) and continues from the last saved epoch. ``enabled=False`` always starts fresh.
    """

    def __init__(self, load_path: str | os.PathLike, load_dict: Mapping[str, Any], enabled: bool = True, **kwargs):
        load_dict = {name: _unwrap(obj) for name, obj in load_dict.items()}
        super().__init__(load_path=str(load_path), load_dict=load_dict, **kwargs)
        self.enabled = enabled

    def __call__(self, engine: Engine) -> None:
        if not self.enabled or not os.path.isfile(self.load_path):
            return
        super().__call__(engine)
        engine.logger.info(f"resumed from {self.load_path} at epoch {engine.state.epoch}")
