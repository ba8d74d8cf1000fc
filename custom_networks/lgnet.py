"""LG-Net: a U-Net with multi-level residual convolutions, local-global pixel-correlation attention on the skips and
feature-fusion decoder steps, for lung CT lesion segmentation.

One piece (over 400 lines): the paper's network and the named blocks that only it uses (MRC, RSE, feature fusion,
its encoder and decoder stages). The reusable parts live in their own modules and are re-exported here:
:mod:`.lg_attention` (LG-Attention: quadrant split, pixel-weighted aggregation), :mod:`.pixel_correlation` (SEAM's
chunked PCM) and :mod:`.gradient_checkpointing` (:class:`CheckpointableBlock`).

References:
    Lu Xiaoyan, Yuan Wenhao, Xu Yang, "基于改进 U-Net 网络的肺部 CT 图像分割算法研究" (Research on lung CT image
    segmentation algorithm based on the improved U-Net network), 智能计算机与应用 (Intelligent Computer and
    Applications) 13(7), 2023, pp. 179-186. Sec. 2.1-2.4, Eqs. (3)-(13), Figs. 3-7.

    Y. Wang, J. Zhang, M. Kan, S. Shan, X. Chen, "Self-supervised Equivariant Attention Mechanism for Weakly
    Supervised Semantic Segmentation" (SEAM), CVPR 2020: the Pixel Correlation Module (PCM) LG-Attention builds on.

    J. Hu, L. Shen, G. Sun, "Squeeze-and-Excitation Networks", CVPR 2018: the SE part of the RSE block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, Optional

import torch
import torch.nn as nn
from monai.networks.blocks import ChannelSELayer, Convolution
from monai.networks.layers.factories import Conv, Pool

from ._blocks import decoder_stages, unet_upsampling
from ._input_checks import (
    check_divisible_input,
    check_dropout_probability,
    check_network_arguments,
    check_positive_int,
    check_upsample_mode,
    dropout_or_none,
)
from ._reductions import GlobalAvgPool
from .gradient_checkpointing import CheckpointableBlock
from .lg_attention import (
    LocalGlobalAttention,
    check_attention_size,
    merge_orthants,
    pixel_weighted_aggregation,
    split_orthants,
)
from .pixel_correlation import PixelCorrelation, pixel_correlation, pixel_correlation_dense

__all__ = [
    "LGNet",
    "CheckpointableBlock",
    "DoubleConv",
    "LGNetEncoderStage",
    "FusionBranch",
    "MRCResidualUnit",
    "MultiLevelResidualConv",
    "PixelCorrelation",
    "LocalGlobalAttention",
    "RSEBlock",
    "FeatureFusion",
    "LGNetDecoderStage",
    "pixel_correlation",
    "pixel_correlation_dense",
    "pixel_weighted_aggregation",
    "split_orthants",
    "merge_orthants",
]


# ---------------------------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------------------------


class DoubleConv(CheckpointableBlock):
    """U-Net's two 3x3 convolutions, each followed by norm and act ("same" padding)."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, act: str | tuple, norm: str | tuple | None
    ):
        super().__init__()
        self.conv_0 = Convolution(spatial_dims, in_channels, out_channels, kernel_size=3, act=act, norm=norm)
        self.conv_1 = Convolution(spatial_dims, out_channels, out_channels, kernel_size=3, act=act, norm=norm)

    def block_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1(self.conv_0(x))


class MRCResidualUnit(nn.Module):
    """Basic residual unit of the multi-level residual convolution, paper Sec. 2.2 / Fig. 4 with Eqs. (1)-(2)::

        X = ReLU(BN(conv3x3(X1))) + BN(conv1x1(X1))

    The trunk is "Conv + BN + ReLU", the residual (shortcut) branch "adds convolution and batch normalisation
    (Conv + BN)". The shortcut convolution's kernel is not given; a 1x1 projection (ResNet's projection shortcut)
    is used. As in Eq. (2) nothing follows the sum.
    """

    def __init__(self, spatial_dims: int, channels: int, act: str | tuple, norm: str | tuple | None):
        super().__init__()
        self.trunk = Convolution(spatial_dims, channels, channels, kernel_size=3, act=act, norm=norm)
        self.shortcut = Convolution(spatial_dims, channels, channels, kernel_size=1, act=None, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x) + self.shortcut(x)


