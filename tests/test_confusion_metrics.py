"""Per-image confusion-matrix ratios for evaluators (transforms/metrics/confusion.py)."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine

from transforms import ConfusionScore, ConfusionScoreMetric


def _mask(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)[None, None]


# 2 x 3 image: truth has 3 foreground pixels; the prediction finds 2 of them and adds 1 false positive
TRUTH = _mask([[1, 1, 1], [0, 0, 0]])
PRED = _mask([[1, 1, 0], [1, 0, 0]])  # TP 2, FN 1, FP 1, TN 2


@pytest.mark.parametrize(
    "name, expected",
    [("sensitivity", 2 / 3), ("specificity", 2 / 3), ("accuracy", 4 / 6), ("precision", 2 / 3), ("f1 score", 2 / 3)],
)
def test_values_by_hand(name, expected):
    metric = ConfusionScoreMetric(metric_name=name)
    metric(y_pred=PRED, y=TRUTH)
    assert math.isclose(float(metric.aggregate()), expected, rel_tol=1e-6)


def test_empty_masks_give_defined_values_and_count_in_the_mean():
    empty = torch.zeros_like(TRUTH)
    metric = ConfusionScoreMetric(metric_name="sensitivity")
    metric(y_pred=empty, y=empty)  # no positives at all: nothing missed -> 1
    metric(y_pred=PRED, y=TRUTH)  # 2/3
    values = metric.get_buffer()
    assert values.shape == (2, 1) and not torch.isnan(values).any()
    assert math.isclose(float(metric.aggregate()), (1 + 2 / 3) / 2, rel_tol=1e-6)
    specificity = ConfusionScoreMetric(metric_name="specificity")
    specificity(y_pred=torch.ones_like(TRUTH), y=torch.ones_like(TRUTH))  # no negatives -> 1
    assert float(specificity.aggregate()) == 1.0


def test_lists_of_channel_first_images_as_evaluators_pass_them():
    metric = ConfusionScoreMetric(metric_name="accuracy")
    metric(y_pred=[PRED[0], TRUTH[0]], y=[TRUTH[0], TRUTH[0]])
    torch.testing.assert_close(metric.get_buffer(), torch.tensor([[4 / 6], [1.0]]))


def test_handler_in_an_engine_stores_mean_and_per_image_details():
    batches = [{"pred": [PRED[0]], "label": [TRUTH[0]]}, {"pred": [TRUTH[0]], "label": [TRUTH[0]]}]
    engine = Engine(lambda engine, batch: batch)
    handler = ConfusionScore(metric_name="sensitivity", output_transform=lambda out: (out["pred"], out["label"]))
    handler.attach(engine, "val_sensitivity")
    engine.run(batches)
    assert math.isclose(engine.state.metrics["val_sensitivity"], (2 / 3 + 1) / 2, rel_tol=1e-6)
    assert engine.state.metric_details["val_sensitivity"].shape == (2, 1)


def test_unsupported_metric_is_refused_at_construction():
    with pytest.raises(ValueError, match="well-defined"):
        ConfusionScoreMetric(metric_name="miss rate")
    with pytest.raises(NotImplementedError):
        ConfusionScoreMetric(metric_name="not a metric")
