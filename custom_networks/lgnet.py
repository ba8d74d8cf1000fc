"""LG-Net: a U-Net with multi-level residual convolutions, local-global pixel-correlation attention on the skips and
feature-fusion decoder steps, for lung CT lesion segmentation.

References:
    Lu Xiaoyan, Yuan Wenhao, Xu Yang, "基于改进 U-Net 网络的肺部 CT 图像分割算法研究" (Research on lung CT image
    segmentation algorithm based on the improved U-Net network), 智能计算机与应用 (Intelligent Computer and
    Applications) 13(7), 2023, pp. 179-186. Sec. 2.1-2.4, Eqs. (3)-(13), Figs. 3-7.

    Y. Wang, J. Zhang, M. Kan, S. Shan, X. Chen, "Self-supervised Equivariant Attention Mechanism for Weakly
    Supervised Semantic Segmentation" (SEAM), CVPR 2020: the Pixel Correlation Module (PCM) LG-Attention builds on.

    J. Hu, L. Shen, G. Sun, "Squeeze-and-Excitation Networks", CVPR 2018: the SE part of the RSE block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from monai.networks.blocks import ChannelSELayer, Convolution
from monai.networks.layers.factories import Conv, Pool

from ._blocks import unet_upsampling
from ._input_checks import (
    check_divisible_input,
    check_dropout_probability,
    check_network_arguments,
    check_positive_int,
    check_upsample_mode,
    dropout_or_none,
)

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
# Pixel correlation (Eq. 4) and pixel-weighted aggregation (Eq. 10)
# ---------------------------------------------------------------------------------------------------------------


def _unit_keys(theta: torch.Tensor) -> torch.Tensor:
    """``theta(x)`` ``(B, K, *spatial)`` as unit-length rows ``(B, N, K)``, so that row products are the cosines of
    Eq. (3). A zero vector stays zero (``F.normalize``), i.e. a pixel whose ``theta`` vanishes correlates with
    nothing instead of producing NaN."""
    return F.normalize(theta.flatten(2).transpose(1, 2), dim=2)


def _correlate_rows(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, eps: float) -> torch.Tensor:
    """Eq. (4) for a block of query rows: ``relu(q k^T) v / (row sum + eps)``.

    Args:
        queries: ``(B, n, K)`` unit rows of the query pixels.
        keys: ``(B, N, K)`` unit rows of all pixels.
        values: ``(B, N, C)`` the aggregated features ``y_hat``.
        eps: added to the row sums ``C(x_i)``.

    Returns:
        ``(B, n, C)``.
    """
    affinity = torch.relu(torch.bmm(queries, keys.transpose(1, 2)))
    # normalising the rows before the product keeps the sums (up to HW) and the aggregated values in range under
    # float16 autocast; the row sums themselves are accumulated in (at least) float32
    sum_dtype = torch.float64 if affinity.dtype == torch.float64 else torch.float32
    row_sums = affinity.sum(dim=2, keepdim=True, dtype=sum_dtype) + eps
    return torch.bmm((affinity / row_sums).to(values.dtype), values)


def pixel_correlation_dense(theta: torch.Tensor, values: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Reference implementation of the PCM aggregation, paper Eq. (4), with the full ``(HW) x (HW)`` affinity::

        y_i = 1 / C(x_i) * sum_j ReLU(cos(theta_i, theta_j)) * y_hat_j,   C(x_i) = sum_j ReLU(cos(theta_i, theta_j))

    Memory grows with the square of the number of pixels (17 GB per sample for a 256 x 256 float32 map): use it
    for tests and small maps only; :func:`pixel_correlation` computes the same values chunk by chunk.

    Args:
        theta: ``theta(x)``, ``(B, K, *spatial)``.
        values: ``y_hat``, ``(B, C, *spatial)`` with the same spatial size.
        eps: added to ``C(x_i)``; it only matters for a pixel with ``theta_i = 0`` (then every cosine is taken as 0
            and ``y_i = 0``), otherwise ``C(x_i) >= 1`` thanks to ``cos(theta_i, theta_i) = 1``.

    Returns:
        ``y``, ``(B, C, *spatial)``.
    """
    keys = _unit_keys(theta)
    flat_values = values.flatten(2).transpose(1, 2)
    return _correlate_rows(keys, keys, flat_values, eps).transpose(1, 2).reshape(values.shape)


