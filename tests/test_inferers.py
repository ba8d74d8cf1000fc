"""Overlap-tile inference, test-time augmentation and the uncertainty split (U-Net 2015, Sec. 2 and 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from transforms.inferers import (
    OverlapTileInferer,
    SplitUncertaintyd,
    TestTimeAugmentationInferer,
    TileGeometry,
    declared_tile_geometry,
    estimate_activation_bytes,
    meta_call,
    meta_copy_state,
    probe_tile_geometry,
)
from transforms.tiling import extrapolate_crop

from custom_networks.unet2015 import UNet2015, is_valid_tile_size


class ValidConvNet(nn.Module):
    """Tiny network with valid convolutions and one pooling level: loses 4 pixels per side; valid input sizes are
    10, 12, 14, ... (the pool must see an even size, checked like UNet2015 does unless ``floor_odd``)."""

    def __init__(self, spatial_dims: int = 2, out_channels: int = 2, floor_odd: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.conv1 = conv(1, 4, 3)
        self.conv2 = conv(4, 4, 3)
        self.pool = (nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d)(2)
        self.conv3 = conv(4, 4, 3)
        self.up = nn.Upsample(scale_factor=2)
        self.head = conv(4, out_channels, 1)
        self.floor_odd = floor_odd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        if not self.floor_odd and any(s % 2 for s in x.shape[2:]):
            raise ValueError(f"odd size {tuple(x.shape[2:])} before pooling")
        return self.head(self.up(torch.relu(self.conv3(self.pool(x)))))


class SameConvNet(nn.Module):
    """Two 3x3 convolutions with zero padding 1 (receptive-field radius 2) and a 1x1 head."""

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv2d(1, 3, kernel_size, padding=pad), nn.ReLU(), nn.Conv2d(3, 3, kernel_size, padding=pad)
        )
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


def _net(cls=ValidConvNet, *args, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return cls(*args, **kwargs).double().eval()


def _whole_padded_forward(net, image, border, geometry):
    """Reference: one forward pass over the image mirror-padded by ``border`` and extended to a valid size."""
    size = image.shape[2:]
    extent = [geometry.valid_at_least(s + 2 * border, a) for a, s in enumerate(size)]
    padded = torch.stack([extrapolate_crop(item, [-border] * len(size), extent) for item in image])
    output = net(padded)
    return output[(slice(None), slice(None)) + tuple(slice(0, s) for s in size)]


# ----------------------------------------------------------------------------------------------- geometry


def test_probe_finds_border_and_valid_sizes():
    geometry = probe_tile_geometry(_net(), in_channels=1, spatial_dims=2)
    assert geometry.border == (4, 4)
    assert geometry.smallest == (10, 10) and geometry.period == (2, 2)
    assert [s for s in range(1, 20) if geometry.is_valid(s, 0)] == [10, 12, 14, 16, 18]
    assert probe_tile_geometry(_net(), 1, 2).border == (4, 4)


def test_probe_is_cached_per_network_and_channels():
    net = _net()
    first = probe_tile_geometry(net, 1, 2)
    assert probe_tile_geometry(net, 1, 2) is first
    assert probe_tile_geometry(_net(), 1, 2) is not first


def test_probe_ignores_sizes_that_floor_at_the_pool():
    # odd sizes run but lose an extra pixel: only the sizes losing the least border are valid
    geometry = probe_tile_geometry(_net(floor_odd=True), 1, 2)
    assert geometry.border == (4, 4) and geometry.smallest == (10, 10) and geometry.period == (2, 2)


def test_probe_3d_and_same_padding():
    geometry = probe_tile_geometry(_net(ValidConvNet, 3), 1, 3)
    assert geometry.border == (4, 4, 4) and geometry.period == (2, 2, 2)
    same = probe_tile_geometry(_net(SameConvNet), 1, 2)
    assert same.border == (0, 0) and same.period == (1, 1) and same.smallest == (1, 1)


def test_probe_of_plain_callable_uses_real_forward():
    net = _net()
    with pytest.warns(UserWarning, match="real forward"):
        geometry = probe_tile_geometry(lambda x: net(x), 1, 2, max_size=40, dtype=torch.float64)
    assert geometry.border == (4, 4) and geometry.smallest == (10, 10)


def test_probe_rejects_non_dense_output():
    classifier = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="spatial"):
        probe_tile_geometry(classifier, 1, 2, max_size=20)


def test_geometry_from_predicate():
    geometry = TileGeometry.from_predicate(lambda s: s >= 188 and (s - 188) % 16 == 0, 2, border=92)
    assert geometry.smallest == (188, 188) and geometry.period == (16, 16) and geometry.border == (92, 92)
    assert geometry.valid_at_least(512 + 184, 0) == 700 and geometry.valid_at_most(600, 1) == 588
    assert geometry.valid_at_most(100, 0) is None


def test_activation_estimate_scales_with_tile_and_batch():
    net = _net(ValidConvNet, 2).float()
    small, large = estimate_activation_bytes(net, 1, (20, 20)), estimate_activation_bytes(net, 1, (40, 40))
    # hand count for 20x20: conv1 4x18x18, relu, conv2 4x16x16, relu, pool 4x8x8, conv3 4x6x6, relu,
    # upsample 4x12x12, head 2x12x12 (float32)
    expected = 4 * (2 * 4 * 18 * 18 + 2 * 4 * 16 * 16 + 4 * 8 * 8 + 2 * 4 * 6 * 6 + 4 * 12 * 12 + 2 * 12 * 12)
    assert small == expected
    assert large > 3 * small
    assert estimate_activation_bytes(net, 1, (20, 20), batch_size=3) == 3 * small
    assert estimate_activation_bytes(lambda x: x, 1, (20, 20)) is None


# ----------------------------------------------------------------------------------------------- overlap-tile


@pytest.mark.parametrize("roi_size", [12, 14, 20, (16, 30), None])
def test_tiles_stitch_to_the_whole_padded_forward(roi_size):
    net = _net()
    image = torch.randn(2, 1, 41, 58, dtype=torch.float64)  # odd: the last tile is shifted to an aligned start
    inferer = OverlapTileInferer(roi_size=roi_size, sw_batch_size=3)
    with torch.no_grad():
        tiled = inferer(image, net)
        reference = _whole_padded_forward(net, image, 4, probe_tile_geometry(net, 1, 2))
    assert tiled.shape == (2, 2, 41, 58)
    torch.testing.assert_close(tiled, reference, rtol=1e-12, atol=1e-12)


def test_tiles_stitch_to_the_whole_padded_forward_3d():
    net = _net(ValidConvNet, 3)
    image = torch.randn(1, 1, 13, 16, 11, dtype=torch.float64)
    with torch.no_grad():
        tiled = OverlapTileInferer(roi_size=(14, 12, 16), sw_batch_size=4)(image, net)
        reference = _whole_padded_forward(net, image, 4, probe_tile_geometry(net, 1, 3))
    assert tiled.shape == (1, 2, 13, 16, 11)
    torch.testing.assert_close(tiled, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (7, 9), (33, 20), (64, 64)])
@pytest.mark.parametrize("roi_size", [12, None])
def test_output_has_the_input_size(size, roi_size):
    net = _net()
    image = torch.randn(2, 1, *size, dtype=torch.float64)
    with torch.no_grad():
        output = OverlapTileInferer(roi_size=roi_size)(image, net)
    assert output.shape == (2, 2, *size)
    assert torch.isfinite(output).all()


def test_image_smaller_than_the_border_uses_repeated_mirroring():
    net = _net()
    image = torch.randn(1, 1, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        output = OverlapTileInferer(roi_size=10)(image, net)
        reference = _whole_padded_forward(net, image, 4, probe_tile_geometry(net, 1, 2))
    torch.testing.assert_close(output, reference)


def test_same_padding_network_matches_plain_forward():
    net = _net(SameConvNet)
    image = torch.randn(2, 1, 23, 17, dtype=torch.float64)
    with torch.no_grad():
        plain = net(image)
        # border 0 is probed: one covering tile is the image itself
        torch.testing.assert_close(OverlapTileInferer()(image, net), plain, rtol=0, atol=0)
        # a pointwise network is translation invariant: any tiling gives the plain forward
        pointwise = nn.Conv2d(1, 2, 1).double()
        torch.testing.assert_close(OverlapTileInferer(roi_size=4)(image, pointwise), pointwise(image))
        # with the receptive-field radius as context, small tiles are free of zero-padding seams
        tiled = OverlapTileInferer(roi_size=9, border=2)(image, net)
    reference = net(torch.stack([extrapolate_crop(x, (-2, -2), (27, 21)) for x in image]))[:, :, 2:-2, 2:-2]
    torch.testing.assert_close(tiled, reference)
    # away from the image edge, mirrored context and zero padding agree
    torch.testing.assert_close(tiled[:, :, 2:-2, 2:-2], plain[:, :, 2:-2, 2:-2])


def test_explicit_geometry_with_plain_callable():
    net = _net()
    calls = []

    def network(x):
        calls.append(tuple(x.shape))
        return net(x)

    inferer = OverlapTileInferer(
        roi_size=14, border=4, valid_tile_size=lambda s: s >= 10 and s % 2 == 0, sw_batch_size=2
    )
    image = torch.randn(1, 1, 21, 12, dtype=torch.float64)
    with torch.no_grad():
        output = inferer(image, network)
        reference = _whole_padded_forward(net, image, 4, probe_tile_geometry(net, 1, 2))
    torch.testing.assert_close(output, reference)
    # no probing: every call is a batch of 14x14 tiles; 21 rows need 4 tiles of 6 output rows, 12 columns 2
    assert all(shape[2:] == (14, 14) for shape in calls)
    assert sum(shape[0] for shape in calls) == 4 * 2


def test_invalid_arguments_are_explained():
    net = _net()
    image = torch.randn(1, 1, 20, 20, dtype=torch.float64)
    with pytest.raises(ValueError, match="nearest valid sizes: 12 and 14"):
        OverlapTileInferer(roi_size=13)(image, net)
    with pytest.raises(ValueError, match="smaller than the 4 pixels"):
        OverlapTileInferer(roi_size=12, border=2)(image, net)
    with pytest.raises(ValueError, match="sw_batch_size"):
        OverlapTileInferer(sw_batch_size=0)
    with pytest.raises(ValueError, match="padding_mode"):
        OverlapTileInferer(padding_mode="zeros")


def test_memory_budget_shrinks_the_tile_and_keeps_the_result():
    net = _net()
    image = torch.randn(1, 1, 60, 60, dtype=torch.float64)
    generous, tight = OverlapTileInferer(memory_budget_mb=1024), OverlapTileInferer(memory_budget_mb=0.05)
    assert generous.tile_size((60, 60), net, 1) == (68, 68)  # smallest valid size >= 60 + 2 * 4
    small_tile = tight.tile_size((60, 60), net, 1)
    assert max(small_tile) < 68
    assert estimate_activation_bytes(net, 1, small_tile) <= 0.05 * 2**20
    with torch.no_grad():
        torch.testing.assert_close(tight(image, net), generous(image, net))


def test_metatensor_devices_and_autocast():
    net = _net().float()
    image = MetaTensor(torch.randn(1, 1, 30, 26), affine=torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0])))
    inferer = OverlapTileInferer(roi_size=16, sw_device="cpu", device=torch.device("cpu"))
    with torch.no_grad():
        output = inferer(image, net)
        assert isinstance(output, MetaTensor) and output.shape == (1, 2, 30, 26)
        torch.testing.assert_close(output.affine, image.affine)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low_precision = inferer(image, net)
    assert low_precision.dtype == torch.float32  # bf16 tiles, stitched in fp32
    torch.testing.assert_close(low_precision.float().as_tensor(), output.as_tensor(), atol=0.05, rtol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiles_on_cuda_stitched_on_cpu():
    net = _net().float().cuda()
    image = torch.randn(1, 1, 37, 29)
    with torch.no_grad():
        output = OverlapTileInferer(roi_size=16, sw_batch_size=4, sw_device="cuda", device="cpu")(image, net)
        on_cpu = OverlapTileInferer(roi_size=16)(image, net.cpu())
        with torch.autocast("cuda", dtype=torch.float16):
            half = OverlapTileInferer(sw_device="cuda", device="cpu")(image, net.cuda())
    assert output.device.type == "cpu" and half.device.type == "cpu" and half.dtype == torch.float32
    torch.testing.assert_close(output, on_cpu, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(half.float(), on_cpu, atol=0.02, rtol=0.02)


def test_monai_sliding_window_does_not_handle_valid_convolutions():
    """Why OverlapTileInferer exists: MONAI's sliding window treats the smaller output as a zoomed-out prediction,
    so the result neither has the input's size nor pixel alignment."""
    net = _net()
    image = torch.randn(1, 1, 40, 40, dtype=torch.float64)
    with torch.no_grad():
        monai_output = SlidingWindowInferer(roi_size=20, overlap=0.25)(image, net)
        ours = OverlapTileInferer(roi_size=20)(image, net)
    assert monai_output.shape[2:] != image.shape[2:]
    assert ours.shape[2:] == image.shape[2:]


