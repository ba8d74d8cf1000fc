"""Attention Residual-UNet of Zhang et al. for phase-contrast cell images, with the paper's ablation switches.

One piece (over 400 lines): the paper's network and its named blocks (double-convolution and residual blocks,
attention gate, decoder stage), which nothing else uses.

Reference:
    Zhang Wenxiu, Zhu Zhencai, Zhang Yonghe, Wang Xinyu, Ding Guopeng, "Cell Image Segmentation Method Based on
    Residual Block and Attention Mechanism" (基于残差块和注意力机制的细胞图像分割方法), Acta Optica Sinica 40(17),
    1710001 (2020), doi:10.3788/AOS202040.1710001. Sec. 2.1-2.4, Eqs. (3)-(6), Sec. 3.2 (dropout 0.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_norm_layer

from ._blocks import decoder_stages, encoder_stages, unet_upsampling
from ._input_checks import (
    check_divisible_input,
    check_dropout_probability,
    check_network_arguments,
    check_upsample_mode,
    dropout_or_none,
)

__all__ = ["AttentionResUNet", "DoubleConvBlock", "ResidualBlock", "AttentionGate", "DecoderStage"]


class DoubleConvBlock(nn.Module):
    """Two 3x3 convolutions ("same" padding), each followed by normalisation and activation.

    This is the plain U-Net block (``use_residual=False``) and, unchanged, the residual mapping ``f(x)`` of
    :class:`ResidualBlock` ("two standard 3x3 convolutions", Sec. 2.3), so the ablation removes exactly the
    shortcut. Dropout, when enabled, sits between the two convolutions (conv -> norm -> dropout -> act -> conv ->
    norm -> act; MONAI ``Convolution`` with its default ``"NDA"`` ordering).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple,
        norm: str | tuple | None,
        dropout: float = 0.0,
        bias: bool = True,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: number of input channels.
            out_channels: number of output channels of both convolutions.
            act: activation type and arguments (MONAI ``Act`` factory).
            norm: normalisation type and arguments (MONAI ``Norm`` factory), ``None`` for none.
            dropout: element-wise dropout probability after the first convolution, 0 for none.
            bias: whether the convolutions have a bias term.
        """
        super().__init__()
        dropout = check_dropout_probability("DoubleConvBlock", dropout)
        self.conv_0 = Convolution(
            spatial_dims,
            in_channels,
            out_channels,
            kernel_size=3,
            padding=1,
            act=act,
            norm=norm,
            dropout=dropout_or_none(dropout),
            bias=bias,
        )
        self.conv_1 = Convolution(
            spatial_dims, out_channels, out_channels, kernel_size=3, padding=1, act=act, norm=norm, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1(self.conv_0(x))


class ResidualBlock(nn.Module):
    """Residual block of Sec. 2.3 / Fig. 2, Eq. (3): ``y = f(x, W_l) + W x``.

    ``f`` is a :class:`DoubleConvBlock` (two 3x3 convolutions with normalisation and activation) and ``W`` a 1x1
    convolution with bias on the shortcut ("the 1x1 convolution matches the feature dimensions, then Add"). The sum
    is returned as is: Eq. (3) has no activation or normalisation after the addition and none on the shortcut.

    MONAI's ``UnetResBlock`` was not used because it computes ``act(norm(conv(act(norm(conv x)))) + norm(W x))``:
    an activation after the addition (ResNet-v1 style), a normalisation on the shortcut, no activation at the end of
    ``f``, and an identity shortcut whenever the channels agree, i.e. not Eq. (3). Here the 1x1 projection is always
    present, as drawn in Fig. 2 (every block of this U-Net changes the channel count anyway, except the first when
    ``in_channels == features[0]``).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple,
        norm: str | tuple | None,
        dropout: float = 0.0,
        bias: bool = True,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: number of input channels.
            out_channels: number of output channels.
            act: activation type and arguments of the residual mapping.
            norm: normalisation type and arguments of the residual mapping, ``None`` for none.
            dropout: dropout probability inside the residual mapping (see :class:`DoubleConvBlock`).
            bias: whether the 3x3 convolutions have a bias term (the 1x1 shortcut always has one).
        """
        super().__init__()
        self.residual = DoubleConvBlock(spatial_dims, in_channels, out_channels, act, norm, dropout, bias)
        self.shortcut = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class AttentionGate(nn.Module):
    """Additive attention gate of Sec. 2.4 / Fig. 3, Eqs. (4)-(6) (Oktay et al. style, gating at skip resolution):

    ``t = ReLU(W_d d + W_u u + b1)`` (4), ``alpha = Sigmoid(W t + b2)`` (5), output ``o = d * alpha`` (6),

    where ``d`` is the low-level skip map, ``u`` the high-level gating map (the up-sampled decoder features, same
    spatial size as ``d``) and ``W_d``, ``W_u``, ``W`` are 1x1 convolutions. ``b1`` is the bias of ``W_u`` (``W_d``
    has none, as one bias is all Eq. 4 has), ``b2`` the bias of ``W``; ``alpha`` has one channel, broadcast over the
    channels of ``d``.

    The paper has no normalisation in the gate, hence ``norm=None`` by default. ``norm="batch"`` puts a batch norm
    after ``W_d``, ``W_u`` and ``W`` (before the sigmoid), the layout of MONAI's ``AttentionBlock``, which was not
    used directly because its batch norms are hard-wired and it does not return ``alpha``.
    """

    def __init__(
        self,
        spatial_dims: int,
        skip_channels: int,
        gating_channels: int,
        inter_channels: int | None = None,
        norm: str | tuple | None = None,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            skip_channels: channels of the skip map ``d``.
            gating_channels: channels of the gating map ``u``.
            inter_channels: channels of ``t``; the paper does not give them, default ``max(skip_channels // 2, 1)``
                (Oktay et al., MONAI's ``AttentionUnet``).
            norm: normalisation after each 1x1 convolution, ``None`` (paper) for none.
        """
        super().__init__()
        if inter_channels is None:
            inter_channels = max(skip_channels // 2, 1)
        if inter_channels < 1:
            raise ValueError(f"inter_channels must be a positive int, got {inter_channels!r}.")
        conv_type = Conv[Conv.CONV, spatial_dims]
        self.skip_projection = conv_type(skip_channels, inter_channels, kernel_size=1, bias=False)  # W_d
        self.gating_projection = conv_type(gating_channels, inter_channels, kernel_size=1, bias=True)  # W_u, b1
        self.attention_projection = conv_type(inter_channels, 1, kernel_size=1, bias=True)  # W, b2
        self.skip_norm = self._norm_layer(norm, spatial_dims, inter_channels)
        self.gating_norm = self._norm_layer(norm, spatial_dims, inter_channels)
        self.attention_norm = self._norm_layer(norm, spatial_dims, 1)

    @staticmethod
    def _norm_layer(norm: str | tuple | None, spatial_dims: int, channels: int) -> nn.Module:
        return nn.Identity() if norm is None else get_norm_layer(norm, spatial_dims=spatial_dims, channels=channels)

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            skip: low-level map ``d`` ``(N, skip_channels, *spatial)``.
            gating: high-level map ``u`` ``(N, gating_channels, *spatial)``.

        Returns:
            ``(d * alpha, alpha)`` with ``alpha`` of shape ``(N, 1, *spatial)`` in ``[0, 1]``.
        """
        intermediate = torch.relu(
            self.skip_norm(self.skip_projection(skip)) + self.gating_norm(self.gating_projection(gating))
        )
        alpha = torch.sigmoid(self.attention_norm(self.attention_projection(intermediate)))
        return skip * alpha, alpha


class DecoderStage(nn.Module):
    """One decoder step: up-sample the coarser map, gate the skip with it (optional), concatenate
    ``[gated skip, up-sampled]`` and apply a (residual or plain) block."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        act: str | tuple,
        norm: str | tuple | None,
        dropout: float,
        use_residual: bool,
        use_attention: bool,
        attention_norm: str | tuple | None = None,
        upsample: str = "deconv",
        bias: bool = True,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: channels of the coarser map.
            skip_channels: channels of the encoder map of this level.
            out_channels: channels after up-sampling and after the block.
            act: activation of the block.
            norm: normalisation of the block.
            dropout: dropout probability inside the block.
            use_residual: :class:`ResidualBlock` if ``True``, else :class:`DoubleConvBlock`.
            use_attention: gate the skip with an :class:`AttentionGate` if ``True``, else concatenate it as is.
            attention_norm: normalisation inside the gate.
            upsample: ``"deconv"`` (2x2 transposed convolution, stride 2), ``"nontrainable"`` or ``"pixelshuffle"``.
            bias: whether convolutions of the block and the up-sampling have a bias term.
        """
        super().__init__()
        self.upsample = unet_upsampling(spatial_dims, in_channels, out_channels, upsample, bias)
        self.attention_gate: Optional[AttentionGate] = (
            AttentionGate(spatial_dims, skip_channels, out_channels, norm=attention_norm) if use_attention else None
        )
        block_type = ResidualBlock if use_residual else DoubleConvBlock
        self.block = block_type(spatial_dims, skip_channels + out_channels, out_channels, act, norm, dropout, bias)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """
        Returns:
            the block output and the attention map ``alpha`` of the gate (``None`` without attention).
        """
        up = self.upsample(x)
        alpha: Optional[torch.Tensor] = None
        gate = self.attention_gate
        if gate is not None:
            skip, alpha = gate(skip, up)
        return self.block(torch.cat([skip, up], dim=1)), alpha


class AttentionResUNet(nn.Module):
    """Attention Residual-UNet (Zhang et al., Acta Optica Sinica 2020, Sec. 2.1-2.4, Fig. 1).

    A U-Net whose convolutional blocks are residual blocks (Eq. 3, :class:`ResidualBlock`) and whose skip
    connections pass an additive attention gate (Eqs. 4-6, :class:`AttentionGate`). Encoder: a block at full
    resolution, then ``depth = len(features) - 1`` steps of 2x2 max pooling + block (the last one is the bottom).
    Decoder: per level, up-sampling to the skip's channels, gate, concatenation ``[gated skip, up-sampled]``,
    block. A final 1x1 convolution gives ``out_channels`` logits (1 for the paper's binary BCE + Dice loss, or ``K``
    classes); no final activation.

    The ablation of Table 2 is four settings of one class: ``use_residual=False, use_attention=False`` (U-Net),
    ``use_residual=True`` only (+ residual blocks), ``use_attention=True`` only (+ attention), both (the proposed
    model, default). ``use_residual=False`` replaces each residual block by its residual mapping alone (two 3x3
    conv + norm + act), i.e. it removes exactly the 1x1 shortcuts; ``use_attention=False`` removes the gates and
    concatenates the skips unchanged.

    Choices where the paper is vague (all configurable):
        - Widths: Fig. 1 is not legible in the text; ``features`` defaults to U-Net's (64, 128, 256, 512, 1024), the
          paper's base framework, i.e. 4 poolings.
        - Normalisation: the paper names none; batch norm after every 3x3 convolution by default (``norm=None`` for
          none). The attention gate has none (``attention_norm=None``), as Eqs. (4)-(5).
        - Residual block: Eq. (3) literally, ``y = f(x) + W x`` with ``f`` = conv-norm-act-conv-norm-act and ``W`` a
          1x1 convolution, no activation after the sum (see :class:`ResidualBlock` for why MONAI's ``UnetResBlock``
          does not match).
        - Dropout: Sec. 3.2 adds dropout layers with probability 0.2 without saying where. Here one element-wise
          ``nn.Dropout(dropout)`` per block, between its two 3x3 convolutions, in every encoder, bottom and decoder
          block (the common Keras U-Net template conv-dropout-conv); none in the gates, shortcuts, up-sampling or
          the output convolution.
        - Up-sampling: 2x2 transposed convolution with stride 2 halving the channels (U-Net's "up-convolution",
          ``upsample="deconv"``); the gating map ``u`` of Eq. (4) is this up-sampled map, so ``d`` and ``u`` share
          the pixel index ``i`` as in the paper.
        - Gate width: ``t`` has ``skip_channels // 2`` channels (not stated; Oktay et al.).
        - Initialisation: PyTorch defaults (the paper's Keras defaults are not stated).

    Input size: every spatial size must be a positive multiple of ``2**depth`` (16 with the default ``features``);
    ``forward`` raises a ``ValueError`` otherwise. The output has the input's spatial size.

    Attention maps: ``forward`` returns only the logits. :meth:`forward_with_attention` returns
    ``(logits, maps)`` with one map per gated skip, ordered from full resolution to the coarsest skip:
    ``maps[level]`` has shape ``(N, 1, *[s // 2**level for s in spatial])`` and values in ``[0, 1]``; the list is
    empty when ``use_attention=False``. Both are TorchScript-scriptable.

    Args:
        spatial_dims: number of spatial dimensions, 2 (paper) or 3.
        in_channels: number of input channels.
        out_channels: number of output channels (1 for binary segmentation as in the paper, ``K`` for ``K`` classes).
        features: channels at each resolution level, from full resolution to the bottom; at least 2 entries.
        act: activation of the 3x3 convolutions (MONAI ``Act`` factory). The gate always uses ReLU and sigmoid
            (Eqs. 4-5).
        norm: normalisation after each 3x3 convolution (MONAI ``Norm`` factory), ``None`` for none.
        dropout: dropout probability inside every block (see above), 0 disables it.
        use_residual: residual blocks (Eq. 3) if ``True``, plain double convolutions otherwise.
        use_attention: attention gates on the skips (Eqs. 4-6) if ``True``, plain concatenation otherwise.
        attention_norm: normalisation after each 1x1 convolution of the gates, ``None`` (paper) for none.
        upsample: ``"deconv"`` (default), ``"nontrainable"`` (1x1 convolution + linear interpolation) or
            ``"pixelshuffle"``.
        bias: whether the 3x3 convolutions and the up-sampling have a bias term.

    Example::

        net = AttentionResUNet(spatial_dims=2, in_channels=1, out_channels=1)  # the paper's binary model
        logits, maps = net.forward_with_attention(torch.randn(1, 1, 256, 256))  # maps[0]: (1, 1, 256, 256)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = "batch",
        dropout: float = 0.2,
        use_residual: bool = True,
        use_attention: bool = True,
        attention_norm: str | tuple | None = None,
        upsample: str = "deconv",
        bias: bool = True,
    ):
        super().__init__()
        features = check_network_arguments("AttentionResUNet", spatial_dims, in_channels, out_channels, features)
        check_dropout_probability("AttentionResUNet", dropout)
        check_upsample_mode("AttentionResUNet", upsample)

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.depth = len(features) - 1
        self.size_divisor = 1 << self.depth
        self.use_residual = bool(use_residual)
        self.use_attention = bool(use_attention)

        block_type = ResidualBlock if use_residual else DoubleConvBlock
        self.input_block = block_type(spatial_dims, in_channels, features[0], act, norm, dropout, bias)
        self.down_blocks = encoder_stages(
            features,
            lambda in_chns, out_chns: nn.Sequential(
                Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2),
                block_type(spatial_dims, in_chns, out_chns, act, norm, dropout, bias),
            ),
        )
        self.decoder_stages = decoder_stages(
            features,
            lambda in_chns, out_chns: DecoderStage(
                spatial_dims,
                in_channels=in_chns,
                skip_channels=out_chns,
                out_channels=out_chns,
                act=act,
                norm=norm,
                dropout=dropout,
                use_residual=use_residual,
                use_attention=use_attention,
                attention_norm=attention_norm,
                upsample=upsample,
                bias=bias,
            ),
        )
        self.output_conv = Conv[Conv.CONV, spatial_dims](features[0], out_channels, kernel_size=1, bias=True)

    def _forward_impl(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        check_divisible_input(x, self.spatial_dims, self.in_channels, self.size_divisor, "AttentionResUNet")
        x = self.input_block(x)
        skips: List[torch.Tensor] = []
        for down in self.down_blocks:
            skips.append(x)
            x = down(x)
        coarse_to_fine: List[torch.Tensor] = []
        for step, stage in enumerate(self.decoder_stages):
            x, alpha = stage(x, skips[self.depth - 1 - step])
            if alpha is not None:
                coarse_to_fine.append(alpha)
        coarse_to_fine.reverse()
        return self.output_conv(x), coarse_to_fine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(N, in_channels, *spatial)``, every spatial size a multiple of ``2**depth``.

        Returns:
            logits ``(N, out_channels, *spatial)``.

        Raises:
            ValueError: (a ``RuntimeError`` when scripted) for a wrong number of axes or channels, or a spatial size
                that is not a multiple of ``2**depth``.
        """
        logits, _ = self._forward_impl(x)
        return logits

    @torch.jit.export
    def forward_with_attention(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Logits and the attention maps ``alpha`` of Eq. (5) of every gate.

        Returns:
            ``(logits, maps)``: ``maps[level]`` is ``(N, 1, *spatial / 2**level)`` with values in ``[0, 1]``,
            ``level = 0 .. depth - 1`` (full resolution first); an empty list when ``use_attention=False``.
        """
        return self._forward_impl(x)
