"""Tests for BCDU-Net (Azad et al., ICCVW 2019): ConvLSTM, bidirectional merge, dense bottleneck, layout, size."""

import pytest
import torch
import torch.nn.functional as F

from custom_networks import BCDUNet
from custom_networks.bcdunet import BidirectionalConvLSTM, ConvLSTMCell, DenseBottleneck

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")


def _cell_by_hand(cell, x, h, c):
    z = F.conv2d(torch.cat([x, h], 1), cell.gates.weight, cell.gates.bias, padding=1)
    i, f, o, g = z.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def test_convlstm_cell_follows_shi_et_al():
    torch.manual_seed(0)
    cell = ConvLSTMCell(2, 3, 4)
    x, h, c = torch.randn(2, 3, 6, 6), torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    expected_h, expected_c = _cell_by_hand(cell, x, h, c)
    got_h, got_c = cell(x, h, c)
    assert torch.allclose(got_h, expected_h, atol=1e-6) and torch.allclose(got_c, expected_c, atol=1e-6)


def test_bidirectional_convlstm_reads_both_orders_and_concatenates():
    torch.manual_seed(0)
    block = BidirectionalConvLSTM(2, 3, 2)
    a, b = torch.randn(1, 3, 5, 5), torch.randn(1, 3, 5, 5)
    zeros = torch.zeros(1, 2, 5, 5)
    with torch.no_grad():
        h, c = _cell_by_hand(block.forward_cell, a, zeros, zeros)
        forward, _ = _cell_by_hand(block.forward_cell, b, h, c)
        h, c = _cell_by_hand(block.backward_cell, b, zeros, zeros)
        backward, _ = _cell_by_hand(block.backward_cell, a, h, c)
        out = block([a, b])
    assert out.shape == (1, 4, 5, 5)
    assert torch.allclose(out, torch.cat([forward, backward], 1), atol=1e-6)


def test_dense_bottleneck_feeds_every_block_all_earlier_outputs():
    block = DenseBottleneck(2, 5, 6, num_blocks=3, act="relu", norm=None, dropout=None)
    assert [b[0].conv.in_channels for b in block.blocks] == [5, 6, 12]
    assert block(torch.randn(1, 5, 4, 4)).shape == (1, 6, 4, 4)


def _expected_parameters(cin, cout, f, dense=3):
    """Hand count: convolutions with biases, two parameters per batch-norm channel."""

    def conv(c_in, c_out, k=9):
        return c_in * c_out * k + 2 * c_out  # no bias before batch norm

    def pair(c_in, c_out):
        return conv(c_in, c_out) + conv(c_out, c_out)

    total = pair(cin, f[0]) + sum(pair(f[i], f[i + 1]) for i in range(len(f) - 2))
    total += sum(pair(f[-2] if k == 0 else k * f[-1], f[-1]) for k in range(dense))
    for level in reversed(range(len(f) - 1)):
        w, hidden = f[level], f[level] // 2
        total += conv(f[level + 1], w, k=4)  # 2x2 transposed conv + BN
        total += 2 * ((w + hidden) * 4 * hidden * 9 + 4 * hidden)  # two ConvLSTM cells
        total += pair(2 * hidden, w)
    return total + f[0] * cout + cout


def test_parameter_count_at_the_paper_setting():
    net = BCDUNet(spatial_dims=2, in_channels=1, out_channels=1)
    assert sum(p.numel() for p in net.parameters()) == _expected_parameters(1, 1, (64, 128, 256, 512)) == 23_372_545
