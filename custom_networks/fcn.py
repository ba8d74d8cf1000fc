"""FCN-8s of Long, Shelhamer and Darrell (CVPR 2015), a baseline of Table 1 of the Attention Residual-UNet paper.

Reference:
    J. Long, E. Shelhamer, T. Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015,
    pp. 3431-3440. arXiv:1411.4038. Journal version: E. Shelhamer, J. Long, T. Darrell, TPAMI 39(4), 2017.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Pool

from ._blocks import vgg_convolutions
from ._input_checks import (
    check_convs_per_stage,
    check_divisible_input,
    check_dropout_probability,
    check_network_arguments,
    check_positive_int,
    dropout_or_none,
)

__all__ = ["FCN8s", "VGGStage", "bilinear_upsampling_kernel"]


def bilinear_upsampling_kernel(factor: int, spatial_dims: int) -> torch.Tensor:
    """Separable (bi/tri)linear interpolation kernel of size ``2 * factor`` per axis.

    This is the initialisation of the paper's "deconvolution" layers (Sec. 3.3 and 4.3: "in-network upsampling
    layers are initialized to bilinear upsampling"). Along one axis the weights are ``1 - |i - c| / factor`` with
    centre ``c = factor - 1/2``; as a transposed convolution with stride ``factor`` and padding ``factor // 2`` it
    reproduces ``F.interpolate(..., scale_factor=factor, mode="(bi/tri)linear", align_corners=False)`` away from
    the border (e.g. ``[0.25, 0.75, 0.75, 0.25]`` for ``factor = 2``).

    Args:
        factor: up-sampling factor (the transposed convolution's stride), a positive even int or 1.
        spatial_dims: number of spatial dimensions.

    Returns:
        a float tensor of shape ``(2 * factor,) * spatial_dims``.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}.")
    size = 2 * factor
    centre = factor - 0.5
    profile = 1.0 - (torch.arange(size, dtype=torch.float32) - centre).abs() / factor
    kernel = profile
    for _ in range(spatial_dims - 1):
        kernel = kernel.unsqueeze(-1) * profile
    return kernel


class VGGStage(nn.Sequential):
    """One VGG-16 stage: ``num_convs`` 3x3 convolutions (padding 1), each followed by ``norm`` (optional) and the
    activation, then a 2x2 max pool with stride 2."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        num_convs: int,
        act: str | tuple,
        norm: str | tuple | None,
        bias: bool = True,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: number of input channels.
            out_channels: number of output channels of every convolution of the stage.
            num_convs: number of 3x3 convolutions (2, 2, 3, 3, 3 in VGG-16).
            act: activation type and arguments (MONAI ``Act`` factory).
            norm: feature normalisation type and arguments (MONAI ``Norm`` factory), ``None`` for none (VGG-16).
            bias: whether the convolutions have a bias term.
        """
        layers = vgg_convolutions(spatial_dims, in_channels, out_channels, num_convs, act, norm, bias=bias)
        layers["max_pooling"] = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        super().__init__(layers)


