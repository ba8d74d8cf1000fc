"""Dice averaged over evenly spaced thresholds of a probability map: the "mean Dice" of Inf-Net's evaluation.

Inf-Net (Fan et al., "Inf-Net: Automatic COVID-19 Lung Infection Segmentation from CT Images", IEEE TMI 39(8), 2020)
scores a probability map, not a mask, and its numbers on the MedSeg COVID-19 slices (U-Net 0.439, U-Net++ 0.581,
Inf-Net 0.682) are quoted by later lung-lesion papers. Its MATLAB toolbox (``EvaluationTool/main.m`` and
``Fmeasure_calu.m`` of the DengPingFan/Inf-Net repository) computes, for every test image:

1. the map resized to the ground truth's size, its values min-max normalised to [0, 1] (``mapminmax``);
2. the ground truth binarised (``gt > 128`` for 8-bit masks);
3. for each of the 256 thresholds ``t = 1, 254/255, ..., 1/255, 0`` the mask ``map >= t`` and its Dice
   ``2 TP / (|truth| + |mask|)``, taken as **0 whenever TP = 0** (also when truth and mask are both empty);
4. the Dice curve averaged over images (``column_Dic``); ``meanDic`` is the mean of that curve over the thresholds,
   ``maxDic`` its maximum.

Because a mean over images of per-image means over thresholds equals the mean over thresholds of the mean over
images, ``meanDic`` is the mean over images of :func:`threshold_averaged_dice`, which is what
:class:`ThresholdAveragedDiceMetric` accumulates (one value per image and class, like MONAI's ``DiceMetric``).
:func:`threshold_dice_curve` gives the per-threshold values for ``maxDic``-style summaries.

Differences from the toolbox, all below one threshold step: the map is scored as floating point (Inf-Net's test
script first writes it as an 8-bit PNG, which rounds each value to the nearest ``k / 255``), and a constant map,
which ``mapminmax`` leaves undefined, is normalised to 0 everywhere (as the ``(x - min) / (max - min + 1e-8)`` of
Inf-Net's Python test script does), so only the threshold 0 marks any pixel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.config import NdarrayOrTensor
from monai.handlers import IgniteMetricHandler
from monai.utils import MetricReduction, convert_to_tensor

from .base import PerImageMetric

__all__ = [
    "INFNET_NUM_THRESHOLDS",
    "threshold_dice_curve",
    "threshold_averaged_dice",
    "ThresholdAveragedDiceMetric",
    "ThresholdAveragedDice",
]

#: thresholds of Inf-Net's evaluation: ``1:-1/255:0`` in MATLAB, i.e. ``k / 255`` for ``k = 0 .. 255``
INFNET_NUM_THRESHOLDS = 256


def _check_num_thresholds(num_thresholds: int) -> int:
    if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int) or num_thresholds < 2:
        raise ValueError(f"num_thresholds must be an int >= 2 (0 and 1 included), got {num_thresholds!r}.")
    return num_thresholds


def threshold_dice_curve(
    probability: NdarrayOrTensor,
    truth: NdarrayOrTensor,
    num_thresholds: int = INFNET_NUM_THRESHOLDS,
    normalize: bool = True,
    both_empty_dice: float = 0.0,
) -> torch.Tensor:
    """Dice of ``probability >= t`` against ``truth`` at the thresholds ``t = k / (num_thresholds - 1)``, ``k >= 0``.

    Implements steps 1-3 of Inf-Net's evaluation (module docstring) for one map: with ``normalize`` the map is first
    min-max normalised (a constant map becomes 0); at threshold ``t`` a pixel is foreground when its value is
    ``>= t``; the Dice ``2 TP / (|truth| + |mask|)`` is 0 when ``TP = 0``, except that a threshold at which mask
    and truth are both empty scores ``both_empty_dice`` (0 in Inf-Net; 1 is MONAI's ``ignore_empty=False``
    convention).

    All thresholds are counted at once: each pixel's number of thresholds ``<= value`` (``searchsorted``) and a
    histogram of those counts give the mask and true-positive sizes of every threshold.

    Args:
        probability: the score map, any shape (one image, one class); values anywhere when ``normalize``, else
            in [0, 1] (values above 1 count at every threshold, below 0 at none).
        truth: the ground truth, same number of elements; foreground where ``> 0.5`` (so {0, 1} and {0, 255}
            masks both work, as Inf-Net's ``gt > 128``).
        num_thresholds: evenly spaced thresholds from 0 to 1, both included (Inf-Net: 256, steps of 1/255).
        normalize: min-max normalise the map first (Inf-Net's ``mapminmax``).
        both_empty_dice: Dice of a threshold whose mask and truth are both empty.

    Returns:
        float64 tensor ``[num_thresholds]``, ascending thresholds (``curve[k]`` is the Dice at ``k / (T - 1)``).

    Raises:
        ValueError: empty input, different sizes, non-finite scores or ``num_thresholds < 2``.
    """
    num_thresholds = _check_num_thresholds(num_thresholds)
    # plain tensors: MetaTensor bookkeeping on every intermediate would only cost time here
    scores = convert_to_tensor(probability, track_meta=False).detach().reshape(-1).to(torch.float64)
    target = convert_to_tensor(truth, track_meta=False).detach().reshape(-1).to(device=scores.device) > 0.5
    if scores.numel() == 0:
        raise ValueError("threshold_dice_curve: the probability map is empty.")
    if scores.numel() != target.numel():
        raise ValueError(
            f"threshold_dice_curve: probability and truth differ in size ({scores.numel()} and {target.numel()} "
            "elements); resize the map to the ground truth first."
        )
    if not torch.isfinite(scores).all():
        raise ValueError("threshold_dice_curve: the probability map holds NaN or infinite values.")
    if normalize:
        low, high = scores.min(), scores.max()
        scores = (scores - low) / (high - low) if high > low else torch.zeros_like(scores)
    # k / (T - 1) exactly (linspace may be an ulp off), so a value equal to a threshold always counts as above it
    thresholds = torch.arange(num_thresholds, dtype=torch.float64, device=scores.device) / (num_thresholds - 1)
    # a pixel with count c is foreground at thresholds 0 .. c - 1; the sizes at threshold k are the number of
    # pixels with a count > k, i.e. reversed cumulative sums of the count histograms
    counts = torch.searchsorted(thresholds, scores, right=True)

    def sizes_above(selected: torch.Tensor) -> torch.Tensor:
        histogram = torch.bincount(selected, minlength=num_thresholds + 1).to(torch.float64)
        return histogram.flip(0).cumsum(0).flip(0)[1:]

    mask_sizes = sizes_above(counts)
    true_positives = sizes_above(counts[target])
    truth_size = target.sum().to(torch.float64)
    denominator = truth_size + mask_sizes
    dice = torch.where(
        true_positives > 0, 2.0 * true_positives / denominator.clamp_min(1.0), torch.zeros_like(denominator)
    )
    return torch.where(denominator == 0, torch.full_like(dice, float(both_empty_dice)), dice)


def threshold_averaged_dice(
    probability: NdarrayOrTensor,
    truth: NdarrayOrTensor,
    num_thresholds: int = INFNET_NUM_THRESHOLDS,
    normalize: bool = True,
    both_empty_dice: float = 0.0,
) -> float:
    """Mean over thresholds of :func:`threshold_dice_curve`: one image's share of Inf-Net's ``meanDic``.

    Args:
        probability: see :func:`threshold_dice_curve`.
        truth: see :func:`threshold_dice_curve`.
        num_thresholds: see :func:`threshold_dice_curve`.
        normalize: see :func:`threshold_dice_curve`.
        both_empty_dice: see :func:`threshold_dice_curve`.

    Returns:
        the mean Dice over the thresholds, in [0, 1].
    """
    return float(threshold_dice_curve(probability, truth, num_thresholds, normalize, both_empty_dice).mean())


class ThresholdAveragedDiceMetric(PerImageMetric):
    """Inf-Net's threshold-averaged Dice (module docstring) per image and class, accumulated like MONAI's
    ``DiceMetric``; ``aggregate()`` gives the mean over images (and classes), Inf-Net's ``meanDic``.

    ``y_pred`` holds probabilities (or any scores, with ``normalize``), **not** thresholded masks: ``[B, C,
    spatial...]`` after a sigmoid or softmax, or a list of channel-first maps as an evaluator's ``from_engine``
    gives them. ``y`` is the binary or one-hot ground truth at the same spatial size (foreground ``> 0.5``), either
    with the same ``C`` channels, or, for a single-channel ``y_pred`` (the foreground probability of a sigmoid
    output), with one channel or two one-hot channels (background, foreground): then ``y_pred`` is compared with the
    foreground channel. The per-image value has shape ``[B, C]`` (``C - 1`` without background).

    Args:
        include_background: keep channel 0 of multi-channel ``y_pred`` (a single channel is always kept).
        num_thresholds: evenly spaced thresholds in [0, 1] (Inf-Net: 256).
        normalize: min-max normalise each map (per image and channel) first, as Inf-Net does.
        both_empty_dice: Dice of a threshold at which mask and truth are both empty (Inf-Net: 0).
        reduction: reduction of the buffered ``[N, C]`` per-image values (``"mean"``, ``"mean_batch"``, ...).
        get_not_nans: whether ``aggregate`` also returns the count of values (none is NaN).
    """

    def __init__(
        self,
        include_background: bool = True,
        num_thresholds: int = INFNET_NUM_THRESHOLDS,
        normalize: bool = True,
        both_empty_dice: float = 0.0,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)
        self.include_background = include_background
        self.num_thresholds = _check_num_thresholds(num_thresholds)
        self.normalize = normalize
        self.both_empty_dice = float(both_empty_dice)

    def _paired_channels(self, y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if y_pred.ndim < 3 or y.ndim != y_pred.ndim:
            raise ValueError(
                "ThresholdAveragedDiceMetric: y_pred and y must be batch-first, channel-first [B, C, spatial...] with "
                f"the same number of axes, got shapes {tuple(y_pred.shape)} and {tuple(y.shape)}."
            )
        if y_pred.shape[0] != y.shape[0] or y_pred.shape[2:] != y.shape[2:]:
            raise ValueError(
                "ThresholdAveragedDiceMetric: y_pred and y differ in batch size or spatial shape "
                f"({tuple(y_pred.shape)} and {tuple(y.shape)}); score the map at the ground truth's size."
            )
        pred_channels, truth_channels = y_pred.shape[1], y.shape[1]
        if pred_channels == 1 and truth_channels in (1, 2):
            return y_pred, y[:, -1:]
        if pred_channels != truth_channels:
            raise ValueError(
                f"ThresholdAveragedDiceMetric: y_pred has {pred_channels} channels but y has {truth_channels}; "
                "expected the same number (one-hot y), or a single probability channel against a 1- or 2-channel y."
            )
        if not self.include_background and pred_channels > 1:
            return y_pred[:, 1:], y[:, 1:]
        return y_pred, y

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        if y is None:
            raise ValueError("ThresholdAveragedDiceMetric needs the ground truth y.")
        probabilities, truths = self._paired_channels(torch.as_tensor(y_pred), torch.as_tensor(y))
        values = [
            [
                threshold_averaged_dice(probability, truth, self.num_thresholds, self.normalize, self.both_empty_dice)
                for probability, truth in zip(image_probabilities, image_truths, strict=True)
            ]
            for image_probabilities, image_truths in zip(probabilities, truths, strict=True)
        ]
        return torch.tensor(values, dtype=torch.float32, device=probabilities.device)


class ThresholdAveragedDice(IgniteMetricHandler):
    """Ignite handler of :class:`ThresholdAveragedDiceMetric`, e.g. an evaluator's additional metric with
    ``output_transform=monai.handlers.from_engine(["probability", "label"])`` where the post-processing copied the
    probabilities (at the ground truth's size) to ``"probability"`` before thresholding ``"pred"``.

    Args:
        include_background: see :class:`ThresholdAveragedDiceMetric`.
        num_thresholds: see :class:`ThresholdAveragedDiceMetric`.
        normalize: see :class:`ThresholdAveragedDiceMetric`.
        both_empty_dice: see :class:`ThresholdAveragedDiceMetric`.
        reduction: see :class:`ThresholdAveragedDiceMetric`.
        output_transform: callable extracting ``(y_pred, y)`` from ``engine.state.output``.
        save_details: whether to store the per-image values in ``engine.state.metric_details`` (for
            ``MetricsSaver``).
    """

    def __init__(
        self,
        include_background: bool = True,
        num_thresholds: int = INFNET_NUM_THRESHOLDS,
        normalize: bool = True,
        both_empty_dice: float = 0.0,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = ThresholdAveragedDiceMetric(
            include_background=include_background,
            num_thresholds=num_thresholds,
            normalize=normalize,
            both_empty_dice=both_empty_dice,
            reduction=reduction,
        )
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
