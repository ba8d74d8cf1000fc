"""Tests for ResUNet++ (Jha et al., ISM 2019): ASPP, the attention unit, SE residual units, layout and size."""

import pytest
import torch
import torch.nn.functional as F

from custom_networks import ResUNetPlusPlus
from custom_networks.resunetpp import ASPP, ResUNetPPAttention

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")


def test_aspp_sums_dilated_branches_then_projects():
    torch.manual_seed(0)
    aspp = ASPP(2, 3, 4, dilations=(1, 2, 3), norm=None).eval()
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        total = sum(
            F.conv2d(x, b.conv.weight, b.conv.bias, padding=d, dilation=d) for b, d in zip(aspp.branches, (1, 2, 3))
        )
        expected = F.conv2d(total, aspp.project.weight, aspp.project.bias)
        assert torch.allclose(aspp(x), expected, atol=1e-5)


def test_attention_unit_gates_the_coarse_map_with_the_pooled_skip():
    """out = conv(relu(maxpool(conv(relu(skip))) + conv(relu(x)))) * x, without normalisation."""
    torch.manual_seed(0)
    unit = ResUNetPPAttention(2, skip_channels=3, channels=5, act="relu", norm=None).eval()
    skip, x = torch.randn(1, 3, 8, 8), torch.randn(1, 5, 4, 4)

    def conv(seq, t):
        c = seq[1].conv
        return F.conv2d(F.relu(t), c.weight, c.bias, padding=1)

    with torch.no_grad():
        gated = conv(unit.attention_conv, F.max_pool2d(conv(unit.skip_conv, skip), 2) + conv(unit.x_conv, x))
        assert torch.allclose(unit(skip, x), gated * x, atol=1e-5)


def _expected_parameters(cin, cout, f, r=8):
    """Hand count: conv weights and biases, two parameters per batch-norm channel, SE layers with biases."""

    def se(c):
        return c * (c // r) + c // r + (c // r) * c + c

    def unit(c, o, preact=True):
        return (2 * c if preact else 0) + c * o * 9 + o + 2 * o + o * o * 9 + o + c * o + o + 2 * o + se(o)

    def aspp(c, o, k=4):
        return k * (c * o * 9 + 2 * o) + o * o + o

    def attention(s, c):
        return 2 * s + s * c * 9 + c + 2 * (2 * c + c * c * 9 + c)

    depth = len(f) - 2
    total = unit(cin, f[0], preact=False) + sum(unit(f[i - 1], f[i]) for i in range(1, depth + 1))
    total += aspp(f[depth], f[-1])
    previous = f[-1]
    for level in reversed(range(depth)):
        total += attention(f[level], previous) + unit(previous + f[level], f[level + 1])
        previous = f[level + 1]
    return total + aspp(previous, f[0]) + f[0] * cout + cout


def test_parameter_count_at_the_authors_setting():
    net = ResUNetPlusPlus(spatial_dims=2, in_channels=3, out_channels=1)
    count = sum(p.numel() for p in net.parameters())
    assert count == _expected_parameters(3, 1, (16, 32, 64, 128, 256)) == 4_062_427


def test_layout_three_downsamplings_and_decoder_widths():
    net = ResUNetPlusPlus()
    assert net.size_divisor == 8 and len(net.encoder) == 4 and len(net.decoder) == 3
    assert [block.unit.residual.conv_1[1].conv.out_channels for block in net.decoder] == [128, 64, 32]
    with pytest.raises(ValueError, match="at least 3 entries"):
        ResUNetPlusPlus(features=(8, 16))
