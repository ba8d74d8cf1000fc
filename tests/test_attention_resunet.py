"""Tests for the Attention Residual-UNet of Zhang et al. (Acta Optica Sinica 2020) and its ablation switches."""

import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.nets.attentionunet import AttentionBlock

from custom_networks import AttentionResUNet
from custom_networks.attention_resunet import AttentionGate, DecoderStage, DoubleConvBlock, ResidualBlock

# torch >= 2.10 deprecates TorchScript; the bundles still export scripted models, so scripting is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")

TINY = (4, 8, 16, 32, 64)  # depth 4 like the default, few channels
CONFIGS = [(False, False), (True, False), (False, True), (True, True)]  # (use_residual, use_attention), Table 2
CONFIG_IDS = ["unet", "residual", "attention", "both"]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def expected_parameter_count(
    in_channels, out_channels, features, use_residual=True, use_attention=True, spatial_dims=2
) -> int:
    """Hand count: 3x3 convs with bias + batch norm (2 per channel), 1x1 shortcuts, 2x2 up-convs, gates, output."""
    k3, k2 = 3**spatial_dims, 2**spatial_dims

    def block(c_in, c_out):
        total = c_in * c_out * k3 + c_out + 2 * c_out + c_out * c_out * k3 + c_out + 2 * c_out
        return total + (c_in * c_out + c_out if use_residual else 0)

    total, previous = 0, in_channels
    for f in features:
        total += block(previous, f)
        previous = f
    for coarse, fine in zip(features[1:], features[:-1]):
        total += coarse * fine * k2 + fine  # up-convolution
        if use_attention:
            inter = max(fine // 2, 1)
            total += fine * inter + (fine * inter + inter) + (inter + 1)  # W_d, W_u + b1, W + b2
        total += block(2 * fine, fine)
    return total + features[0] * out_channels + out_channels


# --- shapes -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("out_channels", [1, 3])
def test_forward_2d_shape_binary_and_k_class(out_channels):
    torch.manual_seed(0)
    net = AttentionResUNet(in_channels=2, out_channels=out_channels, features=TINY).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 2, 32, 48))
    assert y.shape == (2, out_channels, 32, 48)


def test_forward_3d_shape_and_attention_maps():
    torch.manual_seed(0)
    net = AttentionResUNet(spatial_dims=3, in_channels=1, out_channels=2, features=(4, 8, 16)).eval()
    x = torch.randn(1, 1, 16, 16, 8)
    with torch.no_grad():
        logits, maps = net.forward_with_attention(x)
    assert logits.shape == (1, 2, 16, 16, 8)
    assert [tuple(m.shape) for m in maps] == [(1, 1, 16, 16, 8), (1, 1, 8, 8, 4)]
    assert all(isinstance(m, nn.Conv3d) for m in (net.output_conv, net.input_block.shortcut))


