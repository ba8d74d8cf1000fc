"""SegNet of Badrinarayanan, Kendall and Cipolla (TPAMI 2017), a baseline of Table 1 of the Attention
Residual-UNet paper.

Reference:
    V. Badrinarayanan, A. Kendall, R. Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder Architecture for
    Image Segmentation", IEEE TPAMI 39(12), 2017, pp. 2481-2495. arXiv:1511.00561.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution

from ._blocks import vgg_convolutions
from ._input_checks import check_convs_per_stage, check_divisible_input, check_network_arguments, dropout_or_none

__all__ = ["SegNet", "SegNetEncoderStage", "SegNetDecoderStage", "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d"]

# torch annotates the attributes of nn.MaxUnpool{1,2,3}d as ``int | tuple`` unions, which TorchScript cannot convert
# (it fails with "Expected IntList but got Int" as soon as a module holding one is scripted). These subclasses declare
# the attributes as constants (the tuples ``__init__`` stores), so TorchScript takes their types from the values;
# behaviour and ``isinstance(m, nn.MaxUnpool2d)`` are unchanged.


class MaxUnpool1d(nn.MaxUnpool1d):
    """``nn.MaxUnpool1d`` that TorchScript can compile."""

    __constants__ = ["kernel_size", "stride", "padding"]

    def forward(
        self, input: torch.Tensor, indices: torch.Tensor, output_size: Optional[List[int]] = None
    ) -> torch.Tensor:
        return F.max_unpool1d(input, indices, self.kernel_size, self.stride, self.padding, output_size)


class MaxUnpool2d(nn.MaxUnpool2d):
    """``nn.MaxUnpool2d`` that TorchScript can compile."""

    __constants__ = ["kernel_size", "stride", "padding"]

    def forward(
        self, input: torch.Tensor, indices: torch.Tensor, output_size: Optional[List[int]] = None
    ) -> torch.Tensor:
        return F.max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding, output_size)


class MaxUnpool3d(nn.MaxUnpool3d):
    """``nn.MaxUnpool3d`` that TorchScript can compile."""

    __constants__ = ["kernel_size", "stride", "padding"]

    def forward(
        self, input: torch.Tensor, indices: torch.Tensor, output_size: Optional[List[int]] = None
    ) -> torch.Tensor:
        return F.max_unpool3d(input, indices, self.kernel_size, self.stride, self.padding, output_size)


_MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_MAX_UNPOOL = {1: MaxUnpool1d, 2: MaxUnpool2d, 3: MaxUnpool3d}


class SegNetEncoderStage(nn.Module):
    """One encoder stage: ``num_convs`` x (3x3 convolution, batch norm, ReLU), then a 2x2 max pool with stride 2
    that also returns the argmax locations ("pooling indices", Sec. 3 of the paper)."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        num_convs: int,
        act: str | tuple,
        norm: str | tuple | None,
        dropout: float | tuple | None = None,
        bias: bool = True,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: number of input channels.
            out_channels: number of output channels of every convolution of the stage.
            num_convs: number of 3x3 convolutions.
            act: activation type and arguments (MONAI ``Act`` factory).
            norm: feature normalisation type and arguments (MONAI ``Norm`` factory).
            dropout: dropout after each convolution (MONAI ``Convolution``'s ``dropout``), ``None`` for none.
            bias: whether the convolutions have a bias term.
        """
        super().__init__()
        self.convs = nn.Sequential(
            vgg_convolutions(spatial_dims, in_channels, out_channels, num_convs, act, norm, dropout, bias)
        )
        self.max_pooling = _MAX_POOL[spatial_dims](kernel_size=2, stride=2, return_indices=True)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Returns:
            ``(pooled, indices)``: the max-pooled features and, for each of them, the flat index (over the spatial
            axes of the un-pooled map) of the maximum it took, as expected by ``nn.MaxUnpool{1,2,3}d``.
        """
        return self.max_pooling(self.convs(x))


class SegNetDecoderStage(nn.Module):
    """One decoder stage: max un-pooling with the indices of the matching encoder stage (Fig. 3 of the paper: each
    value goes back to the location of the maximum it came from, zeros elsewhere), then ``num_convs`` 3x3
    convolutions. The first ``num_convs - 1`` keep ``in_channels``; the last maps to ``out_channels`` and is
    followed by batch norm and ReLU unless ``last_conv_only`` (the classifier at the end of the network)."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        num_convs: int,
        act: str | tuple,
        norm: str | tuple | None,
        dropout: float | tuple | None = None,
        bias: bool = True,
        last_conv_only: bool = False,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: number of input channels (those of the matching encoder stage).
            out_channels: number of output channels of the last convolution (those of the previous encoder stage,
                or the number of classes for the final decoder stage).
            num_convs: number of 3x3 convolutions.
            act: activation type and arguments.
            norm: feature normalisation type and arguments.
            dropout: dropout after each convolution but a plain last one, ``None`` for none.
            bias: whether the convolutions have a bias term.
            last_conv_only: whether the last convolution is a plain convolution (no norm, dropout, activation).
        """
        super().__init__()
        self.max_unpooling = _MAX_UNPOOL[spatial_dims](kernel_size=2, stride=2)
        self.convs = nn.Sequential()
        for index in range(num_convs):
            is_last = index == num_convs - 1
            self.convs.add_module(
                f"conv_{index}",
                Convolution(
                    spatial_dims,
                    in_channels,
                    out_channels if is_last else in_channels,
                    kernel_size=3,
                    act=act,
                    norm=norm,
                    dropout=dropout,
                    bias=bias,
                    conv_only=is_last and last_conv_only,
                ),
            )

    def forward(self, x: torch.Tensor, indices: torch.Tensor, output_size: List[int]) -> torch.Tensor:
        """
        Args:
            x: coarse features ``(N, in_channels, *spatial)``.
            indices: pooling indices of the matching encoder stage, same shape as ``x``.
            output_size: spatial size of the encoder map before its max pool (twice ``spatial``).
        """
        return self.convs(self.max_unpooling(x, indices, output_size))


class SegNet(nn.Module):
    """SegNet (Badrinarayanan, Kendall, Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder Architecture for
    Image Segmentation", TPAMI 2017, Sec. 3 and Fig. 2-3), trained from scratch.

    Encoder: the 13 convolutional layers of VGG-16 (``features`` = (64, 128, 256, 512, 512) with
    ``convs_per_stage`` = (2, 2, 3, 3, 3)), every 3x3 convolution followed by batch normalisation and ReLU, each
    stage ending in a 2x2 max pool with stride 2 whose argmax locations are stored. Decoder: one stage per encoder
    stage, in reverse order, each up-sampling its input by **max un-pooling with the stored indices** of the
    matching encoder stage (a sparse map, no learned up-sampling and no skip features) and densifying it with as
    many 3x3 convolutions (+ BN + ReLU) as the encoder stage had; the last convolution of a decoder stage reduces
    the channels to those of the next finer stage. The last convolution of the network outputs ``out_channels``
    logits (the paper's "soft-max classifier" is left to the loss). Default: 29.4 M parameters for 3 input
    channels and 11 classes (CamVid).

    Choices where the paper is vague (all configurable):
        - No pre-trained weights: the paper initialises the encoder from ImageNet VGG-16; this project has no
          internet, so everything is trained from scratch with PyTorch's default initialisation.
        - Decoder widths and classifier: the decoder mirrors the encoder layer by layer as in the authors' Caffe
          model (e.g. decoder stage 4: 512 -> 512 -> 512 -> 256; decoder stage 1: 64 -> 64 -> classes), the last
          convolution being a plain 3x3 convolution (no BN/ReLU) that gives the class scores.
        - Input size: every pooled size must be even so that un-pooling restores the encoder size exactly; the
          input size must be a multiple of ``2 ** len(features)`` (32 by default), otherwise a ``ValueError``.
        - Dropout: none in SegNet; ``dropout`` (0 by default) is applied after every convolution but the final
          classifier, a simple stand-in for Bayesian SegNet's dropout layers.
        - ``act``/``norm`` replace ReLU/batch norm if given (``norm=None`` drops the normalisation).

    Args:
        spatial_dims: number of spatial dimensions, 1, 2 (paper) or 3.
        in_channels: number of input channels.
        out_channels: number of classes (channels of the logits).
        features: channels of the encoder stages from full resolution down; its length is the number of max
            pools (at least 1).
        convs_per_stage: number of 3x3 convolutions of each encoder stage (and of the matching decoder stage),
            same length as ``features``.
        act: activation type and arguments (MONAI ``Act`` factory). Defaults to in-place ReLU.
        norm: feature normalisation type and arguments (MONAI ``Norm`` factory). Defaults to batch norm.
        dropout: dropout after every convolution but the classifier (MONAI ``Convolution``), 0 for none.
        bias: whether the convolutions have a bias term.

    Example::

        net = SegNet(spatial_dims=2, in_channels=1, out_channels=2)
        logits = net(torch.randn(2, 1, 256, 256))  # (2, 2, 256, 256)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (64, 128, 256, 512, 512),
        convs_per_stage: Sequence[int] = (2, 2, 3, 3, 3),
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = "batch",
        dropout: float | tuple = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        features = check_network_arguments(
            "SegNet",
            spatial_dims,
            in_channels,
            out_channels,
            features,
            min_levels=1,
            spatial_dims_options=(1, 2, 3),
            min_levels_reason="one per encoder stage",
        )
        convs_per_stage = check_convs_per_stage("SegNet", convs_per_stage, features)
        dropout = dropout_or_none(dropout)

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.size_divisor = 1 << len(features)
        encoder_inputs = (in_channels,) + features[:-1]
        self.encoder = nn.ModuleList(
            [
                SegNetEncoderStage(spatial_dims, stage_in, stage_out, num_convs, act, norm, dropout, bias)
                for stage_in, stage_out, num_convs in zip(encoder_inputs, features, convs_per_stage, strict=True)
            ]
        )
        decoder_outputs = (out_channels,) + features[:-1]
        self.decoder = nn.ModuleList(
            [
                SegNetDecoderStage(
                    spatial_dims,
                    features[level],
                    decoder_outputs[level],
                    convs_per_stage[level],
                    act,
                    norm,
                    dropout,
                    bias,
                    last_conv_only=level == 0,
                )
                for level in reversed(range(len(features)))
            ]
        )

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
        check_divisible_input(x, self.spatial_dims, self.in_channels, self.size_divisor, "SegNet")
        all_indices: List[torch.Tensor] = []
        unpooled_sizes: List[List[int]] = []
        for stage in self.encoder:
            unpooled_sizes.append(x.shape[2:])
            x, indices = stage(x)
            all_indices.append(indices)
        for step, stage in enumerate(self.decoder):
            level = len(all_indices) - 1 - step
            x = stage(x, all_indices[level], unpooled_sizes[level])
        return x
