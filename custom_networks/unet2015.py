"""The original U-Net of Ronneberger, Fischer and Brox (MICCAI 2015), with its tile-size geometry.

Reference:
    O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015, LNCS 9351, pp. 234-241. arXiv:1505.04597.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List, Tuple

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_dropout_layer

from ._blocks import unet_upsampling
from ._input_checks import check_input_shape, check_network_arguments, check_upsample_mode, dropout_or_none

__all__ = [
    "UNet2015",
    "DoubleConv",
    "Down",
    "Up",
    "center_crop_to",
    "he_initialize_",
    "unet2015_output_size",
    "unet2015_border",
    "is_valid_tile_size",
    "valid_tile_sizes",
    "nearest_valid_tile_size",
]

PADDING_MODES = ("valid", "same")
ROUNDING_MODES = ("nearest", "floor", "ceil")


# ---------------------------------------------------------------------------------------------------------------
# Geometry. The private ``_``-functions use plain ints only so that ``UNet2015.forward`` can call them when scripted.
# ---------------------------------------------------------------------------------------------------------------


def _shrink_per_double_conv(padding: str) -> int:
    """Pixels lost along one axis by two 3x3 convolutions: 4 when unpadded (paper), 0 with padding 1."""
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}.")
    return 4 if padding == "valid" else 0


def _check_depth(depth: int) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth (number of 2x2 max-pool steps) must be an int >= 1, got {depth!r}.")
    return depth


def _check_size(size: int, name: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError(f"{name} must be an int, got {size!r} ({type(size).__name__}).")
    return size


def _size_list(size: Sequence[int] | int, name: str) -> list[int]:
    """One int per spatial axis from an int or a sequence (``torch.Size`` included)."""
    if isinstance(size, Sequence) and not isinstance(size, str):
        if len(size) == 0:
            raise ValueError(f"{name} must not be empty.")
        return [_check_size(s, name) for s in size]
    return [_check_size(size, name)]


def _propagate_tile_size(size: int, depth: int, shrink: int) -> Tuple[int, str]:
    """Follows one spatial axis through the network of Fig. 1.

    Contracting step: ``s -> (s - shrink) / 2`` (two 3x3 convs, then a 2x2 max pool that must see an even size
    so that the later crop aligns exactly); bottom: ``s -> s - shrink``; expansive step: ``s -> 2 s - shrink``
    (2x2 up-convolution, then two 3x3 convs).

    Returns:
        ``(output_size, "")`` for a valid tile, ``(-1, reason)`` otherwise.
    """
    current = size
    if current < 1:
        return -1, "the size must be positive"
    for level in range(depth):
        current = current - shrink
        if current < 2:
            return -1, "the max pool of step " + str(level + 1) + " would see size " + str(current) + " (< 2)"
        if current % 2 != 0:
            return -1, "the max pool of step " + str(level + 1) + " would see the odd size " + str(current)
        current = current // 2
    current = current - shrink
    if current < 1:
        return -1, "the bottom convolutions would output size " + str(current)
    for level in range(depth):
        current = 2 * current - shrink
        if current < 1:
            return -1, "expansive step " + str(level + 1) + " would output size " + str(current)
    return current, ""


def _smallest_valid_tile_size(depth: int, shrink: int) -> int:
    """Valid sizes form ``{s_min + k * 2**depth, k >= 0}``: one residue class mod ``2**depth``, upward closed."""
    step = 1 << depth  # an int also under TorchScript, where ** gives a float
    # Every pre-pool size is even iff (s - shrink * (2**depth - 1)) is a multiple of 2**depth.
    candidate = (shrink * (step - 1)) % step
    if candidate == 0:
        candidate = step
    while _propagate_tile_size(candidate, depth, shrink)[0] < 1:
        candidate += step
    return candidate


def _valid_tile_size_below(size: int, depth: int, shrink: int) -> int:
    """Largest valid tile size ``<= size``, or -1 when there is none."""
    smallest = _smallest_valid_tile_size(depth, shrink)
    if size < smallest:
        return -1
    step = 1 << depth
    return smallest + ((size - smallest) // step) * step


def _valid_tile_size_above(size: int, depth: int, shrink: int) -> int:
    """Smallest valid tile size ``>= size``."""
    smallest = _smallest_valid_tile_size(depth, shrink)
    if size <= smallest:
        return smallest
    step = 1 << depth
    return smallest + ((size - smallest + step - 1) // step) * step


def unet2015_border(depth: int = 4, padding: str = "valid") -> int:
    """Pixels lost on EACH side of every spatial axis: ``(input - output) / 2``.

    With unpadded convolutions every double conv at resolution level ``l`` (``l = 0`` full resolution) removes
    2 pixels per side of that level, i.e. ``2 * 2**l`` input pixels; summing over the ``depth`` contracting steps,
    the bottom block and the ``depth`` expansive steps gives ``6 * 2**depth - 4`` (92 for the paper's depth 4:
    572 -> 388). Zero for ``padding="same"``.

    Args:
        depth: number of 2x2 max-pool steps (``len(features) - 1``).
        padding: ``"valid"`` (unpadded 3x3 convolutions, paper) or ``"same"``.
    """
    _check_depth(depth)
    shrink = _shrink_per_double_conv(padding)
    return (shrink // 4) * (6 * (1 << depth) - 4)


def is_valid_tile_size(size: Sequence[int] | int, depth: int = 4, padding: str = "valid") -> bool:
    """Whether an input tile (every axis of it, for a sequence) passes the network: each max pool sees an even
    size and the output is not empty.

    Args:
        size: spatial size, one int or one per axis.
        depth: number of 2x2 max-pool steps (``len(features) - 1``).
        padding: ``"valid"`` or ``"same"``.
    """
    _check_depth(depth)
    shrink = _shrink_per_double_conv(padding)
    return all(_propagate_tile_size(s, depth, shrink)[0] > 0 for s in _size_list(size, "size"))


def unet2015_output_size(input_size: Sequence[int] | int, depth: int = 4, padding: str = "valid") -> tuple[int, ...]:
    """Spatial output size for a given input tile (572 -> 388 for the paper's network).

    Args:
        input_size: spatial input size, one int or one per axis.
        depth: number of 2x2 max-pool steps (``len(features) - 1``).
        padding: ``"valid"`` or ``"same"``.

    Returns:
        one output size per axis (a 1-tuple for an int ``input_size``).

    Raises:
        ValueError: when some max pool would see an odd size (or less than 2) or the output would be empty.
    """
    _check_depth(depth)
    shrink = _shrink_per_double_conv(padding)
    outputs = []
    for axis, size in enumerate(_size_list(input_size, "input_size")):
        output, reason = _propagate_tile_size(size, depth, shrink)
        if output < 1:
            raise ValueError(_invalid_size_message(size, axis, depth, shrink, reason))
        outputs.append(output)
    return tuple(outputs)


def valid_tile_sizes(min_size: int, max_size: int, depth: int = 4, padding: str = "valid") -> list[int]:
    """All valid input tile sizes in ``[min_size, max_size]`` (ascending; spaced by ``2**depth``).

    Args:
        min_size: smallest size considered (inclusive).
        max_size: largest size considered (inclusive).
        depth: number of 2x2 max-pool steps (``len(features) - 1``).
        padding: ``"valid"`` or ``"same"``.
    """
    _check_depth(depth)
    shrink = _shrink_per_double_conv(padding)
    _check_size(min_size, "min_size")
    _check_size(max_size, "max_size")
    if min_size > max_size:
        raise ValueError(f"min_size ({min_size}) must not exceed max_size ({max_size}).")
    first = _valid_tile_size_above(max(min_size, 1), depth, shrink)
    return list(range(first, max_size + 1, (1 << depth)))


def nearest_valid_tile_size(size: int, depth: int = 4, padding: str = "valid", mode: str = "nearest") -> int:
    """Valid input tile size close to ``size`` (572 -> 572; 512 -> 508 for the paper's network).

    Args:
        size: wanted input size along one axis.
        depth: number of 2x2 max-pool steps (``len(features) - 1``).
        padding: ``"valid"`` or ``"same"``.
        mode: ``"nearest"`` (ties go to the larger size), ``"floor"`` (largest valid ``<= size``) or
            ``"ceil"`` (smallest valid ``>= size``).

    Raises:
        ValueError: for an unknown ``mode``, or in ``"floor"`` mode when no valid size ``<= size`` exists.
    """
    _check_depth(depth)
    shrink = _shrink_per_double_conv(padding)
    _check_size(size)
    if mode not in ROUNDING_MODES:
        raise ValueError(f"mode must be one of {ROUNDING_MODES}, got {mode!r}.")
    below = _valid_tile_size_below(size, depth, shrink)
    above = _valid_tile_size_above(size, depth, shrink)
    if mode == "ceil":
        return above
    if mode == "floor":
        if below < 0:
            raise ValueError(
                f"no valid tile size <= {size} for depth {depth} and padding {padding!r}; the smallest is {above}."
            )
        return below
    if below < 0 or above - size <= size - below:
        return above
    return below


def _invalid_size_message(size: int, axis: int, depth: int, shrink: int, reason: str) -> str:
    below = _valid_tile_size_below(size, depth, shrink)
    above = _valid_tile_size_above(size, depth, shrink)
    suggestion = "the smallest is " + str(above) if below < 0 else str(below) + " or " + str(above)
    padding = "valid" if shrink > 0 else "same"
    return (
        "spatial size "
        + str(size)
        + " (spatial axis "
        + str(axis)
        + ") is not a valid UNet2015 tile for depth "
        + str(depth)
        + " and padding '"
        + padding
        + "': "
        + reason
        + ". Valid sizes nearby: "
        + suggestion
        + " (see nearest_valid_tile_size)."
    )


# ---------------------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------------------


def center_crop_to(x: torch.Tensor, spatial_size: List[int]) -> torch.Tensor:
    """Center crop of the spatial axes of ``x`` (``N, C, *spatial``) to ``spatial_size``, as a view (no copy).

    This is the "copy and crop" arrow of Fig. 1: the contracting-path map is larger than the up-sampled one because
    of the border lost by unpadded convolutions. For an odd size difference the extra pixel is dropped at the end.
    """
    for axis in range(len(spatial_size)):
        dim = axis + 2
        excess = x.shape[dim] - spatial_size[axis]
        if excess < 0:
            raise ValueError(
                "cannot crop spatial axis "
                + str(axis)
                + " of size "
                + str(x.shape[dim])
                + " to the larger size "
                + str(spatial_size[axis])
            )
        if excess > 0:
            x = x.narrow(dim, excess // 2, spatial_size[axis])
    return x


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by the activation (and ``norm`` if given): one step of Fig. 1."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple,
        norm: str | tuple | None,
        padding: str,
        bias: bool = True,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: number of input channels.
            out_channels: number of output channels of both convolutions.
            act: activation type and arguments (MONAI ``Act`` factory).
            norm: feature normalisation type and arguments (MONAI ``Norm`` factory), ``None`` for none (paper).
            padding: ``"valid"`` (unpadded, paper) or ``"same"`` (padding 1).
            bias: whether the convolutions have a bias term.
        """
        super().__init__()
        conv_padding = 0 if _shrink_per_double_conv(padding) > 0 else 1
        for index, (in_chns, out_chns) in enumerate(((in_channels, out_channels), (out_channels, out_channels))):
            self.add_module(
                f"conv_{index}",
                Convolution(
                    spatial_dims,
                    in_chns,
                    out_chns,
                    kernel_size=3,
                    padding=conv_padding,
                    act=act,
                    norm=norm,
                    bias=bias,
                ),
            )


class Down(nn.Sequential):
    """2x2 max pool with stride 2, then a :class:`DoubleConv` (channels are doubled there in the paper)."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple,
        norm: str | tuple | None,
        padding: str,
        bias: bool = True,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: number of input channels.
            out_channels: number of output channels.
            act: activation type and arguments.
            norm: feature normalisation type and arguments, ``None`` for none.
            padding: ``"valid"`` or ``"same"``.
            bias: whether the convolutions have a bias term.
        """
        super().__init__()
        self.add_module("max_pooling", Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2))
        self.add_module("convs", DoubleConv(spatial_dims, in_channels, out_channels, act, norm, padding, bias))


class Up(nn.Module):
    """One expansive step: 2x2 up-convolution, concatenation with the center-cropped contracting-path map,
    then a :class:`DoubleConv`."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        act: str | tuple,
        norm: str | tuple | None,
        padding: str,
        upsample: str = "deconv",
        bias: bool = True,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: channels of the coarser map to up-sample.
            skip_channels: channels of the contracting-path map that is cropped and concatenated.
            out_channels: channels after the up-sampling and after the two convolutions (half of ``in_channels``
                in the paper).
            act: activation type and arguments.
            norm: feature normalisation type and arguments, ``None`` for none.
            padding: ``"valid"`` or ``"same"``.
            upsample: ``"deconv"`` (2x2 transposed convolution, stride 2), ``"nontrainable"`` (1x1 convolution then
                linear interpolation) or ``"pixelshuffle"`` (MONAI ``SubpixelUpsample``).
            bias: whether the convolutions have a bias term.
        """
        super().__init__()
        self.upsample = unet_upsampling(spatial_dims, in_channels, out_channels, upsample, bias)
        self.convs = DoubleConv(spatial_dims, skip_channels + out_channels, out_channels, act, norm, padding, bias)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: coarser map ``(N, in_channels, *spatial)``.
            skip: contracting-path map ``(N, skip_channels, *larger_spatial)``.
        """
        x = self.upsample(x)
        cropped = center_crop_to(skip, x.shape[2:])
        return self.convs(torch.cat([cropped, x], dim=1))


def _incoming_connections(module: nn.Module) -> int:
    """``N`` of He et al. as used by the paper: the number of inputs feeding one output unit.

    For a convolution that is ``in_channels / groups * prod(kernel)`` (e.g. 9 * 64 = 576 for a 3x3 conv with 64
    input channels, the paper's example). For a transposed convolution each output unit receives
    ``prod(ceil(kernel / stride))`` taps per input channel, i.e. exactly ``in_channels`` for the 2x2 stride-2
    up-convolution. PyTorch's own ``fan_in`` for transposed convolutions counts output channels instead.
    """
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        taps = math.prod(math.ceil(k / s) for k, s in zip(module.kernel_size, module.stride, strict=True))
    else:
        taps = math.prod(module.kernel_size)
    return module.in_channels // module.groups * taps


def he_initialize_(module: nn.Module) -> None:
    """He et al. (2015) initialisation as in Sec. 3 of the paper: weights ~ N(0, sqrt(2 / N)), biases zero.

    Applied to every (transposed) convolution in ``module``; normalisation layers get weight 1 and bias 0.
    """
    for layer in module.modules():
        if isinstance(layer, nn.modules.conv._ConvNd):
            std = math.sqrt(2.0 / _incoming_connections(layer))
            nn.init.normal_(layer.weight, mean=0.0, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            if getattr(layer, "weight", None) is not None:
                nn.init.ones_(layer.weight)
            if getattr(layer, "bias", None) is not None:
                nn.init.zeros_(layer.bias)


# ---------------------------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------------------------


class UNet2015(nn.Module):
    """The original U-Net (Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
    Segmentation", MICCAI 2015, arXiv:1505.04597), Fig. 1 and Sec. 2.

    Contracting path: ``depth = len(features) - 1`` steps of two unpadded 3x3 convolutions, each followed by a ReLU,
    and a 2x2 max pool with stride 2, channels doubling (64 -> 128 -> 256 -> 512); bottom: two 3x3 convolutions
    (1024 channels). Expansive path: per step a 2x2 up-convolution halving the channels, concatenation with the
    center-cropped map of the same level of the contracting path, two 3x3 convolutions + ReLU. A final 1x1
    convolution maps to ``out_channels`` classes. With the defaults this is the paper's network: 23 convolutional
    layers, 31,031,810 parameters for 1 input channel and 2 classes, 572x572 input tile -> 388x388 output.

    The network returns logits; the paper's loss is a pixel-wise soft-max over them combined with a weighted cross
    entropy (Eq. 1), left to the loss function.

    Choices where the paper is vague (all configurable):
        - Dropout: "drop-out layers at the end of the contracting path" without place or rate. Here one
          element-wise dropout (``nn.Dropout``, like Caffe's ``Dropout`` layer) with ``p=0.5`` is applied to the
          output of the bottom double convolution, i.e. before the first up-convolution; no other dropout.
        - Up-convolution: "an upsampling of the feature map followed by a 2x2 convolution" is implemented as a
          2x2 transposed convolution with stride 2 (``upsample="deconv"``), the usual reading, with bias and no
          activation (the text names a ReLU only after the 3x3 convolutions). ``"nontrainable"`` gives a 1x1
          convolution followed by (bi/tri)linear up-sampling instead.
        - Initialisation: Sec. 3 asks for a Gaussian with std ``sqrt(2 / N)``, ``N`` = incoming nodes of one
          neuron (He et al.). Every convolution uses ``N = in_channels * prod(kernel)``; for the 2x2 stride-2
          up-convolution each output unit sees one tap per input channel, so ``N = in_channels`` (see
          :func:`he_initialize_`). Biases are zero.
        - Crop: the skip map is center cropped as a view (no copy); concatenation order is [skip, up-sampled].
        - Valid tiles: every max pool must see an even size (paper, Sec. 2), checked in ``forward``; use
          :meth:`nearest_valid_tile_size` to choose tiles. With ``padding="same"`` sizes must be multiples of
          ``2**depth`` and the output has the input's size.

    Args:
        spatial_dims: number of spatial dimensions, 2 (paper) or 3 (1 also works).
        in_channels: number of input channels.
        out_channels: number of output channels (classes ``K`` of the soft-max).
        features: channels at each resolution level, from full resolution to the bottom. Its length fixes the
            depth: 5 entries (paper) = 4 max-pool steps; at least 2 entries.
        act: activation type and arguments (MONAI ``Act`` factory). Defaults to in-place ReLU.
        norm: feature normalisation type and arguments (MONAI ``Norm`` factory), e.g. ``"batch"``; ``None``
            (paper) for none.
        dropout: dropout applied after the bottom block, a probability or a ``(name, args)`` tuple for MONAI's
            ``Dropout`` factory; 0 disables it.
        padding: ``"valid"`` (unpadded 3x3 convolutions, paper) or ``"same"`` (padding 1, output of input size).
        upsample: ``"deconv"`` (paper), ``"nontrainable"`` or ``"pixelshuffle"``.
        bias: whether convolutions have a bias term.

    Example::

        net = UNet2015()  # the paper's 2D network
        net.output_size((572, 572))  # (388, 388)
        tile = net.nearest_valid_tile_size(512)  # 508
    """

    __jit_unused_properties__ = ["border", "smallest_tile_size", "tile_period"]

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = None,
        dropout: float | tuple = 0.5,
        padding: str = "valid",
        upsample: str = "deconv",
        bias: bool = True,
    ):
        super().__init__()
        features = check_network_arguments(
            "UNet2015",
            spatial_dims,
            in_channels,
            out_channels,
            features,
            spatial_dims_options=(1, 2, 3),
            min_levels_reason="one max-pool step",
        )
        check_upsample_mode("UNet2015", upsample)

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.depth = len(features) - 1
        self.padding = padding
        self._shrink = _shrink_per_double_conv(padding)

        self.input_block = DoubleConv(spatial_dims, in_channels, features[0], act, norm, padding, bias)
        self.down_blocks = nn.ModuleList(
            [
                Down(spatial_dims, features[level], features[level + 1], act, norm, padding, bias)
                for level in range(self.depth)
            ]
        )
        # dropout_dim=1 gives element-wise nn.Dropout (Caffe's layer) instead of MONAI's channel-wise Dropout2d/3d.
        dropout = dropout_or_none(dropout)
        self.bottom_dropout = nn.Identity() if dropout is None else get_dropout_layer(dropout, dropout_dim=1)
        self.up_blocks = nn.ModuleList(
            [
                Up(
                    spatial_dims,
                    in_channels=features[level + 1],
                    skip_channels=features[level],
                    out_channels=features[level],
                    act=act,
                    norm=norm,
                    padding=padding,
                    upsample=upsample,
                    bias=bias,
                )
                for level in reversed(range(self.depth))
            ]
        )
        self.output_conv = Conv[Conv.CONV, spatial_dims](features[0], out_channels, kernel_size=1, bias=True)
        he_initialize_(self)

    def _check_input(self, x: torch.Tensor) -> None:
        check_input_shape(x, self.spatial_dims, self.in_channels, "UNet2015")
        for axis in range(self.spatial_dims):
            size = x.shape[axis + 2]
            output, reason = _propagate_tile_size(size, self.depth, self._shrink)
            if output < 1:
                raise ValueError(_invalid_size_message(size, axis, self.depth, self._shrink, reason))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(N, in_channels, *spatial)`` with every spatial size a valid tile size (:meth:`is_valid_tile_size`).

        Returns:
            logits ``(N, out_channels, *output_size(spatial))``.

        Raises:
            ValueError: (a ``RuntimeError`` when scripted) for a wrong number of axes or channels, or an invalid
                tile size.
        """
        self._check_input(x)
        x = self.input_block(x)
        skips: List[torch.Tensor] = []
        for down in self.down_blocks:
            skips.append(x)
            x = down(x)
        x = self.bottom_dropout(x)
        for level, up in enumerate(self.up_blocks):
            x = up(x, skips[self.depth - 1 - level])
        return self.output_conv(x)

    @property
    def border(self) -> int:
        """Pixels lost on each side of every spatial axis (92 for the paper's network, 0 for ``"same"``)."""
        return unet2015_border(self.depth, self.padding)

    @property
    def smallest_tile_size(self) -> int:
        """Smallest valid input size along every spatial axis (188 for the paper's network, ``2**depth`` for
        ``"same"``)."""
        return _smallest_valid_tile_size(self.depth, _shrink_per_double_conv(self.padding))

    @property
    def tile_period(self) -> int:
        """Spacing of the valid input sizes (``2**depth``): they are ``smallest_tile_size + k * tile_period``.

        With :attr:`border` this is the network's tile geometry, which ``transforms.OverlapTileInferer`` reads
        instead of probing the network (``transforms.declared_tile_geometry``)."""
        return 1 << self.depth

    @torch.jit.unused
    def output_size(self, input_size: Sequence[int] | int) -> tuple[int, ...]:
        """Spatial output size for ``input_size``; see :func:`unet2015_output_size`."""
        return unet2015_output_size(input_size, self.depth, self.padding)

    @torch.jit.unused
    def is_valid_tile_size(self, size: Sequence[int] | int) -> bool:
        """See :func:`is_valid_tile_size`."""
        return is_valid_tile_size(size, self.depth, self.padding)

    @torch.jit.unused
    def valid_tile_sizes(self, min_size: int, max_size: int) -> list[int]:
        """See :func:`valid_tile_sizes`."""
        return valid_tile_sizes(min_size, max_size, self.depth, self.padding)

    @torch.jit.unused
    def nearest_valid_tile_size(self, size: int, mode: str = "nearest") -> int:
        """See :func:`nearest_valid_tile_size`."""
        return nearest_valid_tile_size(size, self.depth, self.padding, mode)
