"""Tests for the Deep Residual U-Net of Zhang, Liu and Wang (2018)."""

import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from custom_networks import ResUNet
from custom_networks.resunet import PreActivationResidualUnit

# torch >= 2.10 deprecates TorchScript; the bundles still export scripted models, so scripting is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")

TINY = (4, 8, 16, 32)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def unit_parameters(in_channels: int, out_channels: int, first: bool = False, dims: int = 2) -> int:
    """Hand count of one residual unit: [BN] conv3x3, BN conv3x3 and the 1x1 projection (every unit of these
    networks changes its width or stride)."""
    k3 = 3**dims
    total = (in_channels * k3 + 1) * out_channels + (0 if first else 2 * in_channels)
    total += 2 * out_channels + (out_channels * k3 + 1) * out_channels
    return total + (in_channels + 1) * out_channels


def resunet_parameters(in_channels, out_channels, features, dims=2) -> int:
    total = unit_parameters(in_channels, features[0], first=True, dims=dims)
    total += sum(unit_parameters(a, b, dims=dims) for a, b in zip(features[:-1], features[1:]))
    total += sum(unit_parameters(b + a, a, dims=dims) for a, b in zip(features[:-1], features[1:]))
    return total + (features[0] + 1) * out_channels


def test_paper_network_parameter_count():
    net = ResUNet(in_channels=3, out_channels=1)  # the paper's road network: RGB in, one sigmoid map out
    params = count_parameters(net)
    print(f"ResUNet (3 -> 1) parameters: {params:,}")
    assert params == resunet_parameters(3, 1, (64, 128, 256, 512)) == 8_220_993
    projections = sum(count_parameters(m.shortcut) for m in net.modules() if isinstance(m, PreActivationResidualUnit))
    assert round((params - projections) / 1e6, 1) == 7.8  # the paper's 7.8M leaves the 1x1 shortcuts out


def test_paper_network_layout():
    net = ResUNet()
    assert len(net.encoder) == 4 and len(net.decoder) == 3  # 3 encoding units + bridge, 3 decoding units
    strides = [unit.conv_0[-1].conv.stride for unit in net.encoder]
    assert strides == [(1, 1), (2, 2), (2, 2), (2, 2)]  # strided convolutions replace pooling
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert [unit.conv_1[-1].conv.out_channels for unit in net.decoder] == [256, 128, 64]
    assert [unit.conv_0[0].N.num_features for unit in net.decoder] == [768, 384, 192]  # after concatenation
    assert net.output_conv.kernel_size == (1, 1)


def test_first_unit_has_no_input_preactivation():
    net = ResUNet(features=TINY)
    first = net.encoder[0]
    assert len(first.conv_0) == 1 and isinstance(first.conv_0[0].conv, nn.Conv2d)  # conv straight on the image
    for unit in list(net.encoder)[1:] + list(net.decoder):
        adn = unit.conv_0[0]
        assert isinstance(adn.N, nn.BatchNorm2d) and isinstance(adn.A, nn.ReLU)
        assert list(adn._modules) == ["N", "A"]  # norm before activation, before the convolution


def test_residual_unit_matches_manual_computation():
    torch.manual_seed(0)
    unit = PreActivationResidualUnit(2, 3, 5, strides=2)
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for bn in (unit.conv_0[0].N, unit.conv_1[0].N):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    unit.eval()
    x = torch.randn(2, 3, 8, 10)

    def bn_relu(bn, t):
        def per_channel(v):
            return v[None, :, None, None]

        normalised = (t - per_channel(bn.running_mean)) / torch.sqrt(per_channel(bn.running_var) + bn.eps)
        return torch.relu(normalised * per_channel(bn.weight) + per_channel(bn.bias))

    conv0, conv1, projection = unit.conv_0[1].conv, unit.conv_1[1].conv, unit.shortcut.conv
    residual = F.conv2d(bn_relu(unit.conv_0[0].N, x), conv0.weight, conv0.bias, stride=2, padding=1)
    residual = F.conv2d(bn_relu(unit.conv_1[0].N, residual), conv1.weight, conv1.bias, padding=1)
    shortcut = F.conv2d(x, projection.weight, projection.bias, stride=2)
    assert projection.kernel_size == (1, 1)
    with torch.no_grad():
        assert torch.allclose(unit(x), shortcut + residual, atol=1e-5)
    assert unit(x).shape == (2, 5, 4, 5)