def pixel_correlation(
    theta: torch.Tensor, values: torch.Tensor, chunk_size: int = 1024, eps: float = 1e-6, checkpoint: bool = False
) -> torch.Tensor:
    """Paper Eq. (4) without materialising the ``(HW) x (HW)`` affinity: the query pixels are processed in chunks
    of ``chunk_size`` rows; each chunk forms its ``chunk x HW`` affinity block, its own row sums and its product
    with the values. The row normalisation needs only the row's own sum, so the result equals
    :func:`pixel_correlation_dense` (up to float rounding). Peak memory per chunk: ``B * chunk_size * HW`` floats.

    Args:
        theta: ``theta(x)``, ``(B, K, *spatial)``.
        values: ``y_hat``, ``(B, C, *spatial)`` with the same spatial size.
        chunk_size: query rows per chunk (any positive int; the last chunk may be shorter).
        eps: added to the row sums, see :func:`pixel_correlation_dense`.
        checkpoint: recompute each chunk's affinity in the backward pass (``torch.utils.checkpoint``) instead of
            keeping it, so that autograd holds no ``HW x HW`` matrix either. Ignored (no checkpointing) when gradients
            are off or nothing requires them, and under TorchScript, which cannot script ``torch.utils.checkpoint``.

    Returns:
        ``y``, ``(B, C, *spatial)``.
    """
    keys = _unit_keys(theta)
    flat_values = values.flatten(2).transpose(1, 2)
    num_pixels = keys.shape[1]
    use_checkpoint = checkpoint and torch.is_grad_enabled() and (keys.requires_grad or flat_values.requires_grad)
    chunks: List[torch.Tensor] = []
    for start in range(0, num_pixels, chunk_size):
        queries = keys[:, start : start + chunk_size]
        if use_checkpoint and not torch.jit.is_scripting():
            chunks.append(_checkpointed_rows(queries, keys, flat_values, eps))
        else:
            chunks.append(_correlate_rows(queries, keys, flat_values, eps))
    return torch.cat(chunks, dim=1).transpose(1, 2).reshape(values.shape)


