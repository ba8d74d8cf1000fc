"""Segmentation metrics: EM pixel/Rand errors, confusion-matrix and threshold-averaged scores, nuclei AJI/F1."""

from .base import PerImageMetric, batch_labels, check_batch_shapes, lower_is_better
from .confusion import ConfusionScore, ConfusionScoreMetric, confusion_scores, dice_score, iou_score
from .em import (
    PixelError,
    PixelErrorMetric,
    RandError,
    RandErrorMetric,
    RandScores,
    pixel_error,
    rand_error,
    rand_scores,
)
from .nuclei import (
    LABEL_KINDS,
    AggregatedJaccardIndex,
    AggregatedJaccardIndexMetric,
    ObjectF1,
    ObjectF1Metric,
    aggregated_jaccard_index,
    object_detection_scores,
)
from .threshold import (
    INFNET_NUM_THRESHOLDS,
    ThresholdAveragedDice,
    ThresholdAveragedDiceMetric,
    threshold_averaged_dice,
    threshold_dice_curve,
)

__all__ = [
    "lower_is_better",
    "batch_labels",
    "check_batch_shapes",
    "PerImageMetric",
    "dice_score",
    "iou_score",
    "confusion_scores",
    "ConfusionScoreMetric",
    "ConfusionScore",
    "RandScores",
    "pixel_error",
    "rand_scores",
    "rand_error",
    "PixelErrorMetric",
    "RandErrorMetric",
    "PixelError",
    "RandError",
    "LABEL_KINDS",
    "aggregated_jaccard_index",
    "object_detection_scores",
    "AggregatedJaccardIndexMetric",
    "ObjectF1Metric",
    "AggregatedJaccardIndex",
    "ObjectF1",
    "INFNET_NUM_THRESHOLDS",
    "threshold_dice_curve",
    "threshold_averaged_dice",
    "ThresholdAveragedDiceMetric",
    "ThresholdAveragedDice",
]
