"""Tests for MCSA-UNet (Liu et al. 2023) and its CBAM-style CSA module."""

import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from custom_networks import ChannelSpatialAttention, MCSAUNet
from custom_networks.mcsa_unet import ChannelAttentionGate, SpatialAttentionGate, UpConcat

# torch >= 2.10 deprecates TorchScript; the bundles still export scripted models, so scripting is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")

TINY = (4, 8, 16, 32, 64)
SWITCHES = {  # Table 1 of the paper: (use_channel_attention, use_spatial_attention, use_residual)
    "unet": (False, False, False),
    "ca": (True, False, False),
    "sa": (False, True, False),
    "res": (False, False, True),
    "mcsa": (True, True, True),
}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def make_net(config: str = "mcsa", **kwargs) -> MCSAUNet:
    ca, sa, res = SWITCHES[config]
    return MCSAUNet(use_channel_attention=ca, use_spatial_attention=sa, use_residual=res, **kwargs)


def batchnorm_unet_parameters(in_channels, out_channels, features, dims=2) -> int:
    """Hand count of a U-Net with 3x3 conv + BN blocks, 2x2 up-convolutions and a 1x1 output convolution."""
    k3, k2 = 3**dims, 2**dims
    total, previous = 0, in_channels
    for f in features:
        total += (previous * k3 + 1) * f + 2 * f + (f * k3 + 1) * f + 2 * f
        previous = f
    for coarse, fine in zip(reversed(features[1:]), reversed(features[:-1])):
        total += (coarse * k2 + 1) * fine  # up-convolution to the skip width
        total += (2 * fine * k3 + 1) * fine + 2 * fine + (fine * k3 + 1) * fine + 2 * fine
    return total + (features[0] + 1) * out_channels


