"""BCDU-Net of Azad et al. (2019), one of the U-Net families of the survey (PAPERS.md Sec. 4).

References:
    R. Azad, M. Asadi-Aghbolaghi, M. Fathy, S. Escalera, "Bi-Directional ConvLSTM U-Net with Densley Connected
    Convolutions", ICCV Workshops 2019, arXiv:1909.00166.
    X. Shi, Z. Chen, H. Wang, D.-Y. Yeung, W.-K. Wong, W.-C. Woo, "Convolutional LSTM Network", NeurIPS 2015 (the
    ConvLSTM of Eq. 1-5 below).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, Tuple

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Pool

from ._blocks import decoder_stages, encoder_stages
from ._input_checks import check_divisible_input, check_network_arguments, check_positive_int, dropout_or_none

__all__ = ["BCDUNet", "ConvLSTMCell", "BidirectionalConvLSTM", "DenseBottleneck"]


class ConvLSTMCell(nn.Module):
    """ConvLSTM cell of Shi et al. (2015), Eq. (3) of Azad et al.::

        i = sigmoid(W_xi * x + W_hi * h + b_i)        f = sigmoid(W_xf * x + W_hf * h + b_f)
        o = sigmoid(W_xo * x + W_ho * h + b_o)        g = tanh(W_xg * x + W_hg * h + b_g)
        c' = f . c + i . g                              h' = o . tanh(c')

    ``*`` is a ``kernel_size`` convolution with "same" padding; one convolution over ``[x, h]`` computes all four
    gates. The peephole terms of Shi et al. are left out, as in Keras' ``ConvLSTM2D`` that the authors used.
    """

    def __init__(self, spatial_dims: int, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = Conv[Conv.CONV, spatial_dims](
            in_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2
        )

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        i, f, o, g = torch.chunk(self.gates(torch.cat([x, h], dim=1)), 4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def last_hidden(self, steps: List[torch.Tensor]) -> torch.Tensor:
        """Runs the cell over ``steps`` from zero states and returns the last hidden state."""
        first = steps[0]
        shape = [first.shape[0], self.hidden_channels] + list(first.shape[2:])
        h = torch.zeros(shape, dtype=first.dtype, device=first.device)
        c = torch.zeros(shape, dtype=first.dtype, device=first.device)
        for x in steps:
            h, c = self.forward(x, h, c)
        return h


class BidirectionalConvLSTM(nn.Module):
    """Bidirectional ConvLSTM over a short sequence of feature maps (Sec. 3.2, Fig. 2 of Azad et al.).

    One :class:`ConvLSTMCell` reads the sequence forwards, another backwards, each from zero states; their last
    hidden states are concatenated (``2 * hidden_channels`` channels), Keras' ``Bidirectional(ConvLSTM2D(...,
    return_sequences=False))``. BCDU-Net feeds it the pair ``[encoder skip, up-sampled decoder map]``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.forward_cell = ConvLSTMCell(spatial_dims, in_channels, hidden_channels, kernel_size)
        self.backward_cell = ConvLSTMCell(spatial_dims, in_channels, hidden_channels, kernel_size)
        self.hidden_channels = hidden_channels

    def forward(self, steps: List[torch.Tensor]) -> torch.Tensor:
        backwards: List[torch.Tensor] = []
        for index in range(len(steps)):
            backwards.append(steps[len(steps) - 1 - index])
        return torch.cat([self.forward_cell.last_hidden(steps), self.backward_cell.last_hidden(backwards)], dim=1)


def _two_convs(spatial_dims, in_channels, out_channels, act, norm, dropout) -> nn.Sequential:
    """Two 3x3 convolutions with ``norm``/``act`` (the U-Net pair; ``dropout`` after the second); a convolution
    followed by a normalisation has no bias."""
    return nn.Sequential(
        Convolution(spatial_dims, in_channels, out_channels, kernel_size=3, act=act, norm=norm, bias=norm is None),
        Convolution(
            spatial_dims, out_channels, out_channels, kernel_size=3, act=act, norm=norm, dropout=dropout,
            bias=norm is None,
        ),
    )


class DenseBottleneck(nn.Module):
    """Densely connected convolutions of the last encoder level (Sec. 3.3, Fig. 3 of Azad et al.).

    ``num_blocks`` pairs of 3x3 convolutions; block ``k`` reads the concatenation of the outputs of all earlier
    blocks (block 0 reads the input), as in DenseNet (Huang et al. 2017). The paper's BCDU-Net (d = 3) has three
    blocks; the output is the last block's.
    """

    def __init__(self, spatial_dims, in_channels, channels, num_blocks, act, norm, dropout):
        super().__init__()
        check_positive_int("DenseBottleneck", "num_blocks", num_blocks)
        blocks = [_two_convs(spatial_dims, in_channels, channels, act, norm, dropout)]
        for k in range(1, num_blocks):
            blocks.append(_two_convs(spatial_dims, k * channels, channels, act, norm, dropout))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: List[torch.Tensor] = []
        for index, block in enumerate(self.blocks):
            x = block(x if index == 0 else torch.cat(outputs, dim=1))
            outputs.append(x)
        return x


