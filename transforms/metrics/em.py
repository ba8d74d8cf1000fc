"""The ISBI 2012 EM metrics (pixel and Rand errors); the other overlap scores are in :mod:`.confusion`.

MONAI lacks the two ISBI 2012 EM segmentation challenge metrics that the U-Net paper (Ronneberger et al. 2015,
Table 1) reports, so they are implemented here:

- :func:`pixel_error`, :class:`PixelErrorMetric`, :class:`PixelError` (ignite handler);
- :func:`rand_scores` / :func:`rand_error`, :class:`RandErrorMetric`, :class:`RandError` (ignite handler): the
  foreground-restricted Rand error of Arganda-Carreras et al. 2015, "Crowdsourcing the creation of image
  segmentation algorithms for connectomics", Front. Neuroanat. 9:142.

Dice, IoU, sensitivity, specificity and accuracy come from MONAI (``compute_dice``, ``compute_iou``,
``get_confusion_matrix``); :func:`dice_score`, :func:`iou_score` and :func:`confusion_scores` only add input
handling (numpy or torch, binary masks, label maps, one-hot) and an empty-mask convention that never gives NaN.
In an evaluator use MONAI's classes directly, e.g.
``IgniteMetricHandler(metric_fn=DiceMetric(include_background=False, ignore_empty=False))`` for the same
empty-mask convention as :func:`dice_score`.

Empty-mask conventions (no function here returns NaN):

- pixel error: always defined (fraction of a non-empty image);
- Rand error: when no pixel is evaluated (foreground-restricted and the ground truth has no foreground), nothing
  can be split or merged, so ``rand_error = 0`` and ``v_rand = v_rand_split = v_rand_merge = 1``. A prediction with
  foreground where the ground truth has none is invisible to the foreground-restricted score: pair it with the
  pixel error or Dice;
- Dice and IoU: both masks empty -> 1, only the ground truth empty -> 0 (MONAI's ``ignore_empty=False``);
- confusion-matrix ratios: a ratio whose denominator is zero (e.g. sensitivity without positives) is 1, since
  nothing in that ratio could be got wrong.

Errors are lower-is-better: a bundle using :class:`PixelError` or :class:`RandError` as ``key_metric`` of a
``SupervisedEvaluator`` should pass ``metric_cmp_fn=transforms.lower_is_better`` (and
``key_metric_negative_sign=True`` to ``CheckpointSaver``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.handlers import IgniteMetricHandler
from monai.utils import MetricReduction, look_up_option
from scipy import ndimage, sparse

from ..utils import pair_as_numpy
from .base import PerImageMetric, batch_labels, check_batch_shapes

__all__ = [
    "RandScores",
    "pixel_error",
    "rand_scores",
    "rand_error",
    "PixelErrorMetric",
    "RandErrorMetric",
    "PixelError",
    "RandError",
]


class RandScores(NamedTuple):
    """Rand scores of one segmentation against its ground truth (see :func:`rand_scores`)."""

    rand_error: float
    v_rand: float
    v_rand_split: float
    v_rand_merge: float


def _instance_flags(is_instance: bool | Sequence[bool]) -> tuple[bool, bool]:
    if isinstance(is_instance, (bool, np.bool_)):
        return bool(is_instance), bool(is_instance)
    flags = tuple(is_instance)
    if len(flags) != 2 or not all(isinstance(flag, (bool, np.bool_)) for flag in flags):
        raise ValueError(f"is_instance must be a bool or a (pred, target) pair of bools, got {is_instance!r}.")
    return bool(flags[0]), bool(flags[1])


def _segment_labels(data: np.ndarray, is_instance: bool, connectivity: int, name: str) -> np.ndarray:
    """Segment ids (0 = background/boundary): the given instance ids, or connected components of ``data != 0``."""
    if is_instance:
        if data.dtype == bool:
            return data.astype(np.int64)
        if not np.issubdtype(data.dtype, np.integer) and not np.all(data == np.round(data)):
            raise ValueError(f"{name} instance labels must be integer ids (0 = background), got non-integer values.")
        if data.min() < 0:
            raise ValueError(f"{name} instance labels must be non-negative (0 = background), got {data.min()}.")
        return data.astype(np.int64)
    if not 1 <= connectivity <= data.ndim:
        raise ValueError(f"connectivity must be in [1, {data.ndim}] for {data.ndim}-D input, got {connectivity}.")
    structure = ndimage.generate_binary_structure(data.ndim, connectivity)
    labels, _ = ndimage.label(data != 0, structure=structure)
    return labels


def pixel_error(pred: NdarrayOrTensor, target: NdarrayOrTensor, binarize: bool = True) -> float:
    """ISBI 2012 pixel error: the fraction of pixels whose label differs between prediction and ground truth.

    Args:
        pred: predicted mask or label map, numpy array or tensor of any shape.
        target: ground truth of the same shape.
        binarize: compare binary labels (nonzero = foreground, so a 0/1 prediction and a 0/255 ground truth
            compare as intended, as in the challenge). ``False`` compares the label values themselves, which
            gives ``1 - accuracy`` for multi-class label maps.

    Returns:
        Pixel error in [0, 1].

    Raises:
        ValueError: when the shapes differ or the inputs are empty.
    """
    pred_array, target_array = pair_as_numpy(pred, target)
    if binarize:
        differs = (pred_array != 0) != (target_array != 0)
    else:
        differs = pred_array != target_array
    return float(np.count_nonzero(differs) / differs.size)


def rand_scores(
    pred: NdarrayOrTensor,
    target: NdarrayOrTensor,
    foreground_restricted: bool = True,
    is_instance: bool | Sequence[bool] = False,
    connectivity: int = 1,
) -> RandScores:
    """Foreground-restricted Rand scores of the ISBI 2012 challenge (Arganda-Carreras et al. 2015, Sec. 2.3).

    Segments are the connected components of the foreground (cell interior, nonzero) of binary masks, or the ids
    of instance label maps (``is_instance``); 0 is background (membrane/boundary). With ``p_ij`` the joint
    distribution of prediction segment ``i`` and ground-truth segment ``j`` over the evaluated pixels,
    ``s_i = sum_j p_ij`` (prediction marginal) and ``t_j = sum_i p_ij`` (ground-truth marginal), the paper's
    scores are::

        V_rand_split = sum_ij p_ij^2 / sum_j t_j^2   # P(same predicted segment | same true segment)
        V_rand_merge = sum_ij p_ij^2 / sum_i s_i^2   # P(same true segment | same predicted segment)
        V_rand = sum_ij p_ij^2 / (alpha sum_i s_i^2 + (1 - alpha) sum_j t_j^2), alpha = 0.5
               = harmonic mean of V_rand_split and V_rand_merge (the Rand F-score)
        rand_error = 1 - V_rand

    A prediction that splits a true cell lowers ``V_rand_split`` (the challenge script calls it "recall"); one
    that merges true cells lowers ``V_rand_merge`` ("precision").

    ``foreground_restricted=True`` (the challenge metric) evaluates only pixels where the ground truth is
    foreground, so the exact width of the true membranes does not matter. Pixels the prediction labels
    background inside true cells are each counted as a singleton segment, as in the challenge's Fiji code
    (``RandError.foregroundRestrictedStatsN2``: the ``sum(p_i0)/n`` terms) and the SNEMI3D/gala
    ``adapted_rand``. Excluding them instead would let a prediction that marks almost everything as boundary
    score perfectly; as singletons they count as splits, so thick or spurious predicted boundaries are penalised.
    ``foreground_restricted=False`` evaluates every pixel and treats label 0 of both maps as one ordinary segment
    (the Rand F-score of the two full label maps).

    The challenge leaderboard additionally thins the proposal's borders and takes the best score over
    thresholds 0.0..0.9 of a probability map; this function scores one given segmentation.

    Args:
        pred: predicted binary mask (nonzero = cell interior) or instance label map, any spatial dimensionality
            (a 3-D array is one volume with 3-D components; score slices separately for the 2-D challenge metric).
        target: ground truth of the same shape, binary mask or instance label map.
        foreground_restricted: evaluate only ground-truth foreground pixels (see above).
        is_instance: ``True`` when both inputs are instance label maps, or a ``(pred, target)`` pair of flags,
            e.g. ``(False, True)`` for a binary prediction against instance ground truth with touching cells.
        connectivity: neighbourhood of the connected components of binary inputs, as in
            ``scipy.ndimage.generate_binary_structure``: 1 = faces (4-connectivity in 2-D, the challenge's
            choice), up to ``ndim`` = faces, edges and corners.

    Returns:
        ``RandScores(rand_error, v_rand, v_rand_split, v_rand_merge)``, all in [0, 1]. When no pixel is
        evaluated the result is ``(0, 1, 1, 1)``.

    Raises:
        ValueError: when the shapes differ, inputs are empty, instance labels are negative or non-integer, or
            ``connectivity`` is out of range.
    """
    pred_array, target_array = pair_as_numpy(pred, target)
    pred_is_instance, target_is_instance = _instance_flags(is_instance)
    pred_ids = _segment_labels(pred_array, pred_is_instance, connectivity, "pred").ravel()
    target_ids = _segment_labels(target_array, target_is_instance, connectivity, "target").ravel()

    if foreground_restricted:
        evaluated = target_ids > 0
        pred_ids, target_ids = pred_ids[evaluated], target_ids[evaluated]
    if target_ids.size == 0:
        return RandScores(rand_error=0.0, v_rand=1.0, v_rand_split=1.0, v_rand_merge=1.0)

    # Dense relabelling keeps the sparse table small whatever the id values (e.g. 16-bit instance ids).
    pred_values, pred_index = np.unique(pred_ids, return_inverse=True)
    target_values, target_index = np.unique(target_ids, return_inverse=True)
    counts = sparse.coo_matrix(
        (np.ones(pred_index.size, dtype=np.float64), (pred_index.ravel(), target_index.ravel())),
        shape=(pred_values.size, target_values.size),
    ).tocsr()  # summing duplicate (i, j) entries gives the contingency table n_ij

    target_sizes = np.asarray(counts.sum(axis=0)).ravel()
    sum_target_sq = float(target_sizes @ target_sizes)
    n_singletons = 0.0
    if foreground_restricted and pred_values[0] == 0:
        n_singletons = float(counts[0].sum())
        counts = counts[1:]
    pred_sizes = np.asarray(counts.sum(axis=1)).ravel()
    # A singleton contributes 1^2 to both the joint and the prediction sums; the 1/n^2 normalisation of p_ij
    # cancels in every ratio, so counts are used directly.
    sum_joint_sq = float(counts.data @ counts.data) + n_singletons
    sum_pred_sq = float(pred_sizes @ pred_sizes) + n_singletons

    v_rand_split = sum_joint_sq / sum_target_sq
    v_rand_merge = sum_joint_sq / sum_pred_sq
    v_rand = 2.0 * sum_joint_sq / (sum_pred_sq + sum_target_sq)
    return RandScores(rand_error=1.0 - v_rand, v_rand=v_rand, v_rand_split=v_rand_split, v_rand_merge=v_rand_merge)


def rand_error(
    pred: NdarrayOrTensor,
    target: NdarrayOrTensor,
    foreground_restricted: bool = True,
    is_instance: bool | Sequence[bool] = False,
    connectivity: int = 1,
) -> float:
    """ISBI 2012 foreground-restricted Rand error ``1 - V_rand``; see :func:`rand_scores` for the definition,
    the arguments and the split/merge scores."""
    return rand_scores(
        pred, target, foreground_restricted=foreground_restricted, is_instance=is_instance, connectivity=connectivity
    ).rand_error


class PixelErrorMetric(PerImageMetric):
    """ISBI 2012 pixel error per image (see :func:`pixel_error`), accumulated like MONAI's ``DiceMetric``.

    ``y_pred`` and ``y`` are batch-first ``[B, C, spatial...]`` one-hot tensors (e.g. after
    ``AsDiscrete(argmax=True, to_onehot=C)``) or ``[B, 1, spatial...]`` label maps, or lists of channel-first
    tensors. The per-image value has shape ``[B, 1]``.

    Args:
        foreground_channel: class whose binary mask is compared: channel ``foreground_channel`` of one-hot input,
            or pixels equal to ``foreground_channel`` in a label map. ``None`` compares class labels (argmax of
            one-hot input), giving ``1 - accuracy`` for multi-class segmentation.
        reduction: reduction of the ``[N, 1]`` per-image values, as in MONAI metrics (``"mean"``, ``"sum"``,
            ``"mean_batch"``, ``"none"``...).
        get_not_nans: whether ``aggregate`` also returns the count of non-NaN values.
    """

    def __init__(
        self,
        foreground_channel: int | None = 1,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)
        self.foreground_channel = foreground_channel

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        if y is None:
            raise ValueError("PixelErrorMetric needs the ground truth y.")
        pred_labels = batch_labels(y_pred, self.foreground_channel, "y_pred")
        target_labels = batch_labels(y, self.foreground_channel, "y").to(pred_labels.device)
        check_batch_shapes(pred_labels, target_labels)
        differs = (pred_labels != target_labels).reshape(pred_labels.shape[0], -1)
        return differs.float().mean(dim=1, keepdim=True)


class RandErrorMetric(PerImageMetric):
    """ISBI 2012 foreground-restricted Rand error per image (see :func:`rand_scores`), accumulated like MONAI's
    ``DiceMetric``; ``aggregate()`` gives the mean over images by default.

    ``y_pred`` and ``y`` are batch-first ``[B, C, spatial...]`` one-hot tensors or ``[B, 1, spatial...]`` label
    maps (or lists of channel-first tensors); instance label maps (``is_instance``) must be single-channel. Each
    image is scored on the CPU (connected components with scipy). The per-image value has shape ``[B, 1]``.

    Args:
        foreground_channel: class of the cell interior: channel of one-hot input, or value in label maps.
        is_instance: whether inputs are instance label maps; a ``(y_pred, y)`` pair of flags to mix, e.g.
            ``(False, True)`` for one-hot predictions against instance ground truth.
        foreground_restricted: evaluate only ground-truth foreground pixels (the challenge metric).
        connectivity: neighbourhood of the connected components (1 = 4-connectivity in 2-D).
        metric_name: which score to accumulate: ``"rand_error"``, ``"v_rand"``, ``"v_rand_split"`` or
            ``"v_rand_merge"``.
        reduction: reduction of the ``[N, 1]`` per-image values, as in MONAI metrics.
        get_not_nans: whether ``aggregate`` also returns the count of non-NaN values.
    """

    def __init__(
        self,
        foreground_channel: int = 1,
        is_instance: bool | Sequence[bool] = False,
        foreground_restricted: bool = True,
        connectivity: int = 1,
        metric_name: str = "rand_error",
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)
        self.foreground_channel = foreground_channel
        self.is_instance = _instance_flags(is_instance)
        self.foreground_restricted = foreground_restricted
        self.connectivity = connectivity
        self.metric_name = look_up_option(metric_name, RandScores._fields)

    def _segmentation_maps(self, data: torch.Tensor, is_instance: bool, name: str) -> torch.Tensor:
        if not is_instance:
            return batch_labels(data, self.foreground_channel, name)
        if data.ndim < 3 or data.shape[1] != 1:
            raise ValueError(f"{name} instance label maps must have shape [B, 1, spatial...], got {tuple(data.shape)}.")
        return data[:, 0]

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        if y is None:
            raise ValueError("RandErrorMetric needs the ground truth y.")
        pred_maps = self._segmentation_maps(y_pred, self.is_instance[0], "y_pred")
        target_maps = self._segmentation_maps(y, self.is_instance[1], "y")
        check_batch_shapes(pred_maps, target_maps)
        values = [
            getattr(
                rand_scores(
                    pred_map,
                    target_map,
                    foreground_restricted=self.foreground_restricted,
                    is_instance=self.is_instance,
                    connectivity=self.connectivity,
                ),
                self.metric_name,
            )
            for pred_map, target_map in zip(pred_maps, target_maps, strict=True)
        ]
        return torch.tensor(values, dtype=torch.float32, device=y_pred.device).unsqueeze(1)


class PixelError(IgniteMetricHandler):
    """Ignite handler of :class:`PixelErrorMetric`, e.g. an evaluator's ``key_metric`` with
    ``output_transform=monai.handlers.from_engine(["pred", "label"])`` (lower is better: see
    :func:`lower_is_better`).

    Args:
        foreground_channel: see :class:`PixelErrorMetric`.
        reduction: see :class:`PixelErrorMetric`.
        output_transform: callable extracting ``(y_pred, y)`` from ``engine.state.output``.
        save_details: whether to store the ``[N, 1]`` per-image values in ``engine.state.metric_details``.
    """

    def __init__(  # noqa: B042 a metric handler named after the ISBI metric, not an exception
        self,
        foreground_channel: int | None = 1,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = PixelErrorMetric(foreground_channel=foreground_channel, reduction=reduction)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)


class RandError(IgniteMetricHandler):
    """Ignite handler of :class:`RandErrorMetric`, e.g. an evaluator's ``key_metric`` with
    ``output_transform=monai.handlers.from_engine(["pred", "label"])`` (lower is better for ``"rand_error"``:
    see :func:`lower_is_better`).

    Args:
        foreground_channel: see :class:`RandErrorMetric`.
        is_instance: see :class:`RandErrorMetric`.
        foreground_restricted: see :class:`RandErrorMetric`.
        connectivity: see :class:`RandErrorMetric`.
        metric_name: see :class:`RandErrorMetric`.
        reduction: see :class:`RandErrorMetric`.
        output_transform: callable extracting ``(y_pred, y)`` from ``engine.state.output``.
        save_details: whether to store the ``[N, 1]`` per-image values in ``engine.state.metric_details``.
    """

    def __init__(  # noqa: B042 a metric handler named after the ISBI metric, not an exception
        self,
        foreground_channel: int = 1,
        is_instance: bool | Sequence[bool] = False,
        foreground_restricted: bool = True,
        connectivity: int = 1,
        metric_name: str = "rand_error",
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = RandErrorMetric(
            foreground_channel=foreground_channel,
            is_instance=is_instance,
            foreground_restricted=foreground_restricted,
            connectivity=connectivity,
            metric_name=metric_name,
            reduction=reduction,
        )
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
