"""Tests for the original U-Net (Ronneberger et al. 2015) and its tile-size geometry."""

import io
import math

import pytest
import torch
import torch.nn as nn

from custom_networks import UNet2015
from custom_networks.unet2015 import (
    DoubleConv,
    Up,
    center_crop_to,
    is_valid_tile_size,
    nearest_valid_tile_size,
    unet2015_border,
    unet2015_output_size,
    valid_tile_sizes,
)

# torch >= 2.10 deprecates TorchScript; the bundles still export scripted models, so scripting is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")

TINY = (4, 8, 16, 32, 64)  # depth 4 like the paper, few channels


def expected_parameter_count(in_channels: int, out_channels: int, features, spatial_dims: int = 2) -> int:
    """Parameters of Fig. 1 counted by hand: 3x3 convs, 2x2 up-convs halving channels, final 1x1 conv."""
    k3, k2 = 3**spatial_dims, 2**spatial_dims
    total, previous = 0, in_channels
    for f in features:  # contracting path and bottom: two 3x3 convs each
        total += previous * f * k3 + f + f * f * k3 + f
        previous = f
    for coarse, fine in zip(reversed(features[1:]), reversed(features[:-1])):
        total += coarse * fine * k2 + fine  # up-convolution
        total += 2 * fine * fine * k3 + fine + fine * fine * k3 + fine  # convs after concatenation
    return total + features[0] * out_channels + out_channels


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def paper_net() -> UNet2015:
    torch.manual_seed(0)
    return UNet2015()  # the only full-size instantiation; never run forward on it here


# --- the paper's network ---------------------------------------------------------------------------------------


def test_paper_network_parameter_count(paper_net):
    params = count_parameters(paper_net)
    assert round(params / 1e6, 2) == 31.03
    assert params == expected_parameter_count(1, 2, (64, 128, 256, 512, 1024)) == 31_030_658
    # 31,031,810 is the count for 3 input channels (RGB), often quoted for re-implementations.
    assert expected_parameter_count(3, 2, (64, 128, 256, 512, 1024)) == 31_031_810