def test_unet2015_geometry_and_tiling():
    torch.manual_seed(0)
    net = UNet2015(spatial_dims=2, in_channels=1, out_channels=2, features=(4, 8, 16, 32, 64)).double().eval()
    geometry = probe_tile_geometry(net, 1, 2)
    assert geometry.border == (92, 92) and geometry.smallest == (188, 188) and geometry.period == (16, 16)
    assert all(geometry.is_valid(s, 0) == is_valid_tile_size(s) for s in range(150, 700))
    image = torch.randn(1, 1, 50, 37, dtype=torch.float64)
    with torch.no_grad():
        tiled = OverlapTileInferer(roi_size=204, sw_batch_size=4)(image, net)  # 20x20 valid output per tile
        reference = _whole_padded_forward(net, image, 92, geometry)
    assert tiled.shape == (1, 2, 50, 37)
    torch.testing.assert_close(tiled, reference)


def test_paper_unet_takes_one_tile_for_a_512_image():
    net = UNet2015()  # the paper's 31M-parameter network; only run on the meta device here
    assert OverlapTileInferer().tile_size((512, 512), net, 1) == (700, 700)
    explicit = OverlapTileInferer(border=92, valid_tile_size=is_valid_tile_size)
    assert explicit.tile_size((512, 512), net, 1) == (700, 700)
    # a tight budget gives several smaller, equal tiles instead
    tight = OverlapTileInferer(memory_budget_mb=700).tile_size((512, 512), net, 1)
    assert tight[0] < 700 and is_valid_tile_size(tight)


