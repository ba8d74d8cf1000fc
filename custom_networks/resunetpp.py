"""ResUNet++ of Jha et al. (2019), one of the U-Net families of the survey (PAPERS.md Sec. 4).

Reference:
    D. Jha, P. H. Smedsrud, M. A. Riegler, D. Johansen, T. de Lange, P. Halvorsen, H. D. Johansen, "ResUNet++: An
    Advanced Architecture for Medical Image Segmentation", IEEE ISM 2019, pp. 225-230, arXiv:1911.07067.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import ADN, ChannelSELayer, Convolution
from monai.networks.layers.factories import Conv, Pool

from ._input_checks import check_divisible_input, check_network_arguments, check_positive_int
from .resunet import PreActivationResidualUnit

__all__ = ["ResUNetPlusPlus", "SEResidualUnit", "ASPP", "ResUNetPPAttention"]


class SEResidualUnit(nn.Sequential):
    """Residual unit followed by squeeze-and-excitation (Sec. III-A/B, Fig. 1): the pre-activation unit of ResUNet
    (:class:`~custom_networks.resunet.PreActivationResidualUnit`, with a normalised 1x1 projection shortcut) and
    MONAI's ``ChannelSELayer`` (global average pooling, two fully connected layers with reduction ``se_ratio``,
    ReLU and sigmoid, channel-wise rescaling; Hu et al. 2018)."""

    def __init__(
        self, spatial_dims, in_channels, out_channels, strides, act, norm, dropout, se_ratio, preactivate_input=True
    ):
        super().__init__()
        self.residual = PreActivationResidualUnit(
            spatial_dims,
            in_channels,
            out_channels,
            strides,
            act,
            norm,
            dropout,
            preactivate_input=preactivate_input,
            shortcut_norm=True,
        )
        self.squeeze_excite = ChannelSELayer(spatial_dims, out_channels, r=se_ratio, acti_type_1=act)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling as ResUNet++ uses it (Sec. III-C, after Chen et al. 2017): parallel 3x3
    convolutions with dilation rates ``dilations`` (1, 6, 12, 18), each followed by ``norm`` (no bias then),
    **summed**, then a 1x1 convolution. (MONAI's ``SimpleASPP`` concatenates its branches instead, so it is not this block.)"""

    def __init__(self, spatial_dims, in_channels, out_channels, dilations: Sequence[int], norm):
        super().__init__()
        dilations = tuple(check_positive_int("ASPP", "every dilation", d) for d in dilations)
        self.branches = nn.ModuleList(
            [
                Convolution(
                    spatial_dims,
                    in_channels,
                    out_channels,
                    kernel_size=3,
                    dilation=d,
                    act=None,
                    norm=norm,
                    bias=norm is None,
                    conv_only=norm is None,
                )
                for d in dilations
            ]
        )
        self.project = Conv[Conv.CONV, spatial_dims](out_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.empty(0)
        for index, branch in enumerate(self.branches):
            y = branch(x) if index == 0 else y + branch(x)
        return self.project(y)


class ResUNetPPAttention(nn.Module):
    """The attention unit of ResUNet++'s decoder (Sec. III-D, Fig. 1), written as in the authors' code::

        g' = maxpool2(conv3x3(act(norm(skip))))        # the encoder map of the finer level, brought to x's size
        a  = conv3x3(act(norm(g' + conv3x3(act(norm(x))))))
        out = a * x                                     # x: the decoder map of the coarser level

    ``a`` has ``x``'s channels and multiplies ``x`` directly, with no sigmoid (the code's choice; the paper's text
    only says "attention"). The decoder then up-samples ``out`` and concatenates the skip.
    """

    def __init__(self, spatial_dims: int, skip_channels: int, channels: int, act, norm):
        super().__init__()

        def norm_act_conv(c_in: int) -> nn.Sequential:
            return nn.Sequential(
                ADN(ordering="NA", in_channels=c_in, act=act, norm=norm, norm_dim=spatial_dims),
                Convolution(spatial_dims, c_in, channels, kernel_size=3, conv_only=True),
            )

        self.skip_conv = norm_act_conv(skip_channels)
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        self.x_conv = norm_act_conv(channels)
        self.attention_conv = norm_act_conv(channels)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.attention_conv(self.pool(self.skip_conv(skip)) + self.x_conv(x)) * x


class ResUNetPPUpBlock(nn.Module):
    """One decoder step: attention on the coarser map ``x`` guided by the skip, nearest 2x up-sampling,
    concatenation ``[up-sampled, skip]`` and an :class:`SEResidualUnit`."""

    def __init__(self, spatial_dims, in_channels, skip_channels, out_channels, act, norm, dropout, se_ratio):
        super().__init__()
        self.attention = ResUNetPPAttention(spatial_dims, skip_channels, in_channels, act, norm)
        self.unit = SEResidualUnit(
            spatial_dims, in_channels + skip_channels, out_channels, 1, act, norm, dropout, se_ratio
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.attention(skip, x), scale_factor=2.0, mode="nearest")
        return self.unit(torch.cat([up, skip], dim=1))


class ResUNetPlusPlus(nn.Module):
    """ResUNet++ (Jha et al., ISM 2019, Sec. III and Fig. 1): Deep ResUNet with squeeze-and-excitation after every
    residual unit, ASPP as the bridge and before the output, and an attention unit before every up-sampling.

    Layout for ``features = (f0, f1, f2, f3, f4)`` (the authors' code: 16, 32, 64, 128, 256):

    - stem: ``conv3x3-norm-act-conv3x3`` plus a normalised 1x1 shortcut, SE (width ``f0``);
    - encoder: SE residual units with stride 2 to ``f1``, ``f2``, ``f3`` (``len(features) - 2`` down-samplings);
    - bridge: :class:`ASPP` to ``f4`` at the deepest resolution;
    - decoder, from the bottom: attention (:class:`ResUNetPPAttention`) with the skip of the next finer level,
      nearest 2x up-sampling, concatenation with that skip, SE residual unit to ``f3``, ``f2``, ``f1`` (one width
      above the skip's, as in the code);
    - output: :class:`ASPP` to ``f0``, then a 1x1 convolution to ``out_channels`` logits.

    Default configuration: 4,062,427 parameters for 3 input channels and 1 output channel. Keras reports 4,070,385
    for the authors' code (4,062,993 trainable): it counts the batch-norm running statistics, its SE layers have
    no biases and its ASPP convolutions have.

    Choices where the paper is vague (configurable unless stated):
        - Layout, widths, the sum-based ASPP (rates 1, 6, 12, 18) and the attention without sigmoid follow the
          authors' Keras code (fixed, except the widths and ``aspp_dilations``).
        - SE: MONAI's ``ChannelSELayer`` with reduction ``se_ratio`` (8 as in the code); its fully connected layers
          have biases, the code's have none.
        - Output: logits; the code's sigmoid is left to the loss or the post-processing, as for MONAI's networks.
        - Dropout: not in the paper; ``dropout`` (0 by default) after each activation inside the residual units.
        - 3D: the paper is 2D; ``spatial_dims=3`` builds the same layout with 3D layers.
        - Input size: "same" padding; every spatial size must be a multiple of ``2 ** (len(features) - 2)``.

    Args:
        spatial_dims: number of spatial dimensions, 2 (paper) or 3.
        in_channels: number of input channels.
        out_channels: number of output channels (logits).
        features: widths ``(stem, encoder..., bridge)``; at least 3 entries.
        act: activation type and arguments (MONAI ``Act`` factory). Defaults to ReLU.
        norm: feature normalisation type and arguments (MONAI ``Norm`` factory). Defaults to batch norm.
        dropout: dropout after each activation inside the residual units, 0 for none.
        se_ratio: channel reduction of the squeeze-and-excitation blocks.
        aspp_dilations: dilation rates of the ASPP branches.

    Example::

        net = ResUNetPlusPlus(spatial_dims=2, in_channels=3, out_channels=1)
        logits = net(torch.randn(2, 3, 256, 256))  # (2, 1, 256, 256)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        features: Sequence[int] = (16, 32, 64, 128, 256),
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float | tuple = 0.0,
        se_ratio: int = 8,
        aspp_dilations: Sequence[int] = (1, 6, 12, 18),
    ):
        super().__init__()
        features = check_network_arguments(
            "ResUNetPlusPlus",
            spatial_dims,
            in_channels,
            out_channels,
            features,
            min_levels=3,
            min_levels_reason="stem, at least one encoder level and the bridge",
        )
        check_positive_int("ResUNetPlusPlus", "se_ratio", se_ratio)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.depth = len(features) - 2
        self.size_divisor = 1 << self.depth

        units = [SEResidualUnit(spatial_dims, in_channels, features[0], 1, act, norm, dropout, se_ratio, False)]
        for level in range(1, self.depth + 1):
            units.append(
                SEResidualUnit(spatial_dims, features[level - 1], features[level], 2, act, norm, dropout, se_ratio)
            )
        self.encoder = nn.ModuleList(units)
        self.bridge = ASPP(spatial_dims, features[self.depth], features[-1], aspp_dilations, norm)
        decoder, previous = [], features[-1]
        for level in reversed(range(self.depth)):
            decoder.append(
                ResUNetPPUpBlock(
                    spatial_dims, previous, features[level], features[level + 1], act, norm, dropout, se_ratio
                )
            )
            previous = features[level + 1]
        self.decoder = nn.ModuleList(decoder)
        self.output_aspp = ASPP(spatial_dims, previous, features[0], aspp_dilations, norm)
        self.output_conv = Conv[Conv.CONV, spatial_dims](features[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(N, in_channels, *spatial)``, every spatial size a multiple of ``2 ** (len(features) - 2)``.

        Returns:
            logits ``(N, out_channels, *spatial)``.

        Raises:
            ValueError: (a ``RuntimeError`` when scripted) for a wrong number of axes or channels, or an indivisible
                size.
        """
        check_divisible_input(x, self.spatial_dims, self.in_channels, self.size_divisor, "ResUNetPlusPlus")
        skips: List[torch.Tensor] = []
        for unit in self.encoder:
            x = unit(x)
            skips.append(x)
        x = self.bridge(x)
        for step, up in enumerate(self.decoder):
            x = up(x, skips[self.depth - 1 - step])
        return self.output_conv(self.output_aspp(x))
