"""The papers' losses expressed with MONAI classes, checked against hand computations on tiny tensors.

Attention Residual-UNet (Zhang et al., Acta Optica Sinica 2020, Eq. 7):
``L = 0.5 * BCE + 0.5 * (1 - 2 sum(p y) / (sum p^2 + sum y^2 + 1e-3))`` with ``p = sigmoid(logit)``. The bundle
``attention_resunet_cell_segmentation`` builds it as MONAI's ``DiceCELoss(sigmoid=True, squared_pred=True,
smooth_nr=0, smooth_dr=1e-3, lambda_dice=0.5, lambda_ce=0.5, batch=@dice_batch)``; for a single output channel
``DiceCELoss`` uses ``BCEWithLogitsLoss`` (mean over pixels and images) as its cross-entropy term, and ``batch``
decides whether the Dice sums run over the whole batch (True, the bundle default) or per image (then averaged).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.losses import DiceCELoss

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = REPO_ROOT / "bundles" / "attention_resunet_cell_segmentation" / "configs" / "train.json"

# two 1-channel 2x2 "images": logits and binary targets; the second target is empty
LOGITS = [[[0.0, 2.0], [-1.0, 3.0]], [[-2.0, 0.5], [1.0, -3.0]]]
TARGETS = [[[0.0, 1.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _bce_mean(logits, targets) -> float:
    terms = [
        -(y * math.log(_sigmoid(x)) + (1 - y) * math.log(1 - _sigmoid(x)))
        for image_x, image_y in zip(logits, targets)
        for row_x, row_y in zip(image_x, image_y)
        for x, y in zip(row_x, row_y)
    ]
    return sum(terms) / len(terms)


def _dice_term(pairs) -> float:
    """``1 - 2 sum(p y) / (sum p^2 + sum y^2 + 1e-3)`` over the given (logit, target) pixel pairs."""
    p_y = sum(_sigmoid(x) * y for x, y in pairs)
    p_sq = sum(_sigmoid(x) ** 2 for x, _ in pairs)
    y_sq = sum(y * y for _, y in pairs)
    return 1.0 - 2.0 * p_y / (p_sq + y_sq + 1e-3)


def _pixels(image_x, image_y):
    return [(x, y) for row_x, row_y in zip(image_x, image_y) for x, y in zip(row_x, row_y)]


def paper_loss(logits, targets, batch: bool) -> float:
    """Eq. 7 by hand: the Dice sums over the whole batch (``batch=True``) or per image, then averaged."""
    if batch:
        dice = _dice_term([pair for x, y in zip(logits, targets) for pair in _pixels(x, y)])
    else:
        dice = sum(_dice_term(_pixels(x, y)) for x, y in zip(logits, targets)) / len(logits)
    return 0.5 * _bce_mean(logits, targets) + 0.5 * dice


def _tensors():
    return torch.tensor(LOGITS)[:, None], torch.tensor(TARGETS)[:, None]  # [2, 1, 2, 2]


def _paper_dice_ce(batch: bool) -> DiceCELoss:
    return DiceCELoss(
        sigmoid=True, squared_pred=True, smooth_nr=0.0, smooth_dr=1e-3, lambda_dice=0.5, lambda_ce=0.5, batch=batch
    )


@pytest.mark.parametrize("batch", [True, False])
def test_dice_ce_loss_matches_equation_7_by_hand(batch):
    logits, targets = _tensors()
    expected = paper_loss(LOGITS, TARGETS, batch)
    assert math.isclose(float(_paper_dice_ce(batch)(logits, targets)), expected, rel_tol=1e-5)


def test_batch_and_per_image_sums_differ_on_these_tensors():
    # the empty second target makes the per-image Dice term ~1 (nothing to overlap), the batch term much lower
    assert abs(paper_loss(LOGITS, TARGETS, True) - paper_loss(LOGITS, TARGETS, False)) > 0.05


def test_bundle_loss_is_equation_7():
    parser = ConfigParser()
    parser.read_config(TRAIN_CONFIG)
    loss = parser.get_parsed_content("loss")
    logits, targets = _tensors()
    assert parser.get_parsed_content("dice_batch") is True
    assert math.isclose(float(loss(logits, targets)), paper_loss(LOGITS, TARGETS, batch=True), rel_tol=1e-5)
    parser["dice_batch"] = False
    per_image = parser.get_parsed_content("loss", lazy=False)
    assert math.isclose(float(per_image(logits, targets)), paper_loss(LOGITS, TARGETS, batch=False), rel_tol=1e-5)


def test_gradient_matches_the_hand_formula():
    logits, targets = _tensors()
    logits.requires_grad_(True)
    _paper_dice_ce(batch=True)(logits, targets).backward()
    step = 1e-3
    flat = [list(map(list, image)) for image in LOGITS]
    flat[0][1][0] += step
    numeric = (paper_loss(flat, TARGETS, True) - paper_loss(LOGITS, TARGETS, True)) / step
    assert math.isclose(float(logits.grad[0, 0, 1, 0]), numeric, rel_tol=1e-2)


def test_all_background_batch_gives_a_finite_loss():
    logits = torch.full((2, 1, 4, 4), -4.0, requires_grad=True)
    loss = _paper_dice_ce(batch=True)(logits, torch.zeros(2, 1, 4, 4))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