# ----------------------------------------------------------------------------------------------- TTA


class ConstantRampNet(nn.Module):
    """Ignores its input values: outputs ``w`` (the index along the last axis) in every channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(x.shape[-1], dtype=x.dtype).expand(x.shape)
        return ramp.clone()


def test_tta_of_an_equivariant_network_equals_one_prediction():
    torch.manual_seed(0)
    pointwise = nn.Conv2d(2, 3, 1).double()
    image = torch.randn(2, 2, 6, 9, dtype=torch.float64)
    inferer = TestTimeAugmentationInferer(uncertainty="variance")
    with torch.no_grad():
        output = inferer(image, pointwise)
    assert output.shape == (2, 4, 6, 9)
    torch.testing.assert_close(output[:, :3], torch.softmax(pointwise(image), dim=1))
    assert output[:, 3].abs().max() == 0  # all 8 copies agree exactly


def test_tta_variance_of_a_non_invariant_network_is_hand_computed():
    image = torch.zeros(1, 1, 4, 6, dtype=torch.float64)
    inferer = TestTimeAugmentationInferer(transforms="flips", activation=None, uncertainty="variance")
    output = inferer(image, ConstantRampNet())
    # copies (after inversion): w, 5 - w, w, 5 - w -> mean 2.5, population variance (w - 2.5)^2
    columns = torch.arange(6, dtype=torch.float64)
    torch.testing.assert_close(output[0, 0], torch.full((4, 6), 2.5, dtype=torch.float64))
    torch.testing.assert_close(output[0, 1], ((columns - 2.5) ** 2).expand(4, 6))
    assert output[0, 1].max() > 0


def test_tta_entropy_of_a_uniform_prediction_is_log_c():
    uniform = lambda x: torch.zeros(x.shape[0], 3, *x.shape[2:], dtype=x.dtype)  # noqa: E731
    image = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    output = TestTimeAugmentationInferer(uncertainty="entropy")(image, uniform)
    torch.testing.assert_close(output[:, :3], torch.full((1, 3, 5, 5), 1 / 3, dtype=torch.float64))
    torch.testing.assert_close(output[:, 3], torch.full((1, 5, 5), math.log(3), dtype=torch.float64))


def test_tta_sigmoid():
    torch.manual_seed(0)
    pointwise = nn.Conv2d(1, 1, 1).double()
    image = torch.randn(1, 1, 7, 7, dtype=torch.float64)
    output = TestTimeAugmentationInferer(activation="sigmoid", uncertainty="entropy")(image, pointwise)
    probability = torch.sigmoid(pointwise(image))
    torch.testing.assert_close(output[:, :1], probability)
    binary_entropy = -(probability * probability.log() + (1 - probability) * (1 - probability).log())
    torch.testing.assert_close(output[:, 1:], binary_entropy)
    zero_logits = TestTimeAugmentationInferer(activation="sigmoid", uncertainty="entropy")(
        image, lambda x: torch.zeros_like(x)
    )
    torch.testing.assert_close(zero_logits[:, 1], torch.full((1, 7, 7), math.log(2), dtype=torch.float64))


@pytest.mark.parametrize("transforms,count", [("d4", 8), ("flips", 4), ("rot90", 4)])
def test_tta_runs_every_group_element_and_handles_non_square_inputs(transforms, count):
    seen = []

    def network(x):
        seen.append(tuple(x.shape[2:]))
        return x.repeat(1, 2, 1, 1)

    image = torch.randn(1, 1, 4, 7, dtype=torch.float64)
    output = TestTimeAugmentationInferer(transforms=transforms, activation=None)(image, network)
    assert len(seen) == count
    if transforms != "flips":
        assert (7, 4) in seen  # 90-degree rotations swap the axes of a non-square image
    torch.testing.assert_close(output, image.repeat(1, 2, 1, 1))  # an identity network is equivariant


def test_tta_over_overlap_tiles_of_a_valid_network():
    net = _net()
    image = torch.randn(1, 1, 18, 27, dtype=torch.float64)
    inferer = TestTimeAugmentationInferer(OverlapTileInferer(roi_size=16), uncertainty="variance")
    with torch.no_grad():
        output = inferer(image, net)
    assert output.shape == (1, 3, 18, 27)
    torch.testing.assert_close(output[:, :2].sum(dim=1), torch.ones(1, 18, 27, dtype=torch.float64))
    assert output[:, 2].max() > 0  # a random conv net is not rotation invariant


def test_tta_argument_checks_and_3d_axes():
    with pytest.raises(ValueError, match="transforms"):
        TestTimeAugmentationInferer(transforms="d8")
    with pytest.raises(ValueError, match="needs probabilities"):
        TestTimeAugmentationInferer(activation=None, uncertainty="entropy")
    with pytest.raises(ValueError, match="2 spatial axes"):
        TestTimeAugmentationInferer()(torch.zeros(1, 1, 5), lambda x: x)
    volume = torch.randn(1, 1, 3, 4, 5, dtype=torch.float64)
    output = TestTimeAugmentationInferer(activation=None, spatial_axes=(0, 1))(volume, lambda x: 2 * x)
    torch.testing.assert_close(output, 2 * volume)


def test_tta_keeps_metatensor():
    image = MetaTensor(torch.randn(1, 1, 6, 6), affine=torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0])))
    output = TestTimeAugmentationInferer(uncertainty="variance")(image, nn.Conv2d(1, 2, 1))
    assert isinstance(output, MetaTensor) and output.shape == (1, 3, 6, 6)
    torch.testing.assert_close(output.affine, image.affine)


# ----------------------------------------------------------------------------------------------- SplitUncertaintyd


def test_split_uncertainty_moves_the_last_channel():
    affine = torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0]))
    pred = MetaTensor(torch.arange(3 * 4 * 5, dtype=torch.float32).reshape(3, 4, 5), affine=affine)
    out = SplitUncertaintyd(keys="pred", uncertainty_key="unc")({"pred": pred, "label": 1})
    assert out["pred"].shape == (2, 4, 5) and out["unc"].shape == (1, 4, 5) and out["label"] == 1
    torch.testing.assert_close(out["unc"].as_tensor(), pred.as_tensor()[2:])
    torch.testing.assert_close(out["pred"].as_tensor(), pred.as_tensor()[:2])
    for key in ("pred", "unc"):
        assert isinstance(out[key], MetaTensor)
        torch.testing.assert_close(out[key].affine, affine, check_dtype=False)


def test_split_uncertainty_batched_and_errors():
    batch = torch.rand(2, 4, 3, 3)
    out = SplitUncertaintyd(channel_dim=1)({"pred": batch})
    assert out["pred"].shape == (2, 3, 3, 3) and out["uncertainty"].shape == (2, 1, 3, 3)
    with pytest.raises(ValueError, match="uncertainty channel"):
        SplitUncertaintyd()({"pred": torch.zeros(1, 3, 3)})
    with pytest.raises(ValueError, match="one uncertainty_key per key"):
        SplitUncertaintyd(keys=("a", "b", "c"), uncertainty_key=("x", "y"))
    assert np.array_equal(SplitUncertaintyd(allow_missing_keys=True)({"other": 1})["other"], 1)


def test_meta_call_leaves_a_module_reached_under_two_names_on_its_device():
    """MONAI's DynUNet keeps its encoder blocks in two lists; a meta forward pass must not leave them on meta."""
    from monai.networks.nets import DynUNet

    class TwoNames(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
            self.alias = nn.ModuleList([self.conv])  # the same module under a second name, as DynUNet's skip_layers

        def forward(self, x):
            return self.alias[0](x)

    network = TwoNames()
    dynunet = DynUNet(2, 1, 2, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2])
    for net in (network, dynunet):
        output = meta_call(net, meta_copy_state(net), torch.empty(1, 1, 16, 16, device="meta"))
        assert output.device.type == "meta" and output.shape[-2:] == (16, 16)
        assert {p.device.type for p in net.parameters()} == {"cpu"}
        net(torch.zeros(1, 1, 16, 16)).sum().backward()  # training after a probe: the failure this guards against


