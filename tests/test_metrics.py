"""Tests of transforms.metrics: ISBI 2012 pixel and Rand errors, MONAI metric classes and ignite handlers."""

import time

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from PIL import Image
from scipy import ndimage

from monai.handlers import from_engine
from transforms.metrics import (
    PerImageMetric,
    PixelError,
    PixelErrorMetric,
    RandError,
    RandErrorMetric,
    RandScores,
    confusion_scores,
    dice_score,
    iou_score,
    lower_is_better,
    pixel_error,
    rand_error,
    rand_scores,
)

# Ground truth with two cells separated by a membrane column (0 = membrane, 1 = cell interior):
#   cell A = columns 0-1 (8 px), membrane = column 2, cell B = column 3 (4 px).
TWO_CELLS = np.array([[1, 1, 0, 1]] * 4)
ALL_FOREGROUND = np.ones((4, 4), dtype=np.int64)


def one_hot_2d(mask: np.ndarray) -> torch.Tensor:
    """[2, H, W] one-hot (channel 1 = cell interior) of a binary mask."""
    foreground = torch.as_tensor(mask, dtype=torch.float32)
    return torch.stack([1 - foreground, foreground])


def pair_counting_scores(pred_ids: np.ndarray, target_ids: np.ndarray, foreground_restricted: bool) -> RandScores:
    """Independent reference: V_rand from explicit ordered pixel pairs (self-pairs included, which is what
    sum p_ij^2 counts); predicted background inside true foreground is a singleton when restricted."""
    pred, target = pred_ids.ravel(), target_ids.ravel()
    if foreground_restricted:
        keep = target > 0
        pred, target = pred[keep], target[keep]
    same_target = target[:, None] == target[None, :]
    same_pred = pred[:, None] == pred[None, :]
    if foreground_restricted:
        same_pred &= (pred[:, None] != 0) | np.eye(pred.size, dtype=bool)
    both = np.count_nonzero(same_target & same_pred)
    split, merge = both / np.count_nonzero(same_target), both / np.count_nonzero(same_pred)
    v_rand = 2 * split * merge / (split + merge)
    return RandScores(1 - v_rand, v_rand, split, merge)


def test_pixel_error_hand_computed():
    target = np.array([[0, 255, 255, 0]] * 4, dtype=np.uint8)  # challenge labels are 0/255
    pred = (target > 0).astype(np.int64)
    pred[0, 0], pred[1, 1], pred[3, 3] = 1, 0, 1  # three of the 16 pixels flipped
    assert pixel_error(pred, target) == pytest.approx(3 / 16)
    assert pixel_error(torch.as_tensor(pred), torch.as_tensor(target)) == pytest.approx(3 / 16)
    assert pixel_error(target, target) == 0.0
    # multi-class labels compared as values: 2 of 4 differ
    assert pixel_error(np.array([0, 1, 2, 2]), np.array([0, 2, 1, 2]), binarize=False) == pytest.approx(0.5)
    # binarized, 1 and 2 are both foreground
    assert pixel_error(np.array([0, 1, 2, 2]), np.array([0, 2, 1, 2])) == 0.0


def test_rand_merge_hand_computed():
    # The prediction has no membrane, so it merges A and B into one segment P (16 px). Restricted to the
    # 12 true-foreground pixels, the contingency table n_ij (rows: prediction, columns: truth) is
    #          A   B
    #     P    8   4        s = [12], t = [8, 4]
    # sum n_ij^2 = 64 + 16 = 80, sum s^2 = 144, sum t^2 = 64 + 16 = 80
    # split = 80 / 80 = 1 (nothing split), merge = 80 / 144 = 5/9,
    # V_rand = 80 / (0.5 * 144 + 0.5 * 80) = 160 / 224 = 5/7, Rand error = 2/7.
    scores = rand_scores(ALL_FOREGROUND, TWO_CELLS)
    assert scores.v_rand_split == pytest.approx(1.0)
    assert scores.v_rand_merge == pytest.approx(5 / 9)
    assert scores.v_rand == pytest.approx(5 / 7)
    assert scores.rand_error == pytest.approx(2 / 7)
    assert rand_error(ALL_FOREGROUND, TWO_CELLS) == pytest.approx(2 / 7)
    # V_rand is the harmonic mean of split and merge
    assert scores.v_rand == pytest.approx(2 * 1 * (5 / 9) / (1 + 5 / 9))


