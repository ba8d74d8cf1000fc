"""U²-Net: a U-Net of residual U-blocks (RSU), with side outputs fused by a 1x1 convolution.

Reference:
    X. Qin, Z. Zhang, C. Huang, M. Dehghan, O. R. Zaiane, M. Jagersand, "U²-Net: Going deeper with nested
    U-structure for salient object detection", Pattern Recognition 106, 107404 (2020). arXiv:2005.09007.
    Sec. 3.1 (RSU-L, RSU-4F, Fig. 2), Sec. 3.2 (architecture, Fig. 5, Table 1 "U²-Net" and "U²-Net†"),
    Sec. 3.3 (side outputs, fusion, deep supervision loss Eq. 1).

LG-Net (Lu, Yuan, Xu 2023) compares against it in Table 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Pool

from ._input_checks import (
    check_divisible_input,
    check_dropout_probability,
    check_network_arguments,
    check_positive_int,
    dropout_or_none,
)

__all__ = ["U2Net", "ResidualUBlock", "U2NET_LITE"]

U2NET_LITE = {
    "features": (64, 64, 64, 64, 64, 64),
    "mid_features": (16, 16, 16, 16, 16, 16),
    "decoder_mid_features": (16, 16, 16, 16, 16),
}
"""Keyword arguments of the small model "U²-Net†" of the paper (Table 1: every RSU with ``M = 16`` mid and 64 output
channels, 1.1 M parameters for 3 -> 1 channels): ``U2Net(**U2NET_LITE)``."""


def _upsample_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(Bi/tri)linear up-sampling of ``x`` to the spatial size of ``reference`` (the paper's ``_upsample_like``)."""
    mode = "bilinear" if x.dim() == 4 else "trilinear"
    return F.interpolate(x, size=reference.shape[2:], mode=mode, align_corners=False)