class MultiLevelResidualConv(CheckpointableBlock):
    """Multi-level residual convolution (MRC), paper Sec. 2.2 / Fig. 4: three :class:`MRCResidualUnit` in sequence,
    "the result of every residual unit is an output, fused at the end of the module".

    Fusion (Fig. 4 is not in the text): the three unit outputs are concatenated and a 1x1 convolution + norm + act
    maps the ``3 C`` channels back to ``C`` (a learned fusion rather than a fixed sum; the activation also makes the
    skip features non-negative, as LG-Attention's weights expect).

    Args:
        spatial_dims: number of spatial dimensions.
        channels: input and output channels.
        act: activation (MONAI ``Act`` factory).
        norm: normalisation (MONAI ``Norm`` factory), ``None`` for none.
        num_units: residual units in sequence (3 in the paper).
    """

    def __init__(
        self, spatial_dims: int, channels: int, act: str | tuple, norm: str | tuple | None, num_units: int = 3
    ):
        super().__init__()
        check_positive_int("MultiLevelResidualConv", "num_units", num_units)
        self.units = nn.ModuleList([MRCResidualUnit(spatial_dims, channels, act, norm) for _ in range(num_units)])
        self.fusion = Convolution(spatial_dims, num_units * channels, channels, kernel_size=1, act=act, norm=norm)

    def block_forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: List[torch.Tensor] = []
        for unit in self.units:
            x = unit(x)
            outputs.append(x)
        return self.fusion(torch.cat(outputs, dim=1))


class RSEBlock(nn.Module):
    """RSE block of the feature-fusion module, paper Fig. 7, Eqs. (11)-(13)::

        u = BN(Dropout(conv3x3(conv1x1(x))));  z = GAP(u);  s = sigmoid(W2 ReLU(W1 z));  y = x + u * s

    MONAI's ``ChannelSELayer`` gives ``u * s`` (``add_residual=False``; its ``add_residual=True`` would add ``u``,
    not the block input ``x``, so the residual of Eq. 13 is added here). ``W1`` reduces the channels by
    ``reduction`` (6 in the paper; at most ``channels``, so that tiny test networks keep one hidden unit).
    The 1x1 convolution keeps the channel count (``y = x + u * s`` needs ``x`` and ``u`` alike).

    Args:
        spatial_dims: number of spatial dimensions.
        channels: input and output channels.
        norm: normalisation after the 3x3 convolution.
        dropout: dropout probability after the 3x3 convolution, 0 for none (the paper gives no rate).
        reduction: channel reduction of the first fully connected layer.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        norm: str | tuple | None,
        dropout: float = 0.0,
        reduction: int = 6,
    ):
        super().__init__()
        check_positive_int("RSEBlock", "reduction", reduction)
        self.projection = Conv[Conv.CONV, spatial_dims](channels, channels, kernel_size=1)
        self.conv = Convolution(
            spatial_dims,
            channels,
            channels,
            kernel_size=3,
            act=None,
            norm=norm,
            dropout=dropout_or_none(check_dropout_probability("RSEBlock", dropout)),
            adn_ordering="DN",
        )
        self.squeeze_excitation = ChannelSELayer(spatial_dims, channels, r=min(reduction, channels))
        # the same global average without torch.mean's full-size fp32 copy of a bf16 map (no parameters: checkpoints
        # are unchanged)
        self.squeeze_excitation.avg_pool = GlobalAvgPool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.squeeze_excitation(self.conv(self.projection(x)))


class FusionBranch(CheckpointableBlock):
    """Branch ``L1`` / ``L2`` of the feature-fusion module, paper Sec. 2.4 / Fig. 6:
    1x1 convolution (channel reduction) -> norm -> act -> ``k x k`` convolution (3 for ``L1``, 5 for ``L2``) ->
    :class:`RSEBlock`.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: channels of the concatenated skip and deep features.
        out_channels: channels after the 1x1 reduction (those of the features the branch weights).
        kernel_size: kernel of the second convolution.
        act: activation after the 1x1 convolution.
        norm: normalisation after the 1x1 convolution and in the RSE block.
        dropout: dropout of the RSE block.
        reduction: SE reduction of the RSE block.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        act: str | tuple,
        norm: str | tuple | None,
        dropout: float = 0.0,
        reduction: int = 6,
    ):
        super().__init__()
        self.reduce = Convolution(spatial_dims, in_channels, out_channels, kernel_size=1, act=act, norm=norm)
        self.conv = Convolution(spatial_dims, out_channels, out_channels, kernel_size=kernel_size, conv_only=True)
        self.rse = RSEBlock(spatial_dims, out_channels, norm, dropout, reduction)

    def block_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rse(self.conv(self.reduce(x)))


