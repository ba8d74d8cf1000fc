"""Base of the per-image metrics: input conversion, per-image accumulation, lower-is-better."""

from __future__ import annotations

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

__all__ = ["lower_is_better", "batch_labels", "check_batch_shapes", "PerImageMetric"]


def lower_is_better(current_metric: float, prev_best: float) -> bool:
    """``metric_cmp_fn`` for MONAI workflows whose key metric is an error (pixel or Rand error)."""
    return current_metric < prev_best


def batch_labels(data: torch.Tensor, foreground_channel: int | None, name: str) -> torch.Tensor:
    """``[B, spatial...]`` labels from one-hot ``[B, C, ...]`` or label-map ``[B, 1, ...]`` input: the binary
    foreground of class ``foreground_channel``, or class labels when it is ``None``."""
    if data.ndim < 3:
        raise ValueError(
            f"{name} must be batch-first and channel-first [B, C, spatial...], got shape {tuple(data.shape)}."
        )
    channels = data.shape[1]
    if channels == 1:
        labels = data[:, 0]
        return labels if foreground_channel is None else labels == foreground_channel
    if foreground_channel is None:
        return data.argmax(dim=1)
    if not 0 <= foreground_channel < channels:
        raise ValueError(
            f"foreground_channel={foreground_channel} is out of range for {name} with {channels} channels."
        )
    return data[:, foreground_channel] > 0.5


def check_batch_shapes(pred_labels: torch.Tensor, target_labels: torch.Tensor) -> None:
    """Refuses prediction and target labels of different shapes."""
    if pred_labels.shape != target_labels.shape:
        raise ValueError(
            "y_pred and y must have the same batch size and spatial shape, got "
            f"{tuple(pred_labels.shape)} and {tuple(target_labels.shape)} (channel dimension removed)."
        )


class PerImageMetric(CumulativeIterationMetric):
    """Base of the metrics with one value per image (and class), buffered over iterations and reduced by
    :meth:`aggregate`, like MONAI's ``DiceMetric``.

    Subclasses implement ``_compute_tensor(y_pred, y)`` returning the ``[B, C]`` values of one batch.

    Args:
        reduction: reduction of the buffered ``[N, C]`` per-image values, as in MONAI metrics (``"mean"``,
            ``"sum"``, ``"mean_batch"``, ``"none"``...).
        get_not_nans: whether :meth:`aggregate` also returns the count of non-NaN values.
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__()
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the buffered ``[N, C]`` per-image values (default: ``self.reduction``).

        Raises:
            ValueError: when nothing was computed yet.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"{type(self).__name__} has nothing to aggregate; call it on predictions first.")
        values, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (values, not_nans) if self.get_not_nans else values