def channel_mlp_parameters(channels: int, ratio: int = 16) -> int:
    hidden = max(1, channels // ratio)
    return (channels + 1) * hidden + (hidden + 1) * channels


def spatial_gate_parameters(dims: int = 2, kernel: int = 7) -> int:
    return 2 * kernel**dims + 1


# --- the CSA block -----------------------------------------------------------------------------------------------


def manual_csa(block: ChannelSpatialAttention, x: torch.Tensor) -> torch.Tensor:
    """F' = F + Ms(A_c) * A_c, A_c = Mc(F) * F, recomputed from the block's weights with plain tensor ops."""
    first, second = block.channel_attention.mlp[0], block.channel_attention.mlp[2]
    w1, b1 = first.weight.flatten(1), first.bias
    w2, b2 = second.weight.flatten(1), second.bias

    def mlp(v):  # v: (B, C)
        return torch.relu(v @ w1.T + b1) @ w2.T + b2

    avg, mx = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
    channel_gate = torch.sigmoid(mlp(avg) + mlp(mx))[:, :, None, None]
    attended = channel_gate * x
    conv = block.spatial_attention.conv.conv
    stacked = torch.stack([attended.mean(dim=1), attended.amax(dim=1)], dim=1)
    spatial_gate = torch.sigmoid(F.conv2d(stacked, conv.weight, conv.bias, padding=3))
    return x + spatial_gate * attended, channel_gate, spatial_gate


def test_csa_matches_manual_recomputation():
    torch.manual_seed(0)
    block = ChannelSpatialAttention(spatial_dims=2, channels=32, reduction_ratio=4)
    x = torch.randn(2, 32, 9, 11)
    expected, expected_channel, expected_spatial = manual_csa(block, x)
    enhanced, channel_gate, spatial_gate = block.forward_with_gates(x)
    assert torch.allclose(enhanced, expected, atol=1e-5)
    assert torch.allclose(channel_gate, expected_channel, atol=1e-6)
    assert torch.allclose(spatial_gate, expected_spatial, atol=1e-6)
    assert torch.allclose(block(x), expected, atol=1e-5)


def test_csa_gates_shapes_and_range_2d_and_3d():
    torch.manual_seed(0)
    block = ChannelSpatialAttention(spatial_dims=2, channels=16)
    x = 10 * torch.randn(3, 16, 12, 8)  # large values push the sigmoids towards the ends of [0, 1]
    enhanced, channel_gate, spatial_gate = block.forward_with_gates(x)
    assert enhanced.shape == x.shape
    assert channel_gate.shape == (3, 16, 1, 1)
    assert spatial_gate.shape == (3, 1, 12, 8)
    for gate in (channel_gate, spatial_gate):
        assert gate.min() >= 0 and gate.max() <= 1
    block3d = ChannelSpatialAttention(spatial_dims=3, channels=16)
    x3d = torch.randn(2, 16, 6, 5, 4)
    enhanced, channel_gate, spatial_gate = block3d.forward_with_gates(x3d)
    assert enhanced.shape == x3d.shape
    assert channel_gate.shape == (2, 16, 1, 1, 1) and spatial_gate.shape == (2, 1, 6, 5, 4)
    assert block3d.spatial_attention.conv.conv.weight.shape == (1, 2, 7, 7, 7)


def test_csa_hand_computed_value_with_constant_gates():
    block = ChannelSpatialAttention(spatial_dims=2, channels=4, reduction_ratio=2)
    with torch.no_grad():
        for param in block.parameters():
            param.zero_()  # every gate becomes sigmoid(0) = 0.5
    x = torch.arange(2 * 4 * 3 * 3, dtype=torch.float32).reshape(2, 4, 3, 3)
    assert torch.allclose(block(x), 1.25 * x)  # F + 0.5 * (0.5 * F)
    block.use_residual = False
    assert torch.allclose(block(x), 0.25 * x)


def test_csa_switches():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    plain = ChannelSpatialAttention(2, 8, use_channel_attention=False, use_spatial_attention=False, use_residual=False)
    assert plain.channel_attention is None and plain.spatial_attention is None and count_parameters(plain) == 0
    enhanced, channel_gate, spatial_gate = plain.forward_with_gates(x)
    assert torch.equal(enhanced, x)
    assert torch.equal(channel_gate, torch.ones(2, 8, 1, 1)) and torch.equal(spatial_gate, torch.ones(2, 1, 6, 6))
    residual_only = ChannelSpatialAttention(2, 8, use_channel_attention=False, use_spatial_attention=False)
    assert torch.equal(residual_only(x), 2 * x)  # Eq. 5 with identity attention
    channel_only = ChannelSpatialAttention(2, 8, reduction_ratio=2, use_spatial_attention=False, use_residual=False)
    assert isinstance(channel_only.channel_attention, ChannelAttentionGate) and channel_only.spatial_attention is None
    assert torch.allclose(channel_only(x), channel_only.channel_attention(x) * x)
    spatial_only = ChannelSpatialAttention(2, 8, use_channel_attention=False, use_residual=False)
    assert torch.allclose(spatial_only(x), spatial_only.spatial_attention(x) * x)
    assert count_parameters(spatial_only) == spatial_gate_parameters()
    assert count_parameters(channel_only) == channel_mlp_parameters(8, 2)


@pytest.mark.parametrize("config", ["mcsa", "unet"])
def test_csa_block_scripts_on_its_own(config):
    torch.manual_seed(0)
    ca, sa, res = SWITCHES[config]
    block = ChannelSpatialAttention(3, 8, 4, 5, "batch", ca, sa, res).eval()
    scripted = torch.jit.script(block)
    x = torch.randn(2, 8, 6, 6, 4)
    with torch.no_grad():
        assert torch.allclose(scripted(x), block(x), atol=1e-6)
        for a, b in zip(scripted.forward_with_gates(x), block.forward_with_gates(x)):
            assert torch.allclose(a, b, atol=1e-6)


def test_channel_gate_mlp_width_and_shared_weights():
    gate = ChannelAttentionGate(2, 64)  # CBAM default r = 16
    assert gate.mlp[0].out_channels == 4 and gate.mlp[2].out_channels == 64
    assert ChannelAttentionGate(2, 8).mlp[0].out_channels == 1  # at least one hidden unit
    assert count_parameters(gate) == channel_mlp_parameters(64)  # one MLP for both pooled descriptors
    with pytest.raises(ValueError, match="reduction_ratio"):
        ChannelAttentionGate(2, 8, reduction_ratio=0)


def test_spatial_gate_norm_option():
    plain = SpatialAttentionGate(2)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert plain.conv.conv.bias is not None
    with_bn = SpatialAttentionGate(2, norm="batch")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == 1
    assert with_bn.conv.conv.bias is None  # BN follows, as in CBAM's code
    assert with_bn(torch.randn(2, 5, 8, 8)).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="odd"):
        SpatialAttentionGate(2, kernel_size=6)


# --- the network -------------------------------------------------------------------------------------------------


def test_default_network_parameter_count():
    net = MCSAUNet()  # paper: RGB input, 2 classes, U-Net widths
    features = (64, 128, 256, 512, 1024)
    plain = batchnorm_unet_parameters(3, 2, features)
    attention = sum(channel_mlp_parameters(f) + spatial_gate_parameters() for f in features[:-1])
    print(f"MCSAUNet default parameters: {count_parameters(net):,}")
    assert count_parameters(net) == plain + attention == 31_088_522
    assert plain == 31_043_586  # the "U-Net" row of Table 1 with batch norm


@pytest.mark.parametrize("config", list(SWITCHES))
def test_switches_change_the_architecture_as_stated(config):
    ca, sa, res = SWITCHES[config]
    net = make_net(config, features=TINY)
    n_channel = sum(isinstance(m, ChannelAttentionGate) for m in net.modules())
    n_spatial = sum(isinstance(m, SpatialAttentionGate) for m in net.modules())
    assert n_channel == (4 if ca else 0) and n_spatial == (4 if sa else 0)  # first 4 levels only, not the bottom
    assert all(level.attention.use_residual == res for level in net.encoder_levels)
    expected = batchnorm_unet_parameters(3, 2, TINY)
    expected += sum(channel_mlp_parameters(f) for f in TINY[:-1]) if ca else 0
    expected += 4 * spatial_gate_parameters() if sa else 0
    assert count_parameters(net) == expected