def test_paper_network_has_23_conv_layers(paper_net):
    convs = [m for m in paper_net.modules() if isinstance(m, nn.Conv2d)]
    up_convs = [m for m in paper_net.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(convs) + len(up_convs) == 23
    assert sorted(m.kernel_size for m in convs).count((3, 3)) == 18
    assert all(m.kernel_size == (2, 2) and m.stride == (2, 2) for m in up_convs) and len(up_convs) == 4
    assert [m.out_channels for m in up_convs] == [512, 256, 128, 64]  # each halves the channels
    assert all(m.padding == (0, 0) for m in convs)  # unpadded
    assert paper_net.output_conv.kernel_size == (1, 1) and paper_net.output_conv.out_channels == 2


def test_paper_network_he_initialisation(paper_net):
    bottom_conv = paper_net.down_blocks[-1].convs.conv_1.conv  # 1024 -> 1024, 3x3: N = 9 * 1024
    assert bottom_conv.weight.shape == (1024, 1024, 3, 3)
    expected_std = math.sqrt(2.0 / (9 * 1024))
    assert bottom_conv.weight.std().item() == pytest.approx(expected_std, rel=0.01)
    assert bottom_conv.weight.mean().abs().item() < 0.01 * expected_std
    first_up = paper_net.up_blocks[0].upsample.deconv  # 2x2 stride 2: each output sees 1 tap per input channel
    assert first_up.weight.std().item() == pytest.approx(math.sqrt(2.0 / 1024), rel=0.01)
    for module in paper_net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            assert torch.count_nonzero(module.bias) == 0


def test_paper_network_geometry_methods(paper_net):
    assert paper_net.depth == 4
    assert paper_net.border == 92
    assert paper_net.output_size((572, 572)) == (388, 388)
    assert paper_net.output_size(188) == (4,)
    assert paper_net.nearest_valid_tile_size(572) == 572
    assert paper_net.nearest_valid_tile_size(512) == 508
    assert paper_net.nearest_valid_tile_size(512, mode="ceil") == 524
    assert paper_net.is_valid_tile_size((572, 508)) and not paper_net.is_valid_tile_size(512)
    assert paper_net.valid_tile_sizes(500, 540) == [508, 524, 540]


def test_parameter_count_matches_hand_count_for_other_configs():
    for features, dims in (((4, 8, 16), 2), ((2, 4, 8, 16), 3), ((3, 5), 2)):
        net = UNet2015(spatial_dims=dims, in_channels=3, out_channels=5, features=features)
        assert count_parameters(net) == expected_parameter_count(3, 5, features, dims)


# --- geometry helpers --------------------------------------------------------------------------------------------


def test_output_size_hand_computed_values():
    # 572 -> 568 -> 284 -> 280 -> 140 -> 136 -> 68 -> 64 -> 32 -> 28 -> 56-4 -> 104-4 -> 200-4 -> 392-4 = 388
    assert unet2015_output_size(572) == (388,)
    assert unet2015_output_size((572, 188, 1004)) == (388, 4, 820)
    assert unet2015_output_size((100, 64), depth=2) == (60, 24)  # border 6 * 4 - 4 = 20
    assert unet2015_output_size((512, 96), depth=4, padding="same") == (512, 96)
    assert unet2015_border() == 92
    assert [unet2015_border(d) for d in (1, 2, 3, 4, 5)] == [8, 20, 44, 92, 188]
    assert unet2015_border(4, "same") == 0


@pytest.mark.parametrize(
    "size, depth, padding",
    [(190, 4, "valid"), (187, 4, "valid"), (172, 4, "valid"), (60, 4, "valid"), (0, 4, "valid"), (100, 4, "same"),
     (8, 4, "same"), (45, 2, "valid")],
)
def test_output_size_invalid_raises(size, depth, padding):
    with pytest.raises(ValueError, match=f"spatial size {size} "):
        unet2015_output_size(size, depth, padding)
    assert not is_valid_tile_size(size, depth, padding)


def test_bad_helper_arguments_raise():
    with pytest.raises(ValueError, match="padding"):
        unet2015_border(4, "reflect")
    with pytest.raises(ValueError, match="depth"):
        unet2015_output_size(572, depth=0)
    with pytest.raises(ValueError, match="mode"):
        nearest_valid_tile_size(512, mode="round")
    with pytest.raises(ValueError, match="input_size must be an int"):
        unet2015_output_size(572.0)
    with pytest.raises(ValueError, match="input_size must be an int"):
        unet2015_output_size((572, 572.0))
    with pytest.raises(ValueError, match="size must be an int"):
        is_valid_tile_size("572")
    with pytest.raises(ValueError, match="min_size"):
        valid_tile_sizes(300, 200)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_helpers_agree_with_brute_force(depth, padding):
    border = unet2015_border(depth, padding)
    brute = []
    for size in range(1, 420):
        valid = is_valid_tile_size(size, depth, padding)
        if valid:
            brute.append(size)
            assert unet2015_output_size(size, depth, padding) == (size - 2 * border,)
    assert valid_tile_sizes(1, 419, depth, padding) == brute
    assert all(b - a == 2**depth for a, b in zip(brute, brute[1:]))
    for size in range(1, 420):
        ceil = nearest_valid_tile_size(size, depth, padding, mode="ceil")
        assert ceil == min((s for s in brute if s >= size), default=brute[-1] + 2**depth)
        nearest = nearest_valid_tile_size(size, depth, padding)
        assert is_valid_tile_size(nearest, depth, padding)
        if size >= brute[0]:
            floor = nearest_valid_tile_size(size, depth, padding, mode="floor")
            assert floor == max(s for s in brute if s <= size)
            assert abs(nearest - size) == min(abs(floor - size), abs(ceil - size))
        else:
            assert nearest == brute[0]
            with pytest.raises(ValueError, match="no valid tile size"):
                nearest_valid_tile_size(size, depth, padding, mode="floor")


def test_nearest_tie_goes_up():
    assert nearest_valid_tile_size(196) == 204  # 188 and 204 equally far


# --- forward passes with small networks ---------------------------------------------------------------------------


def test_forward_2d_valid_depth4_shape():
    torch.manual_seed(0)
    net = UNet2015(features=TINY).eval()
    x = torch.randn(2, 1, 188, 204)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 2, 4, 20)
    assert net.output_size(x.shape[2:]) == (4, 20)


def test_forward_matches_helper_for_several_sizes():
    torch.manual_seed(0)
    net = UNet2015(features=(2, 4, 8), out_channels=3).eval()
    sizes = valid_tile_sizes(1, 80, depth=2)
    assert sizes[0] == 44  # smallest depth-2 tile: 44 -> 4
    with torch.no_grad():
        for height, width in zip(sizes, reversed(sizes)):
            y = net(torch.randn(1, 1, height, width))
            assert tuple(y.shape[2:]) == unet2015_output_size((height, width), depth=2)
            assert y.shape[1] == 3


def test_forward_3d_valid():
    torch.manual_seed(0)
    net = UNet2015(spatial_dims=3, in_channels=2, out_channels=3, features=(2, 4, 8)).eval()
    x = torch.randn(1, 2, 44, 60, 52)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 3, 4, 20, 12)  # border 20 for depth 2
    assert tuple(y.shape[2:]) == net.output_size(x.shape[2:])


