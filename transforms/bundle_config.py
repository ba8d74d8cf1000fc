"""Named helpers for the bundle configs, in place of long ``$`` expressions.

Each function does what one (or two) inline config expressions used to do, so that a config line reads as a
call (``$transforms.early_stop_score(@early_stop_metric)``) and the logic is documented and unit-tested here. They are
exported flat from :mod:`transforms`, like everything a config uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .data import folder_datalist, image_datalist, validate_datalist

__all__ = [
    "attach_ema",
    "chain_transforms",
    "checked_folder_datalist",
    "checked_image_datalist",
    "early_stop_engine",
    "early_stop_score",
    "ema_momentum_schedule",
    "read_bundle_metadata",
    "training_checkpoint",
]


def checked_folder_datalist(
    dataset_dir: str | os.PathLike,
    layout: Any = "isbi",
    ids: Sequence[int | str] | str | None = None,
    checks: Mapping[str, Any] | None = None,
) -> Sequence[dict]:
    """:func:`transforms.folder_datalist` of ``dataset_dir``, checked by :func:`transforms.validate_datalist`.

    Args:
        dataset_dir: the dataset folder.
        layout: its layout name (``@data_layout``).
        ids: ids to keep (``@train_ids``, ``@val_ids``; ``"all"`` or None keeps all).
        checks: keyword arguments of ``validate_datalist`` (``label_values``, ``label_kind``,
            ``image_channels``, ``allow_rgb_to_gray``, ...); a bundle keeps them in one config dict.

    Returns:
        the datalist, unchanged, once every file passed the checks.
    """
    return validate_datalist(folder_datalist(dataset_dir, layout=layout, ids=ids), **dict(checks or {}))


def checked_image_datalist(images: Any, **checks: Any) -> Sequence[dict]:
    """:func:`transforms.image_datalist` of ``images`` (folder, file, glob or list), checked by
    :func:`transforms.validate_datalist` with the keyword arguments ``checks``."""
    return validate_datalist(image_datalist(images), **checks)


def early_stop_score(metric: str) -> Callable[[Any], float]:
    """The ``score_function`` of an ``EarlyStopHandler`` watching ``engine.state.metrics[metric]``.

    ignite stops when the score stops *increasing*, so a metric whose name ends with ``loss`` is negated
    (lower is better); any other metric (Dice, IoU, ...) is used as it is.
    """
    sign = -1.0 if metric.endswith("loss") else 1.0

    def score(engine: Any) -> float:
        return sign * float(engine.state.metrics[metric])

    score.__name__ = f"early_stop_score_{metric}"
    return score


def early_stop_engine(metric: str, trainer: Any, evaluator: Any) -> Any:
    """The engine whose events run an ``EarlyStopHandler`` watching ``metric``: ``trainer`` for a training
    metric (its name starts with ``train_``, e.g. ``train_epoch_loss``), ``evaluator`` for any other (a
    validation metric such as ``val_mean_dice``, checked after each validation)."""
    return trainer if metric.startswith("train_") else evaluator


def ema_momentum_schedule(decay: float, warmup: bool = True) -> Callable[[Any], None]:
    """An ignite event handler that writes the EMA momentum of the coming update into
    ``engine.state.ema_momentum`` (read by ``ignite.handlers.EMAHandler``).

    The momentum is ``1 - decay``; with ``warmup`` it is ``max(1 - decay, 9 / (9 + iteration))``, i.e. the
    decay is ``min(decay, (1 + t) / (10 + t))`` after ``t`` updates, as TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)`` does.
    """
    floor = 1.0 - float(decay)

    def schedule(engine: Any) -> None:
        momentum = max(floor, 9.0 / (9.0 + engine.state.iteration)) if warmup else floor
        engine.state.ema_momentum = momentum

    return schedule


def attach_ema(ema: Any, trainer: Any, schedule: Callable[[Any], None] | None = None) -> bool:
    """Attach an ``ignite.handlers.EMAHandler`` (None: none, as when the bundle's ``ema_decay`` is 0) to
    ``trainer``: first ``schedule`` on every iteration (it sets ``engine.state.ema_momentum``), then the
    handler itself, which reads that momentum.

    Returns:
        whether an EMA was attached.
    """
    if ema is None:
        return False
    from ignite.engine import Events

    if schedule is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED, schedule)
    ema.attach(trainer, name="ema_momentum", warn_if_exists=False)
    return True


def training_checkpoint(network: Any, optimizer: Any, trainer: Any, ema: Any = None, lr_scheduler: Any = None) -> dict:
    """What a training checkpoint holds: ``model``, ``optimizer`` and ``trainer``, plus ``ema_model`` (the
    averaged weights) when an ``EMAHandler`` ``ema`` is given and ``lr_scheduler`` when one is given."""
    objects = {"model": network, "optimizer": optimizer, "trainer": trainer}
    if ema is not None:
        objects["ema_model"] = ema.ema_model
    if lr_scheduler is not None:
        objects["lr_scheduler"] = lr_scheduler
    return objects


def chain_transforms(*parts: Any) -> list:
    """One flat list of transforms from single transforms and lists of them, in order; None parts are
    skipped. ``chain_transforms(a, [b, c], None, d)`` is ``[a, b, c, d]``."""
    chained: list = []
    for part in parts:
        if part is None:
            continue
        if isinstance(part, (list, tuple)):
            chained.extend(part)
        else:
            chained.append(part)
    return chained


def read_bundle_metadata(metadata_file: str | os.PathLike) -> dict:
    """The bundle's ``metadata.json`` as a dict (``{}`` when the file does not exist, e.g. a config copied out of
    its bundle), for configs that record the bundle's name and version in their outputs."""
    if not os.path.isfile(metadata_file):
        return {}
    from monai.bundle import ConfigParser

    return ConfigParser.load_config_file(metadata_file)
