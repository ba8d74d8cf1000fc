"""The original U-Net of Ronneberger, Fischer and Brox (MICCAI 2015).

One piece (over 400 lines): the paper's network, its named blocks and its He initialisation, which nothing else
uses. Its tile-size geometry (valid tile sizes, lost border, output size) is in :mod:`.unet2015_geometry` and
re-exported here.

Reference:
    O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015, LNCS 9351, pp. 234-241. arXiv:1505.04597.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_dropout_layer

from ._blocks import decoder_stages, encoder_stages, unet_upsampling
from ._input_checks import check_input_shape, check_network_arguments, check_upsample_mode, dropout_or_none
from .unet2015_geometry import (  # noqa: F401 (the *_MODES stay importable from here)
    PADDING_MODES,
    ROUNDING_MODES,
    _invalid_size_message,
    _propagate_tile_size,
    _shrink_per_double_conv,
    _smallest_valid_tile_size,
    is_valid_tile_size,
    nearest_valid_tile_size,
    unet2015_border,
    unet2015_output_size,
    valid_tile_sizes,
)

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
        self.down_blocks = encoder_stages(
            features, lambda in_chns, out_chns: Down(spatial_dims, in_chns, out_chns, act, norm, padding, bias)
        )
        # dropout_dim=1 gives element-wise nn.Dropout (Caffe's layer) instead of MONAI's channel-wise Dropout2d/3d.
        dropout = dropout_or_none(dropout)
        self.bottom_dropout = nn.Identity() if dropout is None else get_dropout_layer(dropout, dropout_dim=1)
        self.up_blocks = decoder_stages(
            features,
            lambda in_chns, out_chns: Up(
                spatial_dims,
                in_channels=in_chns,
                skip_channels=out_chns,
                out_channels=out_chns,
                act=act,
                norm=norm,
                padding=padding,
                upsample=upsample,
                bias=bias,
            ),
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