class ResidualUBlock(nn.Module):
    """Residual U-block RSU-L (paper Sec. 3.1, Fig. 2) and its dilated variant RSU-LF::

        x_in = conv(x);  y = U_L(x_in) + x_in

    ``U_L`` is a small U-Net of height ``L`` on ``mid_channels``: encoder convolutions ``e_1 .. e_{L-1}`` with 2x2
    max pooling between consecutive ones (``L - 2`` poolings), a bottom convolution ``e_L`` with dilation 2 at the
    resolution of ``e_{L-1}``, and decoder convolutions ``d_{L-1} = conv(cat(e_L, e_{L-1}))``,
    ``d_k = conv(cat(up(d_{k+1}), e_k))``, the last one back to ``out_channels``. Every convolution is 3x3 + norm +
    act ("REBNCONV").

    ``dilated=True`` gives RSU-LF: no pooling, the dilation doubles instead (encoder ``1, 2, .., 2**(L-2)``, bottom
    ``2**(L-1)``, decoder mirrored), for the low-resolution stages (RSU-4F: 1, 2, 4, 8).

    Spatial sizes must be multiples of ``2**(L-2)`` (pooled) so that every up-sampled map matches its skip exactly.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels.
        mid_channels: channels ``M`` inside the U.
        out_channels: output channels (also those of ``x_in``).
        height: ``L >= 2``.
        dilated: RSU-LF instead of RSU-L.
        act: activation (MONAI ``Act`` factory).
        norm: normalisation (MONAI ``Norm`` factory), ``None`` for none.
        dropout: dropout after every normalisation, 0 for none.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        height: int,
        dilated: bool,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
    ):
        super().__init__()
        if isinstance(height, bool) or not isinstance(height, int) or height < 2:
            raise ValueError(f"ResidualUBlock: height must be an int >= 2, got {height!r}.")
        self.height = height
        self.dilated = bool(dilated)
        dropout_spec = dropout_or_none(dropout)

        def conv(cin: int, cout: int, dilation: int) -> Convolution:
            return Convolution(
                spatial_dims, cin, cout, kernel_size=3, dilation=dilation, act=act, norm=norm, dropout=dropout_spec
            )

        def dilation_at(depth: int) -> int:
            # depth 0 .. height - 1 (encoder e_1 .. e_L); the pooled U only dilates its bottom
            if self.dilated:
                return 1 << depth
            return 2 if depth == height - 1 else 1

        self.input_conv = conv(in_channels, out_channels, 1)
        self.encoder = nn.ModuleList(
            [
                conv(out_channels if depth == 0 else mid_channels, mid_channels, dilation_at(depth))
                for depth in range(height - 1)
            ]
        )
        self.bottom = conv(mid_channels, mid_channels, dilation_at(height - 1))
        self.decoder = nn.ModuleList(
            [
                conv(2 * mid_channels, out_channels if depth == 0 else mid_channels, dilation_at(depth))
                for depth in reversed(range(height - 1))
            ]
        )
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.input_conv(x)
        skips: List[torch.Tensor] = []
        h = x_in
        for depth, conv in enumerate(self.encoder):
            if depth > 0 and not self.dilated:
                h = self.pool(h)
            h = conv(h)
            skips.append(h)
        h = self.bottom(h)
        for step, conv in enumerate(self.decoder):
            skip = skips[len(skips) - 1 - step]
            if step > 0 and not self.dilated:
                h = _upsample_to(h, skip)
            h = conv(torch.cat([h, skip], dim=1))
        return h + x_in


class U2Net(nn.Module):
    """U²-Net (Qin et al., Pattern Recognition 2020, Sec. 3.2, Fig. 5, Table 1).

    Encoder: ``len(features)`` stages of :class:`ResidualUBlock` (default RSU-7, RSU-6, RSU-5, RSU-4, RSU-4F,
    RSU-4F), 2x2 max pooling between stages. Decoder: for every stage but the deepest, the deeper map is up-sampled
    (bilinear), concatenated with the stage's output and passed through an RSU of the same kind (De_5 .. De_1).
    Side outputs (Sec. 3.3): a 3x3 convolution to ``out_channels`` on every decoder stage and on the deepest encoder
    stage, up-sampled to the input size; the fused output is a 1x1 convolution of their concatenation. All are raw
    logits (the paper's sigmoids are left to the bundle).

    Channels follow Table 1: encoder stage ``i`` outputs ``features[i]`` with ``mid_features[i]`` inside; decoder
    stage ``i`` reads ``up(deeper) + features[i]`` channels, works with ``decoder_mid_features[i]`` and outputs
    ``features[i - 1]`` (``features[0]`` for ``i = 0``). Defaults: the full U²-Net (44.0 M parameters for 3 -> 1
    channels, the paper's 176.3 MB). The small U²-Net† is ``U2Net(**U2NET_LITE)``: 64 output and 16 mid channels in
    every RSU (1.1 M parameters, the paper's 4.7 MB).

    Outputs: ``forward`` returns the fused logits ``(N, out_channels, *spatial)``. With ``deep_supervision=True`` and
    in training mode it returns ``torch.stack([fused, side_1, .., side_S], dim=1)``, shape
    ``(N, 1 + S, out_channels, *spatial)`` with ``S = len(features)`` (MONAI ``DynUNet``'s convention; the paper's
    loss Eq. (1) sums one BCE per output, e.g. over ``pred.unbind(1)``). :meth:`side_outputs` returns the same
    maps as a list in any mode. Both are TorchScript-scriptable.

    Choices where the paper is vague or that differ from the reference code:
        - Input size: every spatial size must be a positive multiple of :attr:`size_divisor` (32 with the defaults:
          stage ``i`` runs at ``1 / 2**i`` and pools ``height - 2`` more times inside its RSU); ``forward`` raises a
          ``ValueError`` otherwise. The reference code pools with ``ceil_mode`` and resizes to the skip's size,
          accepting any size at the price of misaligned maps; here every up-sampling is an exact 2x.
        - Normalisation: batch norm (``norm``), activation ReLU (``act``), as the reference "REBNCONV"; ``dropout``
          (default 0, none in the paper) after every normalisation.
        - 3D: the same blocks with trilinear up-sampling (not in the paper).

    Args:
        spatial_dims: number of spatial dimensions, 2 (paper) or 3.
        in_channels: number of input channels.
        out_channels: number of output channels (logits).
        features: output channels of the encoder stages, from full resolution to the deepest; at least 2 entries.
        mid_features: mid channels ``M`` of the encoder RSUs, one per stage.
        decoder_mid_features: mid channels of the decoder RSUs, one per stage but the deepest.
        heights: height ``L`` of every stage's RSU (>= 2).
        dilated_stages: how many of the deepest stages use RSU-LF (no pooling inside, dilations instead).
        act: activation (MONAI ``Act`` factory).
        norm: normalisation (MONAI ``Norm`` factory), ``None`` for none.
        dropout: dropout probability after every normalisation, 0 for none.
        deep_supervision: in training, return the fused and side logits stacked on axis 1 (see above).

    Example::

        net = U2Net(spatial_dims=2, in_channels=1, out_channels=1)
        logits = net(torch.randn(2, 1, 320, 320))  # (2, 1, 320, 320)
        fused, *sides = net.side_outputs(torch.randn(2, 1, 320, 320))  # 1 + 6 maps
        lite = U2Net(in_channels=1, out_channels=1, **U2NET_LITE)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        features: Sequence[int] = (64, 128, 256, 512, 512, 512),
        mid_features: Sequence[int] = (32, 32, 64, 128, 256, 256),
        decoder_mid_features: Sequence[int] = (16, 32, 64, 128, 256),
        heights: Sequence[int] = (7, 6, 5, 4, 4, 4),
        dilated_stages: int = 2,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        deep_supervision: bool = False,
    ):
        super().__init__()
        features = check_network_arguments("U2Net", spatial_dims, in_channels, out_channels, features)
        num_stages = len(features)
        mid_features = self._check_per_stage("mid_features", mid_features, num_stages)
        decoder_mid_features = self._check_per_stage("decoder_mid_features", decoder_mid_features, num_stages - 1)
        heights = self._check_per_stage("heights", heights, num_stages)
        if any(height < 2 for height in heights):
            raise ValueError(f"U2Net: every entry of heights must be >= 2, got {tuple(heights)!r}.")
        if (
            isinstance(dilated_stages, bool)
            or not isinstance(dilated_stages, int)
            or not 0 <= dilated_stages <= num_stages
        ):
            raise ValueError(f"U2Net: dilated_stages must be an int in 0..{num_stages}, got {dilated_stages!r}.")
        check_dropout_probability("U2Net", dropout)

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_stages = num_stages
        self.deep_supervision = bool(deep_supervision)
        dilated = [stage >= num_stages - dilated_stages for stage in range(num_stages)]
        exponents = [stage + (0 if dilated[stage] else heights[stage] - 2) for stage in range(num_stages)]
        self.size_divisor = 1 << max(exponents + [num_stages - 1])

        block_args = dict(spatial_dims=spatial_dims, act=act, norm=norm, dropout=dropout)
        self.encoder = nn.ModuleList(
            [
                ResidualUBlock(
                    in_channels=in_channels if stage == 0 else features[stage - 1],
                    mid_channels=mid_features[stage],
                    out_channels=features[stage],
                    height=heights[stage],
                    dilated=dilated[stage],
                    **block_args,
                )
                for stage in range(num_stages)
            ]
        )
        decoder_out = [features[max(stage - 1, 0)] for stage in range(num_stages - 1)]
        decoder_in = [
            (features[-1] if stage == num_stages - 2 else decoder_out[stage + 1]) + features[stage]
            for stage in range(num_stages - 1)
        ]
        # deepest first, the order in which forward runs them
        self.decoder = nn.ModuleList(
            [
                ResidualUBlock(
                    in_channels=decoder_in[stage],
                    mid_channels=decoder_mid_features[stage],
                    out_channels=decoder_out[stage],
                    height=heights[stage],
                    dilated=dilated[stage],
                    **block_args,
                )
                for stage in reversed(range(num_stages - 1))
            ]
        )
        conv_type = Conv[Conv.CONV, spatial_dims]
        side_in = decoder_out + [features[-1]]  # side_1 .. side_S: decoder stages 0 .. S-2, then the deepest encoder
        self.side_convs = nn.ModuleList([conv_type(c, out_channels, kernel_size=3, padding=1) for c in side_in])
        self.fuse_conv = conv_type(num_stages * out_channels, out_channels, kernel_size=1)
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)

    @staticmethod
    def _check_per_stage(name: str, values: Sequence[int], expected: int) -> tuple[int, ...]:
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ValueError(f"U2Net: {name} must be a sequence of ints, got {values!r}.")
        values = tuple(values)
        if len(values) != expected:
            raise ValueError(f"U2Net: {name} needs {expected} entries (one per stage), got {values!r}.")
        for value in values:
            check_positive_int("U2Net", f"every entry of {name}", value)
        return values

    @torch.jit.export
    def side_outputs(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The fused logits and the ``S = len(features)`` side logits, all at the input's spatial size.

        Returns:
            ``[fused, side_1, .., side_S]``, each ``(N, out_channels, *spatial)``; ``side_1`` comes from the
            full-resolution decoder stage, ``side_S`` from the deepest encoder stage.
        """
        check_divisible_input(x, self.spatial_dims, self.in_channels, self.size_divisor, "U2Net")
        encoded: List[torch.Tensor] = []
        h = x
        for stage, block in enumerate(self.encoder):
            if stage > 0:
                h = self.pool(h)
            h = block(h)
            encoded.append(h)
        decoded: List[torch.Tensor] = [h]  # deepest first
        for step, block in enumerate(self.decoder):
            skip = encoded[self.num_stages - 2 - step]
            h = block(torch.cat([_upsample_to(h, skip), skip], dim=1))
            decoded.append(h)
        decoded.reverse()  # decoder stage 0 (full resolution) first, the deepest encoder map last
        sides: List[torch.Tensor] = []
        for stage, conv in enumerate(self.side_convs):
            side = conv(decoded[stage])
            if stage > 0:
                side = _upsample_to(side, x)
            sides.append(side)
        return [self.fuse_conv(torch.cat(sides, dim=1))] + sides

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(N, in_channels, *spatial)``, every spatial size a multiple of :attr:`size_divisor`.

        Returns:
            the fused logits ``(N, out_channels, *spatial)``; with ``deep_supervision=True`` in training mode the
            fused and side logits stacked, ``(N, 1 + len(features), out_channels, *spatial)``.

        Raises:
            ValueError: (a ``RuntimeError`` when scripted) for a wrong number of axes or channels, or a spatial size
                that is not a multiple of :attr:`size_divisor`.
        """
        outputs = self.side_outputs(x)
        if self.deep_supervision and self.training:
            return torch.stack(outputs, dim=1)
        return outputs[0]
