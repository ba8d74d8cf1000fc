"""Inf-Net's threshold-averaged Dice (transforms/metrics/threshold.py) against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from transforms import ThresholdAveragedDice, ThresholdAveragedDiceMetric, threshold_averaged_dice, threshold_dice_curve


def infnet_toolbox_mean_dice(score_map: np.ndarray, truth: np.ndarray) -> float:
    """Inf-Net's EvaluationTool (main.m + Fmeasure_calu.m) for one image, written out as a plain loop."""
    score_map = score_map.astype(np.float64)
    score_map = (score_map - score_map.min()) / (score_map.max() - score_map.min())  # mapminmax(.., 0, 1)
    truth = truth > 0.5
    dices = []
    for threshold in np.arange(255, -1, -1) / 255.0:  # 1:-1/255:0
        mask = score_map >= threshold
        true_positives = np.count_nonzero(mask & truth)
        dices.append(0.0 if true_positives == 0 else 2 * true_positives / (truth.sum() + mask.sum()))
    return float(np.mean(dices))


def test_three_thresholds_by_hand_and_normalisation():
    # thresholds 0, 0.5, 1 on a 2 x 3 map; truth = the middle three pixels of the flattened map
    probability = torch.tensor([[0.0, 0.4, 0.5], [0.9, 1.0, 0.2]])
    truth = torch.tensor([[0, 1, 1], [1, 0, 0]])
    # t = 0: all 6 pixels, TP 3 -> 6/9; t = 0.5: {0.5, 0.9, 1.0}, TP 2 -> 4/6; t = 1: {1.0}, TP 0 -> 0
    expected_curve = torch.tensor([2 / 3, 2 / 3, 0.0], dtype=torch.float64)
    curve = threshold_dice_curve(probability, truth, num_thresholds=3, normalize=False)
    torch.testing.assert_close(curve, expected_curve)
    assert math.isclose(threshold_averaged_dice(probability, truth, num_thresholds=3, normalize=False), 4 / 9)
    # min-max normalisation: an affinely rescaled score map (e.g. logits-like values) scores the same
    rescaled = probability * 2.0 + 3.0
    assert math.isclose(threshold_averaged_dice(rescaled, truth, num_thresholds=3), 4 / 9)


def test_256_thresholds_by_hand():
    # values 0, 0.5, 1; a value v is foreground at thresholds k/255 <= v: 0 -> k = 0; 0.5 -> k <= 127; 1 -> all
    probability = torch.tensor([0.0, 0.5, 1.0])
    truth = torch.tensor([0, 1, 1])
    # k = 0: mask of 3, TP 2 -> 4/5; k = 1..127: mask {0.5, 1}, TP 2 -> 1; k = 128..255: mask {1}, TP 1 -> 2/3
    expected = (0.8 + 127 * 1.0 + 128 * 2 / 3) / 256
    assert math.isclose(threshold_averaged_dice(probability, truth), expected, rel_tol=1e-12)
    curve = threshold_dice_curve(probability, truth)
    assert curve.shape == (256,) and curve.dtype == torch.float64
    assert math.isclose(float(curve[127]), 1.0) and math.isclose(float(curve[128]), 2 / 3)


def test_matches_the_infnet_toolbox_loop_on_a_smooth_map_with_exact_threshold_values():
    rng = np.random.default_rng(0)
    truth = np.zeros((40, 50))
    truth[10:30, 5:25] = 1
    score_map = rng.random((40, 50)) * 0.6 + 0.4 * truth  # lesions score higher, with overlap
    score_map[0, :4] = [0.0, 1.0, 17 / 255, 200 / 255]  # values exactly on thresholds: ">=" counts them
    mine = threshold_averaged_dice(torch.from_numpy(score_map), torch.from_numpy(truth))
    assert math.isclose(mine, infnet_toolbox_mean_dice(score_map, truth), rel_tol=1e-12)


def test_empty_truth_scores_zero_as_in_infnet_unless_told_otherwise():
    truth = torch.zeros(4, 4)
    probability = torch.rand(4, 4, generator=torch.Generator().manual_seed(1))
    assert threshold_averaged_dice(probability, truth) == 0.0  # no true positive at any threshold
    # a constant map normalises to 0: only threshold 0 marks pixels; every other threshold has both masks empty
    constant = torch.full((4, 4), 0.3)
    assert threshold_averaged_dice(constant, truth) == 0.0
    assert math.isclose(threshold_averaged_dice(constant, truth, both_empty_dice=1.0), 255 / 256)


