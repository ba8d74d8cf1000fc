"""Instance-level metrics of nuclear segmentation (MoNuSeg).

One piece (over 400 lines): AJI and object F1 share the instance overlap table, the label-kind handling and the
per-image metric base, and each comes as a function, a metric class and an ignite handler.

A semantic network (e.g. MCSA-UNet) predicts a binary nucleus mask; nuclear segmentation is scored per
instance, so the mask is first split into nuclei by :func:`transforms.nuclei_instances`, then scored with:

- :func:`aggregated_jaccard_index`, :class:`AggregatedJaccardIndexMetric`, :class:`AggregatedJaccardIndex`
  (ignite handler): the Aggregated Jaccard Index (AJI) of Kumar et al. 2017, the MoNuSeg challenge metric;
- :func:`object_detection_scores`, :class:`ObjectF1Metric`, :class:`ObjectF1` (ignite handler): object-level
  precision, recall and F1 with IoU matching.

MONAI has none of these (its ``PanopticQualityMetric`` is the panoptic quality of Kirillov et al., not AJI), so
they are implemented here on numpy/scipy/scikit-image; the metric classes follow MONAI's ``DiceMetric`` pattern
through :class:`transforms.PerImageMetric`. Per-image scores are computed on the CPU, whatever the device
of the input, and returned on the input's device.

Reference:
    N. Kumar, R. Verma, S. Sharma, S. Bhargava, A. Vahadane, A. Sethi, "A dataset and a technique for generalized
    nuclear segmentation for computational pathology", IEEE Trans. Med. Imaging 36(7):1550-1560, 2017
    (AJI: section IV-B and Algorithm 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.handlers import IgniteMetricHandler
from monai.utils import MetricReduction
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from ..nuclei import EIGHT_CONNECTED, INSTANCE_METHODS, mask_from_channels, nuclei_instances
from ..utils import pair_as_numpy
from .base import PerImageMetric

__all__ = [
    "LABEL_KINDS",
    "aggregated_jaccard_index",
    "object_detection_scores",
    "AggregatedJaccardIndexMetric",
    "ObjectF1Metric",
    "AggregatedJaccardIndex",
    "ObjectF1",
]

LABEL_KINDS = ("binary", "instances")
DETECTION_SCORES = ("f1", "precision", "recall")


def _instance_ids(array: np.ndarray, name: str) -> np.ndarray:
    """Dense int64 ids: background 0, the instances present ``1..n`` (any id values are allowed)."""
    if array.dtype == np.bool_:
        return array.astype(np.int64)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(f"{name} must hold integer instance ids (0 = background), found non-integer values.")
    elif not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be an integer, boolean or float label map, got dtype {array.dtype}.")
    ids = array.astype(np.int64).ravel()
    if ids.min() < 0:
        raise ValueError(f"{name} instance ids must be non-negative (0 = background), found {ids.min()}.")
    largest = int(ids.max())
    if largest <= 4 * ids.size:  # a lookup table is linear time; np.unique would sort every pixel
        present = np.flatnonzero(np.bincount(ids))
        lookup = np.zeros(largest + 1, dtype=np.int64)
        lookup[present] = np.arange(present.size) + (0 if present[0] == 0 else 1)
        return lookup[ids]
    values, dense = np.unique(ids, return_inverse=True)
    return dense + (0 if values[0] == 0 else 1)


class _Overlaps(NamedTuple):
    """Sparse overlap (contingency) table of two instance maps: one entry per intersecting pair."""

    true_areas: np.ndarray  # [n_true]
    pred_areas: np.ndarray  # [n_pred]
    true_index: np.ndarray  # [pairs], 0-based instance index
    pred_index: np.ndarray  # [pairs]
    intersection: np.ndarray  # [pairs], pixels shared by the pair
    iou: np.ndarray  # [pairs]


def _overlaps(pred_instances: NdarrayOrTensor, true_instances: NdarrayOrTensor) -> _Overlaps:
    pred_array, true_array = pair_as_numpy(pred_instances, true_instances)
    pred_ids = _instance_ids(pred_array, "pred_instances")
    true_ids = _instance_ids(true_array, "true_instances")
    pred_areas = np.bincount(pred_ids)[1:]
    true_areas = np.bincount(true_ids)[1:]
    shared = (pred_ids > 0) & (true_ids > 0)
    # one int64 key per (true, pred) pixel pair: np.unique counts each pair's intersection in one sort
    pair_keys, intersection = np.unique(
        (true_ids[shared] - 1) * max(pred_areas.size, 1) + (pred_ids[shared] - 1), return_counts=True
    )
    true_index, pred_index = np.divmod(pair_keys, max(pred_areas.size, 1))
    union = true_areas[true_index] + pred_areas[pred_index] - intersection
    return _Overlaps(true_areas, pred_areas, true_index, pred_index, intersection, intersection / union)


def aggregated_jaccard_index(pred_instances: NdarrayOrTensor, true_instances: NdarrayOrTensor) -> float:
    """Aggregated Jaccard Index (AJI) of Kumar et al. 2017 (IEEE TMI 36(7), Algorithm 1).

    For each ground-truth nucleus ``G_i`` the predicted nucleus ``S_j`` of largest IoU with it is found, and::

        C += |G_i ∩ S_j|,   U += |G_i ∪ S_j|,   S_j is marked used;
        finally U += |S_k| for every predicted nucleus S_k never used;   AJI = C / U.

    As in the paper (and unlike the "AJI+" of Graham et al. 2019), one predicted nucleus may be the best match
    of several true nuclei: a merged prediction is then counted in ``U`` once per true nucleus it covers, which
    is how AJI penalises merges. Ties of IoU go to the predicted instance of smallest id. A true nucleus that no
    prediction overlaps adds its area to ``U`` alone (an arbitrary non-overlapping ``S_j`` would add an area
    unrelated to it). The computation uses the sparse overlap table of the two maps (one ``np.unique`` over the
    pixels where both are foreground), not one mask per nucleus.

    Args:
        pred_instances: predicted instance label map (0 = background, any non-negative integer ids), any shape.
        true_instances: ground-truth instance label map of the same shape.

    Returns:
        AJI in [0, 1]; both maps empty -> 1.0, exactly one empty -> 0.0 (never NaN).

    Raises:
        ValueError: different shapes, empty arrays, negative or non-integer ids.
    """
    overlaps = _overlaps(pred_instances, true_instances)
    n_true, n_pred = overlaps.true_areas.size, overlaps.pred_areas.size
    if n_true == 0 and n_pred == 0:
        return 1.0
    if n_true == 0 or n_pred == 0:
        return 0.0
    # sort pairs by true nucleus, then IoU descending, then predicted id: each true nucleus's first pair is its
    # best match
    order = np.lexsort((overlaps.pred_index, -overlaps.iou, overlaps.true_index))
    true_sorted = overlaps.true_index[order]
    first = order[np.r_[True, true_sorted[1:] != true_sorted[:-1]]] if order.size else order
    matched_true, matched_pred = overlaps.true_index[first], overlaps.pred_index[first]
    intersection = overlaps.intersection[first]
    union = overlaps.true_areas[matched_true] + overlaps.pred_areas[matched_pred] - intersection

    unmatched_true = np.ones(n_true, dtype=bool)
    unmatched_true[matched_true] = False
    unused_pred = np.ones(n_pred, dtype=bool)
    unused_pred[matched_pred] = False
    total_intersection = float(intersection.sum())
    total_union = float(
        union.sum() + overlaps.true_areas[unmatched_true].sum() + overlaps.pred_areas[unused_pred].sum()
    )
    return total_intersection / total_union


def object_detection_scores(
    pred_instances: NdarrayOrTensor, true_instances: NdarrayOrTensor, iou_threshold: float = 0.5
) -> dict[str, float]:
    """Object-level detection scores: a predicted and a true nucleus match when their IoU exceeds
    ``iou_threshold``; each nucleus matches at most once.

    With ``iou_threshold >= 0.5`` matches are unique by construction: IoU > 0.5 with two disjoint predicted
    nuclei would need more than half of the true nucleus inside each of them, so every true nucleus has at most
    one candidate and vice versa. Below 0.5 candidates can conflict, and a one-to-one assignment maximising the
    number of matches (then their total IoU) is found with ``scipy.optimize.linear_sum_assignment``.

    ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``, ``f1 = 2 TP / (2 TP + FP + FN)``, where FP are the
    unmatched predicted and FN the unmatched true nuclei.

    Args:
        pred_instances: predicted instance label map (0 = background), any shape.
        true_instances: ground-truth instance label map of the same shape.
        iou_threshold: in [0, 1); a pair matches when IoU > iou_threshold.

    Returns:
        ``{"precision", "recall", "f1"}`` (floats) and ``{"true_positives", "false_positives",
        "false_negatives"}`` (ints). Both maps empty -> precision = recall = f1 = 1; otherwise a ratio with a
        zero denominator is 0 (e.g. no prediction at all: precision 0), never NaN.

    Raises:
        ValueError: ``iou_threshold`` outside [0, 1), different shapes, negative or non-integer ids.
    """
    if not 0.0 <= iou_threshold < 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold}.")
    overlaps = _overlaps(pred_instances, true_instances)
    n_true, n_pred = overlaps.true_areas.size, overlaps.pred_areas.size
    candidates = overlaps.iou > iou_threshold
    true_index, pred_index = overlaps.true_index[candidates], overlaps.pred_index[candidates]
    if iou_threshold >= 0.5 or true_index.size == 0:
        true_positives = int(true_index.size)
    else:
        rows, true_local = np.unique(true_index, return_inverse=True)
        cols, pred_local = np.unique(pred_index, return_inverse=True)
        # a weight per match larger than any total IoU makes the assignment maximise the match count first
        match_weight = float(min(rows.size, cols.size) + 1)
        cost = np.zeros((rows.size, cols.size))
        cost[true_local, pred_local] = -(match_weight + overlaps.iou[candidates])
        assigned_rows, assigned_cols = linear_sum_assignment(cost)
        true_positives = int(np.count_nonzero(cost[assigned_rows, assigned_cols] < 0))
    false_positives, false_negatives = n_pred - true_positives, n_true - true_positives
    if n_true == 0 and n_pred == 0:
        precision = recall = f1 = 1.0
    else:
        precision = true_positives / n_pred if n_pred else 0.0
        recall = true_positives / n_true if n_true else 0.0
        f1 = 2.0 * true_positives / (n_pred + n_true)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_positives": true_positives,
        "false_positives": false_positives,
        "false_negatives": false_negatives,
    }


class _InstanceMetric(PerImageMetric):
    """Shared input handling of the instance metrics: batch -> per-image (predicted, true) instance maps."""

    def __init__(
        self,
        instance_method: str = "watershed",
        label_kind: str = "binary",
        min_distance: int = 3,
        min_size: int = 10,
        foreground_channel: int = 1,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        smoothing_sigma: float = 1.0,
        h: float = 0.5,
    ) -> None:
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)
        if instance_method not in INSTANCE_METHODS:
            raise ValueError(
                f"unknown instance_method {instance_method!r}; valid methods: {', '.join(INSTANCE_METHODS)}."
            )
        if label_kind not in LABEL_KINDS:
            raise ValueError(f"unknown label_kind {label_kind!r}; valid kinds: {', '.join(LABEL_KINDS)}.")
        self.instance_method = instance_method
        self.label_kind = label_kind
        self.min_distance = min_distance
        self.min_size = min_size
        self.foreground_channel = foreground_channel
        self.smoothing_sigma = smoothing_sigma
        self.h = h

    def _per_image_pairs(self, y_pred: torch.Tensor, y: torch.Tensor | None) -> list[tuple[np.ndarray, np.ndarray]]:
        if y is None:
            raise ValueError(f"{type(self).__name__} needs the ground truth y.")
        pred_batch = self._batch_array(y_pred, "y_pred")
        true_batch = self._batch_array(y, "y")
        if pred_batch.shape[0] != true_batch.shape[0] or pred_batch.shape[2:] != true_batch.shape[2:]:
            raise ValueError(
                "y_pred and y must have the same batch size and spatial shape, got "
                f"{tuple(pred_batch.shape)} and {tuple(true_batch.shape)}."
            )
        if self.label_kind == "instances" and true_batch.shape[1] != 1:
            raise ValueError(
                f"y must be [B, 1, H, W] instance ids with label_kind='instances', got {tuple(true_batch.shape)}."
            )
        pairs = []
        for pred_image, true_image in zip(pred_batch, true_batch, strict=True):
            pred_instances = nuclei_instances(
                mask_from_channels(pred_image, self.foreground_channel, "y_pred"),
                method=self.instance_method,
                min_distance=self.min_distance,
                min_size=self.min_size,
                smoothing_sigma=self.smoothing_sigma,
                h=self.h,
            )
            if self.label_kind == "instances":
                true_instances = true_image[0]
            else:
                true_mask = mask_from_channels(true_image, self.foreground_channel, "y")
                true_instances, _ = ndimage.label(true_mask, structure=EIGHT_CONNECTED)
            pairs.append((pred_instances, true_instances))
        return pairs

    def _image_score(self, pred_instances: np.ndarray, true_instances: np.ndarray) -> float:
        """The metric of one image from its predicted and true instance maps."""
        raise NotImplementedError

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        values = [self._image_score(pred, true) for pred, true in self._per_image_pairs(y_pred, y)]
        return torch.tensor(values, dtype=torch.float32, device=y_pred.device).unsqueeze(1)

    @staticmethod
    def _batch_array(data: torch.Tensor, name: str) -> np.ndarray:
        if data.ndim != 4:
            raise ValueError(f"{name} must be a batch of 2-D images [B, C, H, W], got shape {tuple(data.shape)}.")
        return data.detach().cpu().numpy()


class AggregatedJaccardIndexMetric(_InstanceMetric):
    """Aggregated Jaccard Index per image (see :func:`aggregated_jaccard_index`), accumulated like MONAI's
    ``DiceMetric``; ``aggregate()`` gives the mean over images by default (the MoNuSeg challenge averages AJI
    over test images).

    ``y_pred`` is ``[B, 2, H, W]`` one-hot (after ``AsDiscrete(argmax=True, to_onehot=2)``; channel
    ``foreground_channel`` is the nucleus mask) or ``[B, 1, H, W]`` binary (nonzero = nucleus), or a list of
    channel-first tensors; it is split into nuclei with :func:`nuclei_instances`. ``y`` is, with
    ``label_kind="binary"``, a mask in the same forms, whose nuclei are its 8-connected components: an
    approximation, since touching nuclei of a binary ground truth merge into one (AJI then rewards predictions
    that merge them too); with ``label_kind="instances"``, ``[B, 1, H, W]`` instance ids (e.g. from the MoNuSeg
    XML, see ``scripts/prepare_data.py convert_monuseg_xml``), the exact metric. Per-image values ``[B, 1]``.

    Args:
        instance_method: see :func:`nuclei_instances` (``"watershed"`` or ``"connected_components"``).
        label_kind: ``"binary"`` or ``"instances"`` ground truth (see above).
        min_distance: see :func:`nuclei_instances`.
        min_size: see :func:`nuclei_instances` (applied to the prediction only).
        foreground_channel: nucleus channel of one-hot input.
        reduction: reduction of the ``[N, 1]`` per-image values, as in MONAI metrics.
        get_not_nans: whether ``aggregate`` also returns the count of non-NaN values.
        smoothing_sigma: see :func:`nuclei_instances`.
        h: see :func:`nuclei_instances`.
    """

    def _image_score(self, pred_instances: np.ndarray, true_instances: np.ndarray) -> float:
        return aggregated_jaccard_index(pred_instances, true_instances)


class ObjectF1Metric(_InstanceMetric):
    """Object-level detection F1 (or precision / recall) per image (see :func:`object_detection_scores`),
    accumulated like MONAI's ``DiceMetric``; ``aggregate()`` averages the per-image scores (not the F1 of the
    pooled counts).

    Inputs and ``label_kind`` as in :class:`AggregatedJaccardIndexMetric`. Per-image values ``[B, 1]``.

    Args:
        instance_method: see :func:`nuclei_instances`.
        label_kind: ``"binary"`` or ``"instances"`` ground truth (see :class:`AggregatedJaccardIndexMetric`).
        min_distance: see :func:`nuclei_instances`.
        min_size: see :func:`nuclei_instances` (applied to the prediction only).
        iou_threshold: a predicted and a true nucleus match when IoU > iou_threshold.
        foreground_channel: nucleus channel of one-hot input.
        metric_name: score to accumulate: ``"f1"``, ``"precision"`` or ``"recall"``.
        reduction: reduction of the ``[N, 1]`` per-image values, as in MONAI metrics.
        get_not_nans: whether ``aggregate`` also returns the count of non-NaN values.
        smoothing_sigma: see :func:`nuclei_instances`.
        h: see :func:`nuclei_instances`.
    """

    def __init__(
        self,
        instance_method: str = "watershed",
        label_kind: str = "binary",
        min_distance: int = 3,
        min_size: int = 10,
        iou_threshold: float = 0.5,
        foreground_channel: int = 1,
        metric_name: str = "f1",
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        smoothing_sigma: float = 1.0,
        h: float = 0.5,
    ) -> None:
        super().__init__(
            instance_method=instance_method,
            label_kind=label_kind,
            min_distance=min_distance,
            min_size=min_size,
            foreground_channel=foreground_channel,
            reduction=reduction,
            get_not_nans=get_not_nans,
            smoothing_sigma=smoothing_sigma,
            h=h,
        )
        if not 0.0 <= iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold}.")
        if metric_name not in DETECTION_SCORES:
            raise ValueError(f"unknown metric_name {metric_name!r}; valid names: {', '.join(DETECTION_SCORES)}.")
        self.iou_threshold = iou_threshold
        self.metric_name = metric_name

    def _image_score(self, pred_instances: np.ndarray, true_instances: np.ndarray) -> float:
        return object_detection_scores(pred_instances, true_instances, iou_threshold=self.iou_threshold)[
            self.metric_name
        ]


class AggregatedJaccardIndex(IgniteMetricHandler):
    """Ignite handler of :class:`AggregatedJaccardIndexMetric`, e.g. an evaluator's ``key_metric`` with
    ``output_transform=monai.handlers.from_engine(["pred", "label"])`` (higher is better).

    Args:
        instance_method: see :class:`AggregatedJaccardIndexMetric`.
        label_kind: see :class:`AggregatedJaccardIndexMetric`.
        min_distance: see :class:`AggregatedJaccardIndexMetric`.
        min_size: see :class:`AggregatedJaccardIndexMetric`.
        foreground_channel: see :class:`AggregatedJaccardIndexMetric`.
        reduction: see :class:`AggregatedJaccardIndexMetric`.
        output_transform: callable extracting ``(y_pred, y)`` from ``engine.state.output``.
        save_details: whether to store the ``[N, 1]`` per-image values in ``engine.state.metric_details``.
        smoothing_sigma: see :func:`nuclei_instances`.
        h: see :func:`nuclei_instances`.
    """

    def __init__(
        self,
        instance_method: str = "watershed",
        label_kind: str = "binary",
        min_distance: int = 3,
        min_size: int = 10,
        foreground_channel: int = 1,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
        smoothing_sigma: float = 1.0,
        h: float = 0.5,
    ) -> None:
        metric_fn = AggregatedJaccardIndexMetric(
            instance_method=instance_method,
            label_kind=label_kind,
            min_distance=min_distance,
            min_size=min_size,
            foreground_channel=foreground_channel,
            reduction=reduction,
            smoothing_sigma=smoothing_sigma,
            h=h,
        )
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)


class ObjectF1(IgniteMetricHandler):
    """Ignite handler of :class:`ObjectF1Metric` (higher is better).

    Args:
        instance_method: see :class:`ObjectF1Metric`.
        label_kind: see :class:`ObjectF1Metric`.
        min_distance: see :class:`ObjectF1Metric`.
        min_size: see :class:`ObjectF1Metric`.
        iou_threshold: see :class:`ObjectF1Metric`.
        foreground_channel: see :class:`ObjectF1Metric`.
        metric_name: see :class:`ObjectF1Metric`.
        reduction: see :class:`ObjectF1Metric`.
        output_transform: callable extracting ``(y_pred, y)`` from ``engine.state.output``.
        save_details: whether to store the ``[N, 1]`` per-image values in ``engine.state.metric_details``.
        smoothing_sigma: see :func:`nuclei_instances`.
        h: see :func:`nuclei_instances`.
    """

    def __init__(
        self,
        instance_method: str = "watershed",
        label_kind: str = "binary",
        min_distance: int = 3,
        min_size: int = 10,
        iou_threshold: float = 0.5,
        foreground_channel: int = 1,
        metric_name: str = "f1",
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
        smoothing_sigma: float = 1.0,
        h: float = 0.5,
    ) -> None:
        metric_fn = ObjectF1Metric(
            instance_method=instance_method,
            label_kind=label_kind,
            min_distance=min_distance,
            min_size=min_size,
            iou_threshold=iou_threshold,
            foreground_channel=foreground_channel,
            metric_name=metric_name,
            reduction=reduction,
            smoothing_sigma=smoothing_sigma,
            h=h,
        )
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