@torch.jit.unused
def _checkpointed_rows(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.utils.checkpoint.checkpoint(_correlate_rows, queries, keys, values, eps, use_reentrant=False)


def pixel_weighted_aggregation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pixel-weighted aggregation of the local and global attention maps, paper Eq. (10)::

        PWA(x_i, y_i) = x_i / (x_i + y_i) * x_i + y_i / (x_i + y_i) * y_i = (x_i^2 + y_i^2) / (x_i + y_i)

    Eq. (10) reads the two values as weights, which only makes sense for non-negative values (with mixed signs
    ``x + y`` can vanish while ``x^2 + y^2`` does not), so both maps are clamped at 0 first (a no-op for the
    pixel-correlation maps of non-negative, e.g. ReLU'd, skip features: Eq. (4) averages them with non-negative
    weights). Where both are 0 the result is 0, the limit of Eq. (10) (``PWA <= max(x, y)``); the division never
    sees a zero denominator, so gradients stay finite. For ``x, y >= 0`` the result lies in
    ``[(x + y) / 2, max(x, y)]``.

    Args:
        x: local attention map ``f*``.
        y: global attention map ``F*``, same shape.
    """
    x = torch.relu(x)
    y = torch.relu(y)
    denominator = x + y
    positive = denominator > 0
    safe_denominator = torch.where(positive, denominator, torch.ones_like(denominator))
    # Eq. (10) as written, weights (<= 1) times values: no x^2 that could overflow in float16
    aggregated = x / safe_denominator * x + y / safe_denominator * y
    return torch.where(positive, aggregated, torch.zeros_like(aggregated))


# ---------------------------------------------------------------------------------------------------------------
# Quadrant (octant) split, paper Eqs. (5) and (7)
# ---------------------------------------------------------------------------------------------------------------


def split_orthants(x: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Cuts every map into ``2**spatial_dims`` equal parts (4 quadrants in 2D, 8 octants in 3D), paper Eq. (5),
    stacked along the batch axis: ``(B, C, H, W) -> (B * 4, C, H / 2, W / 2)``.

    Part ``b * 4 + 2 * i + j`` of a 2D batch is ``x[b, :, i*H/2:(i+1)*H/2, j*W/2:(j+1)*W/2]`` (top-left, top-right,
    bottom-left, bottom-right); in 3D part ``b * 8 + 4 * i + 2 * j + k`` is octant ``(i, j, k)`` of ``(D, H, W)``.
    Every spatial size must be even (checked by the caller). :func:`merge_orthants` is the inverse.
    """
    b, c = x.shape[0], x.shape[1]
    if spatial_dims == 2:
        h, w = x.shape[2] // 2, x.shape[3] // 2
        parts = x.reshape(b, c, 2, h, 2, w).permute(0, 2, 4, 1, 3, 5)
        return parts.reshape(b * 4, c, h, w)
    d, h, w = x.shape[2] // 2, x.shape[3] // 2, x.shape[4] // 2
    parts = x.reshape(b, c, 2, d, 2, h, 2, w).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return parts.reshape(b * 8, c, d, h, w)


def merge_orthants(parts: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Puts the parts of :func:`split_orthants` back in place, paper Eq. (7): ``(B * 4, C, h, w) -> (B, C, 2h, 2w)``
    (``(B * 8, C, d, h, w) -> (B, C, 2d, 2h, 2w)`` in 3D)."""
    c = parts.shape[1]
    if spatial_dims == 2:
        h, w = parts.shape[2], parts.shape[3]
        b = parts.shape[0] // 4
        merged = parts.reshape(b, 2, 2, c, h, w).permute(0, 3, 1, 4, 2, 5)
        return merged.reshape(b, c, 2 * h, 2 * w)
    d, h, w = parts.shape[2], parts.shape[3], parts.shape[4]
    b = parts.shape[0] // 8
    merged = parts.reshape(b, 2, 2, 2, c, d, h, w).permute(0, 4, 1, 5, 2, 6, 3, 7)
    return merged.reshape(b, c, 2 * d, 2 * h, 2 * w)


# ---------------------------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------------------------


class CheckpointableBlock(nn.Module):
    """A single-input block that can trade compute for memory in training: with ``gradient_checkpointing`` set,
    ``forward`` runs :meth:`block_forward` under ``torch.utils.checkpoint`` (non-reentrant), so autograd keeps only
    the block's input and output and recomputes its inner activations in the backward pass.

    The recomputation would update the running statistics of the block's batch norms a second time; they are frozen
    during it (:func:`_batch_norm_statistics_frozen`), so a checkpointed step leaves exactly the same running
    statistics, outputs and gradients as a plain one. Dropout masks are replayed (``preserve_rng_state``).
    Checkpointing is skipped in eval mode, without gradients, and under TorchScript (which cannot script
    ``torch.utils.checkpoint``): a scripted model computes the same values with the memory of a plain one.
    """

    def __init__(self):
        super().__init__()
        self.gradient_checkpointing = False

    def block_forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return self._checkpointed_forward(x)
        return self.block_forward(x)

    @torch.jit.unused
    def _checkpointed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.utils.checkpoint.checkpoint(
            self.block_forward,
            x,
            use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(), _batch_norm_statistics_frozen(self)),
        )


@contextlib.contextmanager
def _batch_norm_statistics_frozen(module: nn.Module) -> Iterator[None]:
    """Within the context, the batch norms of ``module`` normalise with batch statistics as in training but leave
    their running statistics and ``num_batches_tracked`` as they were (momentum 0, counter restored)."""
    saved = []
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and child.training and child.track_running_stats:
            tracked = None if child.num_batches_tracked is None else child.num_batches_tracked.clone()
            saved.append((child, child.momentum, tracked))
            child.momentum = 0.0
    try:
        yield
    finally:
        for child, momentum, tracked in saved:
            child.momentum = momentum
            if tracked is not None:
                child.num_batches_tracked.copy_(tracked)


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


class PixelCorrelation(nn.Module):
    """Pixel Correlation Module (PCM) of SEAM as used by LG-Net, paper Eqs. (3)-(4)::

        y_i = 1 / C(x_i) * sum_j ReLU(cos(theta(x_i), theta(x_j))) * y_hat_j

    ``theta`` is a 1x1 convolution without bias (as in SEAM). ``y_hat`` is the input feature map itself (Eq. 4:
    ``y_hat_j`` is "the information of input ``x_j``"; SEAM likewise aggregates its input maps without a value
    projection), so ``y`` has the input's channels and the module's only parameters are ``theta``'s.

    The aggregation runs chunk by chunk (:func:`pixel_correlation`), exact and without the ``(HW) x (HW)`` matrix;
    with ``checkpoint=True`` the chunks are recomputed in the backward pass (eager mode only).

    Args:
        spatial_dims: number of spatial dimensions.
        channels: channels ``C`` of the input (and output).
        key_channels: output channels of ``theta`` (the cosine is taken in this space); default ``channels``.
        chunk_size: query rows per chunk.
        checkpoint: recompute the chunks in the backward pass instead of storing their affinities.
        eps: added to the row sums ``C(x_i)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        key_channels: int | None = None,
        chunk_size: int = 1024,
        checkpoint: bool = True,
        eps: float = 1e-6,
    ):
        super().__init__()
        key_channels = channels if key_channels is None else key_channels
        check_positive_int("PixelCorrelation", "channels", channels)
        check_positive_int("PixelCorrelation", "key_channels", key_channels)
        self.chunk_size = check_positive_int("PixelCorrelation", "chunk_size", chunk_size)
        self.checkpoint = bool(checkpoint)
        self.eps = float(eps)
        self.theta = Conv[Conv.CONV, spatial_dims](channels, key_channels, kernel_size=1, bias=False)

    def aggregate(self, theta: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Eq. (4) for given ``theta(x)`` and ``y_hat`` (lets :class:`LocalGlobalAttention` compute ``theta`` once
        for the whole map and its quadrants: a 1x1 convolution commutes with cropping)."""
        return pixel_correlation(theta, values, self.chunk_size, self.eps, self.checkpoint and self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregate(self.theta(x), x)


class LocalGlobalAttention(nn.Module):
    """Local and global attention fusion (LG-Attention), paper Sec. 2.3, Fig. 5, Eqs. (5)-(10)::

        f_1..f_4 = Split(F);  f* = Cat(PCM(f_1), .., PCM(f_4));  F* = PCM(F);  F_LG = PWA(f*, F*);  out = F_LG * F

    The global PCM ``F*`` correlates every pixel of the skip map with every other; the local one ``f*`` only within
    its quadrant (octant in 3D), the parts being put back in place. One :class:`PixelCorrelation` (one ``theta``)
    serves both, as Eqs. (6) and (8) apply the same ``PCM``. The two maps are fused by
    :func:`pixel_weighted_aggregation` and multiply the input element-wise.

    Resolution (the paper is silent, and full-resolution correlation is quadratic in the number of pixels): when
    the largest side of the map exceeds ``attention_size``, the map is average-pooled by the integer factor
    ``ceil(largest side / attention_size)`` (adaptive average pooling to ``ceil(side / factor)`` per axis, rounded
    up to even so the quadrants stay equal), PCMs and PWA run there, and ``F_LG`` is brought back to the input size
    by (bi/tri)linear interpolation before the product with the full-resolution input. ``attention_size=None``
    keeps full resolution.

    Args:
        spatial_dims: number of spatial dimensions, 2 (quadrants) or 3 (octants).
        channels: channels of the skip map.
        attention_size: largest spatial side at which the PCMs run (an even int >= 2), ``None`` for full resolution.
        chunk_size: query rows per chunk of the PCM aggregation.
        checkpoint: recompute the PCM chunks in the backward pass (training, eager mode).
        key_channels: channels of ``theta``, default ``channels``.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        attention_size: int | None = 64,
        chunk_size: int = 1024,
        checkpoint: bool = True,
        key_channels: int | None = None,
    ):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"LocalGlobalAttention: spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        self.spatial_dims = spatial_dims
        # 0 stands for "full resolution" so that the attribute stays an int under TorchScript
        self.attention_size = _check_attention_size("LocalGlobalAttention", attention_size) or 0
        self.pcm = PixelCorrelation(spatial_dims, channels, key_channels, chunk_size, checkpoint)

    def _attention_grid(self, x: torch.Tensor) -> List[int]:
        """Spatial size at which the PCMs run (see the class docstring)."""
        sizes: List[int] = []
        for axis in range(self.spatial_dims):
            sizes.append(int(x.shape[axis + 2]))
        attention_size = self.attention_size
        largest = max(sizes)
        if attention_size == 0 or largest <= attention_size:
            return sizes
        factor = (largest + attention_size - 1) // attention_size
        grid: List[int] = []
        for size in sizes:
            pooled = (size + factor - 1) // factor
            grid.append(pooled + pooled % 2)
        return grid

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """``F_LG = PWA(f*, F*)`` at the input's spatial size, before the product with ``x``.

        Raises:
            ValueError: for a spatial size that is odd or below 2 while it is not pooled (quadrants must be equal).
        """
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                "LocalGlobalAttention expects (N, C, "
                + str(self.spatial_dims)
                + " spatial axes), got "
                + str(x.dim())
                + " dimensions"
            )
        input_size: List[int] = [int(s) for s in x.shape[2:]]
        grid = self._attention_grid(x)
        for axis in range(self.spatial_dims):
            if grid[axis] < 2 or grid[axis] % 2 != 0:
                raise ValueError(
                    "LocalGlobalAttention: spatial size "
                    + str(grid[axis])
                    + " (spatial axis "
                    + str(axis)
                    + ") must be even and >= 2 to split the map into equal quadrants/octants"
                )
        pooled = x
        if grid != input_size:
            if self.spatial_dims == 2:
                pooled = F.adaptive_avg_pool2d(x, grid)
            else:
                pooled = F.adaptive_avg_pool3d(x, grid)
        theta = self.pcm.theta(pooled)
        global_map = self.pcm.aggregate(theta, pooled)
        local_parts = self.pcm.aggregate(
            split_orthants(theta, self.spatial_dims), split_orthants(pooled, self.spatial_dims)
        )
        local_map = merge_orthants(local_parts, self.spatial_dims)
        fused = pixel_weighted_aggregation(local_map, global_map)
        if grid != input_size:
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            fused = F.interpolate(fused, size=input_size, mode=mode, align_corners=False)
        return fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)


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


