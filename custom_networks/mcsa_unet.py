"""MCSA-UNet: a U-Net whose encoder levels end with a CBAM-style channel-spatial attention module plus a residual
(the "CSA" module), for the segmentation of mitotic breast-cancer nuclei.

One piece (over 400 lines): the paper's network and its named blocks (the CSA module with its channel and
spatial gates, the encoder level, the decoder step), which no other network here uses; ``ChannelSpatialAttention``
is exported for reuse from here.

References:
    Liu Guohua, Yan Keding, Zhang Liang, Liu Yenan, Ma Hang, Zhang Qi,
    "基于注意力机制和残差结构的细胞核分割方法"
    (A cell nucleus segmentation method based on attention mechanism and residual structure),
    Journal of Optoelectronics·Laser 34, 2023 (Sec. 1.2, Eqs. 1-6, Table 1).

    S. Woo, J. Park, J.-Y. Lee, I. S. Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018
    (the channel and spatial attention the CSA module is built from).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_act_layer
from monai.networks.nets.basic_unet import TwoConv

from ._blocks import decoder_stages, unet_upsampling
from ._input_checks import check_divisible_input, check_network_arguments, check_positive_int, check_upsample_mode
from ._reductions import GlobalAvgPool, mean_over

__all__ = [
    "ChannelAttentionGate",
    "SpatialAttentionGate",
    "ChannelSpatialAttention",
    "CSAEncoderLevel",
    "UpConcat",
    "MCSAUNet",
]


class ChannelAttentionGate(nn.Module):
    """Channel attention map of CBAM, paper Eq. (3): ``Mc(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))``.

    ``AvgPool``/``MaxPool`` pool over all spatial positions; the MLP (one hidden layer of
    ``max(1, channels // reduction_ratio)`` units with ReLU, as in CBAM) is shared by both pooled descriptors and is
    implemented with 1x1 convolutions so that it acts on ``(B, C, 1, ...)`` tensors directly.

    Returns the gate ``(B, C, 1, ..., 1)`` with values in ``(0, 1)``; multiplying it with ``F`` is left to the caller
    (:class:`ChannelSpatialAttention`).
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        reduction_ratio: int = 16,
        act: str | tuple = "relu",
        bias: bool = True,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            channels: number of channels ``C`` of ``F``.
            reduction_ratio: ``r`` of CBAM; the hidden layer has ``max(1, C // r)`` units. Defaults to 16 (CBAM).
            act: activation of the hidden layer. Defaults to ReLU (CBAM).
            bias: whether the two MLP layers have a bias term (CBAM's reference code uses biased linear layers).
        """
        super().__init__()
        check_positive_int("ChannelAttentionGate", "reduction_ratio", reduction_ratio)
        hidden = max(1, channels // reduction_ratio)
        # a sum / count instead of AdaptiveAvgPool: no full-size fp32 copy of a bf16 map (see _reductions)
        self.avg_pool = GlobalAvgPool()
        self.max_pool = Pool[Pool.ADAPTIVEMAX, spatial_dims](1)
        self.mlp = nn.Sequential(
            Conv[Conv.CONV, spatial_dims](channels, hidden, kernel_size=1, bias=bias),
            get_act_layer(act),
            Conv[Conv.CONV, spatial_dims](hidden, channels, kernel_size=1, bias=bias),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(self.avg_pool(features)) + self.mlp(self.max_pool(features)))


class SpatialAttentionGate(nn.Module):
    """Spatial attention map of CBAM, paper Eq. (4): ``Ms(A) = sigmoid(f7x7([AvgPool_c(A); MaxPool_c(A)]))``.

    ``AvgPool_c``/``MaxPool_c`` reduce over the channel axis, giving a 2-channel map (average first, as in the
    equation) that one ``kernel_size`` convolution ("same" padding) maps to one channel. ``norm`` optionally puts a
    normalisation layer between the convolution and the sigmoid, as CBAM's reference code does (batch norm, with a
    bias-free convolution); neither paper's equation has it, hence the default ``None`` (biased convolution).

    Returns the gate ``(B, 1, *spatial)`` with values in ``(0, 1)``.
    """

    def __init__(self, spatial_dims: int, kernel_size: int = 7, norm: str | tuple | None = None):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            kernel_size: odd size of the convolution. Defaults to 7 (paper and CBAM).
            norm: normalisation after the convolution (MONAI ``Norm`` factory), e.g. ``"batch"``; ``None`` for none.
        """
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"spatial attention kernel_size must be a positive odd int, got {kernel_size!r}.")
        self.conv = Convolution(
            spatial_dims,
            in_channels=2,
            out_channels=1,
            kernel_size=kernel_size,
            act=None,
            norm=norm,
            bias=norm is None,
            conv_only=norm is None,
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([mean_over(features, [1]), torch.amax(features, dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class ChannelSpatialAttention(nn.Module):
    """The CSA module of MCSA-UNet (paper Fig. 2): CBAM channel then spatial attention, plus a residual.

    With ``F`` the input features (paper ``F1``):

    - Eq. (1): ``A_c = Mc(F) * F`` (:class:`ChannelAttentionGate`, broadcast over space);
    - Eq. (2): ``A_s = Ms(A_c) * A_c`` (:class:`SpatialAttentionGate`, broadcast over channels). The printed
      Eq. (2) multiplies ``Ms(A_c)`` with ``F1``; this module follows CBAM's sequential form (``Ms`` applied to the
      features it was computed from), which the paper's description of the flow and its citation of CBAM describe,
      and which the brief of this project specifies;
    - Eq. (5): ``F' = F + A_s`` (residual).

    The switches give the configurations of the paper's ablation (Table 1). A disabled attention is the identity
    (its gate is taken as 1): without channel attention ``A_c = F``; without spatial attention ``A_s = A_c``;
    without residual ``F' = A_s``. Hence ``use_residual`` alone gives ``F' = F + F = 2 F``, which is all Eq. (5)
    can mean without attention; note that a following convolution (and normalisation) can absorb this factor, so
    "+Res" alone is a plain U-Net up to a fixed scaling. With everything off the module is the identity and has
    no parameters. Usable on its own after any convolutional block.

    Example::

        csa = ChannelSpatialAttention(spatial_dims=2, channels=64)
        enhanced, channel_gate, spatial_gate = csa.forward_with_gates(torch.randn(2, 64, 32, 32))
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        reduction_ratio: int = 16,
        spatial_kernel_size: int = 7,
        spatial_gate_norm: str | tuple | None = None,
        use_channel_attention: bool = True,
        use_spatial_attention: bool = True,
        use_residual: bool = True,
        mlp_act: str | tuple = "relu",
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions, 2 or 3.
            channels: number of channels of the input (and output).
            reduction_ratio: hidden-layer reduction of the channel MLP. Defaults to 16 (CBAM; the paper gives none).
            spatial_kernel_size: convolution size of the spatial gate. Defaults to 7 (paper Eq. 4).
            spatial_gate_norm: normalisation inside the spatial gate (``"batch"`` as in CBAM's code). Defaults to
                ``None`` (paper Eq. 4).
            use_channel_attention: apply ``Mc`` (Eq. 1, 3).
            use_spatial_attention: apply ``Ms`` (Eq. 2, 4).
            use_residual: add the input back (Eq. 5).
            mlp_act: activation of the channel MLP's hidden layer.
        """
        super().__init__()
        self.spatial_dims = spatial_dims
        self.use_residual = bool(use_residual)
        self.channel_attention: Optional[ChannelAttentionGate] = None
        if use_channel_attention:
            self.channel_attention = ChannelAttentionGate(spatial_dims, channels, reduction_ratio, act=mlp_act)
        self.spatial_attention: Optional[SpatialAttentionGate] = None
        if use_spatial_attention:
            self.spatial_attention = SpatialAttentionGate(spatial_dims, spatial_kernel_size, spatial_gate_norm)

    def _enhance(self, features: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        attended = features
        channel_gate: Optional[torch.Tensor] = None
        spatial_gate: Optional[torch.Tensor] = None
        if self.channel_attention is not None:
            gate = self.channel_attention(attended)
            attended = gate * attended
            channel_gate = gate
        if self.spatial_attention is not None:
            gate = self.spatial_attention(attended)
            attended = gate * attended
            spatial_gate = gate
        if self.use_residual:
            attended = features + attended
        return attended, channel_gate, spatial_gate

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Returns ``F'`` (same shape as ``features``)."""
        return self._enhance(features)[0]

    @torch.jit.export
    def forward_with_gates(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(F', Mc, Ms)``: ``Mc`` of shape ``(B, C, 1, ...)``, ``Ms`` of shape ``(B, 1, *spatial)``.

        A disabled gate is returned as ones of its shape (the identity it stands for).
        """
        enhanced, channel_gate, spatial_gate = self._enhance(features)
        batch, channels = features.shape[0], features.shape[1]
        if channel_gate is None:
            channel_gate = features.new_ones([batch, channels] + [1] * self.spatial_dims)
        if spatial_gate is None:
            spatial_gate = features.new_ones([batch, 1] + list(features.shape[2:]))
        return enhanced, channel_gate, spatial_gate


class CSAEncoderLevel(nn.Module):
    """One MCSA-UNet encoder level before its max pooling: MONAI's ``TwoConv`` (two 3x3 convolutions giving ``F``)
    followed by a :class:`ChannelSpatialAttention` (giving ``F'``, Eqs. 1-5)."""

    def __init__(self, convs: nn.Module, attention: ChannelSpatialAttention):
        """
        Args:
            convs: the two 3x3 convolutions.
            attention: the CSA module.
        """
        super().__init__()
        self.convs = convs
        self.attention = attention

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(F, F')``."""
        features = self.convs(x)
        return features, self.attention(features)

    @torch.jit.export
    def forward_with_gates(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(F, F', Mc, Ms)``; see :meth:`ChannelSpatialAttention.forward_with_gates`."""
        features = self.convs(x)
        enhanced, channel_gate, spatial_gate = self.attention.forward_with_gates(features)
        return features, enhanced, channel_gate, spatial_gate


class UpConcat(nn.Module):
    """One U-Net decoder level: 2x up-sampling to ``out_channels`` (a 2x2 stride-2 transposed convolution by
    default, the "upsampling followed by a 2x2 convolution" of U-Net), concatenation ``[skip, up-sampled]`` and
    MONAI's ``TwoConv`` (two 3x3 convolutions with ``norm``/``act``)."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        act: str | tuple,
        norm: str | tuple | None,
        bias: bool = True,
        dropout: float | tuple = 0.0,
        upsample: str = "deconv",
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            in_channels: channels of the coarser map.
            skip_channels: channels of the encoder map that is concatenated.
            out_channels: channels after up-sampling and after the two convolutions.
            act: activation type and arguments.
            norm: normalisation type and arguments, ``None`` for none.
            bias: whether the convolutions have a bias term.
            dropout: dropout of the two convolutions.
            upsample: ``"deconv"``, ``"nontrainable"`` (1x1 convolution then bilinear/trilinear interpolation) or
                ``"pixelshuffle"``.
        """
        super().__init__()
        self.upsample = unet_upsampling(spatial_dims, in_channels, out_channels, upsample, bias)
        self.convs = TwoConv(spatial_dims, skip_channels + out_channels, out_channels, act, norm, bias, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([skip, self.upsample(x)], dim=1))


class MCSAUNet(nn.Module):
    """MCSA-UNet (Liu et al., Journal of Optoelectronics·Laser 2023): U-Net with a :class:`ChannelSpatialAttention`
    (CSA) module at the end of every encoder level but the bottom one.

    Encoder level ``l < depth`` (paper Sec. 1.2.1-1.2.2): two 3x3 convolutions (+ ``norm``) + ReLU giving ``F``, the
    CSA module giving ``F' = F + Ms(A_c) * A_c`` with ``A_c = Mc(F) * F`` (Eqs. 1-5), then 2x2 max pooling of
    ``F'`` (Eq. 6). The bottom level has the two convolutions only. Decoder (Sec. 1.2.3): per level an up-sampling
    with 2x2 convolution, concatenation with the skip map, two 3x3 convolutions; a final 1x1 convolution gives raw
    logits (no activation).

    The switches ``use_channel_attention``, ``use_spatial_attention`` and ``use_residual`` give the rows of the
    paper's ablation (Table 1): all off = U-Net, one on = "+CA", "+SA" or "+Res", all on = MCSA-UNet. A disabled
    attention is the identity and has no parameters; ``use_residual`` alone means ``F' = 2 F`` (see
    :class:`ChannelSpatialAttention`), which adds no parameter.

    Choices where the paper is vague (all configurable):
        - Skip connections carry ``F'`` (the CSA output) by default: the CSA module is the last step of the encoder
          level (Eq. 6 pools ``F'``), the skip connections link "the feature-encoding layers" to the decoder, and
          the module is motivated by information lost during feature extraction, which the decoder should then
          receive at full resolution. ``skip_enhanced_features=False`` skips ``F`` instead.
        - ``reduction_ratio`` 16 (CBAM default; the paper gives none); the hidden layer has ``max(1, C // 16)``
          units. No normalisation in the spatial gate (Eq. 4); ``spatial_gate_norm="batch"`` adds CBAM-code BN.
        - Batch normalisation after each 3x3 convolution (``norm="batch"``): the paper names only the ReLU;
          ``norm=None`` gives the original U-Net's plain convolutions.
        - Up-sampling "+ 2x2 convolution" is a 2x2 stride-2 transposed convolution to the skip level's width
          (``upsample="deconv"``); two 3x3 convolutions follow the concatenation (U-Net).
        - Dropout (``dropout``) is applied in every 3x3 convolution block (MONAI ``TwoConv``); the paper has none.

    Input: ``(B, in_channels, *spatial)`` with every spatial size a multiple of ``2 ** (len(features) - 1)``
    (16 by default); ``forward`` raises ``ValueError`` otherwise. Output: logits ``(B, out_channels, *spatial)``.

    Args:
        spatial_dims: 2 (paper) or 3.
        in_channels: input channels (3 for the paper's RGB H&E images).
        out_channels: output channels (2 classes in the paper: background, mitotic nucleus).
        features: widths of the resolution levels, full resolution first; ``len(features) - 1`` max-pool steps and
            CSA modules. Defaults to ``(64, 128, 256, 512, 1024)`` (U-Net).
        act: activation type and arguments (MONAI ``Act`` factory). Defaults to in-place ReLU (paper).
        norm: normalisation after each 3x3 convolution, ``None`` for none. Defaults to batch norm.
        dropout: dropout probability (or MONAI ``Dropout`` spec) inside the 3x3 convolution blocks.
        bias: whether the convolutions have a bias term.
        upsample: ``"deconv"`` (default), ``"nontrainable"`` or ``"pixelshuffle"``.
        use_channel_attention: channel attention in the CSA modules (Table 1 "CA").
        use_spatial_attention: spatial attention in the CSA modules (Table 1 "SA").
        use_residual: residual ``F' = F + A_s`` in the CSA modules (Table 1 "Res").
        reduction_ratio: channel-MLP reduction ratio. Defaults to 16.
        spatial_kernel_size: spatial gate convolution size. Defaults to 7.
        spatial_gate_norm: normalisation inside the spatial gate. Defaults to ``None``.
        skip_enhanced_features: skip ``F'`` (default) or ``F`` to the decoder.

    Use :meth:`forward_with_attention` for the per-level gates (display, tests); ``forward`` returns logits only.

    Example::

        net = MCSAUNet(spatial_dims=2, in_channels=3, out_channels=2)  # the paper's network
        unet = MCSAUNet(use_channel_attention=False, use_spatial_attention=False, use_residual=False)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 2,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = "batch",
        dropout: float | tuple = 0.0,
        bias: bool = True,
        upsample: str = "deconv",
        use_channel_attention: bool = True,
        use_spatial_attention: bool = True,
        use_residual: bool = True,
        reduction_ratio: int = 16,
        spatial_kernel_size: int = 7,
        spatial_gate_norm: str | tuple | None = None,
        skip_enhanced_features: bool = True,
    ):
        super().__init__()
        features = check_network_arguments("MCSAUNet", spatial_dims, in_channels, out_channels, features)
        check_upsample_mode("MCSAUNet", upsample)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.depth = len(features) - 1
        self.size_divisor = 2**self.depth
        self.skip_enhanced_features = bool(skip_enhanced_features)

        level_inputs = (in_channels,) + features[:-1]
        self.encoder_levels = nn.ModuleList(
            [
                CSAEncoderLevel(
                    TwoConv(spatial_dims, level_inputs[level], features[level], act, norm, bias, dropout),
                    ChannelSpatialAttention(
                        spatial_dims,
                        features[level],
                        reduction_ratio=reduction_ratio,
                        spatial_kernel_size=spatial_kernel_size,
                        spatial_gate_norm=spatial_gate_norm,
                        use_channel_attention=use_channel_attention,
                        use_spatial_attention=use_spatial_attention,
                        use_residual=use_residual,
                    ),
                )
                for level in range(self.depth)
            ]
        )
        self.max_pooling = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        self.bottom_convs = TwoConv(spatial_dims, features[-2], features[-1], act, norm, bias, dropout)
        self.decoder = decoder_stages(
            features,
            lambda in_chns, out_chns: UpConcat(
                spatial_dims,
                in_channels=in_chns,
                skip_channels=out_chns,
                out_channels=out_chns,
                act=act,
                norm=norm,
                bias=bias,
                dropout=dropout,
                upsample=upsample,
            ),
        )
        self.output_conv = Conv[Conv.CONV, spatial_dims](features[0], out_channels, kernel_size=1)

    def _segment(
        self, x: torch.Tensor, keep_gates: bool
    ) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        check_divisible_input(x, self.spatial_dims, self.in_channels, self.size_divisor, "MCSAUNet")
        skips: List[torch.Tensor] = []
        channel_gates: List[torch.Tensor] = []
        spatial_gates: List[torch.Tensor] = []
        for level in self.encoder_levels:
            if keep_gates:
                features, enhanced, channel_gate, spatial_gate = level.forward_with_gates(x)
                channel_gates.append(channel_gate)
                spatial_gates.append(spatial_gate)
            else:
                features, enhanced = level(x)
            skips.append(enhanced if self.skip_enhanced_features else features)
            x = self.max_pooling(enhanced)
        x = self.bottom_convs(x)
        for step, up in enumerate(self.decoder):
            x = up(x, skips[self.depth - 1 - step])
        return self.output_conv(x), channel_gates, spatial_gates

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
        return self._segment(x, False)[0]

    @torch.jit.export
    def forward_with_attention(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        """Logits and the CSA gates of every encoder level (full resolution first).

        Returns:
            ``(logits, channel_gates, spatial_gates)``: ``channel_gates[l]`` of shape ``(B, features[l], 1, ...)``,
            ``spatial_gates[l]`` of shape ``(B, 1, *spatial / 2**l)``, values in ``[0, 1]``; a disabled
            attention's gate is all ones.
        """
        return self._segment(x, True)
