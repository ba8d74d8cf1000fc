"""MultiResUNet of Ibtehaz & Rahman (2020), one of the U-Net families of the survey (PAPERS.md Sec. 4).

Reference:
    N. Ibtehaz, M. S. Rahman, "MultiResUNet: Rethinking the U-Net architecture for multimodal biomedical image
    segmentation", Neural Networks 121 (2020), pp. 74-87, arXiv:1902.04049.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
from monai.networks.blocks import ADN, Convolution
from monai.networks.layers.factories import Conv, Pool

from ._blocks import decoder_stages, unet_upsampling
from ._input_checks import check_divisible_input, check_network_arguments, check_upsample_mode, dropout_or_none

__all__ = ["MultiResUNet", "MultiResBlock", "ResPath", "multires_channels"]

# Fractions of W given to the three chained 3x3 convolutions of a MultiRes block (Sec. 3.1: W/6, W/3 and W/2,
# written as 0.167, 0.333 and 0.5 in the authors' code).
MULTIRES_FRACTIONS = (0.167, 0.333, 0.5)


def multires_channels(width: int, alpha: float) -> tuple[int, int, int]:
    """Channels of the three chained convolutions of a MultiRes block for U-Net width ``width`` (Sec. 3.1).

    ``W = alpha * width`` ("we assign W = alpha x U, where U is the number of filters in the corresponding layer
    of the U-Net", alpha = 1.67), split as ``int(W * 0.167)``, ``int(W * 0.333)``, ``int(W * 0.5)``. The block's
    output has their sum of channels, e.g. 51 for ``width=32``.
    """
    w = alpha * width
    channels = tuple(int(w * fraction) for fraction in MULTIRES_FRACTIONS)
    if min(channels) < 1:
        raise ValueError(
            f"MultiResUNet: width {width} with alpha {alpha} gives {channels} channels for the three convolutions "
            "of a MultiRes block; every one needs at least 1 (use larger features or alpha)."
        )
    return channels  # type: ignore[return-value]


class MultiResBlock(nn.Module):
    """MultiRes block (Sec. 3.1, Fig. 3c): three chained 3x3 convolutions whose outputs are concatenated, approximating
    3x3, 5x5 and 7x7 receptive fields, plus a 1x1 convolution shortcut.

    With ``c1, c2, c3 = multires_channels(width, alpha)``::

        a = conv3x3(x) -> c1;  b = conv3x3(a) -> c2;  c = conv3x3(b) -> c3     (each conv -> norm -> act)
        out = norm(act(norm(cat[a, b, c]) + norm(conv1x1(x))))

    which is the authors' code order (concatenate, batch norm, add the normalised shortcut, ReLU, batch norm).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        width: int,
        alpha: float,
        act: str | tuple,
        norm: str | tuple | None,
        dropout: float | tuple = 0.0,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: number of input channels.
            width: the U-Net width ``U`` of this level; the block outputs ``sum(multires_channels(width, alpha))``.
            alpha: the width multiplier (1.67 in the paper).
            act: activation type and arguments (MONAI ``Act`` factory).
            norm: feature normalisation type and arguments (MONAI ``Norm`` factory), ``None`` for none.
            dropout: dropout on the block output, 0 for none.
        """
        super().__init__()
        channels = multires_channels(width, alpha)
        self.out_channels = sum(channels)
        bias = norm is None
        convs = []
        previous = in_channels
        for c in channels:
            convs.append(Convolution(spatial_dims, previous, c, kernel_size=3, act=act, norm=norm, bias=bias))
            previous = c
        self.convs = nn.ModuleList(convs)
        self.shortcut = Convolution(
            spatial_dims,
            in_channels,
            self.out_channels,
            kernel_size=1,
            act=None,
            norm=norm,
            bias=bias,
            conv_only=norm is None,
        )
        self.concat_norm = ADN(ordering="N", in_channels=self.out_channels, norm=norm, norm_dim=spatial_dims)
        self.out_act_norm = ADN(
            ordering="AND",
            in_channels=self.out_channels,
            act=act,
            norm=norm,
            norm_dim=spatial_dims,
            dropout=dropout_or_none(dropout),
            dropout_dim=spatial_dims,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: List[torch.Tensor] = []
        y = x
        for conv in self.convs:
            y = conv(y)
            outputs.append(y)
        return self.out_act_norm(self.concat_norm(torch.cat(outputs, dim=1)) + self.shortcut(x))


class ResPathUnit(nn.Module):
    """One unit of a Res path (Fig. 4): ``norm(act(conv3x3(x) + conv1x1(x)))``, the 3x3 branch with norm and act,
    the 1x1 shortcut with norm only (the authors' code)."""

    def __init__(self, spatial_dims: int, in_channels: int, channels: int, act, norm):
        super().__init__()
        bias = norm is None
        self.conv = Convolution(spatial_dims, in_channels, channels, kernel_size=3, act=act, norm=norm, bias=bias)
        self.shortcut = Convolution(
            spatial_dims, in_channels, channels, kernel_size=1, act=None, norm=norm, bias=bias, conv_only=norm is None
        )
        self.act_norm = ADN(ordering="AN", in_channels=channels, act=act, norm=norm, norm_dim=spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_norm(self.conv(x) + self.shortcut(x))


class ResPath(nn.Sequential):
    """Res path (Sec. 3.2, Fig. 4): ``length`` residual units on a skip connection, which add non-linear processing
    to the encoder features before they meet the (deeper) decoder features. The paper uses lengths 4, 3, 2, 1 from
    the top skip to the bottom one, with the level's U-Net width ``width`` as channels."""

    def __init__(self, spatial_dims: int, in_channels: int, width: int, length: int, act, norm):
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"ResPath: length must be a positive int, got {length!r}.")
        units = [ResPathUnit(spatial_dims, in_channels if i == 0 else width, width, act, norm) for i in range(length)]
        super().__init__(*units)


class MultiResUpBlock(nn.Module):
    """One decoder step (Fig. 5): 2x up-sampling of the deeper map to the level's width ``U``, concatenation with the
    Res path output ``[up-sampled, skip]`` (the authors' order) and a MultiRes block."""

    def __init__(
        self, spatial_dims, in_channels, skip_channels, width, alpha, act, norm, dropout, upsample, bias=True
    ):
        super().__init__()
        self.upsample = unet_upsampling(spatial_dims, in_channels, width, upsample, bias)
        self.block = MultiResBlock(spatial_dims, width + skip_channels, width, alpha, act, norm, dropout)
        self.out_channels = self.block.out_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.upsample(x), skip], dim=1))


