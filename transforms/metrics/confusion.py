"""Per-image confusion-matrix ratios (sensitivity, specificity, accuracy...) for evaluators, never NaN.

MONAI's ``ConfusionMatrixMetric`` / ``ConfusionMatrix`` handler give NaN for a ratio whose denominator is zero
(e.g. the sensitivity of an image without foreground) and drop it from the mean, so an evaluation that contains
empty masks reports a mean over fewer images than it scored and per-image tables with NaN. These classes accumulate
:func:`transforms.confusion_scores` instead, whose convention is that such a ratio is 1 (nothing in it could
be got wrong), so every image counts. The pixel accuracy, sensitivity and specificity of Zhang et al. (Acta Optica
Sinica 2020, Eq. 8) and the survey of Peng et al. (2021) are ``"accuracy"``, ``"sensitivity"``, ``"specificity"``;
``"f1 score"`` is the Dice of Eq. 10 and ``"threat score"`` the IoU of Eq. 9.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.config import NdarrayOrTensor
from monai.handlers import IgniteMetricHandler
from monai.metrics.confusion_matrix import (
    check_confusion_matrix_metric_name,
    compute_confusion_matrix_metric,
    get_confusion_matrix,
)
from monai.metrics.meandice import compute_dice
from monai.metrics.meaniou import compute_iou
from monai.networks.utils import one_hot
from monai.utils import MetricReduction

from .base import PerImageMetric

__all__ = ["dice_score", "iou_score", "confusion_scores", "ConfusionScoreMetric", "ConfusionScore"]

# Confusion-matrix ratios (MONAI's canonical short names) whose value for a zero denominator is 1: each is a
# "fraction of something done right", so an empty denominator means nothing was done wrong. Ratios of errors
# (miss rate, fall-out...) and composite scores (MCC, balanced accuracy...) have no such single value.
_EMPTY_IS_PERFECT_RATIOS = ("tpr", "tnr", "ppv", "npv", "ts", "acc", "f1")


def _as_one_hot_batch(data: NdarrayOrTensor, num_classes: int | None, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(data)
    if tensor.ndim < 3:
        raise ValueError(
            f"{name} must be batch-first and channel-first [B, C, spatial...], got shape {tuple(tensor.shape)}."
        )
    if tensor.shape[1] > 1:
        if num_classes is not None and tensor.shape[1] != num_classes:
            raise ValueError(f"{name} has {tensor.shape[1]} one-hot channels but num_classes={num_classes}.")
        return tensor.float()
    if num_classes is None:
        return (tensor != 0).float()  # a binary mask: its one channel is the foreground
    return one_hot(tensor.long(), num_classes=num_classes, dim=1)


def _one_hot_pair(
    pred: NdarrayOrTensor, target: NdarrayOrTensor, num_classes: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    y_pred = _as_one_hot_batch(pred, num_classes, "pred")
    y = _as_one_hot_batch(target, num_classes, "target").to(y_pred.device)
    if y_pred.shape != y.shape:
        raise ValueError(
            f"pred and target give different one-hot shapes {tuple(y_pred.shape)} and {tuple(y.shape)}; "
            "pass num_classes for single-channel label maps."
        )
    return y_pred, y


def dice_score(
    pred: NdarrayOrTensor, target: NdarrayOrTensor, num_classes: int | None = None, include_background: bool = True
) -> torch.Tensor:
    """Per-image, per-class Dice from MONAI's ``compute_dice`` with the empty-mask convention of this module.

    Args:
        pred: ``[B, C, spatial...]`` binarized one-hot prediction, ``[B, 1, spatial...]`` binary mask (nonzero =
            foreground) or, with ``num_classes``, ``[B, 1, spatial...]`` label map.
        target: ground truth in the same form.
        num_classes: number of classes including background, needed for single-channel label maps.
        include_background: keep channel 0 (ignored for single-channel binary masks, as in MONAI).

    Returns:
        Tensor ``[B, C]`` (``C`` without background when excluded); both masks empty -> 1, only the ground truth
        empty -> 0, never NaN.
    """
    y_pred, y = _one_hot_pair(pred, target, num_classes)
    return compute_dice(y_pred, y, include_background=include_background, ignore_empty=False)


def iou_score(
    pred: NdarrayOrTensor, target: NdarrayOrTensor, num_classes: int | None = None, include_background: bool = True
) -> torch.Tensor:
    """Per-image, per-class IoU (Jaccard) from MONAI's ``compute_iou``; inputs and empty-mask convention as
    :func:`dice_score`. The U-Net paper's PhC-U373/DIC-HeLa "IoU" is this score of the cell class."""
    y_pred, y = _one_hot_pair(pred, target, num_classes)
    return compute_iou(y_pred, y, include_background=include_background, ignore_empty=False)