class FCN8s(nn.Module):
    """FCN-8s (Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015,
    Sec. 4.2 and Fig. 3), trained from scratch.

    Encoder: the VGG-16 convolutional stages (``features`` = (64, 128, 256, 512, 512) with (2, 2, 3, 3, 3) 3x3
    convolutions + ReLU, each stage ending in a 2x2 max pool), so ``pool3``, ``pool4`` and ``pool5`` have strides
    8, 16 and 32. The classifier's fully connected layers become convolutions ("fc6": ``fc_kernel_size`` conv to
    ``fc_channels``; "fc7": 1x1 conv to ``fc_channels``; each ReLU + dropout), followed by a 1x1 class-scoring
    layer ``score_fr``. Skip fusion (Fig. 3): the stride-32 scores are up-sampled 2x by a transposed convolution
    and summed with 1x1 scores of ``pool4``; the sum is up-sampled 2x and summed with 1x1 scores of ``pool3``;
    the stride-8 result is up-sampled 8x to the input size. The output is raw logits (the paper's per-pixel
    soft-max is left to the loss).

    With ``n = len(features)`` stages in general: the skips come from the last-but-two and last-but-one stages
    and the final up-sampling factor is ``2 ** (n - 2)`` (8 for VGG-16's five stages); ``n >= 3``.

    Choices where the paper is vague or the original setup does not apply (all configurable where it matters):
        - No pre-trained weights: the paper fine-tunes an ImageNet VGG-16; this project has no internet, so every
          layer is trained from scratch. Convolutions keep PyTorch's default initialisation instead of the paper's
          zero-initialised scoring layers, which only make sense on top of a pre-trained backbone (zero scores
          would block every gradient to the backbone at the first step).
        - "fc6" kernel: the original is a 7x7 convolution with 4096 channels (the reshaped ``fc6`` of VGG-16 on a
          7x7 ``pool5``); here ``fc_kernel_size`` (default 7, odd, "same" padding) and ``fc_channels`` (default
          4096, the paper's width: 134,489,759 parameters for 3 input channels and 21 classes, the count of the
          authors' ``voc-fcn8s`` model, of which fc6 alone is 102.8 M). For small medical datasets
          ``fc_channels=1024`` (or ``fc_kernel_size=3``) is a far lighter, sane choice; the Attention
          Residual-UNet paper does not state the width it used for Table 1.
        - Geometry: the original pads the first convolution by 100 pixels and crops the fused maps (Caffe
          ``Crop`` layers) so that any input size works. Here every convolution is "same"-padded and the input
          size must be a multiple of ``2 ** len(features)`` (32 by default); then every fusion is exact and the
          output has the input's spatial size with no crop. Other sizes raise a ``ValueError`` (pad the input,
          e.g. with MONAI's ``DivisiblePad``).
        - Up-sampling: all three transposed convolutions (kernel ``2 * factor``, stride ``factor``, padding
          ``factor // 2``, no bias, mixing classes like Caffe's ``Deconvolution``) are initialised to
          bilinear interpolation (:func:`bilinear_upsampling_kernel`, identity across classes) and learned. The
          paper keeps the final one fixed to bilinear interpolation: set ``learn_final_upsampling=False`` for that.
        - The later "at-once" variant's scaling of pool3/pool4 (0.0001/0.01) is not used (staged training of
          the CVPR paper, and no pre-trained scale mismatch here).
        - Dropout: ``dropout`` (0.5 in the paper) after "fc6" and "fc7" only, element-wise.
        - ``norm`` (none in the paper) is applied after every 3x3 convolution and after "fc6"/"fc7" if given.

    Args:
        spatial_dims: number of spatial dimensions, 1, 2 (paper) or 3.
        in_channels: number of input channels.
        out_channels: number of classes (channels of the logits).
        features: channels of the encoder stages from full resolution down; its length is the number of 2x max
            pools (at least 3).
        convs_per_stage: number of 3x3 convolutions of each stage, same length as ``features``.
        fc_channels: width of the convolutionised "fc6" and "fc7" (4096 in the paper).
        fc_kernel_size: kernel size of "fc6", a positive odd int (7 in the paper).
        act: activation type and arguments (MONAI ``Act`` factory). Defaults to in-place ReLU.
        norm: feature normalisation type and arguments (MONAI ``Norm`` factory), ``None`` (paper) for none.
        dropout: element-wise dropout probability after "fc6" and "fc7".
        learn_final_upsampling: whether the final ``2 ** (n - 2)``-times up-sampling is learned (default) or kept
            fixed to bilinear interpolation (paper).
        bias: whether the encoder and "fc" convolutions have a bias term.

    Example::

        net = FCN8s(spatial_dims=2, in_channels=1, out_channels=2, fc_channels=1024)
        logits = net(torch.randn(2, 1, 256, 256))  # (2, 2, 256, 256)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (64, 128, 256, 512, 512),
        convs_per_stage: Sequence[int] = (2, 2, 3, 3, 3),
        fc_channels: int = 4096,
        fc_kernel_size: int = 7,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = None,
        dropout: float = 0.5,
        learn_final_upsampling: bool = True,
        bias: bool = True,
    ):
        super().__init__()
        features = check_network_arguments(
            "FCN8s",
            spatial_dims,
            in_channels,
            out_channels,
            features,
            min_levels=3,
            spatial_dims_options=(1, 2, 3),
            min_levels_reason="the pool3 and pool4 skips need two stages above the last",
        )
        convs_per_stage = check_convs_per_stage("FCN8s", convs_per_stage, features)
        check_positive_int("FCN8s", "fc_channels", fc_channels)
        if check_positive_int("FCN8s", "fc_kernel_size", fc_kernel_size) % 2 == 0:
            raise ValueError(f"FCN8s: fc_kernel_size must be odd (for 'same' padding), got {fc_kernel_size!r}.")
        fc_dropout = dropout_or_none(check_dropout_probability("FCN8s", dropout))

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_stages = len(features)
        self.size_divisor = 1 << self.num_stages
        self.final_upsampling_factor = 1 << (self.num_stages - 2)

        stage_inputs = (in_channels,) + features[:-1]
        self.stages = nn.ModuleList(
            [
                VGGStage(spatial_dims, stage_in, stage_out, num_convs, act, norm, bias)
                for stage_in, stage_out, num_convs in zip(stage_inputs, features, convs_per_stage, strict=True)
            ]
        )
        self.fc6 = Convolution(
            spatial_dims,
            features[-1],
            fc_channels,
            kernel_size=fc_kernel_size,
            act=act,
            norm=norm,
            dropout=fc_dropout,
            bias=bias,
        )
        self.fc7 = Convolution(
            spatial_dims, fc_channels, fc_channels, kernel_size=1, act=act, norm=norm, dropout=fc_dropout, bias=bias
        )
        conv_type = Conv[Conv.CONV, spatial_dims]
        self.score_fr = conv_type(fc_channels, out_channels, kernel_size=1)
        self.score_pool4 = conv_type(features[-2], out_channels, kernel_size=1)
        self.score_pool3 = conv_type(features[-3], out_channels, kernel_size=1)
        self.upscore2 = self._bilinear_transposed_conv(out_channels, 2)
        self.upscore_pool4 = self._bilinear_transposed_conv(out_channels, 2)
        self.upscore_final = self._bilinear_transposed_conv(out_channels, self.final_upsampling_factor)
        if not learn_final_upsampling:
            self.upscore_final.weight.requires_grad_(False)

    def _bilinear_transposed_conv(self, channels: int, factor: int) -> nn.Module:
        layer = Conv[Conv.CONVTRANS, self.spatial_dims](
            channels, channels, kernel_size=2 * factor, stride=factor, padding=factor // 2, bias=False
        )
        kernel = bilinear_upsampling_kernel(factor, self.spatial_dims)
        with torch.no_grad():
            layer.weight.zero_()
            for channel in range(channels):
                layer.weight[channel, channel] = kernel
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(N, in_channels, *spatial)``, every spatial size a multiple of ``2 ** len(features)``.

        Returns:
            logits ``(N, out_channels, *spatial)``.

        Raises:
            ValueError: (a ``RuntimeError`` when scripted) for a wrong number of axes or channels, or an indivisible
                size.
        """
        check_divisible_input(x, self.spatial_dims, self.in_channels, self.size_divisor, "FCN8s")
        pooled: List[torch.Tensor] = []
        for stage in self.stages:
            x = stage(x)
            pooled.append(x)
        scores = self.score_fr(self.fc7(self.fc6(x)))
        scores = self.upscore2(scores) + self.score_pool4(pooled[-2])
        scores = self.upscore_pool4(scores) + self.score_pool3(pooled[-3])
        return self.upscore_final(scores)
