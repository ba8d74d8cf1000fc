"""Tests for transforms.losses.WeightedCrossEntropyLoss (U-Net paper eq. 1)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from monai.data import MetaTensor
from transforms.losses import WeightedCrossEntropyLoss


def hand_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[float]]:
    """Three pixels of a [1, 3, 1, 3] image with softmax probabilities chosen to be simple fractions."""
    logits = torch.zeros(1, 3, 1, 3)
    # pixel 0: logits (0, ln 3, 0) -> p = (1/5, 3/5, 1/5), true class 1
    logits[0, 1, 0, 0] = math.log(3.0)
    # pixel 1: logits (ln 2, 0, 0) -> p = (2/4, 1/4, 1/4), true class 0
    logits[0, 0, 0, 1] = math.log(2.0)
    # pixel 2: logits (0, 0, ln 2) -> p = (1/4, 1/4, 2/4), true class 0
    logits[0, 2, 0, 2] = math.log(2.0)
    target = torch.tensor([[[[1, 0, 0]]]])
    weight = torch.tensor([[[[2.0, 5.0, 0.5]]]])
    cross_entropy = [-math.log(3 / 5), -math.log(2 / 4), -math.log(1 / 4)]
    return logits, target, weight, cross_entropy


def test_reductions_by_hand():
    logits, target, weight, ce = hand_case()
    weighted = [2.0 * ce[0], 5.0 * ce[1], 0.5 * ce[2]]
    assert weighted == pytest.approx([1.0216512, 3.4657359, 0.6931472], abs=1e-6)
    total = sum(weighted)
    assert WeightedCrossEntropyLoss(reduction="sum")(logits, target, weight).item() == pytest.approx(total, rel=1e-6)
    assert WeightedCrossEntropyLoss()(logits, target, weight).item() == pytest.approx(total / 3, rel=1e-6)
    assert WeightedCrossEntropyLoss(reduction="weighted_mean")(logits, target, weight).item() == pytest.approx(
        total / 7.5, rel=1e-6
    )
    per_pixel = WeightedCrossEntropyLoss(reduction="none")(logits, target, weight)
    assert per_pixel.shape == (1, 1, 1, 3)
    assert per_pixel.flatten().tolist() == pytest.approx(weighted, rel=1e-6)


def test_target_and_weight_layouts_are_equivalent():
    logits, target, weight, _ = hand_case()
    loss = WeightedCrossEntropyLoss()
    reference = loss(logits, target, weight)
    assert torch.allclose(loss(logits, target[:, 0], weight[:, 0]), reference)
    assert torch.allclose(loss(logits, target.float(), weight), reference)
    assert torch.allclose(loss(logits, MetaTensor(target.float()), MetaTensor(weight)), reference)
    assert type(loss(logits, MetaTensor(target.float()), MetaTensor(weight))) is torch.Tensor
    packed = torch.cat([target.float(), weight], dim=1)
    assert torch.allclose(WeightedCrossEntropyLoss(weight_in_target=True)(logits, packed), reference)


@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (2, 4, 3, 4, 5)])
def test_equals_torch_cross_entropy_with_unit_weight(shape):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=generator)
    target = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=generator)
    expected = F.cross_entropy(logits, target[:, 0])
    assert torch.allclose(WeightedCrossEntropyLoss()(logits, target), expected)
    unit_weight = torch.ones_like(target, dtype=torch.float)
    assert torch.allclose(WeightedCrossEntropyLoss()(logits, target, unit_weight), expected)
    assert torch.allclose(WeightedCrossEntropyLoss(reduction="weighted_mean")(logits, target), expected)
    assert torch.allclose(WeightedCrossEntropyLoss(reduction="sum")(logits, target), expected * target.numel())


def test_ignore_index_matches_torch_and_all_ignored_is_zero():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 4, generator=generator)
    target = torch.randint(0, 3, (2, 1, 4, 4), generator=generator)
    target[0, 0, :2] = 255
    expected = F.cross_entropy(logits, target[:, 0], ignore_index=255)
    assert torch.allclose(WeightedCrossEntropyLoss(ignore_index=255)(logits, target), expected)
    weight = torch.rand(2, 1, 4, 4, generator=generator) + 0.5
    kept = (target != 255).float()
    weighted_mean = WeightedCrossEntropyLoss(ignore_index=255, reduction="weighted_mean")(logits, target, weight)
    per_pixel = F.cross_entropy(logits, target[:, 0], ignore_index=255, reduction="none").unsqueeze(1)
    assert torch.allclose(weighted_mean, (weight * per_pixel).sum() / (weight * kept).sum())
    everything_ignored = torch.full_like(target, 255)
    for reduction in ("mean", "weighted_mean", "sum"):
        value = WeightedCrossEntropyLoss(ignore_index=255, reduction=reduction)(logits, everything_ignored, weight)
        assert value.item() == 0.0


def test_gradient_is_weighted_softmax_minus_one_hot():
    logits, target, weight, _ = hand_case()
    logits.requires_grad_(True)
    WeightedCrossEntropyLoss()(logits, target, weight).backward()
    # d/da_k of w * (-log p_l) = w * (p_k - [k == l]); the mean divides by the 3 pixels
    probabilities = torch.tensor([[1 / 5, 3 / 5, 1 / 5], [2 / 4, 1 / 4, 1 / 4], [1 / 4, 1 / 4, 2 / 4]])
    one_hot = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    expected = torch.tensor([2.0, 5.0, 0.5])[:, None] * (probabilities - one_hot) / 3
    assert torch.allclose(logits.grad[0, :, 0].T, expected, atol=1e-6)


def test_weighted_mean_ignores_weight_scale_and_weight_changes_the_loss():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 2, 6, 6, generator=generator)
    target = torch.randint(0, 2, (1, 1, 6, 6), generator=generator)
    weight = torch.rand(1, 1, 6, 6, generator=generator)
    weighted_mean = WeightedCrossEntropyLoss(reduction="weighted_mean")
    assert torch.allclose(weighted_mean(logits, target, weight), weighted_mean(logits, target, 10 * weight))
    mean = WeightedCrossEntropyLoss()
    assert torch.allclose(mean(logits, target, 10 * weight), 10 * mean(logits, target, weight))
    assert not torch.allclose(mean(logits, target, weight), mean(logits, target))


def test_errors():
    logits, target, weight, _ = hand_case()
    with pytest.raises(ValueError, match="reduction"):
        WeightedCrossEntropyLoss(reduction="max")
    with pytest.raises(ValueError, match="C >= 2"):
        WeightedCrossEntropyLoss()(logits[:, :1], target, weight)
    with pytest.raises(ValueError, match="target shape"):
        WeightedCrossEntropyLoss()(logits, target[..., :2], weight)
    with pytest.raises(ValueError, match="one channel of class ids"):
        WeightedCrossEntropyLoss()(logits, torch.cat([target, target], dim=1), weight)
    with pytest.raises(ValueError, match="integer class ids"):
        WeightedCrossEntropyLoss()(logits, target.float() + 0.5, weight)
    with pytest.raises(ValueError, match="weight shape"):
        WeightedCrossEntropyLoss()(logits, target, weight[..., :2])
    with pytest.raises(ValueError, match="weight_in_target"):
        WeightedCrossEntropyLoss(weight_in_target=True)(logits, target)


def test_half_precision_logits_are_scored_in_float32():
    logits, target, weight, _ = hand_case()
    large = (logits + 60.0).half().requires_grad_(True)  # softmax is shift-invariant
    value = WeightedCrossEntropyLoss(reduction="sum")(large, target, weight)
    assert value.dtype == torch.float32
    # exactly the float32 loss of the (float16-rounded) logits
    assert value.item() == WeightedCrossEntropyLoss(reduction="sum")(large.detach().float(), target, weight).item()
    value.backward()
    assert large.grad.dtype == torch.float16 and torch.isfinite(large.grad).all()
    # the weighted sum over a 128 x 128 tile (10 x ln 2 x 16384) is beyond float16's 65504: inf in float16
    uniform = torch.zeros(1, 2, 128, 128, dtype=torch.float16)
    zeros, tens = torch.zeros(1, 1, 128, 128), torch.full((1, 1, 128, 128), 10.0)
    assert torch.isinf((tens[:, 0].half() * F.cross_entropy(uniform, zeros[:, 0].long(), reduction="none")).sum())
    assert WeightedCrossEntropyLoss()(uniform, zeros, tens).item() == pytest.approx(10 * math.log(2), rel=1e-6)


def test_validate_targets_false_skips_the_integer_check():
    logits, target, weight, _ = hand_case()
    loss = WeightedCrossEntropyLoss(validate_targets=False)
    # a float target with integer values is scored as the integer one; non-integers are truncated unchecked
    assert torch.equal(loss(logits, target.float(), weight), loss(logits, target, weight))
    assert torch.equal(loss(logits, target.float() + 0.5, weight), loss(logits, target, weight))
    with pytest.raises(ValueError, match="dtype torch.bool"):
        loss(logits, target.bool(), weight)


# --- DiceWeightedCELoss: Dice + the weight-map cross entropy --------------------------------------------------


def test_dice_weighted_ce_is_the_sum_of_its_two_terms():
    from monai.losses import DiceLoss

    from transforms.losses import DiceWeightedCELoss

    torch.manual_seed(0)
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    classes = torch.randint(0, 2, (2, 1, 8, 8)).float()
    weight = torch.rand(2, 1, 8, 8) * 5
    target = torch.cat([classes, weight], dim=1)
    loss = DiceWeightedCELoss(lambda_dice=0.5, lambda_ce=2.0)(logits, target)
    dice = DiceLoss(softmax=True, to_onehot_y=True)(logits, classes)
    ce = WeightedCrossEntropyLoss()(logits, classes, weight)
    assert loss.item() == pytest.approx((0.5 * dice + 2.0 * ce).item(), rel=1e-6)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    paper = DiceWeightedCELoss(lambda_dice=0.0)(logits.detach().bfloat16(), target)
    assert paper.dtype == torch.float32 and paper.item() == pytest.approx(ce.item(), rel=1e-2)


def test_dice_weighted_ce_needs_the_weight_channel():
    from transforms.losses import DiceWeightedCELoss

    with pytest.raises(ValueError, match="weight map"):
        DiceWeightedCELoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match=">= 0"):
        DiceWeightedCELoss(lambda_dice=-1)
