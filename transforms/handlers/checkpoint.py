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
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

__all__ = [
    "atomic_torch_save",
    "AtomicCheckpointSaver",
    "CheckedCheckpointLoader",
    "CheckpointMismatchError",
    "ResumeFromCheckpoint",
    "check_checkpoint_fits",
]

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


class CheckpointMismatchError(ValueError):
    """A checkpoint whose parameters do not fit the network built by the config (another width or network)."""


def _conv_widths(shapes: Mapping[str, tuple[int, ...]]) -> list[int]:
    """Output channel counts of the convolution weights (ndim >= 3), in state_dict order."""
    return [int(shape[0]) for name, shape in shapes.items() if name.endswith("weight") and len(shape) >= 3]


def _describe_widths(shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, list[int] | None]:
    """Text of the channel widths of a state_dict, and its probable ``features`` (first conv width doubled up to
    the widest conv, the ladder of all the bundles' networks), or None when the widths are no such ladder."""
    widths = _conv_widths(shapes)
    if not widths:
        return "no convolution", None
    first, widest = widths[0], max(widths)
    features = None
    if first > 0 and widest % first == 0 and (widest // first) & (widest // first - 1) == 0:
        features = [first * 2**level for level in range((widest // first).bit_length())]
    text = f"channel widths {first}-{widest}"
    if features is not None:
        text += f" (features {features})"
    return text, features


def check_checkpoint_fits(
    network: torch.nn.Module,
    state_dict: Mapping[str, Any],
    path: str | os.PathLike,
    fix_hint: str | None = None,
    strict: bool = True,
) -> None:
    """Raise :class:`CheckpointMismatchError` when ``state_dict`` (read from ``path``) does not fit ``network``.

    Works for any network by comparing the parameter names and shapes of the two state_dicts. The message names
    the checkpoint, the first parameter whose shape differs (both shapes), the channel widths of the checkpoint
    and of the network (with their probable ``features`` where the widths double level by level, as in every
    bundle's network), and how to fix it.

    Args:
        network: the network built by the config.
        state_dict: the checkpoint's weights for it.
        path: the checkpoint file, for the message.
        fix_hint: what to do; default: pass the checkpoint's ``--features`` or another ``--ckpt_path``.
        strict: also report missing and unexpected parameter names (as ``load_state_dict(strict=True)``).
    """
    network = _unwrap(network)
    if not isinstance(state_dict, Mapping):
        raise CheckpointMismatchError(
            f"checkpoint {path} holds a {type(state_dict).__name__}, not the state_dict of a "
            f"{type(network).__name__}."
        )
    expected = {name: tuple(value.shape) for name, value in network.state_dict().items()}
    found = {name: tuple(getattr(value, "shape", ())) for name, value in state_dict.items()}
    mismatched = [name for name in expected if name in found and found[name] != expected[name]]
    missing = [name for name in expected if name not in found] if strict else []
    unexpected = [name for name in found if name not in expected] if strict else []
    if not (mismatched or missing or unexpected):
        return
    ckpt_text, ckpt_features = _describe_widths(found)
    net_text, _ = _describe_widths(expected)
    lines = [f"checkpoint {path} does not fit the {type(network).__name__} network of this config:"]
    lines.append(f"  the checkpoint holds {ckpt_text}; the config asks for {net_text}.")
    if mismatched:
        name = mismatched[0]
        lines.append(
            f"  first mismatch: {name!r} is {list(found[name])} in the checkpoint, {list(expected[name])} in the "
            f"network ({len(mismatched)} parameter(s) of another shape)."
        )
    if missing:
        lines.append(f"  {len(missing)} parameter(s) of the network are not in the checkpoint, e.g. {missing[0]!r}.")
    if unexpected:
        lines.append(
            f"  {len(unexpected)} parameter(s) of the checkpoint are not in the network, e.g. {unexpected[0]!r}."
        )
    if fix_hint is None and ckpt_text == net_text and (missing or unexpected):
        # same widths, other layer names: the normalisation differs (batch norm keeps running statistics)
        norm = "batch" if any(name.endswith("running_mean") for name in unexpected) else "<the checkpoint's norm>"
        fix_hint = (
            f"the widths match but the layers do not: the checkpoint was trained with another normalisation; run "
            f"with --norm {norm}, or pass --ckpt_path of a checkpoint trained with this config's norm."
        )
    if fix_hint is None:
        features = shlex.quote(str(ckpt_features)) if ckpt_features else "<its features>"
        fix_hint = (
            f"run with --features {features} to match the checkpoint, or pass --ckpt_path of a checkpoint "
            "trained with this config's features."
        )
    lines.append(f"  Fix: {fix_hint}")
    raise CheckpointMismatchError("\n".join(lines))


class CheckedCheckpointLoader(CheckpointLoader):
    """MONAI ``CheckpointLoader`` (same arguments) whose failure on a checkpoint of another width or network is a
    :class:`CheckpointMismatchError` naming the file, both widths and the fix, instead of PyTorch's raw
    ``Error(s) in loading state_dict``. Checks run only when loading fails, so a good checkpoint costs nothing."""

    def _fix_hint(self, features: list[int] | None) -> str | None:
        return None

    def _explain_failure(self) -> None:
        """Raise a :class:`CheckpointMismatchError` if the checkpoint does not fit a module of ``load_dict``."""
        checkpoint = torch.load(self.load_path, map_location="cpu", weights_only=True)
        first = next(iter(self.load_dict))
        if len(self.load_dict) == 1 and (not isinstance(checkpoint, Mapping) or first not in checkpoint):
            checkpoint = {first: checkpoint}
        for name, obj in self.load_dict.items():
            if isinstance(obj, torch.nn.Module) and name in checkpoint:
                found = checkpoint[name]
                shapes = (
                    {key: tuple(getattr(value, "shape", ())) for key, value in found.items()}
                    if isinstance(found, Mapping)
                    else {}
                )
                hint = self._fix_hint(_describe_widths(shapes)[1])
                check_checkpoint_fits(obj, found, self.load_path, fix_hint=hint, strict=self.strict)

    def __call__(self, engine: Engine) -> None:
        try:
            super().__call__(engine)
        except RuntimeError as error:
            if "loading state_dict" not in str(error):
                raise
            try:
                self._explain_failure()
            except CheckpointMismatchError as mismatch:
                raise mismatch from error
            raise


class ResumeFromCheckpoint(CheckedCheckpointLoader):
    """MONAI ``CheckpointLoader`` that starts fresh when the checkpoint does not exist yet.

    A checkpoint of another width (a stale ``checkpoint_last.pt`` of an earlier run) raises a
    :class:`CheckpointMismatchError` naming the file, both widths, and ``--resume False``/another ``ckpt_dir``.

    Attach it to the trainer with the same ``load_dict`` that :class:`AtomicCheckpointSaver` saves: a run
    restarted after being killed loads network, optimizer, scheduler and trainer state (epoch and iteration
    counters) and continues from the last saved epoch. ``enabled=False`` always starts fresh.
    """

    def __init__(self, load_path: str | os.PathLike, load_dict: Mapping[str, Any], enabled: bool = True, **kwargs):
        load_dict = {name: _unwrap(obj) for name, obj in load_dict.items()}
        super().__init__(load_path=str(load_path), load_dict=load_dict, **kwargs)
        self.enabled = enabled

    def _fix_hint(self, features: list[int] | None) -> str | None:
        features_text = shlex.quote(str(features)) if features else "<its features>"
        return (
            f"this is a stale checkpoint of an earlier run; start fresh with --resume False or another --ckpt_dir, "
            f"or continue that run with --features {features_text}."
        )

    def __call__(self, engine: Engine) -> None:
        if not self.enabled or not os.path.isfile(self.load_path):
            return
        super().__call__(engine)
        engine.logger.info(f"resumed from {self.load_path} at epoch {engine.state.epoch}")
