"""R2U-Net of Alom et al. (2018), a baseline of Table 1 of the Attention Residual-UNet paper.

References:
    M. Z. Alom, M. Hasan, C. Yakopcic, T. M. Taha, V. K. Asari, "Recurrent Residual Convolutional Neural Network
    based on U-Net (R2U-Net) for Medical Image Segmentation", arXiv:1802.06955, 2018.
    M. Z. Alom, C. Yakopcic, T. M. Taha, V. K. Asari, "Nuclei Segmentation with Recurrent Residual Convolutional
    Neural Networks based U-Net (R2U-Net)", NAECON 2018, pp. 228-233 (reference [14] of the Attention
    Residual-UNet paper).
    M. Liang, X. Hu, "Recurrent Convolutional Neural Network for Object Recognition", CVPR 2015 (the recurrent
    convolutional layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
from monai.networks.blocks import ADN, Convolution
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_dropout_layer

from ._blocks import decoder_stages, encoder_stages, unet_upsampling
from ._input_checks import check_divisible_input, check_network_arguments, check_upsample_mode, dropout_or_none

__all__ = ["R2UNet", "RecurrentConvBlock", "RRCNNBlock", "R2UpBlock"]


class RecurrentConvBlock(nn.Module):
    """Recurrent convolutional layer (RCL) unfolded over ``steps`` time steps, Eq. (1)-(2) of Alom et al.

    Eq. (1): ``O(t) = w_f * x(t) + w_r * x_r(t - 1) + b`` with ``F = ReLU(O)`` (Eq. 2); the input ``x`` is the
    same at every step. With one shared 3x3 convolution ``conv`` for the forward and the recurrent weights
    (``w_f = w_r``) and a normalisation + activation ``norm_act[t]`` of its own at every step, this is::

        out = norm_act[0](conv(x))                 # t = 0, the feed-forward convolution
        for t in 1..steps:
            out = norm_act[t](conv(x + out))       # recurrent steps

    so ``steps = 2`` ("one single convolution layer followed by two subsequential recurrent convolutional
    layers") evaluates the convolution 3 times; ``steps = 0`` is a plain convolution. Channels are unchanged.

    The normalisation is per step, as in recurrent batch normalisation (Cooijmans et al., ICLR 2017): the steps'
    inputs differ in distribution (``x`` alone, then ``x + out``), so one batch norm shared by the steps keeps
    running statistics that fit none of them, and the network behaves differently in evaluation mode than in
    training. Measured on phase-contrast cells: after 3 epochs a shared-norm R2U-Net segmented a validation crop
    with Dice 0.83 using batch statistics and predicted no cell at all with its running statistics.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        steps: int,
        act: str | tuple,
        norm: str | tuple | None,
        bias: bool = True,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            channels: number of input and output channels.
            steps: number of recurrent steps ``t`` after the feed-forward convolution (>= 0).
            act: activation type and arguments (MONAI ``Act`` factory).
            norm: feature normalisation type and arguments (MONAI ``Norm`` factory), ``None`` for none; one
                normalisation layer per time step.
            bias: whether the convolution has a bias term.
        """
        super().__init__()
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps (recurrent_steps) must be an int >= 0, got {steps!r}.")
        self.steps = steps
        self.conv = Convolution(spatial_dims, channels, channels, kernel_size=3, bias=bias, conv_only=True)
        self.norm_act = nn.ModuleList(
            [
                ADN(ordering="NA", in_channels=channels, act=act, norm=norm, norm_dim=spatial_dims)
                for _ in range(steps + 1)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for step, norm_act in enumerate(self.norm_act):
            out = norm_act(self.conv(x if step == 0 else x + out))
        return out


class RRCNNBlock(nn.Module):
    """Recurrent residual convolutional unit (RRCU, Fig. 4 of Alom et al.; Eq. (3) ``x_{l+1} = x_l + F(x_l)``).

    A 1x1 convolution maps the input to ``out_channels`` (``x_l``), two :class:`RecurrentConvBlock` in sequence
    give ``F(x_l)``, and the block returns ``x_l + F(x_l)`` (followed by ``dropout`` if given).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        steps: int,
        act: str | tuple,
        norm: str | tuple | None,
        dropout: float | tuple = 0.0,
        bias: bool = True,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: number of input channels.
            out_channels: number of output channels.
            steps: recurrent steps ``t`` of each recurrent convolutional layer.
            act: activation type and arguments.
            norm: feature normalisation type and arguments, ``None`` for none.
            dropout: dropout applied to the block output, a probability or a ``(name, args)`` tuple for MONAI's
                ``Dropout`` factory; 0 for none.
            bias: whether the convolutions have a bias term.
        """
        super().__init__()
        self.channel_match = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1, bias=bias)
        self.recurrent_convs = nn.Sequential(
            RecurrentConvBlock(spatial_dims, out_channels, steps, act, norm, bias),
            RecurrentConvBlock(spatial_dims, out_channels, steps, act, norm, bias),
        )
        dropout = dropout_or_none(dropout)
        self.dropout = nn.Identity() if dropout is None else get_dropout_layer(dropout, dropout_dim=spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel_match(x)
        return self.dropout(x + self.recurrent_convs(x))


class R2UpBlock(nn.Module):
    """One decoder step: 2x up-sampling to ``out_channels``, concatenation ``[skip, up-sampled]``, then an
    :class:`RRCNNBlock` from ``skip_channels + out_channels`` to ``out_channels``."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        steps: int,
        act: str | tuple,
        norm: str | tuple | None,
        dropout: float | tuple = 0.0,
        upsample: str = "deconv",
        bias: bool = True,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: channels of the coarser map to up-sample.
            skip_channels: channels of the encoder map of the same resolution.
            out_channels: channels after up-sampling and of the block output.
            steps: recurrent steps ``t``.
            act: activation type and arguments.
            norm: feature normalisation type and arguments, ``None`` for none.
            dropout: dropout at the end of the RRCNN block, 0 for none.
            upsample: ``"deconv"`` (2x2 transposed convolution, stride 2), ``"nontrainable"`` (1x1 convolution,
                then linear interpolation) or ``"pixelshuffle"``.
            bias: whether the convolutions have a bias term.
        """
        super().__init__()
        self.upsample = unet_upsampling(spatial_dims, in_channels, out_channels, upsample, bias)
        self.rrcnn = RRCNNBlock(
            spatial_dims, skip_channels + out_channels, out_channels, steps, act, norm, dropout, bias
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.rrcnn(torch.cat([skip, self.upsample(x)], dim=1))


class R2UNet(nn.Module):
    """R2U-Net (Alom et al., "Recurrent Residual Convolutional Neural Network based on U-Net (R2U-Net) for Medical
    Image Segmentation", arXiv:1802.06955, 2018, Sec. III and Fig. 3-4).

    A U-Net whose every pair of convolutions is replaced by a recurrent residual convolutional unit
    (:class:`RRCNNBlock`: 1x1 channel matching, two recurrent convolutional layers with ``recurrent_steps`` time
    steps each, residual sum). Encoder: an RRCNN block per level, 2x2 max pooling between levels, channels
    ``features`` (64, 128, 256, 512, 1024 by default); decoder: 2x up-sampling, concatenation with the encoder map
    of the same level, RRCNN block; final 1x1 convolution to ``out_channels`` logits. Default configuration:
    35,631,425 parameters for 3 input channels and 1 output channel.

    Choices where the paper is vague (configurable unless stated):
        - Recurrent weights (fixed): Eq. (1) has separate forward and recurrent kernels; here one convolution
          serves both (``conv(x + out)``), the widely used reading of the R2U-Net design, which keeps the
          convolution parameters of the block independent of ``recurrent_steps``.
        - Each recurrent step is conv -> ``norm`` (batch norm by default) -> ``act`` (ReLU, Eq. 2), with a
          normalisation layer per time step (see :class:`RecurrentConvBlock`: a shared one breaks evaluation mode).
        - Up-sampling: a 2x2 transposed convolution with stride 2 ("up-convolution" as in U-Net), no activation;
          ``upsample="nontrainable"`` gives a 1x1 convolution followed by linear interpolation instead.
        - Dropout: not part of the RRCU; ``dropout`` (0 by default) is applied at the end of every RRCNN block
          (channel-wise, MONAI's ``Dropout{N}d``).
        - Input size: "same" padding everywhere; the input size must be a multiple of ``2 ** (len(features) - 1)``
          (16 by default) so that every skip matches, otherwise a ``ValueError``. The output has the input's size.

    Args:
        spatial_dims: number of spatial dimensions, 1, 2 (paper) or 3.
        in_channels: number of input channels.
        out_channels: number of classes (channels of the logits).
        features: channels at each resolution level, from full resolution to the bottom; its length fixes the
            depth (``len(features) - 1`` max pools, at least 1).
        recurrent_steps: time steps ``t`` of every recurrent convolutional layer (2 in the paper); 0 turns each
            recurrent layer into a single convolution (a residual U-Net with 1x1 shortcuts).
        act: activation type and arguments (MONAI ``Act`` factory). Defaults to in-place ReLU.
        norm: feature normalisation type and arguments (MONAI ``Norm`` factory). Defaults to batch norm.
        dropout: dropout at the end of every RRCNN block, 0 for none.
        upsample: ``"deconv"`` (default), ``"nontrainable"`` or ``"pixelshuffle"``.
        bias: whether convolutions have a bias term.

    Example::

        net = R2UNet(spatial_dims=2, in_channels=1, out_channels=2, recurrent_steps=2)
        logits = net(torch.randn(2, 1, 256, 256))  # (2, 2, 256, 256)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        recurrent_steps: int = 2,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = "batch",
        dropout: float | tuple = 0.0,
        upsample: str = "deconv",
        bias: bool = True,
    ):
        super().__init__()
        features = check_network_arguments(
            "R2UNet", spatial_dims, in_channels, out_channels, features, spatial_dims_options=(1, 2, 3)
        )
        if isinstance(recurrent_steps, bool) or not isinstance(recurrent_steps, int) or recurrent_steps < 0:
            raise ValueError(f"R2UNet: recurrent_steps must be an int >= 0, got {recurrent_steps!r}.")
        check_upsample_mode("R2UNet", upsample)

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.size_divisor = 1 << (len(features) - 1)
        self.input_block = RRCNNBlock(spatial_dims, in_channels, features[0], recurrent_steps, act, norm, dropout, bias)
        self.max_pooling = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        self.down_blocks = encoder_stages(
            features,
            lambda in_chns, out_chns: RRCNNBlock(
                spatial_dims, in_chns, out_chns, recurrent_steps, act, norm, dropout, bias
            ),
        )
        self.up_blocks = decoder_stages(
            features,
            lambda in_chns, out_chns: R2UpBlock(
                spatial_dims,
                in_channels=in_chns,
                skip_channels=out_chns,
                out_channels=out_chns,
                steps=recurrent_steps,
                act=act,
                norm=norm,
                dropout=dropout,
                upsample=upsample,
                bias=bias,
            ),
        )
        self.output_conv = Conv[Conv.CONV, spatial_dims](features[0], out_channels, kernel_size=1, bias=True)

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
        check_divisible_input(x, self.spatial_dims, self.in_channels, self.size_divisor, "R2UNet")
        x = self.input_block(x)
        skips: List[torch.Tensor] = []
        for down in self.down_blocks:
            skips.append(x)
            x = down(self.max_pooling(x))
        for step, up in enumerate(self.up_blocks):
            x = up(x, skips[len(skips) - 1 - step])
        return self.output_conv(x)