def test_identity_shortcut_when_shapes_agree():
    torch.manual_seed(0)
    unit = PreActivationResidualUnit(2, 6, 6).eval()
    assert isinstance(unit.shortcut, nn.Identity)
    x = torch.randn(1, 6, 8, 8)
    with torch.no_grad():
        assert torch.allclose(unit(x), x + unit.conv_1(unit.conv_0(x)))


@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 3, 32, 48)), (3, (1, 3, 16, 16, 16))])
def test_output_shape(spatial_dims, shape):
    torch.manual_seed(0)
    net = ResUNet(spatial_dims=spatial_dims, out_channels=3, features=TINY).eval()
    with torch.no_grad():
        y = net(torch.randn(*shape))
    assert y.shape == (shape[0], 3) + shape[2:]


def test_encoder_halves_resolution_and_decoder_restores_it():
    net = ResUNet(features=TINY).eval()
    shapes = []
    for unit in list(net.encoder) + list(net.decoder):
        unit.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(output.shape[1:])))
    net(torch.randn(1, 3, 32, 32))
    assert shapes == [(4, 32, 32), (8, 16, 16), (16, 8, 8), (32, 4, 4), (16, 8, 8), (8, 16, 16), (4, 32, 32)]


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = ResUNet(features=TINY, upsample="deconv").train()
    x = torch.randn(2, 3, 32, 32)
    F.cross_entropy(net(x), torch.randint(0, 2, (2, 32, 32))).backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.count_nonzero(param.grad) > 0, name


def test_upsampling_modes():
    nearest = ResUNet(features=TINY)
    assert count_parameters(nearest) == resunet_parameters(3, 2, TINY)  # nearest up-sampling: no parameters
    deconv = ResUNet(features=TINY, upsample="deconv")
    transposed = [m for m in deconv.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in transposed] == [
        (32, 32, (2, 2)),
        (16, 16, (2, 2)),
        (8, 8, (2, 2)),
    ]


def test_dropout_option():
    assert not any(isinstance(m, nn.Dropout) for m in ResUNet(features=TINY).modules())
    net = ResUNet(features=TINY, dropout=0.2)
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 2 * 7 - 1  # not before the first convolution


@pytest.mark.parametrize("upsample", ["nontrainable", "deconv"])
def test_torchscript_matches_eager(upsample):
    torch.manual_seed(0)
    net = ResUNet(features=TINY, upsample=upsample).eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = torch.randn(1, 3, 16, 24)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-6)
    with pytest.raises(torch.jit.Error, match="multiple of 8"):
        loaded(torch.randn(1, 3, 20, 24))


def test_invalid_inputs_raise():
    net = ResUNet(features=TINY)
    with pytest.raises(ValueError, match=r"spatial size 20 \(spatial axis 0\).*multiple of 8"):
        net(torch.randn(1, 3, 20, 32))
    with pytest.raises(ValueError, match="2 spatial axes"):
        net(torch.randn(1, 3, 32, 32, 32))
    with pytest.raises(ValueError, match="3 input channels"):
        net(torch.randn(1, 2, 32, 32))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": (8,)}, "at least 2"),
        ({"features": (4, -1)}, "positive"),
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"in_channels": 0}, "in_channels"),
        ({"upsample": "pixelshuffle"}, "upsample"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResUNet(**{"features": TINY, **kwargs})
