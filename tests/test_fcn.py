"""Tests for FCN-8s (Long, Shelhamer, Darrell, CVPR 2015), a Table 1 baseline of the Attention Residual-UNet paper."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from custom_networks import FCN8s
from custom_networks.fcn import bilinear_upsampling_kernel

# torch >= 2.10 deprecates TorchScript; the bundles still export scripted models, so scripting is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")

TINY = dict(features=(4, 8, 16, 32, 32), convs_per_stage=(2, 2, 3, 3, 3), fc_channels=16)
VGG16 = (64, 128, 256, 512, 512)


def expected_parameter_count(in_channels, out_channels, features, convs, fc_channels, fc_kernel=7, dims=2):
    """Layer-by-layer count: VGG 3x3 convs, "fc6"/"fc7", three 1x1 scoring layers, three bias-free deconvs."""
    total, previous = 0, in_channels
    for width, num_convs in zip(features, convs):
        for _ in range(num_convs):
            total += previous * width * 3**dims + width
            previous = width
    total += features[-1] * fc_channels * fc_kernel**dims + fc_channels  # fc6
    total += fc_channels * fc_channels + fc_channels  # fc7
    for scored in (fc_channels, features[-2], features[-3]):  # score_fr, score_pool4, score_pool3
        total += scored * out_channels + out_channels
    final_factor = 2 ** (len(features) - 2)
    total += 2 * out_channels * out_channels * 4**dims  # two 2x up-samplings, kernel 4
    return total + out_channels * out_channels * (2 * final_factor) ** dims


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def tiny_net() -> FCN8s:
    torch.manual_seed(0)
    return FCN8s(spatial_dims=2, in_channels=1, out_channels=3, **TINY)


# --- the paper's network -----------------------------------------------------------------------------------------


def test_paper_network_parameter_count_and_layers():
    with torch.device("meta"):  # 134 M parameters: counted without allocating memory
        net = FCN8s(spatial_dims=2, in_channels=3, out_channels=21)
    params = count_parameters(net)
    print(f"FCN8s (3 -> 21 classes, fc 4096, 7x7 fc6): {params:,} parameters")
    assert params == expected_parameter_count(3, 21, VGG16, (2, 2, 3, 3, 3), 4096) == 134_489_759
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert sum(m.kernel_size == (3, 3) for m in convs) == 13  # VGG-16's 13 conv layers
    assert net.fc6.conv.kernel_size == (7, 7) and net.fc6.conv.out_channels == 4096
    assert net.fc7.conv.kernel_size == (1, 1) and net.fc7.conv.out_channels == 4096
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 5
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in net.modules()) == 2  # after fc6 and fc7
    deconvs = [net.upscore2, net.upscore_pool4, net.upscore_final]
    assert [(m.kernel_size, m.stride, m.padding) for m in deconvs] == [
        ((4, 4), (2, 2), (1, 1)),
        ((4, 4), (2, 2), (1, 1)),
        ((16, 16), (8, 8), (4, 4)),
    ]
    assert all(m.bias is None for m in deconvs)


def test_sane_width_is_much_lighter():
    with torch.device("meta"):
        light = FCN8s(spatial_dims=2, in_channels=1, out_channels=2, fc_channels=1024, fc_kernel_size=3)
    assert count_parameters(light) == expected_parameter_count(1, 2, VGG16, (2, 2, 3, 3, 3), 1024, fc_kernel=3)
    assert count_parameters(light) < 21_000_000


@pytest.mark.parametrize(
    "dims, kwargs",
    [
        (2, dict(in_channels=2, out_channels=4, **TINY)),
        (3, dict(in_channels=1, out_channels=2, features=(2, 4, 4, 8, 8), fc_channels=8, fc_kernel_size=3)),
        (2, dict(in_channels=1, out_channels=2, features=(4, 8, 8), convs_per_stage=(1, 2, 1), fc_channels=8)),
    ],
)
def test_parameter_count_matches_hand_count(dims, kwargs):
    net = FCN8s(spatial_dims=dims, **kwargs)
    features = kwargs["features"]
    convs = kwargs.get("convs_per_stage", (2, 2, 3, 3, 3))
    fc_kernel = kwargs.get("fc_kernel_size", 7)
    in_channels, out_channels, fc_channels = kwargs["in_channels"], kwargs["out_channels"], kwargs["fc_channels"]
    expected = expected_parameter_count(in_channels, out_channels, features, convs, fc_channels, fc_kernel, dims)
    assert count_parameters(net) == expected


# --- shapes, gradients, TorchScript --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dims, size, kwargs",
    [
        (2, (64, 96), TINY),
        (3, (32, 32, 64), dict(features=(2, 4, 4, 8, 8), fc_channels=8, fc_kernel_size=3)),
        (1, (64,), TINY),
        (2, (24, 16), dict(features=(4, 8, 8), convs_per_stage=(1, 1, 1), fc_channels=8)),  # 3 stages: 8 | size
    ],
)
def test_output_is_logits_at_input_size(dims, size, kwargs):
    torch.manual_seed(0)
    net = FCN8s(spatial_dims=dims, in_channels=2, out_channels=3, **kwargs)
    y = net(torch.randn(2, 2, *size))
    assert y.shape == (2, 3, *size) and y.dtype == torch.float32
    assert not torch.allclose(y.softmax(1).sum(1), y.sum(1))  # raw logits, not probabilities


def test_gradients_reach_every_parameter(tiny_net):
    torch.manual_seed(1)
    tiny_net.train()
    tiny_net.zero_grad()
    tiny_net(torch.randn(2, 1, 64, 64)).square().mean().backward()
    for name, param in tiny_net.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_fixed_final_upsampling_switch():
    torch.manual_seed(0)
    net = FCN8s(spatial_dims=2, in_channels=1, out_channels=2, learn_final_upsampling=False, **TINY)
    assert not net.upscore_final.weight.requires_grad
    assert net.upscore2.weight.requires_grad and net.upscore_pool4.weight.requires_grad
    net(torch.randn(1, 1, 32, 32)).sum().backward()
    assert net.upscore_final.weight.grad is None
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert count_parameters(net) == count_parameters(FCN8s(spatial_dims=2, in_channels=1, out_channels=2, **TINY))


def test_norm_switch_adds_batch_norm_after_every_conv_but_scores():
    net = FCN8s(spatial_dims=2, norm="batch", **TINY)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 13 + 2  # VGG convs + fc6 + fc7
    assert not any(isinstance(m, nn.BatchNorm2d) for m in FCN8s(spatial_dims=2, **TINY).modules())


def test_dropout_switch():
    assert not any(isinstance(m, nn.Dropout) for m in FCN8s(dropout=0.0, **TINY).modules())
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.2 for m in FCN8s(dropout=0.2, **TINY).modules()) == 2


def test_torchscript_matches_eager(tiny_net):
    tiny_net.eval()
    scripted = torch.jit.script(tiny_net)
    x = torch.randn(2, 1, 64, 32)
    with torch.no_grad():
        assert torch.allclose(scripted(x), tiny_net(x), atol=1e-6)
    with pytest.raises(Exception, match="multiple of 32"):
        scripted(torch.randn(1, 1, 48, 32))


# --- the skip architecture (Fig. 3) ---------------------------------------------------------------------------------


def test_fuses_pool3_pool4_and_final_scores_as_sums(tiny_net):
    """FCN-8s = up8(up2(up2(score_fr(fc7(fc6(pool5)))) + score_pool4(pool4)) + score_pool3(pool3))."""
    tiny_net.eval()
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        pools, h = [], x
        for stage in tiny_net.stages:
            h = stage(h)
            pools.append(h)
        pool3, pool4, pool5 = pools[2], pools[3], pools[4]
        assert pool3.shape[2:] == (8, 12) and pool4.shape[2:] == (4, 6) and pool5.shape[2:] == (2, 3)
        assert tiny_net.score_pool3.in_channels == 16 and tiny_net.score_pool4.in_channels == 32
        score32 = tiny_net.score_fr(tiny_net.fc7(tiny_net.fc6(pool5)))
        score16 = tiny_net.upscore2(score32) + tiny_net.score_pool4(pool4)
        score8 = tiny_net.upscore_pool4(score16) + tiny_net.score_pool3(pool3)
        assert score8.shape == (2, 3, 8, 12)
        expected = tiny_net.upscore_final(score8)
        assert torch.allclose(tiny_net(x), expected, atol=1e-6)


@pytest.mark.parametrize("score_layer", ["score_pool3", "score_pool4", "score_fr"])
def test_each_scale_contributes_to_the_output(score_layer):
    torch.manual_seed(0)
    net = FCN8s(spatial_dims=2, in_channels=1, out_channels=2, **TINY).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        before = net(x)
        getattr(net, score_layer).weight.add_(0.5)
        assert not torch.allclose(net(x), before, atol=1e-4)


# --- bilinear initialisation of the deconvolutions (Sec. 3.3) -----------------------------------------------------


def test_bilinear_kernel_values():
    assert torch.allclose(bilinear_upsampling_kernel(2, 1), torch.tensor([0.25, 0.75, 0.75, 0.25]))
    kernel8 = bilinear_upsampling_kernel(8, 1)
    assert kernel8.shape == (16,) and torch.allclose(kernel8[:2], torch.tensor([1 / 16, 3 / 16]))
    profile = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(bilinear_upsampling_kernel(2, 2), torch.outer(profile, profile))
    assert bilinear_upsampling_kernel(2, 3).shape == (4, 4, 4)
    with pytest.raises(ValueError, match="factor"):
        bilinear_upsampling_kernel(0, 2)


@pytest.mark.parametrize("dims, layer, factor", [(2, "upscore2", 2), (2, "upscore_final", 8), (3, "upscore2", 2)])
def test_upsampling_starts_as_linear_interpolation(dims, layer, factor):
    net = FCN8s(spatial_dims=dims, out_channels=3, features=(2, 2, 2, 2, 2), fc_channels=2, fc_kernel_size=1)
    deconv = getattr(net, layer)
    scores = torch.randn(2, 3, *([6] * dims))
    mode = "bilinear" if dims == 2 else "trilinear"
    with torch.no_grad():
        up = deconv(scores)
        reference = F.interpolate(scores, scale_factor=factor, mode=mode, align_corners=False)
    assert up.shape == reference.shape
    interior = (slice(None), slice(None)) + (slice(factor, -factor),) * dims  # the border sees zero padding
    assert torch.allclose(up[interior], reference[interior], atol=1e-5)
    off_diagonal = deconv.weight.clone()
    for c in range(3):
        off_diagonal[c, c] = 0
    assert off_diagonal.abs().sum() == 0  # classes are not mixed at initialisation


# --- bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(48, 64), (64, 40), (16, 32)])
def test_indivisible_sizes_raise(tiny_net, size):
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny_net(torch.randn(1, 1, *size))


def test_wrong_number_of_axes_raises(tiny_net):
    with pytest.raises(ValueError, match="spatial axes"):
        tiny_net(torch.randn(1, 1, 32, 32, 32))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(spatial_dims=4), "spatial_dims"),
        (dict(in_channels=0), "in_channels"),
        (dict(features=(4, 8)), "at least 3"),
        (dict(features=(4, 8, 16), convs_per_stage=(1, 2)), "convs_per_stage"),
        (dict(fc_kernel_size=4), "odd"),
        (dict(fc_channels=0), "fc_channels"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FCN8s(**{**dict(features=(2, 2, 2, 2, 2), fc_channels=2), **kwargs})
