"""Tests for MultiResUNet (Ibtehaz & Rahman, Neural Networks 2020): MultiRes blocks, Res paths, layout and size."""

import pytest
import torch
import torch.nn.functional as F

from custom_networks import MultiResUNet
from custom_networks.multiresunet import MultiResBlock, ResPath, multires_channels

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")


def test_multires_channels_follow_w_over_6_3_2():
    """W = 1.67 U split int(0.167 W), int(0.333 W), int(0.5 W) (Sec. 3.1); block outputs of the paper's widths."""
    assert multires_channels(32, 1.67) == (8, 17, 26)
    assert [sum(multires_channels(u, 1.67)) for u in (32, 64, 128, 256, 512)] == [51, 105, 212, 426, 853]
    with pytest.raises(ValueError, match="at least 1"):
        multires_channels(2, 1.67)


def test_multires_block_matches_hand_computation_without_norm():
    """cat[a, b, c] + conv1x1(x), then ReLU; a, b, c chained 3x3 convolutions with ReLU."""
    torch.manual_seed(0)
    block = MultiResBlock(2, 3, width=12, alpha=1.67, act="relu", norm=None).eval()
    x = torch.randn(2, 3, 10, 10)
    convs = [c.conv for c in block.convs]
    with torch.no_grad():
        a = F.relu(F.conv2d(x, convs[0].weight, convs[0].bias, padding=1))
        b = F.relu(F.conv2d(a, convs[1].weight, convs[1].bias, padding=1))
        c = F.relu(F.conv2d(b, convs[2].weight, convs[2].bias, padding=1))
        short = block.shortcut.conv
        expected = F.relu(torch.cat([a, b, c], 1) + F.conv2d(x, short.weight, short.bias))
        assert torch.allclose(block(x), expected, atol=1e-5)
    assert block.out_channels == sum(multires_channels(12, 1.67)) == expected.shape[1]


def test_res_path_units_are_residual_and_counted():
    torch.manual_seed(0)
    path = ResPath(2, 5, width=4, length=3, act="relu", norm=None).eval()
    assert len(path) == 3
    x = torch.randn(1, 5, 8, 8)
    with torch.no_grad():
        y = x
        for unit in path:
            conv, short = unit.conv.conv, unit.shortcut.conv
            y = F.relu(F.relu(F.conv2d(y, conv.weight, conv.bias, padding=1)) + F.conv2d(y, short.weight, short.bias))
        assert torch.allclose(path(x), y, atol=1e-5)
    with pytest.raises(ValueError, match="length must be a positive int"):
        ResPath(2, 5, 4, 0, "relu", None)


def test_res_path_lengths_shrink_towards_the_bottom():
    """Lengths 4, 3, 2, 1 from the top skip to the bottom one at the paper's depth (Fig. 5)."""
    net = MultiResUNet()
    assert [len(path) for path in net.res_paths] == [4, 3, 2, 1]
    assert [path[0].conv.conv.out_channels for path in net.res_paths] == [32, 64, 128, 256]


def _expected_parameters(in_channels, out_channels, features, alpha=1.67):
    """Hand count with batch norm (weight + bias per channel) and bias-free normalised convolutions."""

    def block(c_in, u):
        c1, c2, c3 = multires_channels(u, alpha)
        total = c_in * c1 * 9 + c1 * c2 * 9 + c2 * c3 * 9 + 2 * (c1 + c2 + c3)  # chained convs + their BNs
        out = c1 + c2 + c3
        return total + c_in * out + 2 * out + 2 * out + 2 * out, out  # shortcut + BN, concat BN, final BN

    def res_path(c_in, u, length):
        total = 0
        for i in range(length):
            c = c_in if i == 0 else u
            total += c * u * 9 + 2 * u + c * u + 2 * u + 2 * u
        return total

    total, previous, outs = 0, in_channels, []
    for level, u in enumerate(features):
        count, previous = block(previous, u)
        total += count
        outs.append(previous)
        if level < len(features) - 1:
            total += res_path(previous, u, len(features) - 1 - level)
    for level in reversed(range(len(features) - 1)):
        u = features[level]
        total += previous * u * 4 + u  # 2x2 transposed conv with bias
        count, previous = block(u + u, u)
        total += count
    return total + previous * out_channels + out_channels


def test_parameter_count_at_the_paper_setting():
    net = MultiResUNet(spatial_dims=2, in_channels=3, out_channels=1)
    count = sum(p.numel() for p in net.parameters())
    assert count == _expected_parameters(3, 1, (32, 64, 128, 256, 512)) == 7_244_774


def test_learns_a_toy_mask_in_3d_too():
    """A few Adam steps on one 3D volume lower the loss (2D is covered by the common network tests)."""
    torch.manual_seed(0)
    net = MultiResUNet(spatial_dims=3, in_channels=1, out_channels=1, features=(6, 12))
    x = torch.randn(2, 1, 8, 8, 8)
    target = (x > 0).float()
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(net(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
