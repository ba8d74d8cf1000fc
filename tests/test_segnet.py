"""Tests for SegNet (Badrinarayanan, Kendall, Cipolla, TPAMI 2017), a Table 1 baseline of the Attention
Residual-UNet paper."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from custom_networks import SegNet
from custom_networks.segnet import SegNetDecoderStage, SegNetEncoderStage

# torch >= 2.10 deprecates TorchScript; the bundles still export scripted models, so scripting is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")

TINY = dict(features=(4, 8, 16, 32), convs_per_stage=(2, 2, 3, 3))
VGG16 = (64, 128, 256, 512, 512)


def expected_parameter_count(in_channels, out_channels, features, convs, dims=2, norm=True):
    """Encoder: VGG 3x3 convs (+ BN); decoder mirrors it, each stage's last conv going to the next finer width; the
    final 3x3 classifier has no BN."""
    per_bn = 2 if norm else 0
    total, previous = 0, in_channels
    for width, num_convs in zip(features, convs):  # encoder
        for _ in range(num_convs):
            total += previous * width * 3**dims + width + per_bn * width
            previous = width
    finer = (out_channels,) + tuple(features[:-1])
    for level, (width, num_convs) in enumerate(zip(features, convs)):  # decoder
        for index in range(num_convs):
            target = finer[level] if index == num_convs - 1 else width
            is_classifier = level == 0 and index == num_convs - 1
            total += width * target * 3**dims + target + (0 if is_classifier else per_bn * target)
    return total


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def tiny_net() -> SegNet:
    torch.manual_seed(0)
    return SegNet(spatial_dims=2, in_channels=1, out_channels=3, **TINY)


# --- the paper's network -----------------------------------------------------------------------------------------


def test_paper_network_parameter_count_and_layers():
    with torch.device("meta"):
        net = SegNet(spatial_dims=2, in_channels=3, out_channels=11)  # CamVid: 11 classes
    params = count_parameters(net)
    print(f"SegNet (3 -> 11 classes): {params:,} parameters")
    assert params == expected_parameter_count(3, 11, VGG16, (2, 2, 3, 3, 3)) == 29_449_355
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 26 and all(m.kernel_size == (3, 3) for m in convs)  # 13 encoder + 13 decoder layers
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 25  # all but the classifier
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    unpools = [m for m in net.modules() if isinstance(m, nn.MaxUnpool2d)]
    assert len(pools) == len(unpools) == 5 and all(p.return_indices for p in pools)
    assert not any(isinstance(m, (nn.ConvTranspose2d, nn.Upsample)) for m in net.modules())  # no learned upsampling
    assert [stage.convs[-1].conv.out_channels for stage in net.decoder] == [512, 256, 128, 64, 11]


@pytest.mark.parametrize(
    "dims, kwargs",
    [(2, dict(in_channels=2, out_channels=4, **TINY)), (3, dict(in_channels=1, out_channels=2, **TINY))],
)
def test_parameter_count_matches_hand_count(dims, kwargs):
    assert count_parameters(SegNet(spatial_dims=dims, **kwargs)) == expected_parameter_count(
        kwargs["in_channels"], kwargs["out_channels"], kwargs["features"], kwargs["convs_per_stage"], dims
    )


def test_convs_per_stage_and_norm_switches():
    net = SegNet(features=(4, 8, 8), convs_per_stage=(1, 2, 3), norm=None)
    assert [len(stage.convs) for stage in net.encoder] == [1, 2, 3]
    assert [len(stage.convs) for stage in net.decoder] == [3, 2, 1]  # mirrored
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert count_parameters(net) == expected_parameter_count(1, 2, (4, 8, 8), (1, 2, 3), norm=False)
    assert sum(isinstance(m, nn.Dropout) for m in SegNet(dropout=0.1, **TINY).modules()) == 2 * (2 + 2 + 3 + 3) - 1


# --- shapes, gradients, TorchScript --------------------------------------------------------------------------------


@pytest.mark.parametrize("dims, size", [(2, (32, 48)), (3, (16, 16, 32)), (1, (64,))])
def test_output_is_logits_at_input_size(dims, size):
    torch.manual_seed(0)
    net = SegNet(spatial_dims=dims, in_channels=2, out_channels=3, **TINY)
    y = net(torch.randn(2, 2, *size))
    assert y.shape == (2, 3, *size)
    assert (y < 0).any() and (y > 1).any()  # plain last convolution: raw logits


def test_gradients_reach_every_parameter(tiny_net):
    torch.manual_seed(1)
    tiny_net.train()
    tiny_net.zero_grad()
    tiny_net(torch.randn(2, 1, 32, 32)).square().mean().backward()
    for name, param in tiny_net.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("dims, size", [(2, (32, 48)), (3, (16, 16, 16))])
def test_torchscript_matches_eager(dims, size):
    torch.manual_seed(0)
    net = SegNet(spatial_dims=dims, in_channels=1, out_channels=2, **TINY).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-6)
    with pytest.raises(Exception, match="multiple of 16"):
        scripted(torch.randn(1, 1, *([24] * dims)))


# --- max un-pooling with the encoder's indices (Sec. 3, Fig. 3) ------------------------------------------------------


def test_unpooling_places_values_at_the_argmax_positions(tiny_net):
    features = torch.tensor(
        [[1.0, 5.0, 0.0, 2.0], [3.0, 2.0, 7.0, 1.0], [0.0, 0.0, 4.0, 9.0], [8.0, 1.0, 3.0, 3.0]]
    ).view(1, 1, 4, 4)
    pooled, indices = tiny_net.encoder[0].max_pooling(features)
    assert torch.equal(pooled.view(2, 2), torch.tensor([[5.0, 7.0], [8.0, 9.0]]))
    assert torch.equal(indices.view(2, 2), torch.tensor([[1, 6], [12, 11]]))  # flat positions in the 4x4 map
    decoded = torch.tensor([[10.0, 20.0], [30.0, 40.0]]).view(1, 1, 2, 2)
    unpooled = tiny_net.decoder[-1].max_unpooling(decoded, indices, [4, 4])
    expected = torch.tensor(
        [[0.0, 10.0, 0.0, 0.0], [0.0, 0.0, 20.0, 0.0], [0.0, 0.0, 0.0, 40.0], [30.0, 0.0, 0.0, 0.0]]
    ).view(1, 1, 4, 4)
    assert torch.equal(unpooled, expected)


def test_decoder_stage_is_unpooling_then_convolutions():
    torch.manual_seed(0)
    stage = SegNetDecoderStage(2, 3, 2, num_convs=2, act="relu", norm=None, last_conv_only=True)
    x, indices = F.max_pool2d(torch.randn(1, 3, 8, 8), 2, 2, return_indices=True)
    sparse = F.max_unpool2d(x, indices, 2, 2)
    first, last = stage.convs[0].conv, stage.convs[1].conv
    hidden = F.relu(F.conv2d(sparse, first.weight, first.bias, padding=1))
    expected = F.conv2d(hidden, last.weight, last.bias, padding=1)
    assert torch.allclose(stage(x, indices, [8, 8]), expected, atol=1e-6)
    assert isinstance(stage.convs[1].conv, nn.Conv2d) and len(stage.convs[1]) == 1  # plain classifier conv


@pytest.mark.parametrize("dims, size", [(2, (32, 32)), (3, (16, 16, 16))])
def test_each_decoder_stage_unpools_with_the_indices_of_its_encoder_stage(dims, size):
    torch.manual_seed(0)
    net = SegNet(spatial_dims=dims, in_channels=1, out_channels=2, **TINY).eval()
    encoder_out, decoder_in, decoder_out = [], [], []

    def record_pooling(module, inputs, output):
        encoder_out.append(output)

    def record_unpooling(module, inputs, output):
        decoder_in.append(inputs)
        decoder_out.append(output)

    hooks = [stage.max_pooling.register_forward_hook(record_pooling) for stage in net.encoder]
    hooks += [stage.max_unpooling.register_forward_hook(record_unpooling) for stage in net.decoder]
    with torch.no_grad():
        net(torch.randn(2, 1, *size))
    for hook in hooks:
        hook.remove()
    depth = len(net.encoder)
    assert torch.equal(decoder_in[0][0], encoder_out[-1][0])  # the decoder starts from the deepest pooled map
    for step in range(depth):
        _, indices = encoder_out[depth - 1 - step]
        assert torch.equal(decoder_in[step][1], indices)
        unpooled = decoder_out[step]
        argmax_mask = torch.zeros_like(unpooled).flatten(2).scatter_(2, indices.flatten(2), 1.0).view_as(unpooled)
        assert (unpooled[argmax_mask == 0] == 0).all()  # sparse: non-zero only at the stored argmax locations
        assert argmax_mask.sum() == unpooled.numel() / 2**dims  # one location per pooling window


def _forward_with_indices(net: SegNet, x: torch.Tensor, level_to_flip: int = -1):
    """SegNet's forward written out; optionally moves every stored argmax of one level to the other column of its
    2x2 window (same windows, wrong positions)."""
    indices, sizes = [], []
    for stage in net.encoder:
        sizes.append(list(x.shape[2:]))
        x, stage_indices = stage(x)
        indices.append(stage_indices)
    if level_to_flip >= 0:
        width = sizes[level_to_flip][-1]
        rows, cols = indices[level_to_flip] // width, indices[level_to_flip] % width
        indices[level_to_flip] = rows * width + (cols ^ 1)
    for step, stage in enumerate(net.decoder):
        level = len(indices) - 1 - step
        x = stage(x, indices[level], sizes[level])
    return x


@pytest.mark.parametrize("level", [0, 3])
def test_other_indices_change_the_output(level):
    torch.manual_seed(0)
    # Training mode: batch statistics keep the untrained tiny network's deep signal from fading (running stats are
    # the identity), so a change at the deepest level is visible at the output.
    net = SegNet(spatial_dims=2, in_channels=1, out_channels=3, **TINY).train()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        reference = net(x)
        assert torch.allclose(_forward_with_indices(net, x), reference, atol=1e-6)  # the wiring of the forward above
        difference = (_forward_with_indices(net, x, level_to_flip=level) - reference).abs()
    assert difference.max() > 0.01 * reference.abs().max()


def test_encoder_stage_returns_pooled_map_and_indices():
    stage = SegNetEncoderStage(3, 1, 2, num_convs=1, act="relu", norm="batch")
    pooled, indices = stage(torch.randn(2, 1, 8, 8, 8))
    assert pooled.shape == indices.shape == (2, 2, 4, 4, 4) and indices.dtype == torch.int64
    assert int(indices.max()) < 8**3


# --- bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(24, 32), (32, 40), (8, 16)])
def test_indivisible_sizes_raise(tiny_net, size):
    with pytest.raises(ValueError, match="multiple of 16"):
        tiny_net(torch.randn(1, 1, *size))


def test_wrong_number_of_axes_raises(tiny_net):
    with pytest.raises(ValueError, match="spatial axes"):
        tiny_net(torch.randn(1, 1, 32))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(spatial_dims=0), "spatial_dims"),
        (dict(out_channels=0), "out_channels"),
        (dict(features=()), "at least 1"),
        (dict(features=(4, 8), convs_per_stage=(2,)), "convs_per_stage"),
        (dict(features=(4, 8), convs_per_stage=(2, 0)), "convs_per_stage"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SegNet(**kwargs)