def test_residual_switch_doubles_level_features():
    torch.manual_seed(0)
    net = make_net("res", features=(4, 8, 16)).eval()
    captured = {}
    net.encoder_levels[0].register_forward_hook(lambda module, inputs, output: captured.update(out=output))
    net(torch.randn(1, 3, 16, 16))
    features, enhanced = captured["out"]
    assert torch.equal(enhanced, 2 * features)


@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 3, 32, 48)), (3, (1, 3, 16, 16, 16))])
def test_output_shape(spatial_dims, shape):
    torch.manual_seed(0)
    net = MCSAUNet(spatial_dims=spatial_dims, out_channels=3, features=TINY).eval()
    with torch.no_grad():
        y = net(torch.randn(*shape))
    assert y.shape == (shape[0], 3) + shape[2:]


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = MCSAUNet(features=TINY, reduction_ratio=2, spatial_gate_norm="batch").train()
    x = torch.randn(2, 3, 32, 32)
    loss = F.cross_entropy(net(x), torch.randint(0, 2, (2, 32, 32)))
    loss.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.count_nonzero(param.grad) > 0, name


def test_forward_with_attention_returns_gates_per_level():
    torch.manual_seed(0)
    net = MCSAUNet(features=TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    logits, channel_gates, spatial_gates = net.forward_with_attention(x)
    assert torch.allclose(logits, net(x))
    assert [g.shape for g in channel_gates] == [(2, f, 1, 1) for f in TINY[:-1]]
    assert [g.shape for g in spatial_gates] == [(2, 1, 32 // 2**level, 32 // 2**level) for level in range(4)]
    for gate in channel_gates + spatial_gates:
        assert gate.min() >= 0 and gate.max() <= 1
    _, channel_gates, spatial_gates = make_net("sa", features=TINY).eval().forward_with_attention(x)
    assert all(torch.equal(g, torch.ones_like(g)) for g in channel_gates)  # disabled: identity gate
    assert not all(torch.equal(g, torch.ones_like(g)) for g in spatial_gates)


@pytest.mark.parametrize("skip_enhanced", [True, False])
def test_skip_connection_carries_enhanced_or_plain_features(skip_enhanced):
    torch.manual_seed(0)
    net = MCSAUNet(features=(4, 8, 16), skip_enhanced_features=skip_enhanced).eval()
    captured = {}
    net.encoder_levels[0].register_forward_hook(lambda module, inputs, output: captured.update(level=output))
    net.decoder[-1].register_forward_pre_hook(lambda module, inputs: captured.update(skip=inputs[1]))
    net(torch.randn(1, 3, 16, 16))
    features, enhanced = captured["level"]
    assert torch.equal(captured["skip"], enhanced if skip_enhanced else features)
    assert not torch.equal(features, enhanced)


def test_decoder_structure():
    net = MCSAUNet(features=TINY)
    assert len(net.decoder) == 4 and all(isinstance(up, UpConcat) for up in net.decoder)
    first_up = net.decoder[0].upsample.deconv
    assert first_up.kernel_size == (2, 2) and first_up.stride == (2, 2) and first_up.out_channels == 32
    assert net.output_conv.kernel_size == (1, 1) and net.output_conv.out_channels == 2
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools == [net.max_pooling] and net.max_pooling.kernel_size == 2


@pytest.mark.parametrize("config", list(SWITCHES))
def test_torchscript_matches_eager(config):
    torch.manual_seed(0)
    net = make_net(config, features=(4, 8, 16)).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(1, 3, 16, 24)
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-6)
        logits, channel_gates, spatial_gates = scripted.forward_with_attention(x)
        eager = net.forward_with_attention(x)
        assert torch.allclose(logits, eager[0], atol=1e-6)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(channel_gates + spatial_gates, eager[1] + eager[2]))


def test_torchscript_round_trip():
    torch.manual_seed(0)
    net = MCSAUNet(features=TINY).eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-6)
    with pytest.raises(torch.jit.Error, match="multiple of 16"):
        loaded(torch.randn(1, 3, 24, 32))


def test_invalid_inputs_raise():
    net = MCSAUNet(features=TINY)
    with pytest.raises(ValueError, match=r"spatial size 24 \(spatial axis 1\).*multiple of 16"):
        net(torch.randn(1, 3, 32, 24))
    with pytest.raises(ValueError, match="multiple of 16"):
        net(torch.randn(1, 3, 8, 32))
    with pytest.raises(ValueError, match="2 spatial axes"):
        net(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="3 input channels"):
        net(torch.randn(1, 1, 32, 32))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": (8,)}, "at least 2"),
        ({"features": (4, 0, 8)}, "positive"),
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"out_channels": 0}, "out_channels"),
        ({"upsample": "bilinear"}, "upsample"),
        ({"reduction_ratio": 0}, "reduction_ratio"),
        ({"spatial_kernel_size": 4}, "kernel_size"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MCSAUNet(**{"features": (4, 8, 16), **kwargs})
