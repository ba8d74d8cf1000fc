"""Means and memory formats that keep bf16 autocast on its fast paths on a CPU, shared by the attention blocks of
several networks (MCSA-UNet's CSA gates, LG-Net's SE blocks and LG-Attention).

Under CPU bf16 autocast two things slow element-wise work down without changing any value: ``torch.mean`` and
``adaptive_avg_pool`` of a bf16 tensor first copy the whole tensor to fp32, and an element-wise product of a
channels-last map with a channels-first one runs a strided loop instead of a contiguous one. The helpers here
compute the same values without either.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn as nn

__all__ = ["GlobalAvgPool", "mean_over", "same_memory_format"]


def mean_over(x: torch.Tensor, dims: List[int]) -> torch.Tensor:
    """``x.mean(dims, keepdim=True)`` computed as a sum divided by the count.

    Why: on a CPU ``torch.mean`` (and ``adaptive_avg_pool``) of a bf16 tensor first copies the whole tensor to fp32,
    a full-size copy at every attention gate under bf16 autocast, and its backward writes a full-size divided
    gradient. ``torch.sum`` accumulates bf16 in fp32 without the copy, its backward is a broadcast view, and the
    division runs on the small pooled map. The math is the mean's (fp32 accumulation, then the division); in bf16 the
    sum is rounded before the division, which changes nothing when the count is a power of two (every width and patch
    size of the bundles) and at most one bf16 rounding otherwise. fp32 is unchanged.
    """
    count = 1
    for dim in dims:
        count *= x.shape[dim]
    return torch.sum(x, dim=dims, keepdim=True) / count


class GlobalAvgPool(nn.Module):
    """Drop-in for ``AdaptiveAvgPool{1,2,3}d(1)``: the mean over all spatial axes, ``(N, C, 1, ...)``, by
    :func:`mean_over`. No parameters, so swapping it into a block leaves checkpoints unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_over(x, list(range(2, x.dim())))


def same_memory_format(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``y`` in the channels-last layout of ``like`` when ``like`` is channels-last (2D or 3D), else as it is.

    Why: maps built by matrix products (attention maps) come out channels-first while the bundles run their networks
    channels-last; multiplying the two runs a strided mixed-layout loop several times slower than a contiguous one,
    and interpolating a channels-first map keeps it channels-first. Converting the small map once is cheap; the
    values are untouched.
    """
    if like.dim() == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        return y.contiguous(memory_format=torch.channels_last)
    if like.dim() == 5 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last_3d):
        return y.contiguous(memory_format=torch.channels_last_3d)
    return y
