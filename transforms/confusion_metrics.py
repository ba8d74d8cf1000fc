"""Per-image confusion-matrix ratios (sensitivity, specificity, accuracy...) for evaluators, never NaN.

MONAI's ``ConfusionMatrixMetric`` / ``ConfusionMatrix`` handler give NaN for a ratio whose denominator is zero
(e.g. the sensitivity of an image without foreground) and drop it from the mean, so an evaluation that contains
empty masks reports a mean over fewer images than it scored and per-image tables with NaN. These classes accumulate
:func:`transforms.metrics.confusion_scores` instead, whose convention is that such a ratio is 1 (nothing in it could
be got wrong), so every image counts. The pixel accuracy, sensitivity and specificity of Zhang et al. (Acta Optica
Sinica 2020, Eq. 8) and the survey of Peng et al. (2021) are ``"accuracy"``, ``"sensitivity"``, ``"specificity"``;
``"f1 score"`` is the Dice of Eq. 10 and ``"threat score"`` the IoU of Eq. 9.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.handlers import IgniteMetricHandler
from monai.utils import MetricReduction

from .metrics import PerImageMetric, confusion_scores

__all__ = ["ConfusionScoreMetric", "ConfusionScore"]


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