class FeatureFusion(nn.Module):
    """Feature fusion module (FF), paper Sec. 2.4 / Fig. 6::

        c = Cat(s, d);  w_s = RSE(conv3x3(ReLU(BN(conv1x1(c)))));  w_d = RSE(conv5x5(ReLU(BN(conv1x1(c)))))
        out = Cat(s * w_s, d * w_d)

    with ``s`` the (attended) skip map and ``d`` the up-sampled deeper map. The branch outputs are "weight maps of
    the shallow and deep features", applied by element-wise product. Choices: branch ``L1`` (3x3) weights the
    shallow features and ``L2`` (5x5) the deep ones; each 1x1 convolution reduces ``Cs + Cd`` channels to those of
    the features it weights; the weights are used as they are (no extra sigmoid: the paper names none).

    Args:
        spatial_dims: number of spatial dimensions.
        skip_channels: channels ``Cs`` of ``s``.
        deep_channels: channels ``Cd`` of ``d``.
        act: activation after the 1x1 convolutions.
        norm: normalisation after the 1x1 convolutions and in the RSE blocks.
        dropout: dropout of the RSE blocks.
        reduction: SE reduction of the RSE blocks.
    """

    def __init__(
        self,
        spatial_dims: int,
        skip_channels: int,
        deep_channels: int,
        act: str | tuple,
        norm: str | tuple | None,
        dropout: float = 0.0,
        reduction: int = 6,
    ):
        super().__init__()
        concat_channels = skip_channels + deep_channels
        branch_args = (act, norm, dropout, reduction)
        self.shallow_weights = FusionBranch(spatial_dims, concat_channels, skip_channels, 3, *branch_args)  # L1
        self.deep_weights = FusionBranch(spatial_dims, concat_channels, deep_channels, 5, *branch_args)  # L2

    def forward(self, skip: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        concatenated = torch.cat([skip, deep], dim=1)
        return torch.cat([skip * self.shallow_weights(concatenated), deep * self.deep_weights(concatenated)], dim=1)


class LGNetEncoderStage(nn.Module):
    """One encoder level: U-Net's :class:`DoubleConv`, followed by a :class:`MultiLevelResidualConv` with
    ``use_mrc=True`` ("at the tail of each down-sampling level", Sec. 2.1). Its output is the level's skip."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple,
        norm: str | tuple | None,
        use_mrc: bool,
    ):
        super().__init__()
        self.convs = DoubleConv(spatial_dims, in_channels, out_channels, act, norm)
        self.mrc: Optional[MultiLevelResidualConv] = (
            MultiLevelResidualConv(spatial_dims, out_channels, act, norm) if use_mrc else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        mrc = self.mrc
        if mrc is not None:
            x = mrc(x)
        return x


class LGNetDecoderStage(nn.Module):
    """One decoder step: 2x up-sampling of the deeper map to the skip's channels, :class:`FeatureFusion` of
    ``(skip, up-sampled)`` (or their plain concatenation with ``use_feature_fusion=False``), then U-Net's double
    3x3 convolution from ``2 C`` to ``C`` channels."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple,
        norm: str | tuple | None,
        dropout: float,
        use_feature_fusion: bool,
        upsample: str,
        reduction: int = 6,
    ):
        super().__init__()
        self.upsample = unet_upsampling(spatial_dims, in_channels, out_channels, upsample)
        self.fusion: Optional[FeatureFusion] = (
            FeatureFusion(spatial_dims, out_channels, out_channels, act, norm, dropout, reduction)
            if use_feature_fusion
            else None
        )
        self.convs = DoubleConv(spatial_dims, 2 * out_channels, out_channels, act, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.upsample(x)
        fusion = self.fusion
        if fusion is not None:
            merged = fusion(skip, up)
        else:
            merged = torch.cat([skip, up], dim=1)
        return self.convs(merged)


class LGNet(nn.Module):
    """LG-Net (Lu, Yuan, Xu 2023, Sec. 2, Fig. 3): a U-Net with 4 down / 4 up steps and three added modules,
    each behind a switch so that the ablation of Table 2 is a set of configurations of this class:

    - ``use_mrc``: a :class:`MultiLevelResidualConv` (three residual units, outputs fused) at the tail of every
      encoder stage that feeds a skip, after U-Net's double 3x3 convolution ("at the tail of each down-sampling
      level, LG-Net adds the MRC", Sec. 2.1). The bottom stage keeps the double convolution only.
    - ``use_lg_attention``: a :class:`LocalGlobalAttention` on the skips listed in ``attention_levels``.
    - ``use_feature_fusion``: every decoder step fuses skip and up-sampled features with a :class:`FeatureFusion`
      before its double convolution, instead of a plain concatenation.

    With all three ``False`` the network is a plain U-Net (double 3x3 conv + BN + ReLU per level, 2x2 max pooling,
    up-sampling, concatenation). A final 1x1 convolution gives ``out_channels`` logits: 1 for the paper's binary
    lesion mask (apply the sigmoid in the bundle), ``K`` for ``K`` classes (e.g. background / ground glass /
    consolidation, softmax in the bundle). No final activation.

    Choices where the paper is vague (see the blocks for details):
        - Widths: U-Net's (64, 128, 256, 512, 1024) (Fig. 3 is not in the text), batch norm after every convolution.
        - MRC: shortcut Conv+BN is a 1x1 convolution, no activation after the residual sum (Eq. 2), fusion by
          concatenation + 1x1 conv + norm + act; not applied at the bottom (no down-sampling follows it).
        - PCM: ``theta`` a bias-free 1x1 convolution keeping the channels; ``y_hat`` = the skip features themselves;
          a single ``theta`` for the global and the local PCM.
        - PWA: on maps clamped at 0, 0 where both maps are 0 (:func:`pixel_weighted_aggregation`).
        - Attention resolution: the paper computes the PCMs on the skip maps, whose affinities at 512 x 512 input
          would need ``(512*512)^2`` entries per sample. The PCMs run on the skip average-pooled to at most
          ``attention_size`` (32) pixels per side and ``F_LG`` is interpolated back (bilinear); with 256 x 256
          inputs the deepest skip (32 x 32) is attended at full resolution, the others pooled 2x, 4x, 8x. At 64
          (the default before 0.4.0) a training step of 4 slices of 256 x 256 took 7x longer on a CPU (4096 x 4096
          affinities per skip against 1024 x 1024).
          ``attention_size=None`` runs every PCM at full resolution (exact paper reading; quadratic cost).
        - Memory: the PCM never forms the ``(HW) x (HW)`` matrix (chunks of ``pcm_chunk_size`` query rows, exact),
          and in training each chunk is recomputed in the backward pass (``torch.utils.checkpoint``) so autograd
          keeps none either. The MRC and FF blocks hold many full-resolution maps, so ``gradient_checkpointing=True``
          (default) recomputes the inside of every double convolution, MRC and fusion branch in the backward pass:
          far less memory for more compute (the peak memory of a training step at the paper's size is in
          ``docs/benchmarks.md`` and the bundle's docs); set it to ``False`` when memory is plentiful. TorchScript
          cannot script ``torch.utils.checkpoint``: a scripted model skips both checkpointings (same values, more
          memory if trained scripted; inference is unaffected).
        - Feature fusion: the 3x3 branch weights the skip, the 5x5 branch the up-sampled features, both by direct
          product; SE reduction 6 (at most the channel count); dropout (``dropout``) only after the RSE blocks'
          3x3 convolutions, the one place the paper names it (rate not given, default 0).
        - Up-sampling: 1x1 convolution halving the channels + bilinear interpolation (``upsample="nontrainable"``;
          "linear interpolation" in Sec. 2.1), or a transposed convolution (``"deconv"``).
        - 3D (not in the paper): the quadrant split becomes an octant split; choose a smaller ``attention_size``
          (e.g. 16: ``16^3 = 4096`` pixels per PCM, like ``64^2`` in 2D).

    Input size: every spatial size must be a positive multiple of ``2**depth`` (16 with the default ``features``),
    ``depth = len(features) - 1``; ``forward`` raises a ``ValueError`` otherwise. Then every skip has even sides, so
    its quadrants are equal. The output has the input's spatial size.

    Args:
        spatial_dims: number of spatial dimensions, 2 (paper) or 3.
        in_channels: number of input channels (1 for CT).
        out_channels: number of output channels (logits).
        features: channels at each resolution level, from full resolution to the bottom; at least 2 entries
            (``len(features) - 1`` down-samplings, 4 in the paper).
        act: activation (MONAI ``Act`` factory) of all convolutions; the PCM's and SE's ReLU and sigmoid are fixed.
        norm: normalisation (MONAI ``Norm`` factory), ``None`` for none.
        dropout: dropout probability after the 3x3 convolution of every RSE block, 0 for none.
        use_mrc: multi-level residual convolutions in the encoder.
        use_lg_attention: LG-Attention on the skips.
        use_feature_fusion: feature-fusion decoder steps.
        attention_levels: skips that get LG-Attention, ``0`` the full-resolution one .. ``depth - 1`` the coarsest;
            ``None`` (default) for all. Ignored with ``use_lg_attention=False``.
        attention_size: largest side at which the PCMs run (an even int >= 2), larger skips are pooled (see above);
            ``None`` for full resolution.
        pcm_chunk_size: query pixels per chunk of the PCM aggregation; a chunk holds two blocks of
            ``batch * pcm_chunk_size * pixels`` floats (affinities and normalised weights).
        pcm_checkpoint: recompute the PCM chunks in the backward pass during training (eager mode).
        upsample: ``"nontrainable"`` (default), ``"deconv"`` or ``"pixelshuffle"``.
        se_reduction: channel reduction of the SE part of the RSE blocks (6 in the paper).
        gradient_checkpointing: in training, recompute the inner activations of every double convolution, MRC and
            feature-fusion branch in the backward pass (:class:`CheckpointableBlock`): same values, gradients and
            batch-norm statistics, about a third more compute, far less memory (see "Memory" above). Eager mode
            only; no effect in eval mode.

    Example::

        net = LGNet(spatial_dims=2, in_channels=1, out_channels=1)
        logits = net(torch.randn(2, 1, 512, 512))  # (2, 1, 512, 512); sigmoid for the lesion probability
        ablation = LGNet(use_mrc=True, use_lg_attention=False, use_feature_fusion=False)  # "U-Net + MRC"
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        use_mrc: bool = True,
        use_lg_attention: bool = True,
        use_feature_fusion: bool = True,
        attention_levels: Sequence[int] | None = None,
        attention_size: int | None = 32,
        pcm_chunk_size: int = 1024,
        pcm_checkpoint: bool = True,
        upsample: str = "nontrainable",
        se_reduction: int = 6,
        gradient_checkpointing: bool = True,
    ):
        super().__init__()
        features = check_network_arguments("LGNet", spatial_dims, in_channels, out_channels, features)
        check_dropout_probability("LGNet", dropout)
        check_upsample_mode("LGNet", upsample)
        check_positive_int("LGNet", "pcm_chunk_size", pcm_chunk_size)
        check_positive_int("LGNet", "se_reduction", se_reduction)
        attention_size = check_attention_size("LGNet", attention_size)

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.depth = len(features) - 1
        self.size_divisor = 1 << self.depth
        self.use_mrc = bool(use_mrc)
        self.use_lg_attention = bool(use_lg_attention)
        self.use_feature_fusion = bool(use_feature_fusion)
        self.attention_levels = self._check_attention_levels(attention_levels) if self.use_lg_attention else ()

        self.encoder = nn.ModuleList(
            [
                LGNetEncoderStage(
                    spatial_dims,
                    in_channels if level == 0 else features[level - 1],
                    features[level],
                    act,
                    norm,
                    self.use_mrc,
                )
                for level in range(self.depth)
            ]
        )
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        self.bottom = DoubleConv(spatial_dims, features[-2], features[-1], act, norm)
        self.skip_attention = nn.ModuleList(
            [
                (
                    LocalGlobalAttention(spatial_dims, features[level], attention_size, pcm_chunk_size, pcm_checkpoint)
                    if level in self.attention_levels
                    else nn.Identity()
                )
                for level in range(self.depth)
            ]
        )
        self.decoder = decoder_stages(
            features,
            lambda in_chns, out_chns: LGNetDecoderStage(
                spatial_dims, in_chns, out_chns, act, norm, dropout, self.use_feature_fusion, upsample, se_reduction
            ),
        )
        self.output_conv = Conv[Conv.CONV, spatial_dims](features[0], out_channels, kernel_size=1)
        self.gradient_checkpointing = bool(gradient_checkpointing)
        for module in self.modules():
            if isinstance(module, CheckpointableBlock):
                module.gradient_checkpointing = self.gradient_checkpointing

    def _check_attention_levels(self, attention_levels: Sequence[int] | None) -> tuple[int, ...]:
        if attention_levels is None:
            return tuple(range(self.depth))
        if isinstance(attention_levels, (str, bytes)) or not isinstance(attention_levels, Sequence):
            raise ValueError(f"LGNet: attention_levels must be a sequence of ints or None, got {attention_levels!r}.")
        levels = tuple(attention_levels)
        valid = range(self.depth)
        if any(isinstance(level, bool) or not isinstance(level, int) or level not in valid for level in levels):
            raise ValueError(
                f"LGNet: attention_levels must hold skip levels in 0..{self.depth - 1} (0 = full resolution), "
                f"got {attention_levels!r}."
            )
        if len(set(levels)) != len(levels):
            raise ValueError(f"LGNet: attention_levels has repeated levels: {attention_levels!r}.")
        return tuple(sorted(levels))

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
        check_divisible_input(x, self.spatial_dims, self.in_channels, self.size_divisor, "LGNet")
        skips: List[torch.Tensor] = []
        for stage, attention in zip(self.encoder, self.skip_attention):  # noqa: B905 (TorchScript: no strict)
            x = stage(x)
            skips.append(attention(x))
            x = self.pool(x)
        x = self.bottom(x)
        for step, stage in enumerate(self.decoder):
            x = stage(x, skips[self.depth - 1 - step])
        return self.output_conv(x)