class BCDUpBlock(nn.Module):
    """One decoder step (Sec. 3.2): 2x2 transposed convolution to the skip's width with ``norm`` and ``act``, a
    :class:`BidirectionalConvLSTM` over ``[skip, up-sampled]`` with ``width // 2`` hidden channels per direction,
    then two 3x3 convolutions."""

    def __init__(self, spatial_dims, in_channels, width, act, norm, dropout):
        super().__init__()
        self.upsample = Convolution(
            spatial_dims,
            in_channels,
            width,
            strides=2,
            kernel_size=2,
            padding=0,
            output_padding=0,
            is_transposed=True,
            act=act,
            norm=norm,
            bias=norm is None,
        )
        self.bconvlstm = BidirectionalConvLSTM(spatial_dims, width, max(1, width // 2))
        self.convs = _two_convs(spatial_dims, 2 * max(1, width // 2), width, act, norm, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(self.bconvlstm([skip, self.upsample(x)]))


class BCDUNet(nn.Module):
    """BCDU-Net (Azad et al., ICCVW 2019, Fig. 1): a U-Net whose skip connections are merged with the decoder by
    bidirectional ConvLSTMs and whose last encoder level is a block of densely connected convolutions.

    Layout for ``features = (f0, .., fL)`` (paper: 64, 128, 256, 512):

    - encoder: two 3x3 convolutions per level at ``f0 .. f(L-1)``, 2x2 max pooling after each;
    - bottleneck: :class:`DenseBottleneck` with ``dense_blocks`` pairs of convolutions at ``fL``;
    - decoder, per level: 2x2 transposed convolution to ``f_l`` + ``norm`` + ``act``; bidirectional ConvLSTM over
      ``[skip, up-sampled]`` with ``f_l / 2`` hidden channels per direction (``f_l`` after concatenation); two 3x3
      convolutions at ``f_l``;
    - a 1x1 convolution to ``out_channels`` logits.

    Default configuration: 23,372,545 parameters for 1 input channel and 1 output channel (the paper states no
    count).

    Choices where the paper is vague (configurable unless stated):
        - Normalisation: batch norm after every convolution here (``norm="batch"``); the authors' code normalises
          only the transposed convolutions. ``norm=None`` removes all of it.
        - ConvLSTM gates (fixed): sigmoid for ``i, f, o`` and tanh for ``g`` and the cell output (Shi et al.);
          Keras' default "hard sigmoid" is a piecewise-linear approximation of the same.
        - Head: the code ends with a 3x3 convolution to 2 channels and a 1x1 convolution with sigmoid; here one
          1x1 convolution gives logits, as for MONAI's networks.
        - Dropout: the code drops half the channels in the dense bottleneck; ``dropout`` (0 by default) is applied
          after every pair of convolutions.
        - 3D: the paper is 2D; ``spatial_dims=3`` builds the same layout with 3D layers and ConvLSTMs.
        - Input size: "same" padding; every spatial size must be a multiple of ``2 ** (len(features) - 1)``.

    Args:
        spatial_dims: number of spatial dimensions, 2 (paper) or 3.
        in_channels: number of input channels.
        out_channels: number of output channels (logits).
        features: channels per level, full resolution first; the last is the dense bottleneck's.
        dense_blocks: number of densely connected blocks in the bottleneck (3 in the paper's BCDU-Net, d = 3).
        act: activation type and arguments (MONAI ``Act`` factory). Defaults to ReLU.
        norm: feature normalisation type and arguments (MONAI ``Norm`` factory). Defaults to batch norm.
        dropout: dropout after every pair of 3x3 convolutions, 0 for none.

    Example::

        net = BCDUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(16, 32, 64, 128))
        logits = net(torch.randn(2, 1, 256, 256))  # (2, 2, 256, 256)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (64, 128, 256, 512),
        dense_blocks: int = 3,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = "batch",
        dropout: float | tuple = 0.0,
    ):
        super().__init__()
        features = check_network_arguments("BCDUNet", spatial_dims, in_channels, out_channels, features)
        check_positive_int("BCDUNet", "dense_blocks", dense_blocks)
        dropout = dropout_or_none(dropout)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.depth = len(features) - 1
        self.size_divisor = 1 << self.depth

        self.input_convs = _two_convs(spatial_dims, in_channels, features[0], act, norm, dropout)
        self.max_pooling = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        # levels 1 .. L-1 are plain pairs of convolutions; level L is the dense bottleneck
        self.down_convs = encoder_stages(
            features[:-1], lambda c_in, c_out: _two_convs(spatial_dims, c_in, c_out, act, norm, dropout)
        )
        self.bottleneck = DenseBottleneck(
            spatial_dims, features[-2], features[-1], dense_blocks, act, norm, dropout
        )
        self.up_blocks = decoder_stages(
            features, lambda c_in, width: BCDUpBlock(spatial_dims, c_in, width, act, norm, dropout)
        )
        self.output_conv = Conv[Conv.CONV, spatial_dims](features[0], out_channels, kernel_size=1)

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
        check_divisible_input(x, self.spatial_dims, self.in_channels, self.size_divisor, "BCDUNet")
        x = self.input_convs(x)
        skips: List[torch.Tensor] = [x]
        for convs in self.down_convs:
            x = convs(self.max_pooling(x))
            skips.append(x)
        x = self.bottleneck(self.max_pooling(x))
        for step, up in enumerate(self.up_blocks):
            x = up(x, skips[self.depth - 1 - step])
        return self.output_conv(x)
