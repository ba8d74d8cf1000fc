"""TverskyFocalLoss (LG-Net, Lu, Yuan, Xu 2023, Eqs. 14-16) against hand computations in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transforms import TverskyFocalLoss

SMOOTH = 1e-5
REL = 1e-7  # MONAI's FocalLoss computes in float32

# two 1-channel 2x2 images: logits and binary targets
BINARY_LOGITS = np.array([[[[0.0, 2.0], [-1.0, 3.0]]], [[[-2.0, 0.5], [1.0, -3.0]]]])
BINARY_TARGETS = np.array([[[[0.0, 1.0], [0.0, 1.0]]], [[[1.0, 0.0], [0.0, 0.0]]]])

# two 3-channel 2x2 images (background / GGO / consolidation) and their class ids
CLASS_LOGITS = np.array(
    [
        [[[2.0, 0.1], [0.3, -1.0]], [[0.5, 1.5], [0.2, 0.0]], [[-1.0, 0.2], [1.0, 2.0]]],
        [[[0.0, 0.0], [1.0, 3.0]], [[1.0, -2.0], [0.5, 0.0]], [[0.0, 2.0], [-0.5, 1.0]]],
    ]
)
CLASS_IDS = np.array([[[[0, 1], [2, 2]]], [[[1, 2], [0, 0]]]])


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def tversky_per_image_and_class(p, g, fp_weight, fn_weight):
    """``1 - TI`` for every (image, channel), sums over the spatial axes."""
    tp = (p * g).sum(axis=(2, 3))
    fp = (p * (1 - g)).sum(axis=(2, 3))
    fn = ((1 - p) * g).sum(axis=(2, 3))
    return 1 - (tp + SMOOTH) / (tp + fp_weight * fp + fn_weight * fn + SMOOTH)


def binary_focal_elements(p, y, gamma=2.0):
    return -(y * (1 - p) ** gamma * np.log(p) + (1 - y) * p**gamma * np.log(1 - p))


def as_tensor(array):
    return torch.tensor(array, dtype=torch.float64)


def test_binary_sigmoid_matches_hand_computation():
    p, y = sigmoid(BINARY_LOGITS), BINARY_TARGETS
    tversky = tversky_per_image_and_class(p, y, 0.5, 0.5).mean()
    focal = binary_focal_elements(p, y).mean()
    loss = TverskyFocalLoss(sigmoid=True)(as_tensor(BINARY_LOGITS), as_tensor(BINARY_TARGETS))
    assert loss.item() == pytest.approx(0.3 * tversky + 0.7 * focal, rel=REL)
    # the focal term is exactly Eq. (15) over the two classes foreground / background (N = all pixels)
    g = np.concatenate([y, 1 - y], axis=1)
    q = np.concatenate([p, 1 - p], axis=1)
    eq15 = -(g * (1 - q) ** 2 * np.log(q)).sum() / y.size
    assert focal == pytest.approx(eq15, rel=1e-12)


def test_sigmoid_is_the_default_activation():
    logits, targets = as_tensor(BINARY_LOGITS), as_tensor(BINARY_TARGETS)
    assert TverskyFocalLoss()(logits, targets).item() == TverskyFocalLoss(sigmoid=True)(logits, targets).item()


def test_alpha_weighs_false_positives_and_beta_false_negatives():
    p, y = sigmoid(BINARY_LOGITS), BINARY_TARGETS
    loss = TverskyFocalLoss(tversky_weight=1.0, focal_weight=0.0, alpha=0.8, beta=0.2)
    expected = tversky_per_image_and_class(p, y, fp_weight=0.8, fn_weight=0.2).mean()
    assert loss(as_tensor(BINARY_LOGITS), as_tensor(BINARY_TARGETS)).item() == pytest.approx(expected, rel=REL)


def test_weights_and_gamma():
    p, y = sigmoid(BINARY_LOGITS), BINARY_TARGETS
    loss = TverskyFocalLoss(tversky_weight=0.5, focal_weight=2.0, gamma=1.0)
    expected = 0.5 * tversky_per_image_and_class(p, y, 0.5, 0.5).mean() + 2.0 * binary_focal_elements(p, y, 1.0).mean()
    assert loss(as_tensor(BINARY_LOGITS), as_tensor(BINARY_TARGETS)).item() == pytest.approx(expected, rel=REL)


def test_three_class_softmax_matches_hand_computation_and_the_paper_up_to_1_over_k():
    p = softmax(CLASS_LOGITS)
    g = np.stack([(CLASS_IDS[:, 0] == c) for c in range(3)], axis=1).astype(float)
    per_class_tversky = tversky_per_image_and_class(p, g, 0.5, 0.5)  # (2 images, 3 classes)
    focal_elements = -(g * (1 - p) ** 2 * np.log(p))
    expected = 0.3 * per_class_tversky.mean() + 0.7 * focal_elements.mean()
    loss = TverskyFocalLoss(softmax=True, to_onehot_y=True)
    value = loss(as_tensor(CLASS_LOGITS), torch.tensor(CLASS_IDS)).item()
    assert value == pytest.approx(expected, rel=REL)
    # Eq. (14) sums 1 - TI over the classes, Eq. (15) averages over the N pixels only: both K times MONAI's means
    pixels = CLASS_IDS.size
    paper = np.mean(0.3 * per_class_tversky.sum(axis=1)) + 0.7 * focal_elements.sum() / pixels
    assert value == pytest.approx(paper / 3, rel=REL)


def test_three_class_without_background():
    p = softmax(CLASS_LOGITS)
    g = np.stack([(CLASS_IDS[:, 0] == c) for c in range(3)], axis=1).astype(float)
    p, g = p[:, 1:], g[:, 1:]  # softmax over all three classes, loss on GGO and consolidation
    expected = 0.3 * tversky_per_image_and_class(p, g, 0.5, 0.5).mean() + 0.7 * (-(g * (1 - p) ** 2 * np.log(p))).mean()
    loss = TverskyFocalLoss(softmax=True, to_onehot_y=True, include_background=False)
    assert loss(as_tensor(CLASS_LOGITS), torch.tensor(CLASS_IDS)).item() == pytest.approx(expected, rel=REL)


def test_sum_reduction():
    p, y = sigmoid(BINARY_LOGITS), BINARY_TARGETS
    tversky = tversky_per_image_and_class(p, y, 0.5, 0.5).sum()
    focal = binary_focal_elements(p, y).mean(axis=(2, 3)).sum()  # MONAI's focal "sum": spatial mean, then sum
    loss = TverskyFocalLoss(reduction="sum")(as_tensor(BINARY_LOGITS), as_tensor(BINARY_TARGETS))
    assert loss.item() == pytest.approx(0.3 * tversky + 0.7 * focal, rel=REL)


def test_gradient_reaches_the_logits_and_perfect_prediction_is_near_zero():
    logits = as_tensor(BINARY_LOGITS).requires_grad_()
    TverskyFocalLoss()(logits, as_tensor(BINARY_TARGETS)).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    confident = as_tensor(np.where(BINARY_TARGETS > 0, 20.0, -20.0))
    assert TverskyFocalLoss()(confident, as_tensor(BINARY_TARGETS)).item() < 1e-6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sigmoid=True, softmax=True), "exactly one of sigmoid and softmax"),
        (dict(sigmoid=False), "exactly one of sigmoid and softmax"),
        (dict(reduction="none"), "reduction must be 'mean' or 'sum'"),
        (dict(focal_weight=-1.0), "focal_weight must be a non-negative number"),
        (dict(gamma=-2.0), "gamma must be a non-negative number"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TverskyFocalLoss(**kwargs)