class MultiResUNet(nn.Module):
    """MultiResUNet (Ibtehaz & Rahman, Neural Networks 2020, Sec. 3 and Fig. 5).

    A U-Net whose pairs of convolutions are MultiRes blocks (:class:`MultiResBlock`, three chained 3x3
    convolutions concatenated, with a 1x1 residual shortcut) and whose skip connections pass through Res paths
    (:class:`ResPath`, residual 3x3 convolutions; ``len(features) - 1 - level`` units at ``level``, 4, 3, 2, 1 at
    the paper's depth). ``features`` are the U-Net widths ``U`` (32, 64, 128, 256, 512 in the paper); a MultiRes
    block at width ``U`` has ``W = alpha * U`` "filters" in all, split W/6, W/3, W/2 (:func:`multires_channels`).
    Encoder: MultiRes block, 2x2 max pooling; decoder: 2x2 transposed convolution to ``U`` channels,
    concatenation with the Res path, MultiRes block; a final 1x1 convolution gives ``out_channels`` logits.
    Default configuration: 7,244,774 parameters for 3 input channels and 1 output channel. The authors' Keras
    code has the same layers; Keras reports 7,262,750 for it (7,238,228 trainable), because it counts the
    batch-norm running statistics and its convolution + batch-norm pairs have no batch-norm scale
    (``scale=False``), which we keep.

    Choices where the paper is vague (configurable unless stated):
        - Layer order inside the blocks (fixed): that of the authors' Keras code (conv -> batch norm -> ReLU;
          concatenation -> batch norm; shortcut conv -> batch norm; sum -> ReLU -> batch norm), which the paper's
          figures leave open. Convolutions followed by a normalisation have no bias.
        - Output: a plain 1x1 convolution giving logits (the code adds a batch norm and the sigmoid; here the loss or
          the post-processing applies the activation, as for MONAI's networks).
        - 3D (Sec. 4.4 of the paper) is the same layout with 3x3x3 convolutions (``spatial_dims=3``).
        - Dropout: not in the paper; ``dropout`` (0 by default) on every MultiRes block output.
        - Input size: "same" padding; every spatial size must be a multiple of ``2 ** (len(features) - 1)``.

    Args:
        spatial_dims: number of spatial dimensions, 2 (paper) or 3 (the paper's 3D variant).
        in_channels: number of input channels.
        out_channels: number of output channels (logits).
        features: U-Net widths ``U`` per resolution level, full resolution first.
        alpha: width multiplier ``alpha`` of the MultiRes blocks (1.67 in the paper).
        act: activation type and arguments (MONAI ``Act`` factory). Defaults to in-place ReLU.
        norm: feature normalisation type and arguments (MONAI ``Norm`` factory). Defaults to batch norm.
        dropout: dropout on the output of every MultiRes block, 0 for none.
        upsample: ``"deconv"`` (default, the paper's transposed convolution), ``"nontrainable"`` or
            ``"pixelshuffle"``.

    Example::

        net = MultiResUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(16, 32, 64, 128, 256))
        logits = net(torch.randn(2, 1, 256, 256))  # (2, 2, 256, 256)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        features: Sequence[int] = (32, 64, 128, 256, 512),
        alpha: float = 1.67,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = "batch",
        dropout: float | tuple = 0.0,
        upsample: str = "deconv",
    ):
        super().__init__()
        features = check_network_arguments("MultiResUNet", spatial_dims, in_channels, out_channels, features)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
            raise ValueError(f"MultiResUNet: alpha must be a positive number, got {alpha!r}.")
        check_upsample_mode("MultiResUNet", upsample)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.size_divisor = 1 << (len(features) - 1)
        depth = len(features) - 1

        encoder, res_paths, previous = [], [], in_channels
        for level, width in enumerate(features):
            block = MultiResBlock(spatial_dims, previous, width, alpha, act, norm, dropout)
            encoder.append(block)
            previous = block.out_channels
            if level < depth:
                res_paths.append(ResPath(spatial_dims, previous, width, depth - level, act, norm))
        self.encoder_blocks = nn.ModuleList(encoder)
        self.res_paths = nn.ModuleList(res_paths)
        self.max_pooling = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)

        # decoder_stages hands each stage (deeper width, skip width); the deeper map's channels are those of the
        # MultiRes block below it, which a stage reads from the previous stage (or the bottom encoder block).
        coarser = [encoder[-1].out_channels]

        def up_stage(_deeper_width: int, width: int) -> MultiResUpBlock:
            stage = MultiResUpBlock(
                spatial_dims, coarser[-1], width, width, alpha, act, norm, dropout, upsample
            )
            coarser.append(stage.out_channels)
            return stage

        self.up_blocks = decoder_stages(features, up_stage)
        self.output_conv = Conv[Conv.CONV, spatial_dims](coarser[-1], out_channels, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(N, in_channels, *spatial)``, every spatial size a multiple of ``2 ** (len(features) - 1)``.

        Returns:
            logits ``(N, out_channels, *spatial)``.

        Raises:
            ValueError: (a ``RuntimeError`` when scripted) for a wrong number of axes or channels, or an indivisible
                size.
        """
        check_divisible_input(x, self.spatial_dims, self.in_channels, self.size_divisor, "MultiResUNet")
        skips: List[torch.Tensor] = []
        depth = len(self.res_paths)
        for level, block in enumerate(self.encoder_blocks):
            x = block(x)
            if level < depth:
                skips.append(x)
                x = self.max_pooling(x)
        for level, path in enumerate(self.res_paths):
            skips[level] = path(skips[level])
        for step, up in enumerate(self.up_blocks):
            x = up(x, skips[depth - 1 - step])
        return self.output_conv(x)