@pytest.mark.parametrize("spatial_dims, size", [(2, (32, 48)), (3, (16, 8, 24))])
def test_forward_same_padding_keeps_size(spatial_dims, size):
    net = UNet2015(spatial_dims=spatial_dims, features=(2, 4, 8, 16), padding="same").eval()
    assert net.border == 0
    with torch.no_grad():
        y = net(torch.randn(1, 1, *size))
    assert tuple(y.shape[2:]) == size
    with pytest.raises(ValueError, match="multiple|odd|size"):
        net(torch.randn(1, 1, *[s + 4 for s in size]))


def test_forward_invalid_input_raises():
    net = UNet2015(features=TINY)
    with pytest.raises(ValueError, match=r"spatial size 190 \(spatial axis 0\).*odd size.*188 or 204"):
        net(torch.randn(1, 1, 190, 188))
    with pytest.raises(ValueError, match=r"spatial size 60 \(spatial axis 1\).*smallest is 188"):
        net(torch.randn(1, 1, 188, 60))
    with pytest.raises(ValueError, match="2 spatial axes"):
        net(torch.randn(1, 188, 188))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = UNet2015(features=(4, 8, 16), norm="batch").train()
    x = torch.randn(2, 1, 60, 76)
    target = torch.randint(0, 2, (2, 20, 36))
    loss = nn.functional.cross_entropy(net(x), target)
    loss.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.count_nonzero(param.grad) > 0, name


def test_dropout_only_after_bottom_block():
    net = UNet2015(features=(2, 4, 8))
    dropouts = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [net.bottom_dropout] and net.bottom_dropout.p == 0.5
    assert isinstance(UNet2015(features=(2, 4, 8), dropout=0.0).bottom_dropout, nn.Identity)
    torch.manual_seed(0)
    x = torch.randn(1, 1, 44, 44)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


def test_torchscript_matches_eager_and_round_trips():
    torch.manual_seed(0)
    net = UNet2015(features=TINY, in_channels=2).eval()
    scripted = torch.jit.script(net)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = torch.randn(1, 2, 188, 204)
    with torch.no_grad():
        expected = net(x)
        assert torch.allclose(scripted(x), expected, atol=1e-6)
        assert torch.allclose(loaded(x), expected, atol=1e-6)
    with pytest.raises((RuntimeError, torch.jit.Error), match="spatial size 190"):
        scripted(torch.randn(1, 2, 190, 188))


@pytest.mark.parametrize("upsample", ["nontrainable", "pixelshuffle"])
def test_other_upsampling_modes_script_and_keep_geometry(upsample):
    net = UNet2015(features=(2, 4, 8), upsample=upsample).eval()
    x = torch.randn(1, 1, 44, 60)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (1, 2, 4, 20)
        assert torch.allclose(torch.jit.script(net)(x), y, atol=1e-6)


def test_channels_last_input():
    torch.manual_seed(0)
    net = UNet2015(in_channels=3, features=TINY).eval()
    x = torch.randn(2, 3, 188, 188)
    with torch.no_grad():
        expected = net(x)
        y = net(x.contiguous(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(y, expected, atol=1e-4)


# --- blocks ----------------------------------------------------------------------------------------------------


def test_center_crop_is_a_view_of_the_center():
    x = torch.arange(2 * 3 * 10 * 9, dtype=torch.float32).reshape(2, 3, 10, 9)
    cropped = center_crop_to(x, [6, 5])
    assert torch.equal(cropped, x[:, :, 2:8, 2:7])
    assert cropped.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    assert center_crop_to(x, [10, 9]) is x
    assert torch.equal(center_crop_to(x, [7, 9]), x[:, :, 1:8])  # odd excess: extra pixel dropped at the end
    with pytest.raises(ValueError, match="larger size"):
        center_crop_to(x, [12, 9])


def test_up_block_crops_skip_and_concatenates():
    up = Up(2, in_channels=8, skip_channels=4, out_channels=4, act="relu", norm=None, padding="valid")
    coarse, skip = torch.randn(1, 8, 10, 12), torch.randn(1, 4, 28, 32)
    out = up(coarse, skip)
    assert out.shape == (1, 4, 16, 20)  # 2 * 10 - 4, 2 * 12 - 4
    assert up.convs.conv_0.conv.in_channels == 8


def test_double_conv_valid_and_same():
    x = torch.randn(1, 3, 20, 22)
    assert DoubleConv(2, 3, 5, "relu", None, "valid")(x).shape == (1, 5, 16, 18)
    assert DoubleConv(2, 3, 5, "relu", None, "same")(x).shape == (1, 5, 20, 22)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": (64,)}, "at least 2"),
        ({"features": (4, 0, 8)}, "positive"),
        ({"padding": "reflect"}, "padding"),
        ({"upsample": "bilinear"}, "upsample"),
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"in_channels": 0}, "in_channels"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet2015(**{"features": (2, 4, 8), **kwargs})