def test_meta_copy_state_runs_forward_and_backward_without_touching_the_network():
    network = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    network[2].weight.requires_grad_(False)
    before = {name: tensor.clone() for name, tensor in network.state_dict().items()}
    state = meta_copy_state(network)
    assert set(state) == {n for n, _ in network.named_parameters()} | {n for n, _ in network.named_buffers()}
    assert all(t.device.type == "meta" for t in state.values())
    assert state["1.num_batches_tracked"].dtype == torch.long and state["0.weight"].shape == (4, 1, 3, 3)
    assert state["0.weight"].requires_grad and not state["2.weight"].requires_grad
    output = torch.func.functional_call(network, state, (torch.empty(2, 1, 10, 12, device="meta"),))
    assert output.shape == (2, 2, 8, 10) and output.device.type == "meta"
    output.sum().backward()  # reaches the meta weights: no memory, no arithmetic
    assert all(torch.equal(before[name], tensor) for name, tensor in network.state_dict().items())
    assert network[0].weight.grad is None


@pytest.mark.parametrize("kwargs", [{}, {"padding": "same"}, {"features": (8, 16, 32)}])
def test_declared_geometry_of_unet2015_matches_the_probe(kwargs):
    network = UNet2015(**kwargs)
    declared = declared_tile_geometry(network, 2)
    probed = probe_tile_geometry(network, 1, 2)
    assert (declared.border, declared.smallest, declared.period) == (probed.border, probed.smallest, probed.period)
    assert declared_tile_geometry(torch.nn.Conv2d(1, 1, 3), 2) is None  # cannot tell: probed instead