def test_rand_split_hand_computed_with_singletons():
    # The truth is one 16 px cell; the prediction draws a membrane through it (column 2), giving segments
    # P1 (columns 0-1, 8 px), P2 (column 3, 4 px) and 4 predicted-background pixels, each its own singleton.
    #          T
    #     P1   8
    #     P2   4
    #     4 singletons, 1 each        s = [8, 4, 1, 1, 1, 1], t = [16]
    # sum n_ij^2 = 64 + 16 + 4 = 84, sum s^2 = 84, sum t^2 = 256
    # split = 84 / 256 = 21/64, merge = 84 / 84 = 1, V_rand = 168 / 340 = 42/85, Rand error = 43/85.
    scores = rand_scores(TWO_CELLS, ALL_FOREGROUND)
    assert scores.v_rand_split == pytest.approx(21 / 64)
    assert scores.v_rand_merge == pytest.approx(1.0)
    assert scores.v_rand == pytest.approx(42 / 85)
    assert scores.rand_error == pytest.approx(43 / 85)


def test_rand_perfect_prediction_and_membrane_width_are_free():
    assert rand_scores(TWO_CELLS, TWO_CELLS) == RandScores(0.0, 1.0, 1.0, 1.0)
    # A thicker true membrane (columns 2-3) than predicted (column 2) changes only true-background pixels,
    # which the foreground-restricted score ignores: still perfect.
    thick_truth = np.array([[1, 1, 0, 0, 1]] * 4)
    thin_pred = np.array([[1, 1, 0, 1, 1]] * 4)
    assert rand_error(thin_pred, thick_truth) == pytest.approx(0.0)
    assert rand_error(thin_pred, thick_truth, foreground_restricted=False) > 0.0
    # but a predicted membrane thicker than the true one splits off singletons
    assert rand_error(thick_truth, thin_pred) > 0.0


def test_rand_not_restricted_hand_computed():
    # Truth: top row cell (segment 1, 2 px), bottom row background (segment 0, 2 px); prediction all cell.
    # All 4 pixels count, label 0 is an ordinary segment: n = [[2, 2]], s = [4], t = [2, 2]
    # sum n^2 = 8, sum s^2 = 16, sum t^2 = 8: split 1, merge 1/2, V_rand = 16/24 = 2/3.
    truth = np.array([[1, 1], [0, 0]])
    pred = np.ones((2, 2))
    scores = rand_scores(pred, truth, foreground_restricted=False)
    assert scores.v_rand_split == pytest.approx(1.0)
    assert scores.v_rand_merge == pytest.approx(0.5)
    assert scores.rand_error == pytest.approx(1 / 3)
    assert rand_error(pred, truth) == pytest.approx(0.0)  # restricted: the 2 true cell pixels stay together


def test_rand_instance_labels_and_touching_cells():
    # Two touching true cells (ids 7 and 9, 8 px each) without a membrane between them.
    truth = np.array([[7, 7, 9, 9]] * 4)
    # As a binary mask the truth is one component, so an all-foreground prediction looks perfect ...
    assert rand_error(ALL_FOREGROUND, truth) == pytest.approx(0.0)
    # ... but with instance ground truth it merges them: n = [[8, 8]], s = [16], t = [8, 8]
    # sum n^2 = 128, sum s^2 = 256, sum t^2 = 128: split 1, merge 1/2, V_rand = 256/384 = 2/3.
    scores = rand_scores(ALL_FOREGROUND, truth, is_instance=(False, True))
    assert scores.v_rand_split == pytest.approx(1.0)
    assert scores.v_rand_merge == pytest.approx(0.5)
    assert scores.rand_error == pytest.approx(1 / 3)
    # Instance ids are arbitrary: relabelling the prediction changes nothing.
    pred = np.array([[3, 3, 5, 5]] * 4)
    assert rand_error(pred, truth, is_instance=True) == pytest.approx(0.0)
    assert rand_error(pred * 1000 + 7, truth, is_instance=True) == pytest.approx(0.0)


