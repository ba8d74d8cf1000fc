"""Tests for LG-Net (Lu, Yuan, Xu 2023): the network, its three switchable modules and the memory-safe PCM."""

from __future__ import annotations

import copy
import io
import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import custom_networks.pixel_correlation as pixel_correlation_module
from custom_networks import LGNet, LocalGlobalAttention, PixelCorrelation, pixel_weighted_aggregation
from custom_networks.lgnet import (
    CheckpointableBlock,
    FeatureFusion,
    MRCResidualUnit,
    MultiLevelResidualConv,
    RSEBlock,
    merge_orthants,
    pixel_correlation,
    pixel_correlation_dense,
    split_orthants,
)

# torch >= 2.10 deprecates TorchScript; the bundles still export scripted models, so scripting is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")

# widths >= 12 give every SE block of the RSEs at least two hidden units (reduction 6), so none is dead by chance
TINY = (12, 24, 48)
SWITCHES = {  # Table 2 of the paper: (use_mrc, use_lg_attention, use_feature_fusion)
    "unet": (False, False, False),
    "mrc": (True, False, False),
    "lg": (False, True, False),
    "ff": (False, False, True),
    "lgnet": (True, True, True),
}


def make_net(config: str = "lgnet", features=TINY, **kwargs) -> LGNet:
    mrc, lg, ff = SWITCHES[config]
    torch.manual_seed(0)
    return LGNet(features=features, use_mrc=mrc, use_lg_attention=lg, use_feature_fusion=ff, **kwargs)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def module_types(module: nn.Module) -> set[type]:
    return {type(m) for m in module.modules()}