def confusion_scores(
    pred: NdarrayOrTensor,
    target: NdarrayOrTensor,
    metric_names: Sequence[str] = ("sensitivity", "specificity", "accuracy"),
    num_classes: int | None = None,
    include_background: bool = True,
) -> dict[str, torch.Tensor]:
    """Per-image, per-class confusion-matrix ratios from MONAI (``get_confusion_matrix`` and
    ``compute_confusion_matrix_metric``), with a zero denominator giving 1 instead of NaN.

    Args:
        pred: prediction, in the forms accepted by :func:`dice_score`.
        target: ground truth in the same form.
        metric_names: MONAI confusion-matrix metric names (aliases allowed) among sensitivity, specificity,
            precision, negative predictive value, threat score, accuracy and F1 score.
        num_classes: number of classes including background, needed for single-channel label maps.
        include_background: keep channel 0.

    Returns:
        ``{name: Tensor [B, C]}`` keyed by the names as given.

    Raises:
        ValueError: for a metric whose empty-denominator value is not 1 (miss rate, MCC, ...): use
            ``monai.metrics.ConfusionMatrixMetric`` for those and decide how to treat its NaN.
    """
    if isinstance(metric_names, str):
        metric_names = (metric_names,)
    y_pred, y = _one_hot_pair(pred, target, num_classes)
    confusion = get_confusion_matrix(y_pred, y, include_background=include_background)
    scores = {}
    for name in metric_names:
        canonical = check_confusion_matrix_metric_name(name)
        if canonical not in _EMPTY_IS_PERFECT_RATIOS:
            raise ValueError(
                f"metric {name!r} has no well-defined value for empty masks here; choose from sensitivity, "
                "specificity, precision, negative predictive value, threat score, accuracy, f1 score."
            )
        score = compute_confusion_matrix_metric(name, confusion)
        scores[name] = torch.nan_to_num(score, nan=1.0)
    return scores


class ConfusionScoreMetric(PerImageMetric):
    """One confusion-matrix ratio per image and class, accumulated like MONAI's ``DiceMetric``.

    ``y_pred`` and ``y`` are binarised, batch-first ``[B, C, spatial...]`` tensors (one-hot, or a single channel
    where nonzero is foreground), or lists of channel-first tensors as an evaluator's ``from_engine`` gives them.
    The per-image value has shape ``[B, C]`` (``C - 1`` without background); a ratio with a zero denominator is 1.

    Args:
        metric_name: a MONAI confusion-matrix name or alias among sensitivity, specificity, precision, negative
            predictive value, threat score, accuracy and f1 score.
        include_background: keep channel 0 of multi-channel input (a single channel is always kept).
        num_classes: number of classes for single-channel label maps (None: single channel = binary mask).
        reduction: reduction of the buffered per-image values (``"mean"``, ``"mean_batch"``, ``"none"``...).
        get_not_nans: whether ``aggregate`` also returns the count of values (all of them: none is NaN).

    Raises:
        ValueError: for a ratio without a well-defined value on empty masks (miss rate, MCC...), at construction.
    """

    def __init__(
        self,
        metric_name: str = "sensitivity",
        include_background: bool = True,
        num_classes: int | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)
        empty = torch.zeros(1, 1, 1)
        confusion_scores(empty, empty, (metric_name,))  # rejects unsupported names now rather than mid-evaluation
        self.metric_name = metric_name
        self.include_background = include_background
        self.num_classes = num_classes

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        if y is None:
            raise ValueError(f"ConfusionScoreMetric({self.metric_name!r}) needs the ground truth y.")
        scores = confusion_scores(
            y_pred,
            y,
            (self.metric_name,),
            num_classes=self.num_classes,
            include_background=self.include_background,
        )
        return scores[self.metric_name]


class ConfusionScore(IgniteMetricHandler):
    """Ignite handler of :class:`ConfusionScoreMetric`, e.g. an evaluator's additional metric with
    ``output_transform=monai.handlers.from_engine(["pred", "label"])``.

    Args:
        metric_name: see :class:`ConfusionScoreMetric`.
        include_background: see :class:`ConfusionScoreMetric`.
        num_classes: see :class:`ConfusionScoreMetric`.
        reduction: see :class:`ConfusionScoreMetric`.
        output_transform: callable extracting ``(y_pred, y)`` from ``engine.state.output``.
        save_details: whether to store the per-image values in ``engine.state.metric_details`` (for
            ``MetricsSaver``).
    """

    def __init__(
        self,
        metric_name: str = "sensitivity",
        include_background: bool = True,
        num_classes: int | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = ConfusionScoreMetric(
            metric_name=metric_name,
            include_background=include_background,
            num_classes=num_classes,
            reduction=reduction,
        )
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