def test_attention_maps_range_shapes_and_logits():
    torch.manual_seed(0)
    net = AttentionResUNet(features=TINY).eval()
    x = torch.randn(2, 1, 64, 32)
    with torch.no_grad():
        logits, maps = net.forward_with_attention(x)
        assert torch.equal(logits, net(x))
    assert [tuple(m.shape) for m in maps] == [(2, 1, 64 // 2**k, 32 // 2**k) for k in range(4)]
    for alpha in maps:
        assert alpha.min() >= 0 and alpha.max() <= 1
        assert alpha.std() > 0  # a real map, not a constant


def test_forward_with_attention_is_empty_without_attention():
    net = AttentionResUNet(features=(2, 4, 8), use_attention=False).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        logits, maps = net.forward_with_attention(x)
        assert maps == [] and torch.equal(logits, net(x))


# --- the four ablation configurations -------------------------------------------------------------------------


@pytest.mark.parametrize("use_residual, use_attention", CONFIGS, ids=CONFIG_IDS)
def test_switches_change_the_architecture_as_stated(use_residual, use_attention):
    net = AttentionResUNet(features=TINY, use_residual=use_residual, use_attention=use_attention)
    depth = len(TINY) - 1
    gates = [m for m in net.modules() if isinstance(m, AttentionGate)]
    residual_blocks = [m for m in net.modules() if isinstance(m, ResidualBlock)]
    plain_blocks = [m for m in net.modules() if type(m) is DoubleConvBlock]
    one_by_one = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(gates) == (depth if use_attention else 0)
    # 2 * depth + 1 blocks; a residual block holds its mapping f as a DoubleConvBlock
    assert len(residual_blocks) == (2 * depth + 1 if use_residual else 0)
    assert len(plain_blocks) == 2 * depth + 1
    # 1x1 convs: shortcuts (one per residual block), 3 per gate, the output conv
    assert len(one_by_one) == len(residual_blocks) + 3 * len(gates) + 1
    for stage in net.decoder_stages:
        assert (stage.attention_gate is not None) == use_attention
    assert count_parameters(net) == expected_parameter_count(1, 1, TINY, use_residual, use_attention)


def test_switches_add_exactly_the_shortcuts_and_the_gates():
    counts = {
        config: count_parameters(AttentionResUNet(features=TINY, use_residual=config[0], use_attention=config[1]))
        for config in CONFIGS
    }
    full = AttentionResUNet(features=TINY)
    shortcut_params = sum(count_parameters(m.shortcut) for m in full.modules() if isinstance(m, ResidualBlock))
    gate_params = sum(count_parameters(m) for m in full.modules() if isinstance(m, AttentionGate))
    assert counts[(True, False)] - counts[(False, False)] == shortcut_params
    assert counts[(False, True)] - counts[(False, False)] == gate_params
    assert counts[(True, True)] - counts[(False, False)] == shortcut_params + gate_params


def test_default_configuration_parameter_count():
    net = AttentionResUNet()  # never run forward on it here
    params = count_parameters(net)
    print(f"AttentionResUNet default (1 -> 1 channel, features 64..1024): {params:,} parameters")
    assert params == expected_parameter_count(1, 1, (64, 128, 256, 512, 1024)) == 32_787_141
    assert net.depth == 4 and net.use_residual and net.use_attention
    dropouts = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 9 and all(m.p == 0.2 for m in dropouts)
    assert isinstance(net.input_block.residual.conv_0.adn.N, nn.BatchNorm2d)


def test_parameter_count_3d_and_k_classes():
    for use_residual, use_attention in CONFIGS:
        net = AttentionResUNet(
            spatial_dims=3,
            in_channels=2,
            out_channels=4,
            features=(3, 6, 12),
            use_residual=use_residual,
            use_attention=use_attention,
        )
        expected = expected_parameter_count(2, 4, (3, 6, 12), use_residual, use_attention, spatial_dims=3)
        assert count_parameters(net) == expected


@pytest.mark.parametrize("use_residual, use_attention", CONFIGS, ids=CONFIG_IDS)
def test_gradients_reach_every_parameter(use_residual, use_attention):
    torch.manual_seed(0)
    net = AttentionResUNet(features=(4, 8, 16), use_residual=use_residual, use_attention=use_attention).train()
    x = torch.randn(2, 1, 32, 32)
    target = (torch.rand(2, 1, 32, 32) > 0.5).float()
    F.binary_cross_entropy_with_logits(net(x), target).backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.count_nonzero(param.grad) > 0, name


# --- blocks checked against hand computations --------------------------------------------------------------------


def test_residual_block_is_f_plus_projection_by_hand():
    torch.manual_seed(0)
    block = ResidualBlock(2, 3, 5, act="relu", norm=None, dropout=0.0).eval()
    x = torch.randn(2, 3, 9, 7)
    conv_0, conv_1 = block.residual.conv_0.conv, block.residual.conv_1.conv
    hidden = F.relu(F.conv2d(x, conv_0.weight, conv_0.bias, padding=1))
    f = F.relu(F.conv2d(hidden, conv_1.weight, conv_1.bias, padding=1))
    wx = F.conv2d(x, block.shortcut.weight, block.shortcut.bias)
    with torch.no_grad():
        assert torch.allclose(block(x), f + wx, atol=1e-6)  # Eq. (3): no activation after the sum
        assert torch.equal(block(x), block.residual(x) + block.shortcut(x))
    assert block.shortcut.kernel_size == (1, 1)


def test_residual_block_with_identity_projection_adds_the_input():
    torch.manual_seed(0)
    block = ResidualBlock(2, 4, 4, act="relu", norm="batch", dropout=0.2).eval()
    with torch.no_grad():
        block.shortcut.weight.copy_(torch.eye(4).reshape(4, 4, 1, 1))
        block.shortcut.bias.zero_()
        x = torch.randn(1, 4, 8, 8)
        assert torch.allclose(block(x) - block.residual(x), x, atol=1e-6)
        assert (block(x) - x).min() >= -1e-6  # f ends with the ReLU, so y - x = f(x) >= 0


def test_plain_block_is_the_residual_mapping():
    x = torch.randn(1, 2, 8, 8)
    torch.manual_seed(1)
    plain = DoubleConvBlock(2, 2, 3, act="relu", norm="batch").eval()
    torch.manual_seed(1)
    residual = ResidualBlock(2, 2, 3, act="relu", norm="batch").eval()
    with torch.no_grad():
        assert torch.equal(plain(x), residual.residual(x))
        assert not torch.allclose(plain(x), residual(x))


def test_attention_gate_is_d_times_alpha_by_hand():
    torch.manual_seed(0)
    gate = AttentionGate(2, skip_channels=6, gating_channels=4)
    d, u = torch.randn(2, 6, 5, 7), torch.randn(2, 4, 5, 7)
    w_d, w_u, w = gate.skip_projection, gate.gating_projection, gate.attention_projection
    assert w_d.bias is None and w_u.bias is not None and w.bias is not None  # b1 and b2 of Eqs. (4)-(5)
    assert w_d.out_channels == w_u.out_channels == 3 and w.out_channels == 1
    with torch.no_grad():
        t = F.relu(F.conv2d(d, w_d.weight) + F.conv2d(u, w_u.weight, w_u.bias))  # Eq. (4)
        alpha = torch.sigmoid(F.conv2d(t, w.weight, w.bias))  # Eq. (5)
        output, gate_alpha = gate(d, u)
    assert gate_alpha.shape == (2, 1, 5, 7)
    assert torch.allclose(gate_alpha, alpha, atol=1e-6)
    assert torch.equal(output, d * gate_alpha)  # Eq. (6), alpha broadcast over the channels of d
    assert torch.allclose(output, d * alpha, atol=1e-6)


def test_attention_gate_with_batch_norm_matches_monai_attention_block():
    torch.manual_seed(0)
    ours = AttentionGate(2, skip_channels=6, gating_channels=4, inter_channels=3, norm="batch")
    monai_block = AttentionBlock(2, f_int=3, f_g=4, f_l=6)
    with torch.no_grad():
        monai_block.W_x[0].conv.bias.zero_()  # Eq. (4) has one bias b1: ours keeps it on W_u only
        ours.skip_projection.weight.copy_(monai_block.W_x[0].conv.weight)
        ours.gating_projection.weight.copy_(monai_block.W_g[0].conv.weight)
        ours.gating_projection.bias.copy_(monai_block.W_g[0].conv.bias)
        ours.attention_projection.weight.copy_(monai_block.psi[0].conv.weight)
        ours.attention_projection.bias.copy_(monai_block.psi[0].conv.bias)
    d, u = torch.randn(2, 6, 5, 5), torch.randn(2, 4, 5, 5)
    for mode in (True, False):
        ours.train(mode)
        monai_block.train(mode)
        with torch.no_grad():
            assert torch.allclose(ours(d, u)[0], monai_block(g=u, x=d), atol=1e-5)


def test_decoder_stage_gates_the_skip_with_the_upsampled_map():
    torch.manual_seed(0)
    stage = DecoderStage(2, 8, 4, 4, "relu", None, 0.0, use_residual=True, use_attention=True).eval()
    coarse, skip = torch.randn(1, 8, 4, 4), torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        out, alpha = stage(coarse, skip)
        up = stage.upsample(coarse)
        gated, expected_alpha = stage.attention_gate(skip, up)
        assert torch.equal(alpha, expected_alpha)
        assert torch.equal(out, stage.block(torch.cat([gated, up], dim=1)))
    assert out.shape == (1, 4, 8, 8)


def test_dropout_between_the_two_convolutions_of_every_block():
    net = AttentionResUNet(features=(2, 4, 8))
    blocks = [m for m in net.modules() if type(m) is DoubleConvBlock]
    assert len(blocks) == 5
    dropouts = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 5 and all(type(m) is nn.Dropout and m.p == 0.2 for m in dropouts)
    assert all(isinstance(b.conv_0.adn.D, nn.Dropout) and not hasattr(b.conv_1.adn, "D") for b in blocks)
    assert not any(isinstance(m, nn.Dropout) for m in AttentionResUNet(features=(2, 4, 8), dropout=0.0).modules())
    torch.manual_seed(0)
    x = torch.randn(1, 1, 16, 16)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        net.train()
        assert not torch.equal(net(x), net(x))


# --- TorchScript, input checks, options ---------------------------------------------------------------------------


@pytest.mark.parametrize("use_residual, use_attention", [(True, True), (False, False)], ids=["both", "unet"])
def test_torchscript_matches_eager_and_round_trips(use_residual, use_attention):
    torch.manual_seed(0)
    net = AttentionResUNet(features=TINY, use_residual=use_residual, use_attention=use_attention).eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = torch.randn(1, 1, 32, 48)
    with torch.no_grad():
        expected, expected_maps = net.forward_with_attention(x)
        assert torch.allclose(loaded(x), expected, atol=1e-6)
        logits, maps = loaded.forward_with_attention(x)
    assert torch.allclose(logits, expected, atol=1e-6)
    assert len(maps) == len(expected_maps) == (4 if use_attention else 0)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(maps, expected_maps))
    with pytest.raises((RuntimeError, torch.jit.Error), match=r"multiple of 16 = 2 \*\* 4"):
        loaded(torch.randn(1, 1, 40, 48))


def test_invalid_inputs_raise():
    net = AttentionResUNet(features=TINY)
    message = r"spatial size 40 \(spatial axis 0\).*multiple of 16 = 2 \*\* 4 .*nearby: 32 or 48"
    with pytest.raises(ValueError, match=message):
        net(torch.randn(1, 1, 40, 32))
    with pytest.raises(ValueError, match=r"spatial size 8 \(spatial axis 1\).*16"):
        net(torch.randn(1, 1, 32, 8))
    with pytest.raises(ValueError, match="2 spatial axes"):
        net(torch.randn(1, 1, 32, 32, 32))
    with pytest.raises(ValueError, match="1 input channels, got 3"):
        net.forward_with_attention(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("upsample", ["nontrainable", "pixelshuffle"])
def test_other_upsampling_modes_keep_size_and_script(upsample):
    net = AttentionResUNet(features=(2, 4, 8), upsample=upsample, attention_norm="batch").eval()
    x = torch.randn(1, 1, 16, 24)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (1, 1, 16, 24)
        assert torch.allclose(torch.jit.script(net)(x), y, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": (64,)}, "at least 2"),
        ({"features": (4, 0, 8)}, "positive"),
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"in_channels": 0}, "in_channels"),
        ({"out_channels": 1.0}, "out_channels"),
        ({"dropout": 1.0}, "dropout"),
        ({"upsample": "bilinear"}, "upsample"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttentionResUNet(**{"features": (2, 4, 8), **kwargs})
