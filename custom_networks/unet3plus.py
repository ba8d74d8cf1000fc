"""UNet 3+ (full-scale connected U-Net) of Huang et al., a comparison network of the MCSA-UNet paper (Table 2).

Reference:
    H. Huang, L. Lin, R. Tong, H. Hu, Q. Zhang, Y. Iwamoto, X. Han, Y.-W. Chen, J. Wu, "UNet 3+: A Full-Scale
    Connected UNet for Medical Image Segmentation", ICASSP 2020, pp. 1055-1059. arXiv:2004.08790.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, UpSample
from monai.networks.layers.factories import Pool
from monai.networks.nets.basic_unet import TwoConv

from ._input_checks import check_divisible_input, check_network_arguments, check_positive_int

__all__ = ["FullScaleDecoderNode", "UNet3Plus"]


def _resampler(spatial_dims: int, scale_exponent: int) -> nn.Module:
    """2**|e| x max pooling (``e < 0``, non-overlapping), identity (``e = 0``) or bilinear/trilinear up-sampling
    (``e > 0``) to bring one map of the full-scale skip connections to the decoder node's resolution."""
    if scale_exponent < 0:
        factor = 2 ** (-scale_exponent)
        return Pool[Pool.MAX, spatial_dims](kernel_size=factor, stride=factor)
    if scale_exponent > 0:
        return UpSample(
            spatial_dims,
            scale_factor=2**scale_exponent,
            mode="nontrainable",
            pre_conv=None,
            interp_mode="linear",
            align_corners=False,
        )
    return nn.Identity()


class FullScaleDecoderNode(nn.Module):
    """Decoder node ``X_De^i`` of UNet 3+ (paper Eq. 1, Fig. 2): aggregates the maps of every scale.

    With ``n`` levels (``0`` = full resolution), the node at level ``i`` receives, in this order, the encoder maps
    ``X_En^0 .. X_En^i`` (max-pooled by ``2**(i-k)``; identity for ``k = i``), then the decoder maps
    ``X_De^{i+1} .. X_De^{n-1}`` (bilinear/trilinear up-sampling by ``2**(k-i)``; ``X_De^{n-1} = X_En^{n-1}``).
    Each passes through its own 3x3 convolution to ``cat_channels`` (+ norm + act); the ``n * cat_channels``
    concatenation is fused by a 3x3 convolution + norm + act (the paper's ``H``), keeping ``n * cat_channels``.
    """

    def __init__(
        self,
        spatial_dims: int,
        level: int,
        input_channels: Sequence[int],
        cat_channels: int,
        act: str | tuple,
        norm: str | tuple | None,
        bias: bool = True,
        dropout: float | tuple = 0.0,
    ):
        """
        Args:
            spatial_dims: number of spatial dimensions.
            level: resolution level ``i`` of this node (0 = full resolution).
            input_channels: channels of the ``n`` inputs, full resolution first (see the class docstring).
            cat_channels: channels of each branch after its 3x3 convolution (64 in the paper).
            act: activation type and arguments.
            norm: normalisation type and arguments, ``None`` for none.
            bias: whether the convolutions have a bias term.
            dropout: dropout of the fusion convolution.
        """
        super().__init__()
        self.level = level
        self.branches = nn.ModuleList(
            [
                nn.Sequential(
                    _resampler(spatial_dims, source_level - level),
                    Convolution(spatial_dims, channels, cat_channels, act=act, norm=norm, bias=bias),
                )
                for source_level, channels in enumerate(input_channels)
            ]
        )
        fused = cat_channels * len(input_channels)
        self.fusion = Convolution(spatial_dims, fused, fused, act=act, norm=norm, bias=bias, dropout=dropout)

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        """
        Args:
            inputs: the ``n`` maps, full resolution first, ``inputs[k]`` at resolution ``2**-k``.
        """
        if len(inputs) != len(self.branches):
            raise ValueError(
                "FullScaleDecoderNode expects " + str(len(self.branches)) + " inputs, got " + str(len(inputs))
            )
        aggregated: List[torch.Tensor] = []
        for index, branch in enumerate(self.branches):
            aggregated.append(branch(inputs[index]))
        return self.fusion(torch.cat(aggregated, dim=1))


