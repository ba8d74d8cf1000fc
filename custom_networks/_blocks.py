"""Layer builders that several networks of this package share because their papers use literally the same layer,
and the stage lists of their U-shaped layout.

Each network keeps its own named blocks (``Up``, ``DecoderStage``, ``VGGStage``, ...) and calls these builders
inside them, so module names and parameter keys are those of the block. :func:`encoder_stages` and
:func:`decoder_stages` build the ``nn.ModuleList`` of those blocks in the order the networks' own loops used, so
parameter names, counts and the order of random initialisation are unchanged; nothing here runs inside ``forward``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch.nn as nn
from monai.networks.blocks import Convolution, UpSample

from ._input_checks import check_upsample_mode

__all__ = ["unet_upsampling", "vgg_convolutions", "encoder_stages", "decoder_stages"]


def unet_upsampling(
    spatial_dims: int, in_channels: int, out_channels: int, mode: str = "deconv", bias: bool = True
) -> UpSample:
    """The 2x up-sampling of a U-Net decoder step, from ``in_channels`` to ``out_channels``.

    ``"deconv"`` is a 2x2 transposed convolution with stride 2, the usual reading of U-Net's "up-convolution"
    (Ronneberger et al. 2015, Fig. 1); ``"nontrainable"`` a 1x1 convolution followed by (bi/tri)linear
    interpolation; ``"pixelshuffle"`` MONAI's ``SubpixelUpsample``. No activation or normalisation.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: channels of the coarser map.
        out_channels: channels after up-sampling.
        mode: ``"deconv"``, ``"nontrainable"`` or ``"pixelshuffle"``.
        bias: whether the (transposed) convolution has a bias term.

    Raises:
        ValueError: for another ``mode``.
    """
    check_upsample_mode("", mode)
    return UpSample(
        spatial_dims,
        in_channels,
        out_channels,
        scale_factor=2,
        kernel_size=2 if mode == "deconv" else None,
        mode=mode,
        bias=bias,
    )


def vgg_convolutions(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    num_convs: int,
    act: str | tuple,
    norm: str | tuple | None,
    dropout: float | tuple | None = None,
    bias: bool = True,
) -> OrderedDict[str, Convolution]:
    """The 3x3 convolutions of one VGG-16 stage (Simonyan & Zisserman 2015), the encoder of FCN-8s and SegNet.

    ``num_convs`` convolutions with "same" padding and stride 1, named ``conv_0 ..``; the first maps
    ``in_channels`` to ``out_channels``, the others keep ``out_channels``. Each is followed by ``norm``, ``dropout``
    and ``act`` (MONAI ``Convolution``, ``"NDA"`` order). The stage's pooling is left to the caller.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: number of input channels.
        out_channels: number of output channels of every convolution.
        num_convs: number of 3x3 convolutions (2, 2, 3, 3, 3 in VGG-16).
        act: activation type and arguments (MONAI ``Act`` factory).
        norm: feature normalisation type and arguments (MONAI ``Norm`` factory), ``None`` for none.
        dropout: dropout after each convolution (MONAI ``Dropout`` spec), ``None`` for none.
        bias: whether the convolutions have a bias term.

    Returns:
        the convolutions by name, ready for ``nn.Sequential``.
    """
    return OrderedDict(
        (
            f"conv_{index}",
            Convolution(
                spatial_dims,
                in_channels if index == 0 else out_channels,
                out_channels,
                kernel_size=3,
                act=act,
                norm=norm,
                dropout=dropout,
                bias=bias,
            ),
        )
        for index in range(num_convs)
    )


def encoder_stages(features: Sequence[int], stage: Callable[[int, int], nn.Module]) -> nn.ModuleList:
    """The down-sampling stages of a U-shaped network, full resolution first.

    Args:
        features: channels at each resolution level, from full resolution to the bottom.
        stage: ``stage(in_channels, out_channels)`` builds the stage from level ``level`` (``features[level]``
            channels) to level ``level + 1`` (``features[level + 1]`` channels).

    Returns:
        ``len(features) - 1`` stages, for ``level = 0 .. len(features) - 2``.
    """
    return nn.ModuleList([stage(features[level], features[level + 1]) for level in range(len(features) - 1)])


def decoder_stages(features: Sequence[int], stage: Callable[[int, int], nn.Module]) -> nn.ModuleList:
    """The up-sampling stages of a U-shaped network, coarsest first (the order ``forward`` runs them in).

    Args:
        features: channels at each resolution level, from full resolution to the bottom.
        stage: ``stage(in_channels, out_channels)`` builds the stage from level ``level + 1`` (the deeper map,
            ``features[level + 1]`` channels) back to level ``level`` (the skip's ``features[level]`` channels).

    Returns:
        ``len(features) - 1`` stages, for ``level = len(features) - 2 .. 0``; stage ``step`` consumes the skip of
        level ``len(features) - 2 - step``.
    """
    return nn.ModuleList([stage(features[level + 1], features[level]) for level in reversed(range(len(features) - 1))])
