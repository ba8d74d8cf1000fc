"""Slice-by-slice inference of a 2D network on a volume, at the network's input size."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer, SliceInferer
from monai.transforms import Resize, SpatialPad
from monai.utils import ensure_tuple_rep

__all__ = ["ResizedSliceNetwork", "AxialSliceInferer"]


class ResizedSliceNetwork(nn.Module):
    """Runs a 2D network at its fixed input size on slices of any size, the way the 2D bundle prepares its slices.

    ``(B, C, H, W)`` slices are resized (MONAI ``Resize``) so that their longer side equals ``min(spatial_size)``
    and zero-padded (MONAI ``SpatialPad``, centred) to ``spatial_size`` with ``keep_aspect_ratio=True``, or resized
    to ``spatial_size`` with ``keep_aspect_ratio=False``; the network's outputs (logits) are cropped back to the
    resized area and resized to ``(H, W)``. Slices already at ``spatial_size`` pass unresized and unpadded, so the
    wrapper is exact there.

    Args:
        network: the 2D network.
        spatial_size: the network's input size ``(H, W)`` (an int for a square).
        keep_aspect_ratio: resize the longer side and pad (the LG-Net bundle's ``keep_aspect_ratio``), or stretch.
        mode: interpolation mode of both resizes (MONAI ``Resize`` mode).
        anti_aliasing: Gaussian low-pass before shrinking (MONAI ``Resize(anti_aliasing=True)``).
    """

    def __init__(
        self,
        network: Callable[..., torch.Tensor],
        spatial_size: Sequence[int] | int,
        keep_aspect_ratio: bool = True,
        mode: str = "bilinear",
        anti_aliasing: bool = True,
    ) -> None:
        super().__init__()
        self.network = network
        self.spatial_size = tuple(int(size) for size in ensure_tuple_rep(spatial_size, 2))
        if len(self.spatial_size) != 2 or min(self.spatial_size) < 1:
            raise ValueError(f"spatial_size must be two positive ints (H, W), got {spatial_size!r}.")
        self.keep_aspect_ratio = bool(keep_aspect_ratio)
        self.mode = mode
        self.anti_aliasing = bool(anti_aliasing)
        self.padder = SpatialPad(spatial_size=self.spatial_size)

    def network_geometry(self, size: Sequence[int]) -> tuple[tuple[int, int], list[tuple[int, int]]]:
        """``(resized (H, W), [(before, after) padding of H, of W])`` of a slice of ``size`` at the network input."""
        size = tuple(int(value) for value in size)
        if tuple(size) == self.spatial_size:
            return size, [(0, 0), (0, 0)]
        if self.keep_aspect_ratio:
            scale = min(self.spatial_size) / max(size)  # MONAI Resize(size_mode="longest"), as the 2D bundle
            resized = tuple(int(round(value * scale)) for value in size)
        else:
            resized = self.spatial_size
        padding = [tuple(int(v) for v in pair) for pair in self.padder.compute_pad_width(resized)[1:]]
        return resized, padding

    def _resize(self, x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        if tuple(x.shape[2:]) == tuple(size):
            return x
        batch, channels = x.shape[:2]
        resizer = Resize(spatial_size=size, mode=self.mode, anti_aliasing=self.anti_aliasing)
        resized = resizer(x.reshape(batch * channels, *x.shape[2:]))  # channels of one image: one interpolate call
        resized = resized.as_tensor() if isinstance(resized, MetaTensor) else torch.as_tensor(resized)
        return resized.reshape(batch, channels, *size)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"ResizedSliceNetwork expects (B, C, H, W) slices, got shape {tuple(x.shape)}.")
        if isinstance(x, MetaTensor):
            x = x.as_tensor()
        size = (int(x.shape[2]), int(x.shape[3]))
        resized, ((top, bottom), (left, right)) = self.network_geometry(size)
        network_input = F.pad(self._resize(x, resized), (left, right, top, bottom))
        output = self.network(network_input, *args, **kwargs)
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"the network must return a tensor of logits, got {type(output).__name__}.")
        if isinstance(output, MetaTensor):
            output = output.as_tensor()
        output = output[:, :, top : top + resized[0], left : left + resized[1]]
        return self._resize(output, size)


class AxialSliceInferer(Inferer):
    """Slice-by-slice inference of a 2D network on 3D volumes ``(B, C, X, Y, Z)``: MONAI's ``SliceInferer`` over
    ``slice_axis``, each whole slice (no tiling) passed through :class:`ResizedSliceNetwork`, so the network always
    sees ``spatial_size`` slices prepared like the 2D bundle's, and the output has the input's voxel grid.

    Orient the volume first (``Orientationd``) so that ``slice_axis`` is the axial axis and the in-plane axes match
    the network's training slices; invert that orientation on the prediction (``Invertd``) before saving.

    Args:
        spatial_size: the network's input size ``(H, W)``.
        slice_axis: the spatial axis (0, 1 or 2) slid over; 2 for the last one.
        sw_batch_size: slices per network call.
        keep_aspect_ratio: see :class:`ResizedSliceNetwork`.
        mode: resize mode, see :class:`ResizedSliceNetwork`.
        anti_aliasing: see :class:`ResizedSliceNetwork`.
        sw_device: device of the network calls (default: the input's).
        device: device of the stitched output (default: the input's).
        progress: show a progress bar over the slice batches.
    """

    def __init__(
        self,
        spatial_size: Sequence[int] | int = 512,
        slice_axis: int = 2,
        sw_batch_size: int = 4,
        keep_aspect_ratio: bool = True,
        mode: str = "bilinear",
        anti_aliasing: bool = True,
        sw_device: torch.device | str | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__()
        if slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1 or 2 (a spatial axis of a 3D volume), got {slice_axis!r}.")
        if int(sw_batch_size) < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size!r}.")
        self.spatial_size = spatial_size
        self.keep_aspect_ratio = keep_aspect_ratio
        self.mode = mode
        self.anti_aliasing = anti_aliasing
        self.slice_inferer = SliceInferer(
            spatial_dim=slice_axis,
            roi_size=(-1, -1),  # non-positive: the whole slice, one window per slice
            sw_batch_size=int(sw_batch_size),
            overlap=0.0,
            mode="constant",
            sw_device=sw_device,
            device=device,
            progress=progress,
        )

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        if inputs.ndim != 5:
            raise ValueError(
                f"AxialSliceInferer expects a batch of 3D volumes (B, C, X, Y, Z), got shape {tuple(inputs.shape)}."
            )
        wrapped = ResizedSliceNetwork(network, self.spatial_size, self.keep_aspect_ratio, self.mode, self.anti_aliasing)
        return self.slice_inferer(inputs, wrapped, *args, **kwargs)