def test_rand_connectivity():
    pred = np.array([[1, 0], [0, 1]])  # touching only diagonally
    truth = np.array([[1, 0], [0, 2]])
    assert rand_error(pred, truth, is_instance=(False, True), connectivity=1) == pytest.approx(0.0)
    # 8-connectivity merges the two: n = [[1, 1]], s = [2], t = [1, 1]: V_rand = 2 * 2 / (4 + 2) = 2/3
    assert rand_error(pred, truth, is_instance=(False, True), connectivity=2) == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("foreground_restricted", [True, False])
def test_rand_matches_pair_counting(seed, foreground_restricted):
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, 4, size=(7, 6))
    truth = rng.integers(0, 3, size=(7, 6))
    expected = pair_counting_scores(pred, truth, foreground_restricted)
    scores = rand_scores(pred, truth, foreground_restricted=foreground_restricted, is_instance=True)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_empty_masks_give_finite_documented_values():
    empty, full = np.zeros((4, 4)), np.ones((4, 4))
    assert rand_scores(empty, empty) == RandScores(0.0, 1.0, 1.0, 1.0)
    assert rand_scores(full, empty) == RandScores(0.0, 1.0, 1.0, 1.0)  # nothing evaluated
    # Empty prediction of a 16 px cell: 16 singletons, sum n^2 = 16, sum s^2 = 16, sum t^2 = 256
    # split = 1/16, merge = 1, V_rand = 32 / 272 = 2/17.
    scores = rand_scores(empty, full)
    assert scores.v_rand_split == pytest.approx(1 / 16)
    assert scores.v_rand == pytest.approx(2 / 17)
    assert pixel_error(empty, empty) == 0.0 and pixel_error(empty, full) == 1.0

    batch_empty, batch_full = empty[None, None], full[None, None]
    assert dice_score(batch_empty, batch_empty).item() == 1.0
    assert dice_score(batch_full, batch_empty).item() == 0.0
    assert iou_score(batch_empty, batch_empty).item() == 1.0
    scores = confusion_scores(batch_empty, batch_empty, ("sensitivity", "specificity", "accuracy", "precision"))
    assert all(torch.isfinite(value).all() for value in scores.values())
    assert scores["sensitivity"].item() == 1.0 and scores["accuracy"].item() == 1.0
    assert confusion_scores(batch_empty, batch_full, "sensitivity")["sensitivity"].item() == 0.0

    metric = RandErrorMetric()
    metric(torch.zeros(2, 2, 4, 4), torch.zeros(2, 2, 4, 4))
    assert torch.isfinite(metric.aggregate()).all()