def _check_attention_size(network: str, attention_size: int | None) -> int | None:
    if attention_size is None:
        return None
    if isinstance(attention_size, bool) or not isinstance(attention_size, int) or attention_size < 2:
        raise ValueError(f"{network}: attention_size must be an even int >= 2 or None, got {attention_size!r}.")
    if attention_size % 2:
        raise ValueError(
            f"{network}: attention_size must be even (the pooled map is split into equal quadrants), "
            f"got {attention_size!r}."
        )
    return attention_size


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
          ``attention_size`` (64) pixels per side and ``F_LG`` is interpolated back (bilinear); with 512 x 512
          inputs the deepest skip (64 x 64) is attended at full resolution, the others pooled 2x, 4x, 8x.
          ``attention_size=None`` runs every PCM at full resolution (exact paper reading; quadratic cost).
        - Memory: the PCM never forms the ``(HW) x (HW)`` matrix (chunks of ``pcm_chunk_size`` query rows, exact),
          and in training each chunk is recomputed in the backward pass (``torch.utils.checkpoint``) so autograd
          keeps none either. The MRC and FF blocks hold many full-resolution maps: one training step at the paper's
          batch 4 x 1 x 512 x 512 with the default features peaks at about 25 GB of activations if autograd keeps
          them all, so ``gradient_checkpointing=True`` (default) recomputes the inside of every double convolution,
          MRC and fusion branch in the backward pass: measured peak 9.2 GiB RSS on CPU for that step, for about a
          third more compute; set it to ``False`` when memory is plentiful. TorchScript cannot script
          ``torch.utils.checkpoint``: a scripted model skips both checkpointings (same values, more memory if trained
          scripted; inference is unaffected).
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
        attention_size: int | None = 64,
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
        attention_size = _check_attention_size("LGNet", attention_size)

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
        self.decoder = nn.ModuleList(
            [
                LGNetDecoderStage(
                    spatial_dims,
                    features[level + 1],
                    features[level],
                    act,
                    norm,
                    dropout,
                    self.use_feature_fusion,
                    upsample,
                    se_reduction,
                )
                for level in reversed(range(self.depth))
            ]
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