def test_metric_pairs_a_sigmoid_channel_with_a_one_hot_truth():
    probability = torch.tensor([0.0, 0.5, 1.0]).reshape(1, 1, 1, 3)
    one_hot = torch.tensor([[1, 0, 0], [0, 1, 1]], dtype=torch.float32).reshape(1, 2, 1, 3)
    expected = (0.8 + 127 + 128 * 2 / 3) / 256
    for truth in (one_hot, one_hot[:, 1:]):
        metric = ThresholdAveragedDiceMetric(include_background=False)
        metric(y_pred=probability, y=truth)
        assert metric.get_buffer().shape == (1, 1)
        assert math.isclose(float(metric.aggregate()), expected, rel_tol=1e-6)


def test_metric_per_class_of_a_softmax_output_without_background():
    # 3 classes on 1 x 4 pixels: class 1 on pixel 0, class 2 on pixels 2-3
    truth = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1]], dtype=torch.float32).reshape(1, 3, 1, 4)
    probability = torch.tensor(
        [[0.1, 0.8, 0.2, 0.1], [0.9, 0.1, 0.0, 0.0], [0.0, 0.1, 0.8, 0.9]], dtype=torch.float32
    ).reshape(1, 3, 1, 4)
    metric = ThresholdAveragedDiceMetric(include_background=False, num_thresholds=3)
    metric(y_pred=probability, y=truth)
    per_class = metric.get_buffer()
    assert per_class.shape == (1, 2)
    # class 1, normalised [1, 1/9, 0, 0]: t=0 all 4, TP 1 -> 2/5; t=0.5 {p0} -> 1; t=1 {p0} -> 1
    # class 2, normalised [0, 1/9, 8/9, 1]: t=0 all 4, TP 2 -> 4/6; t=0.5 {p2, p3} -> 1; t=1 {p3} -> 2/3
    expected = torch.tensor([[(0.4 + 1 + 1) / 3, (2 / 3 + 1 + 2 / 3) / 3]])
    torch.testing.assert_close(per_class, expected)
    with_background = ThresholdAveragedDiceMetric(include_background=True, num_thresholds=3)
    with_background(y_pred=probability, y=truth)
    assert with_background.get_buffer().shape == (1, 3)


def test_handler_in_an_engine_gives_the_mean_over_images_and_details():
    first = (torch.tensor([0.0, 0.5, 1.0]).reshape(1, 1, 3), torch.tensor([0.0, 1.0, 1.0]).reshape(1, 1, 3))
    second = (
        torch.tensor([0.0, 0.4, 0.5, 0.9, 1.0, 0.2]).reshape(1, 2, 3),
        torch.tensor([0, 1, 1, 1, 0, 0.0]).reshape(1, 2, 3),
    )
    batches = [{"probability": [first[0]], "label": [first[1]]}, {"probability": [second[0]], "label": [second[1]]}]
    engine = Engine(lambda engine, batch: batch)
    handler = ThresholdAveragedDice(output_transform=lambda out: (out["probability"], out["label"]))
    handler.attach(engine, "val_threshold_averaged_dice")
    engine.run(batches)
    expected_first = (0.8 + 127 + 128 * 2 / 3) / 256
    expected_second = infnet_toolbox_mean_dice(second[0].numpy(), second[1].numpy())
    assert math.isclose(
        engine.state.metrics["val_threshold_averaged_dice"], (expected_first + expected_second) / 2, rel_tol=1e-6
    )
    assert engine.state.metric_details["val_threshold_averaged_dice"].shape == (2, 1)


@pytest.mark.parametrize(
    "y_pred, y, message",
    [
        (torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 5), "spatial shape"),
        (torch.rand(1, 3, 4, 4), torch.rand(1, 2, 4, 4), "channels"),
        (torch.full((1, 1, 2, 2), float("nan")), torch.ones(1, 1, 2, 2), "NaN"),
    ],
)
def test_bad_inputs_raise_clear_errors(y_pred, y, message):
    with pytest.raises(ValueError, match=message):
        ThresholdAveragedDiceMetric()(y_pred=y_pred, y=y)


def test_num_thresholds_is_checked():
    with pytest.raises(ValueError, match="num_thresholds"):
        ThresholdAveragedDiceMetric(num_thresholds=1)