def test_dice_iou_confusion_hand_computed():
    # label maps [B, 1, H, W]: prediction TWO_CELLS (12 foreground px) against all-foreground truth (16 px)
    pred = torch.as_tensor(TWO_CELLS)[None, None]
    truth = torch.ones(1, 1, 4, 4)
    # background: truth empty, prediction not -> 0; foreground: 2*12/(12+16) = 6/7, IoU 12/16
    torch.testing.assert_close(dice_score(pred, truth, num_classes=2), torch.tensor([[0.0, 6 / 7]]))
    torch.testing.assert_close(iou_score(pred, truth, num_classes=2, include_background=False), torch.tensor([[0.75]]))
    # single-channel binary masks give the foreground score directly, 0/255 allowed
    torch.testing.assert_close(dice_score(pred * 255, truth), torch.tensor([[6 / 7]]))
    scores = confusion_scores(pred, truth, ("sensitivity", "specificity", "accuracy"))
    assert scores["sensitivity"].item() == pytest.approx(12 / 16)
    assert scores["specificity"].item() == 1.0  # no true negatives to get wrong
    assert scores["accuracy"].item() == pytest.approx(12 / 16)


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="same shape"):
        rand_error(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="same shape"):
        pixel_error(np.ones((4, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="non-negative"):
        rand_error(-np.ones((4, 4)), np.ones((4, 4)), is_instance=True)
    with pytest.raises(ValueError, match="integer"):
        rand_error(np.full((4, 4), 0.5), np.ones((4, 4)), is_instance=True)
    with pytest.raises(ValueError, match="connectivity"):
        rand_error(np.ones((4, 4)), np.ones((4, 4)), connectivity=3)
    with pytest.raises(ValueError, match="is_instance"):
        rand_error(np.ones((4, 4)), np.ones((4, 4)), is_instance=(True,))
    with pytest.raises(ValueError, match="empty"):
        pixel_error(np.ones((0,)), np.ones((0,)))
    with pytest.raises(ValueError):
        RandErrorMetric(metric_name="rand_index")
    with pytest.raises(ValueError, match="empty masks"):
        confusion_scores(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), ("mcc",))
    with pytest.raises(ValueError, match="foreground_channel"):
        PixelErrorMetric(foreground_channel=2)(torch.ones(1, 2, 4, 4), torch.ones(1, 2, 4, 4))
    with pytest.raises(ValueError, match="spatial shape"):
        RandErrorMetric()(torch.ones(1, 2, 4, 4), torch.ones(1, 2, 4, 5))
    with pytest.raises(ValueError, match="instance label maps"):
        RandErrorMetric(is_instance=True)(torch.ones(1, 2, 4, 4), torch.ones(1, 2, 4, 4))


def test_metric_classes_aggregate_over_batch():
    # image 0 perfect, image 1 the merge example (Rand error 2/7; pixel error 4/16, the membrane column)
    y_pred = torch.stack([one_hot_2d(TWO_CELLS), one_hot_2d(ALL_FOREGROUND)])
    y = torch.stack([one_hot_2d(TWO_CELLS), one_hot_2d(TWO_CELLS)])

    rand_metric = RandErrorMetric(foreground_channel=1)
    per_image = rand_metric(y_pred, y)
    assert per_image.shape == (2, 1)
    torch.testing.assert_close(per_image, torch.tensor([[0.0], [2 / 7]]))
    assert rand_metric.aggregate().item() == pytest.approx(1 / 7)
    torch.testing.assert_close(rand_metric.aggregate("none"), torch.tensor([[0.0], [2 / 7]]))
    rand_metric(y_pred[1:], y[1:])  # a second iteration accumulates
    assert rand_metric.aggregate().item() == pytest.approx((0 + 2 / 7 + 2 / 7) / 3)
    rand_metric.reset()
    # label maps [B, 1, H, W] and lists of channel-first tensors give the same values
    labels_pred, labels_y = y_pred.argmax(1, keepdim=True), y.argmax(1, keepdim=True)
    rand_metric(labels_pred, labels_y)
    assert rand_metric.aggregate().item() == pytest.approx(1 / 7)
    rand_metric.reset()
    rand_metric(list(y_pred), list(labels_y))
    assert rand_metric.aggregate().item() == pytest.approx(1 / 7)

    merge_metric = RandErrorMetric(metric_name="v_rand_merge")
    merge_metric(y_pred, y)
    assert merge_metric.aggregate().item() == pytest.approx((1 + 5 / 9) / 2)

    pixel_metric = PixelErrorMetric(foreground_channel=1)
    torch.testing.assert_close(pixel_metric(y_pred, y), torch.tensor([[0.0], [0.25]]))
    assert pixel_metric.aggregate().item() == pytest.approx(0.125)
    assert pixel_metric.aggregate("sum").item() == pytest.approx(0.25)
    # multi-class: compare argmax labels of 3-class one-hot; 1 of 4 pixels differs
    three_class_pred = torch.nn.functional.one_hot(torch.tensor([[[0, 1], [2, 2]]]), 3).permute(0, 3, 1, 2)
    three_class_y = torch.nn.functional.one_hot(torch.tensor([[[0, 1], [2, 1]]]), 3).permute(0, 3, 1, 2)
    assert PixelErrorMetric(foreground_channel=None)(three_class_pred, three_class_y).item() == pytest.approx(0.25)


def test_per_image_metrics_share_aggregate():
    from transforms.metrics import ConfusionScoreMetric

    y_pred = torch.stack([one_hot_2d(TWO_CELLS), one_hot_2d(ALL_FOREGROUND)])
    y = torch.stack([one_hot_2d(TWO_CELLS), one_hot_2d(TWO_CELLS)])
    for metric in (PixelErrorMetric(get_not_nans=True), RandErrorMetric(), ConfusionScoreMetric("accuracy")):
        assert isinstance(metric, PerImageMetric)
        with pytest.raises(ValueError, match=f"{type(metric).__name__} has nothing to aggregate"):
            metric.aggregate()
    pixel_metric = PixelErrorMetric(get_not_nans=True)
    pixel_metric(y_pred, y)
    value, not_nans = pixel_metric.aggregate()
    assert value.item() == pytest.approx(0.125) and not_nans.item() == 2
    torch.testing.assert_close(pixel_metric.aggregate("none")[0], torch.tensor([[0.0], [0.25]]))


def test_rand_metric_with_instance_ground_truth():
    y_pred = one_hot_2d(ALL_FOREGROUND)[None]
    y = torch.as_tensor(np.array([[7, 7, 9, 9]] * 4))[None, None]
    metric = RandErrorMetric(is_instance=(False, True))
    assert metric(y_pred, y).item() == pytest.approx(1 / 3)


def test_ignite_handlers_on_engine():
    batches = [
        {"pred": [one_hot_2d(TWO_CELLS)], "label": [one_hot_2d(TWO_CELLS)]},
        {"pred": [one_hot_2d(ALL_FOREGROUND), one_hot_2d(TWO_CELLS)], "label": [one_hot_2d(TWO_CELLS)] * 2},
    ]
    engine = Engine(lambda engine, batch: batch)
    PixelError(output_transform=from_engine(["pred", "label"])).attach(engine, "pixel_error")
    RandError(output_transform=from_engine(["pred", "label"])).attach(engine, "rand_error")
    RandError(metric_name="v_rand_split", output_transform=from_engine(["pred", "label"])).attach(engine, "split")
    engine.run(batches, max_epochs=1)

    # three images: perfect, merged (pixel error 1/4, Rand error 2/7, split 1), perfect
    assert engine.state.metrics["pixel_error"] == pytest.approx(0.25 / 3)
    assert engine.state.metrics["rand_error"] == pytest.approx((2 / 7) / 3)
    assert engine.state.metrics["split"] == pytest.approx(1.0)
    details = engine.state.metric_details["rand_error"]
    assert details.shape == (3, 1)
    torch.testing.assert_close(details[:, 0], torch.tensor([0.0, 2 / 7, 0.0]))
    assert lower_is_better(0.1, 0.2) and not lower_is_better(0.3, 0.2)


def test_speed_512x512():
    rng = np.random.default_rng(0)
    # blob-like cells: thresholded smooth noise gives hundreds of components in both maps
    truth = ndimage.gaussian_filter(rng.standard_normal((512, 512)), 3) > 0
    pred = ndimage.gaussian_filter(rng.standard_normal((512, 512)), 3) > 0
    start = time.perf_counter()
    scores = rand_scores(pred, truth)
    pixel_error(pred, truth)
    elapsed = time.perf_counter() - start
    assert elapsed < 10.0  # generous: catches an O(pixels^2) algorithm, not machine noise
    assert 0.0 < scores.rand_error < 1.0


def test_isbi_labels(isbi_dir):
    truth = np.array(Image.open(isbi_dir / "label" / "0.png"))  # 255 = cell interior, 0 = membrane
    assert rand_error(truth, truth) == pytest.approx(0.0)
    assert pixel_error(truth // 255, truth) == 0.0
    # Growing the cells by one pixel closes some thin membranes: only merges, split stays 1 ...
    grown = rand_scores(ndimage.binary_dilation(truth > 0), truth)
    assert grown.v_rand_split == pytest.approx(1.0) and 0.0 < grown.rand_error < 0.1
    # ... shrinking them thickens the predicted membranes: the singletons are only splits, merge stays 1.
    shrunk = rand_scores(ndimage.binary_erosion(truth > 0), truth)
    assert shrunk.v_rand_merge == pytest.approx(1.0) and 0.0 < shrunk.rand_error < 0.1
    # removing all membranes merges every cell
    start = time.perf_counter()
    merged = rand_scores(np.ones_like(truth), truth)
    assert time.perf_counter() - start < 10.0
    assert merged.v_rand_split == pytest.approx(1.0) and merged.rand_error > 0.5
