"""Pixel Correlation Module (PCM) of SEAM, computed chunk by chunk so that no ``(HW) x (HW)`` affinity matrix is ever
formed, with a dense reference implementation for tests.

LG-Net's LG-Attention (:mod:`.lg_attention`) applies it to whole skip maps and to their quadrants; it is
self-contained and serves any network that wants SEAM's pixel-correlation aggregation.

Reference:
    Y. Wang, J. Zhang, M. Kan, S. Shan, X. Chen, "Self-supervised Equivariant Attention Mechanism for Weakly
    Supervised Semantic Segmentation" (SEAM), CVPR 2020; LG-Net paper (see :mod:`.lgnet`) Eqs. (3)-(4).
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from monai.networks.layers.factories import Conv

from ._input_checks import check_positive_int

__all__ = ["PixelCorrelation", "pixel_correlation", "pixel_correlation_dense"]


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