class UNet3Plus(nn.Module):
    """UNet 3+ (Huang et al., ICASSP 2020) with full-scale skip connections and optional deep supervision.

    Encoder: ``len(features)`` levels of two 3x3 convolutions + norm + ReLU (U-Net/VGG), 2x2 max pooling between
    them. Decoder: one :class:`FullScaleDecoderNode` per level above the bottom (``n - 1`` nodes), from coarse to
    fine, each aggregating all ``n`` scales into ``n * cat_channels`` channels (320 in the paper). Output: a 3x3
    convolution of the finest node to ``out_channels`` raw logits (the paper's sigmoid is left to the loss).

    Deep supervision (paper Sec. 2.2): with ``deep_supervision=True`` every decoder node and the bottom encoder map
    get their own 3x3 convolution to ``out_channels``, bilinearly (trilinearly) up-sampled to the input size. The
    output follows the ordering of MONAI's ``BasicUNetPlusPlus`` deep-supervision list (auxiliary outputs first,
    final output last), but as one tensor so that ``forward`` always returns a tensor (TorchScript):

    - in training mode, ``forward`` returns ``(B, n, out_channels, *spatial)``: index ``k`` along dim 1 is the
      head of level ``n - 1 - k`` (``0`` = the bottom encoder map ``X_De^{n-1}``, ``n - 1`` = the final output);
      use ``list(torch.unbind(y, dim=1))`` to get ``BasicUNetPlusPlus``'s list and feed it to MONAI's
      ``DeepSupervisionLoss``. The paper sums the side losses with equal weights: ``weight_mode="same"``
      (``"exp"`` weights index 0, here the coarsest head, the most);
    - in eval mode, ``forward`` returns the final output only, ``(B, out_channels, *spatial)``, as without deep
      supervision (unlike ``BasicUNetPlusPlus``, which also returns the list then);
    - :meth:`forward_deep_supervision` returns the list in either mode.

    With ``deep_supervision=False`` (default) there are no side heads and ``forward`` always returns the final
    output. The classification-guided module (CGM) and the hybrid focal + MS-SSIM + IoU loss of the paper are out
    of scope (the CGM needs image-level organ labels; the loss belongs to the training configuration).

    Choices where the paper is vague:
        - Batch norm after every 3x3 convolution (``norm="batch"``), biased convolutions, as in the authors' code.
        - Up-sampling inside the skip connections: bilinear/trilinear with ``align_corners=False``; down-sampling:
          non-overlapping max pooling by ``2**(i-k)``.
        - Output and side heads: 3x3 convolutions (paper: "a plain 3x3 convolution layer"), the side heads at their
          own resolution followed by the up-sampling.

    Parameters: 26,971,777 for ``in_channels=3, out_channels=1`` and the defaults, matching the paper's 26.97M
    (Table 1, UNet 3+ with the VGG-16-like encoder, without deep supervision).

    Input: ``(B, in_channels, *spatial)`` with every spatial size a multiple of ``2 ** (len(features) - 1)``
    (16 by default); ``forward`` raises ``ValueError`` otherwise.

    Args:
        spatial_dims: 2 (paper) or 3.
        in_channels: input channels.
        out_channels: output channels.
        features: encoder widths, full resolution first; ``len(features)`` scales are aggregated by every decoder
            node. Defaults to ``(64, 128, 256, 512, 1024)`` (paper).
        cat_channels: channels of each full-scale skip branch. Defaults to 64 (paper).
        deep_supervision: add the side heads (see above). Defaults to ``False``.
        act: activation type and arguments. Defaults to in-place ReLU.
        norm: normalisation type and arguments, ``None`` for none. Defaults to batch norm.
        dropout: dropout in the encoder convolutions and the decoder fusion convolutions; 0 (default) for none.
        bias: whether the convolutions have a bias term.

    Example::

        net = UNet3Plus(spatial_dims=2, in_channels=3, out_channels=2, deep_supervision=True)
        loss = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True), weight_mode="same")
        value = loss(list(torch.unbind(net(images), dim=1)), labels)  # training mode
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 2,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        cat_channels: int = 64,
        deep_supervision: bool = False,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = "batch",
        dropout: float | tuple = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        features = check_network_arguments("UNet3Plus", spatial_dims, in_channels, out_channels, features)
        check_positive_int("UNet3Plus", "cat_channels", cat_channels)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_levels = len(features)
        self.depth = self.num_levels - 1
        self.size_divisor = 2**self.depth
        self.deep_supervision = bool(deep_supervision)
        decoded_channels = cat_channels * self.num_levels

        level_inputs = (in_channels,) + features[:-1]
        self.encoder = nn.ModuleList(
            [
                TwoConv(spatial_dims, level_inputs[level], features[level], act, norm, bias, dropout)
                for level in range(self.num_levels)
            ]
        )
        self.max_pooling = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        nodes = []
        for level in reversed(range(self.depth)):
            input_channels = list(features[: level + 1]) + [decoded_channels] * (self.depth - 1 - level)
            input_channels.append(features[-1])
            nodes.append(
                FullScaleDecoderNode(spatial_dims, level, input_channels, cat_channels, act, norm, bias, dropout)
            )
        self.decoder = nn.ModuleList(nodes)
        self.output_conv = Convolution(spatial_dims, decoded_channels, out_channels, bias=True, conv_only=True)
        # side heads of levels n-1 (bottom) .. 1, in output order
        heads = []
        if self.deep_supervision:
            for level in reversed(range(1, self.num_levels)):
                head_channels = features[-1] if level == self.depth else decoded_channels
                heads.append(
                    nn.Sequential(
                        Convolution(spatial_dims, head_channels, out_channels, bias=True, conv_only=True),
                        _resampler(spatial_dims, level),
                    )
                )
        self.side_heads = nn.ModuleList(heads)

    def _decode(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Maps ``X_De^{n-1} .. X_De^0`` (coarse to fine; ``X_De^{n-1}`` is the bottom encoder map)."""
        check_divisible_input(x, self.spatial_dims, self.in_channels, self.size_divisor, "UNet3Plus")
        encoded: List[torch.Tensor] = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                x = self.max_pooling(x)
            x = block(x)
            encoded.append(x)
        # inputs of a node: encoder maps up to its level, then every decoder map below it (fine to coarse)
        decoded: List[torch.Tensor] = [encoded[self.depth]]
        coarse_to_fine: List[torch.Tensor] = [encoded[self.depth]]
        for step, node in enumerate(self.decoder):
            level = self.depth - 1 - step
            current = node(encoded[: level + 1] + decoded)
            decoded.insert(0, current)
            coarse_to_fine.append(current)
        return coarse_to_fine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(B, in_channels, *spatial)``, spatial sizes multiples of ``2 ** (len(features) - 1)``.

        Returns:
            logits ``(B, out_channels, *spatial)``; with deep supervision in training mode
            ``(B, len(features), out_channels, *spatial)``, the final output last (see the class docstring).

        Raises:
            ValueError: (``torch.jit.Error`` when scripted) for a wrong number of axes or channels, or a spatial
                size that is not a multiple of the divisor.
        """
        if self.deep_supervision and self.training:
            return torch.stack(self.forward_deep_supervision(x), dim=1)
        return self.output_conv(self._decode(x)[-1])

    @torch.jit.export
    def forward_deep_supervision(self, x: torch.Tensor) -> List[torch.Tensor]:
        """All deep-supervision outputs, each ``(B, out_channels, *spatial)``, in ``BasicUNetPlusPlus`` order:
        heads of levels ``n - 1`` (bottom) to ``1``, then the final output (level 0).

        Raises:
            ValueError: when the network was built with ``deep_supervision=False``.
        """
        if not self.deep_supervision:
            raise ValueError("UNet3Plus.forward_deep_supervision needs deep_supervision=True at construction")
        coarse_to_fine = self._decode(x)
        outputs: List[torch.Tensor] = []
        for index, head in enumerate(self.side_heads):
            outputs.append(head(coarse_to_fine[index]))
        outputs.append(self.output_conv(coarse_to_fine[-1]))
        return outputs