def randn(*shape, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- hand counts of the parameters -------------------------------------------------------------------------------


def plain_unet_parameters(in_channels: int, out_channels: int, features) -> int:
    """Double 3x3 conv + BN per level, 1x1 conv + bilinear up-sampling, 1x1 output convolution (2D)."""

    def double_conv(cin, cout):
        return (9 * cin + 1) * cout + 2 * cout + (9 * cout + 1) * cout + 2 * cout

    total, previous = 0, in_channels
    for f in features:
        total += double_conv(previous, f)
        previous = f
    for coarse, fine in zip(features[:0:-1], features[-2::-1]):
        total += (coarse + 1) * fine + double_conv(2 * fine, fine)
    return total + (features[0] + 1) * out_channels


def mrc_parameters(c: int) -> int:
    unit = (9 * c + 1) * c + 2 * c + (c + 1) * c + 2 * c  # trunk 3x3 + BN, shortcut 1x1 + BN
    return 3 * unit + (3 * c + 1) * c + 2 * c  # fusion 1x1 on the concatenation + BN


def feature_fusion_parameters(c: int) -> int:
    hidden = c // min(6, c)
    rse = (c + 1) * c + (9 * c + 1) * c + 2 * c + (c + 1) * hidden + (hidden + 1) * c
    return sum((2 * c + 1) * c + 2 * c + (k * k * c + 1) * c + rse for k in (3, 5))


# --- PCM (Eq. 4) ---------------------------------------------------------------------------------------------------


def numpy_pcm(theta: np.ndarray, values: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Eq. (4) pixel by pixel for one 2D map: theta (K, H, W), values (C, H, W)."""
    k = theta.reshape(theta.shape[0], -1).T
    v = values.reshape(values.shape[0], -1).T
    out = np.zeros_like(v)
    for i in range(k.shape[0]):
        weights = []
        for j in range(k.shape[0]):
            cos = k[i] @ k[j] / (np.linalg.norm(k[i]) * np.linalg.norm(k[j]))
            weights.append(max(cos, 0.0))
        weights = np.array(weights)
        out[i] = weights @ v / (weights.sum() + eps)
    return out.T.reshape(values.shape)


def test_dense_pcm_matches_the_equation_pixel_by_pixel():
    theta, values = randn(2, 3, 4, 6, dtype=torch.float64), randn(2, 5, 4, 6, seed=1, dtype=torch.float64)
    dense = pixel_correlation_dense(theta, values)
    for b in range(2):
        np.testing.assert_allclose(dense[b].numpy(), numpy_pcm(theta[b].numpy(), values[b].numpy()), rtol=1e-10)


def test_pcm_hand_computed_three_pixels():
    # theta vectors (1, 0), (0, 1), (1, 1)/sqrt2 direction: cos = [[1, 0, c], [0, 1, c], [c, c, 1]], c = 1/sqrt(2)
    theta = torch.tensor([[[[1.0, 0.0, 2.0]], [[0.0, 3.0, 2.0]]]], dtype=torch.float64)
    values = torch.tensor([[[[1.0, 2.0, 4.0]]]], dtype=torch.float64)
    c = 2**-0.5
    expected = [(1 + c * 4) / (1 + c), (2 + c * 4) / (1 + c), (c * 1 + c * 2 + 4) / (2 * c + 1)]
    out = pixel_correlation(theta, values, chunk_size=2, eps=0.0)
    np.testing.assert_allclose(out.flatten().numpy(), expected, rtol=1e-12)


def test_pcm_negative_cosines_are_cut_and_zero_theta_gives_zero():
    theta = torch.tensor([[[[1.0, -1.0, 0.0]]]], dtype=torch.float64)  # cos(p0, p1) = -1 -> ReLU -> 0
    values = torch.tensor([[[[5.0, 7.0, 9.0]]]], dtype=torch.float64)
    out = pixel_correlation(theta, values, chunk_size=1).flatten()
    # each of the first two pixels only correlates with itself; the third has theta = 0 and gets 0, not NaN
    np.testing.assert_allclose(out.numpy(), [5.0 / (1 + 1e-6), 7.0 / (1 + 1e-6), 0.0], rtol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 5, 16, 47, 48, 1000])
def test_chunked_pcm_equals_dense(chunk_size):
    # 6 x 8 = 48 pixels: 5 and 47 do not divide it, 48 and 1000 give a single chunk
    theta, values = randn(2, 4, 6, 8, dtype=torch.float64), randn(2, 3, 6, 8, seed=1, dtype=torch.float64)
    dense = pixel_correlation_dense(theta, values)
    assert torch.allclose(pixel_correlation(theta, values, chunk_size=chunk_size), dense, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_chunked_pcm_gradients_equal_dense_gradients(checkpoint):
    theta0, values0 = randn(2, 4, 4, 6, dtype=torch.float64), randn(2, 3, 4, 6, seed=1, dtype=torch.float64)
    weights = randn(2, 3, 4, 6, seed=2, dtype=torch.float64)
    grads = []
    for chunked in (False, True):
        theta, values = theta0.clone().requires_grad_(), values0.clone().requires_grad_()
        if chunked:
            out = pixel_correlation(theta, values, chunk_size=5, checkpoint=checkpoint)
        else:
            out = pixel_correlation_dense(theta, values)
        (out * weights).sum().backward()
        grads.append((theta.grad, values.grad))
    for dense_grad, chunked_grad in zip(*grads):
        assert torch.allclose(dense_grad, chunked_grad, rtol=1e-10, atol=1e-12)


def test_pcm_never_forms_more_than_chunk_rows(monkeypatch):
    seen = []
    original = pixel_correlation_module._correlate_rows

    def recording(queries, keys, values, eps):
        seen.append((queries.shape[1], keys.shape[1]))
        return original(queries, keys, values, eps)

    monkeypatch.setattr(pixel_correlation_module, "_correlate_rows", recording)
    pixel_correlation(randn(1, 2, 10, 10), randn(1, 3, 10, 10), chunk_size=32)
    assert seen == [(32, 100), (32, 100), (32, 100), (4, 100)]


def test_pixel_correlation_module_uses_a_bias_free_1x1_theta_and_the_input_as_values():
    module = PixelCorrelation(2, channels=3, key_channels=5, chunk_size=7).eval()
    assert module.theta.weight.shape == (5, 3, 1, 1) and module.theta.bias is None
    x = randn(2, 3, 6, 4)
    with torch.no_grad():
        expected = pixel_correlation_dense(module.theta(x), x)
        assert torch.allclose(module(x), expected, atol=1e-6)


# --- quadrant split and PWA ---------------------------------------------------------------------------------------


def test_split_orthants_2d_order_and_round_trip():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    parts = split_orthants(x, 2)
    assert parts.shape == (8, 3, 2, 3)
    for b, i, j in itertools.product(range(2), range(2), range(2)):
        assert torch.equal(parts[b * 4 + 2 * i + j], x[b, :, 2 * i : 2 * i + 2, 3 * j : 3 * j + 3])
    assert torch.equal(merge_orthants(parts, 2), x)
    assert torch.equal(merge_orthants(parts * 2, 2), x * 2)


def test_split_orthants_3d_order_and_round_trip():
    x = torch.arange(2 * 2 * 4 * 2 * 6, dtype=torch.float32).reshape(2, 2, 4, 2, 6)
    parts = split_orthants(x, 3)
    assert parts.shape == (16, 2, 2, 1, 3)
    for b, i, j, k in itertools.product(range(2), range(2), range(2), range(2)):
        expected = x[b, :, 2 * i : 2 * i + 2, j : j + 1, 3 * k : 3 * k + 3]
        assert torch.equal(parts[b * 8 + 4 * i + 2 * j + k], expected)
    assert torch.equal(merge_orthants(parts, 3), x)


def test_pixel_weighted_aggregation_hand_computed():
    x = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5], requires_grad=True)
    y = torch.tensor([3.0, 0.0, 2.0, 2.0, -4.0], requires_grad=True)
    out = pixel_weighted_aggregation(x, y)
    # (1 + 9) / 4; both 0 -> 0; x clamped to 0 -> y; equal -> the value; y clamped to 0 -> x
    assert torch.allclose(out, torch.tensor([2.5, 0.0, 2.0, 2.0, 0.5]))
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    # d/dx (x^2 + y^2) / (x + y) at (1, 3) = (x^2 + 2xy - y^2) / (x + y)^2 = (1 + 6 - 9) / 16
    assert x.grad[0].item() == pytest.approx(-2 / 16)


# --- LG-Attention -------------------------------------------------------------------------------------------------


def reference_attention_map(module: LocalGlobalAttention, x: torch.Tensor) -> torch.Tensor:
    """``F_LG`` of Eqs. (5)-(9) with the dense PCM and explicit quadrant slicing, at the resolution of ``x``."""
    theta = module.pcm.theta(x)
    global_map = pixel_correlation_dense(theta, x)
    local_map = torch.zeros_like(x)
    h, w = x.shape[2] // 2, x.shape[3] // 2
    for i, j in itertools.product(range(2), range(2)):
        window = (slice(None), slice(None), slice(i * h, (i + 1) * h), slice(j * w, (j + 1) * w))
        local_map[window] = pixel_correlation_dense(theta[window], x[window])
    return pixel_weighted_aggregation(local_map, global_map)


def test_lg_attention_matches_the_equations_at_full_resolution():
    module = LocalGlobalAttention(2, channels=3, attention_size=None, chunk_size=5).eval()
    x = torch.relu(randn(2, 3, 6, 8))
    with torch.no_grad():
        assert torch.allclose(module(x), x * reference_attention_map(module, x), atol=1e-6)


@pytest.mark.parametrize(
    "attention_size, spatial, grid",
    [
        (64, (16, 24), [16, 24]),  # small enough: full resolution
        (None, (128, 128), [128, 128]),
        (8, (16, 16), [8, 8]),  # factor 2
        (8, (32, 16), [8, 4]),  # factor 4 from the largest side, aspect kept
        (4, (12, 12), [4, 4]),  # factor 3
        (4, (10, 6), [4, 2]),  # factor 3: ceil(10/3) = 4, ceil(6/3) = 2
        (4, (14, 6), [4, 2]),  # factor 4: ceil(14/4) = 4, ceil(6/4) = 2 (odd sizes rounded up to even)
        (6, (14, 14), [6, 6]),  # factor 3: ceil(14/3) = 5 -> 6
    ],
)
def test_attention_grid(attention_size, spatial, grid):
    module = LocalGlobalAttention(2, channels=1, attention_size=attention_size)
    assert module._attention_grid(torch.zeros(1, 1, *spatial)) == grid


def test_lg_attention_pooling_path():
    module = LocalGlobalAttention(2, channels=2, attention_size=4, chunk_size=3).eval()
    x = torch.relu(randn(1, 2, 16, 8))  # largest side 16 > 4: average-pooled 4x to 4 x 2
    with torch.no_grad():
        low = reference_attention_map(module, F.avg_pool2d(x, 4))  # F_LG at the pooled size 4 x 2
        attention = F.interpolate(low, size=(16, 8), mode="bilinear", align_corners=False)
        assert torch.allclose(module.attention_map(x), attention, atol=1e-6)
        assert torch.allclose(module(x), x * attention, atol=1e-6)


def test_lg_attention_rejects_odd_unpooled_sizes():
    module = LocalGlobalAttention(2, channels=1, attention_size=None)
    with pytest.raises(ValueError, match=r"spatial size 5 \(spatial axis 1\) must be even"):
        module(torch.ones(1, 1, 4, 5))
    with pytest.raises(ValueError, match="attention_size must be even"):
        LocalGlobalAttention(2, channels=1, attention_size=7)


def test_lg_attention_3d_octants():
    module = LocalGlobalAttention(3, channels=2, attention_size=None, chunk_size=7).eval()
    x = torch.relu(randn(1, 2, 2, 4, 4, dtype=torch.float64)).float()
    with torch.no_grad():
        out = module(x)
        theta = module.pcm.theta(x)
        global_map = pixel_correlation_dense(theta, x)
        local_map = torch.zeros_like(x)
        for i, j, k in itertools.product(range(2), range(2), range(2)):
            window = (slice(None), slice(None), slice(i, i + 1), slice(2 * j, 2 * j + 2), slice(2 * k, 2 * k + 2))
            local_map[window] = pixel_correlation_dense(theta[window], x[window])
        assert torch.allclose(out, x * pixel_weighted_aggregation(local_map, global_map), atol=1e-6)


# --- MRC, RSE and FF blocks ---------------------------------------------------------------------------------------


def randomise_batch_norms(module: nn.Module) -> None:
    generator = torch.Generator().manual_seed(3)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator))
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=generator))
            m.bias.data.copy_(torch.randn(m.num_features, generator=generator))


def batch_norm(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean.view(shape)) * scale.view(shape) + bn.bias.view(shape)


def test_mrc_residual_unit_by_hand():
    unit = MRCResidualUnit(2, channels=3, act="relu", norm="batch").eval()
    randomise_batch_norms(unit)
    x = randn(2, 3, 5, 5)
    trunk_conv, trunk_bn = unit.trunk.conv, unit.trunk.adn.N
    short_conv, short_bn = unit.shortcut.conv, unit.shortcut.adn.N
    assert trunk_conv.kernel_size == (3, 3) and short_conv.kernel_size == (1, 1)
    with torch.no_grad():
        trunk = torch.relu(batch_norm(F.conv2d(x, trunk_conv.weight, trunk_conv.bias, padding=1), trunk_bn))
        shortcut = batch_norm(F.conv2d(x, short_conv.weight, short_conv.bias), short_bn)
        assert torch.allclose(unit(x), trunk + shortcut, atol=1e-5)


def test_mrc_fuses_the_outputs_of_its_three_units():
    block = MultiLevelResidualConv(2, channels=3, act="relu", norm="batch").eval()
    assert len(block.units) == 3 and block.fusion.conv.weight.shape == (3, 9, 1, 1)
    x = randn(2, 3, 5, 5)
    with torch.no_grad():
        o1 = block.units[0](x)
        o2 = block.units[1](o1)
        o3 = block.units[2](o2)
        assert torch.allclose(block(x), block.fusion(torch.cat([o1, o2, o3], dim=1)))
    assert (block(x) >= 0).all()  # the fusion's activation: non-negative skips for LG-Attention


def test_rse_block_is_x_plus_u_times_s_by_hand():
    block = RSEBlock(2, channels=12, norm="batch", reduction=6).eval()
    randomise_batch_norms(block)
    x = randn(2, 12, 5, 5)
    fc1, fc2 = block.squeeze_excitation.fc[0], block.squeeze_excitation.fc[2]
    assert fc1.weight.shape == (2, 12) and fc2.weight.shape == (12, 2)  # reduction 6
    conv = block.conv.conv
    with torch.no_grad():
        projected = F.conv2d(x, block.projection.weight, block.projection.bias)
        u = batch_norm(F.conv2d(projected, conv.weight, conv.bias, padding=1), block.conv.adn.N)
        z = u.mean(dim=(2, 3))  # Eq. (11)
        s = torch.sigmoid(F.linear(torch.relu(F.linear(z, fc1.weight, fc1.bias)), fc2.weight, fc2.bias))  # Eq. (12)
        expected = x + u * s[:, :, None, None]  # Eq. (13)
        assert torch.allclose(block(x), expected, atol=1e-5)


def test_rse_block_dropout_comes_before_the_batch_norm():
    block = RSEBlock(2, channels=6, norm="batch", dropout=0.3)
    assert [type(m) for m in block.conv.adn.children()] == [nn.Dropout, nn.BatchNorm2d]
    assert not any(isinstance(m, nn.Dropout) for m in RSEBlock(2, channels=6, norm="batch").modules())


def test_feature_fusion_weights_shallow_and_deep_features():
    module = FeatureFusion(2, skip_channels=4, deep_channels=6, act="relu", norm="batch").eval()
    assert module.shallow_weights.conv.conv.kernel_size == (3, 3)  # L1
    assert module.deep_weights.conv.conv.kernel_size == (5, 5)  # L2
    assert module.shallow_weights.reduce.conv.weight.shape == (4, 10, 1, 1)
    skip, deep = randn(2, 4, 6, 6), randn(2, 6, 6, 6, seed=1)
    with torch.no_grad():
        concatenated = torch.cat([skip, deep], dim=1)
        expected = torch.cat(
            [skip * module.shallow_weights(concatenated), deep * module.deep_weights(concatenated)], dim=1
        )
        out = module(skip, deep)
    assert out.shape == (2, 10, 6, 6) and torch.allclose(out, expected)


# --- the network --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("out_channels", [1, 3])
def test_output_shape_2d(out_channels):
    net = make_net(out_channels=out_channels).eval()
    with torch.no_grad():
        y = net(randn(2, 1, 32, 48))
    assert y.shape == (2, out_channels, 32, 48) and torch.isfinite(y).all()


def test_output_shape_3d():
    net = make_net(spatial_dims=3, features=(4, 8, 16), attention_size=4).eval()
    with torch.no_grad():
        y = net(randn(1, 1, 8, 16, 8))
    assert y.shape == (1, 1, 8, 16, 8)


@pytest.mark.parametrize("config", list(SWITCHES))
def test_gradients_reach_every_parameter(config):
    net = make_net(config, out_channels=2).train()
    net(randn(2, 1, 16, 16)).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


@pytest.mark.parametrize("config", list(SWITCHES))
def test_switches_change_the_architecture_as_stated(config):
    net = make_net(config, in_channels=2, out_channels=3)
    mrc, lg, ff = SWITCHES[config]
    types = module_types(net)
    assert (MultiLevelResidualConv in types) == mrc
    assert (LocalGlobalAttention in types) == lg
    assert (FeatureFusion in types) == ff
    expected = plain_unet_parameters(2, 3, TINY)
    expected += mrc * sum(mrc_parameters(c) for c in TINY[:-1])  # not at the bottom
    expected += lg * sum(c * c for c in TINY[:-1])  # theta of every skip
    expected += ff * sum(feature_fusion_parameters(c) for c in TINY[:-1])
    assert count_parameters(net) == expected


def test_default_parameter_counts():
    assert count_parameters(LGNet()) == 61_252_285
    assert count_parameters(LGNet()) == (
        plain_unet_parameters(1, 1, (64, 128, 256, 512, 1024))
        + sum(mrc_parameters(c) + c * c + feature_fusion_parameters(c) for c in (64, 128, 256, 512))
    )
    plain = LGNet(use_mrc=False, use_lg_attention=False, use_feature_fusion=False)
    assert count_parameters(plain) == 28_953_409


def test_attention_levels_select_the_attended_skips():
    net = make_net(features=(4, 8, 16, 32), attention_levels=[2, 0])
    assert [isinstance(m, LocalGlobalAttention) for m in net.skip_attention] == [True, False, True]
    assert all(isinstance(m, nn.Identity) for m in make_net("unet").skip_attention)


def test_skips_are_attended_before_the_decoder():
    net = make_net(features=(4, 8)).eval()
    x = randn(1, 1, 8, 8)
    seen = {}
    net.decoder[0].register_forward_pre_hook(lambda module, args: seen.update(skip=args[1]))
    with torch.no_grad():
        net(x)
        skip = net.encoder[0](x)
        assert torch.allclose(seen["skip"], net.skip_attention[0](skip))
        assert not torch.allclose(seen["skip"], skip)


def test_default_attention_size_pools_large_skips_only():
    net = LGNet(features=(4, 8, 16, 32, 64))
    sizes = [
        attention._attention_grid(torch.zeros(1, 1, 512 >> level, 512 >> level))
        for level, attention in enumerate(net.skip_attention)
    ]
    assert sizes == [[32, 32]] * 4  # 512, 256, 128, 64 pooled 16x, 8x, 4x, 2x (the default attention_size, 32)


def set_gradient_checkpointing(net: nn.Module, enabled: bool) -> None:
    for m in net.modules():
        if isinstance(m, CheckpointableBlock):
            m.gradient_checkpointing = enabled


def test_gradient_checkpointing_gives_the_same_step():
    plain = make_net(dropout=0.3, gradient_checkpointing=False).train()
    assert not any(m.gradient_checkpointing for m in plain.modules() if isinstance(m, CheckpointableBlock))
    checkpointed = copy.deepcopy(plain)
    set_gradient_checkpointing(checkpointed, True)
    bn = checkpointed.encoder[0].mrc.units[0].trunk.adn.N
    calls = []
    bn.register_forward_hook(lambda *args: calls.append(1))
    x = randn(2, 1, 16, 16)
    for net in (plain, checkpointed):
        torch.manual_seed(7)  # same dropout masks
        net(x).square().mean().backward()
    assert len(calls) == 2  # forward + recomputation in the backward pass
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name
    for (name, a), b in zip(plain.named_buffers(), checkpointed.buffers()):
        assert torch.equal(a, b), name  # running statistics updated once, as without checkpointing
    default = LGNet(features=TINY)  # on by default
    assert all(m.gradient_checkpointing for m in default.modules() if isinstance(m, CheckpointableBlock))


def test_torchscript_matches_eager_and_skips_checkpointing():
    net = make_net(out_channels=2, attention_size=8).eval()  # gradient checkpointing on (default)
    scripted = torch.jit.script(net)
    x = randn(2, 1, 32, 16)
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-5)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)  # the unused checkpoint paths are stubs: the model can be exported
    buffer.seek(0)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(buffer)(x), net(x), atol=1e-5)
    scripted.train()
    scripted(x).mean().backward()  # the checkpoint branch is not compiled; training still works
    with pytest.raises(torch.jit.Error, match="multiple of 4"):
        scripted(randn(1, 1, 18, 16))


def test_invalid_inputs_raise():
    net = make_net()
    with pytest.raises(ValueError, match=r"LGNet: spatial size 18 \(spatial axis 0\) must be a positive multiple of 4"):
        net(randn(1, 1, 18, 16))
    with pytest.raises(ValueError, match="LGNet expects 1 input channels, got 2"):
        net(randn(1, 2, 16, 16))
    with pytest.raises(ValueError, match=r"LGNet expects an input of shape \(N, C, 2 spatial axes\)"):
        net(randn(1, 1, 16, 16, 16))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(attention_size=7), "attention_size must be even"),
        (dict(attention_size=0), "attention_size must be an even int >= 2 or None"),
        (dict(attention_levels=[0, 2]), r"attention_levels must hold skip levels in 0..1"),
        (dict(attention_levels=[1, 1]), "attention_levels has repeated levels"),
        (dict(pcm_chunk_size=0), "pcm_chunk_size must be a positive int"),
        (dict(upsample="nearest"), "upsample must be one of"),
        (dict(dropout=1.0), r"dropout must be a probability in \[0, 1\)"),
        (dict(spatial_dims=1), "LGNet: spatial_dims must be 2 or 3"),
        (dict(features=(8,)), "features needs at least 2 entries"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LGNet(**{"features": TINY, **kwargs})
