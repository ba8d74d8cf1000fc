"""Deep Residual U-Net (ResUNet) of Zhang, Liu and Wang, a comparison network of the MCSA-UNet paper (Table 2).

Reference:
    Z. Zhang, Q. Liu, Y. Wang, "Road Extraction by Deep Residual U-Net", IEEE Geoscience and Remote Sensing Letters
    15(5), 749-753, 2018. arXiv:1711.10684.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
from monai.networks.blocks import ADN, Convolution, UpSample
from monai.networks.layers.factories import Conv

from ._blocks import decoder_stages
from ._input_checks import check_divisible_input, check_network_arguments, check_upsample_mode, dropout_or_none

__all__ = ["PreActivationResidualUnit", "ResUNet"]

# the paper's parameter-free up-sampling, or a width-keeping transposed convolution
UPSAMPLE_MODES = ("nontrainable", "deconv")


class PreActivationResidualUnit(nn.Module):
    """Residual unit of Zhang et al. (Sec. II-B, Fig. 1c): ``y = h(x) + F(x)`` with the full pre-activation residual
    function ``F = [norm-act-conv3x3(stride s)] -> [norm-act-conv3x3]`` (He et al., "Identity Mappings in Deep
    Residual Networks", 2016).

    ``h`` is the identity when shapes agree and otherwise a 1x1 projection convolution with the unit's stride (no
    normalisation, as in He et al.'s projection shortcuts; ``shortcut_norm=True`` adds one, as ResUNet++
    does). With ``preactivate_input=False`` the first normalisation-activation is dropped, giving
    ``conv-norm-act-conv`` for the network's first unit that sees the raw image (Zhang et al., Fig. 3 level 1).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        strides: int = 1,
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float | tuple = 0.0,
        bias: bool = True,
        preactivate_input: bool = True,
        shortcut_norm: bool = False,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: input channels.
            out_channels: output channels.
            strides: stride of the first 3x3 convolution and of the projection (2 to down-sample).
            act: activation type and arguments.
            norm: normalisation type and arguments, ``None`` for none.
            dropout: dropout after each activation (MONAI ``Dropout`` spec); 0 for none.
            bias: whether the convolutions have a bias term.
            preactivate_input: whether the unit starts with norm-act (``False`` for the first unit).
            shortcut_norm: whether the 1x1 projection shortcut is followed by ``norm``.
        """
        super().__init__()
        dropout_ = dropout_or_none(dropout)
        first: List[nn.Module] = []
        if preactivate_input:
            first.append(ADN("NAD", in_channels, act, norm, spatial_dims, dropout_, 1))
        first.append(Convolution(spatial_dims, in_channels, out_channels, strides=strides, bias=bias, conv_only=True))
        self.conv_0 = nn.Sequential(*first)
        self.conv_1 = nn.Sequential(
            ADN("NAD", out_channels, act, norm, spatial_dims, dropout_, 1),
            Convolution(spatial_dims, out_channels, out_channels, bias=bias, conv_only=True),
        )
        if in_channels != out_channels or strides != 1:
            self.shortcut: nn.Module = Convolution(
                spatial_dims,
                in_channels,
                out_channels,
                strides=strides,
                kernel_size=1,
                act=None,
                norm=norm if shortcut_norm else None,
                bias=bias,
                conv_only=not (shortcut_norm and norm is not None),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_1(self.conv_0(x))


class ResUNet(nn.Module):
    """Deep ResUNet (Zhang, Liu, Wang 2018): a U-Net built of pre-activation residual units, down-sampling by
    stride-2 convolutions instead of pooling.

    Structure for ``features = (f0, f1, f2, f3)`` (paper Table I: 64, 128, 256, 512):

    - encoding: unit ``in -> f0`` (stride 1, conv-norm-act-conv), units ``f0 -> f1`` and ``f1 -> f2`` (stride 2);
    - bridge: unit ``f2 -> f3`` (stride 2);
    - decoding, per level: 2x up-sampling of the coarser map, concatenation ``[up-sampled, skip]`` with the encoding
      unit of the same resolution, unit ``f_{l+1} + f_l -> f_l`` (stride 1);
    - a 1x1 convolution to ``out_channels`` giving raw logits (the paper's sigmoid is left to the loss).

    Choices where the paper is vague (configurable where it matters):
        - Shortcuts: identity where shapes agree, else a 1x1 convolution with the unit's stride and no
          normalisation. Every unit of the paper's network changes its width, so all use the projection.
        - Up-sampling: nearest-neighbour 2x (``upsample="nontrainable"``, the paper's plain "up-sampling", no
          parameters); ``"deconv"`` uses a 2x2 stride-2 transposed convolution keeping the width.
        - Batch normalisation (``norm="batch"``) and ReLU (paper); no normalisation-activation before the final 1x1
          convolution (paper Table I goes from the last unit to "Conv 1x1, Sigmoid").

    Parameters: 8,220,993 for ``in_channels=3, out_channels=1``. The paper reports 7.8M: the count without the
    1x1 projections (431,680 parameters) is 7,789,313, so its figure most likely leaves the shortcuts out.

    Input: ``(B, in_channels, *spatial)`` with every spatial size a multiple of ``2 ** (len(features) - 1)``
    (8 by default); ``forward`` raises ``ValueError`` otherwise. Output: logits ``(B, out_channels, *spatial)``.

    Args:
        spatial_dims: 2 (paper) or 3.
        in_channels: input channels.
        out_channels: output channels.
        features: widths of the resolution levels, full resolution first; the last is the bridge.
            ``len(features) - 1`` stride-2 units. Defaults to ``(64, 128, 256, 512)`` (paper).
        act: activation type and arguments. Defaults to ReLU.
        norm: normalisation type and arguments, ``None`` for none. Defaults to batch norm.
        dropout: dropout after each activation inside the units; 0 (default) for none.
        bias: whether the convolutions have a bias term.
        upsample: ``"nontrainable"`` (nearest, default) or ``"deconv"``.

    Example::

        net = ResUNet(spatial_dims=2, in_channels=3, out_channels=2)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 2,
        features: Sequence[int] = (64, 128, 256, 512),
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float | tuple = 0.0,
        bias: bool = True,
        upsample: str = "nontrainable",
    ):
        super().__init__()
        features = check_network_arguments("ResUNet", spatial_dims, in_channels, out_channels, features)
        check_upsample_mode("ResUNet", upsample, UPSAMPLE_MODES)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.depth = len(features) - 1
        self.size_divisor = 2**self.depth

        units = [
            PreActivationResidualUnit(
                spatial_dims, in_channels, features[0], 1, act, norm, dropout, bias, preactivate_input=False
            )
        ]
        for level in range(1, len(features)):
            units.append(
                PreActivationResidualUnit(
                    spatial_dims, features[level - 1], features[level], 2, act, norm, dropout, bias
                )
            )
        # the last one is the paper's "bridge"
        self.encoder = nn.ModuleList(units)
        self.upsamplers = decoder_stages(
            features,
            lambda in_chns, _: UpSample(
                spatial_dims,
                in_chns,
                in_chns,
                scale_factor=2,
                mode=upsample,
                pre_conv=None,
                interp_mode="nearest",
                align_corners=None,
                bias=bias,
            ),
        )
        self.decoder = decoder_stages(
            features,
            lambda in_chns, out_chns: PreActivationResidualUnit(
                spatial_dims, in_chns + out_chns, out_chns, 1, act, norm, dropout, bias
            ),
        )
        self.output_conv = Conv[Conv.CONV, spatial_dims](features[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(B, in_channels, *spatial)``, spatial sizes multiples of ``2 ** (len(features) - 1)``.

        Returns:
            logits ``(B, out_channels, *spatial)``.

        Raises:
            ValueError: (``torch.jit.Error`` when scripted) for a wrong number of axes or channels, or a spatial
                size that is not a multiple of the divisor.
        """
        check_divisible_input(x, self.spatial_dims, self.in_channels, self.size_divisor, "ResUNet")
        skips: List[torch.Tensor] = []
        for unit in self.encoder:
            x = unit(x)
            skips.append(x)
        # TorchScript's zip takes no ``strict`` argument
        for step, (upsampler, unit) in enumerate(zip(self.upsamplers, self.decoder)):  # noqa: B905
            x = unit(torch.cat([upsampler(x), skips[self.depth - 1 - step]], dim=1))
        return self.output_conv(x)
