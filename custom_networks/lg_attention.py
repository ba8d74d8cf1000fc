"""LG-Net's local-global attention (LG-Attention, paper Sec. 2.3, Eqs. (5)-(10)): the quadrant (octant) split and
merge, the pixel-weighted aggregation of the local and global maps, and the :class:`LocalGlobalAttention` module
that applies them to a skip map with the chunked pixel correlation of :mod:`.pixel_correlation`.

Reference: see :mod:`.lgnet`.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._reductions import same_memory_format
from .pixel_correlation import PixelCorrelation

__all__ = ["LocalGlobalAttention", "pixel_weighted_aggregation", "split_orthants", "merge_orthants"]


# ---------------------------------------------------------------------------------------------------------------
# Pixel-weighted aggregation, paper Eq. (10)
# ---------------------------------------------------------------------------------------------------------------


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
# Module
# ---------------------------------------------------------------------------------------------------------------


def check_attention_size(network: str, attention_size: int | None) -> int | None:
    """``attention_size`` checked: ``None`` or an even int >= 2 (the pooled map is split into equal parts)."""
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
        self.attention_size = check_attention_size("LocalGlobalAttention", attention_size) or 0
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
        # the PCM's matrix products leave the map channels-first: take x's layout here, on the small pooled map, so
        # that the interpolation and the product with x run contiguous (a mixed-layout product is several times slower)
        fused = same_memory_format(pixel_weighted_aggregation(local_map, global_map), x)
        if grid != input_size:
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            fused = F.interpolate(fused, size=input_size, mode=mode, align_corners=False)
        return fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)
