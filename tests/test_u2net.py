"""Tests for U²-Net (Qin et al., Pattern Recognition 2020): RSU blocks, side outputs, fusion, configurations."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from custom_networks import U2Net
from custom_networks.u2net import U2NET_LITE, ResidualUBlock

# torch >= 2.10 deprecates TorchScript; the bundles still export scripted models, so scripting is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")

# three stages: RSU-3 (1 pooling inside), RSU-3 at 1/2 (1 pooling), RSU-2F at 1/4 -> sizes must be multiples of 4
TINY = dict(
    features=(4, 8, 8), mid_features=(2, 4, 4), decoder_mid_features=(2, 4), heights=(3, 3, 2), dilated_stages=1
)


def make_net(**kwargs) -> U2Net:
    torch.manual_seed(0)
    return U2Net(**{"in_channels": 1, "out_channels": 2, **TINY, **kwargs})


def randn(*shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def dilations(convs) -> list[int]:
    return [conv.conv.dilation[0] for conv in convs]


# --- RSU blocks ---------------------------------------------------------------------------------------------------


def test_rsu7_structure():
    block = ResidualUBlock(2, in_channels=3, mid_channels=32, out_channels=64, height=7, dilated=False)
    assert len(block.encoder) == 6 and len(block.decoder) == 6
    assert dilations(block.encoder) == [1] * 6 and block.bottom.conv.dilation == (2, 2)
    assert dilations(block.decoder) == [1] * 6
    assert block.encoder[0].conv.in_channels == 64 and block.decoder[-1].conv.out_channels == 64
    assert all(conv.conv.in_channels == 64 for conv in block.decoder)  # cat of two mid maps
    # 5 poolings inside: a 64 x 64 input reaches 2 x 2 at e_6 and e_7
    seen = []
    block.bottom.register_forward_hook(lambda m, i, o: seen.append(o.shape[2:]))
    assert block(randn(1, 3, 64, 64)).shape == (1, 64, 64, 64)
    assert seen == [(2, 2)]


def test_rsu4f_dilations_and_no_pooling():
    block = ResidualUBlock(2, in_channels=8, mid_channels=4, out_channels=8, height=4, dilated=True)
    assert dilations(block.encoder) == [1, 2, 4] and block.bottom.conv.dilation == (8, 8)
    assert dilations(block.decoder) == [4, 2, 1]
    seen = []
    block.bottom.register_forward_hook(lambda m, i, o: seen.append(o.shape[2:]))
    assert block(randn(1, 8, 6, 10)).shape == (1, 8, 6, 10)  # any size: no pooling
    assert seen == [(6, 10)]


def test_rsu_is_u_of_x_in_plus_x_in():
    """Silencing the last decoder convolution leaves the residual ``x_in`` (y = U(x_in) + x_in)."""
    block = ResidualUBlock(2, in_channels=3, mid_channels=2, out_channels=4, height=3, dilated=False).eval()
    last = block.decoder[-1]
    with torch.no_grad():
        last.conv.weight.zero_()
        last.conv.bias.zero_()
        last.adn.N.bias.zero_()  # BN(0) = beta = 0 with the initial running statistics, ReLU(0) = 0
        x = randn(2, 3, 8, 8)
        assert torch.allclose(block(x), block.input_conv(x))


def test_rsu_rejects_height_below_two():
    with pytest.raises(ValueError, match="height must be an int >= 2"):
        ResidualUBlock(2, 1, 1, 1, height=1, dilated=False)


# --- the network --------------------------------------------------------------------------------------------------


def test_paper_parameter_counts():
    """Table 1 of the paper: U²-Net 176.3 MB (44.0 M parameters), U²-Net† 4.7 MB (1.1 M)."""
    full = U2Net(in_channels=3, out_channels=1)
    assert count_parameters(full) == 44_009_869
    assert full.size_divisor == 32
    assert count_parameters(U2Net(in_channels=3, out_channels=1, **U2NET_LITE)) == 1_131_181
    stage_kinds = [(b.height, b.dilated) for b in full.encoder]
    assert stage_kinds == [(7, False), (6, False), (5, False), (4, False), (4, True), (4, True)]
    assert [b.input_conv.conv.in_channels for b in full.decoder] == [1024, 1024, 512, 256, 128]  # De_5 .. De_1
    assert [b.input_conv.conv.out_channels for b in full.decoder] == [512, 256, 128, 64, 64]


@pytest.mark.parametrize("out_channels", [1, 3])
def test_output_shape_2d(out_channels):
    net = make_net(out_channels=out_channels).eval()
    with torch.no_grad():
        y = net(randn(2, 1, 16, 24))
    assert y.shape == (2, out_channels, 16, 24) and torch.isfinite(y).all()


def test_output_shape_3d():
    net = make_net(spatial_dims=3).eval()
    with torch.no_grad():
        y = net(randn(1, 1, 8, 4, 12))
    assert y.shape == (1, 2, 8, 4, 12)


def test_side_outputs_and_fusion():
    net = make_net().eval()
    x = randn(2, 1, 16, 16)
    with torch.no_grad():
        outputs = net.side_outputs(x)
        assert len(outputs) == 1 + 3 and all(o.shape == (2, 2, 16, 16) for o in outputs)
        fused, sides = outputs[0], outputs[1:]
        assert torch.allclose(fused, net.fuse_conv(torch.cat(sides, dim=1)))
        assert torch.allclose(net(x), fused)
    assert net.fuse_conv.weight.shape == (2, 6, 1, 1)
    assert [conv.in_channels for conv in net.side_convs] == [4, 4, 8]  # De_1, De_2, deepest encoder stage


def test_deep_supervision_stacks_outputs_in_training_only():
    net = make_net(deep_supervision=True)
    x = randn(2, 1, 16, 16)
    net.train()
    stacked = net(x)
    assert stacked.shape == (2, 4, 2, 16, 16)
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (2, 2, 16, 16)
        assert torch.allclose(net(x), net.side_outputs(x)[0])


def test_gradients_reach_every_parameter():
    """A convolution bias right before a batch norm has a zero gradient in training mode in exact arithmetic (the
    norm subtracts the batch mean), so those are only required to be ~0; every other parameter gets a gradient."""
    net = make_net().train()
    net(randn(2, 1, 16, 16)).square().mean().backward()
    pre_norm_biases = {
        f"{name}.conv.bias" for name, m in net.named_modules() if hasattr(m, "adn") and "N" in m.adn._modules
    }
    assert len(pre_norm_biases) == sum(1 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        if name in pre_norm_biases:
            assert p.grad.abs().max() < 1e-5, name
        else:
            assert p.grad.any(), name


def test_torchscript_matches_eager():
    net = make_net().eval()
    scripted = torch.jit.script(net)
    x = randn(2, 1, 16, 24)
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-6)
        for a, b in zip(scripted.side_outputs(x), net.side_outputs(x)):
            assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(torch.jit.Error, match="multiple of 4"):
        scripted(randn(1, 1, 18, 16))


def test_size_divisor_follows_heights_and_dilated_stages():
    assert make_net().size_divisor == 4
    assert make_net(dilated_stages=0).size_divisor == 4  # RSU-2 at 1/4 pools nothing
    assert make_net(heights=(4, 3, 2)).size_divisor == 4  # 2 poolings at full resolution
    assert make_net(heights=(5, 3, 2)).size_divisor == 8
    assert make_net(dilated_stages=3).size_divisor == 4  # stage pooling only: 2 ** (3 - 1)


def test_invalid_inputs_raise():
    net = make_net()
    with pytest.raises(ValueError, match=r"U2Net: spatial size 18 \(spatial axis 0\) must be a positive multiple of 4"):
        net(randn(1, 1, 18, 16))
    with pytest.raises(ValueError, match="U2Net expects 1 input channels, got 3"):
        net(randn(1, 3, 16, 16))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mid_features=(2, 4)), "mid_features needs 3 entries"),
        (dict(decoder_mid_features=(2, 4, 4)), "decoder_mid_features needs 2 entries"),
        (dict(heights=(3, 1, 2)), "every entry of heights must be >= 2"),
        (dict(dilated_stages=4), r"dilated_stages must be an int in 0..3"),
        (dict(mid_features=(2, 0, 4)), "every entry of mid_features must be a positive int"),
        (dict(dropout=-0.1), r"dropout must be a probability"),
        (dict(spatial_dims=1), "U2Net: spatial_dims must be 2 or 3"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_net(**kwargs)
