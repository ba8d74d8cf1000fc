"""Inference for the U-Net paper: overlap-tile prediction for valid-convolution networks and test-time augmentation.

Reference:
    O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015, arXiv:1505.04597. Overlap-tile strategy: Sec. 2 and Fig. 2; averaging over rotated versions of the
    input for the EM challenge: Sec. 4.
"""

from __future__ import annotations

import itertools
import math
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from monai.data.meta_tensor import MetaTensor
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type, ensure_tuple, ensure_tuple_rep

from ..tiling import EXTRAPOLATION_MODES, extrapolated_indices
from .geometry import (
    TileGeometry,
    declared_tile_geometry,
    estimate_activation_bytes,
    output_spatial_shape,
    probe_tile_geometry,
)

__all__ = ["OverlapTileInferer"]


@dataclass(frozen=True)
class _AxisTile:
    """One tile position along one axis, in image coordinates."""

    output_start: int  # where the tile's valid output begins (its input begins ``context`` earlier)
    write_from: int  # the part of the output this tile owns: [write_from, write_to)
    write_to: int


def _axis_tiles(size: int, tile: int, context: int, period: int) -> list[_AxisTile]:
    """Tile positions along one axis of ``size`` pixels for a tile of input ``tile`` with ``context`` per side.

    Each tile's valid output covers ``tile - 2 * context`` pixels. Starts are multiples of ``period`` (when the
    valid output is at least one period long), so every tile sees the same pooling grid as a single forward pass over
    the whole mirror-padded image and the stitched result equals that pass; the overlap this costs in computed
    output is less than one period per tile and is written once (no blending). The last tile is shifted inward to the
    first aligned start that reaches the image end, so padding beyond the image stays below one period plus the
    context.
    """
    valid_output = tile - 2 * context
    if valid_output < 1:
        raise ValueError(f"tile size {tile} leaves no valid output with a border of {context} pixels per side.")
    if valid_output >= size:
        return [_AxisTile(0, 0, size)]
    aligned = valid_output >= period
    stride = (valid_output // period) * period if aligned else valid_output
    count = 1 + math.ceil((size - valid_output) / stride)
    starts = [k * stride for k in range(count - 1)]
    remaining = size - valid_output
    starts.append(-(-remaining // period) * period if aligned else remaining)
    tiles, written = [], 0
    for start in starts:
        end = min(start + valid_output, size)
        tiles.append(_AxisTile(start, written, end))
        written = end
    return tiles


class OverlapTileInferer(Inferer):
    """Overlap-tile inference (Ronneberger et al. 2015, Sec. 2, Fig. 2) for networks whose output is smaller than
    their input (valid convolutions), also correct for "same"-padded networks.

    The image is mirror-padded by the network's border and cut into input tiles whose valid outputs tile the image
    seamlessly: each output pixel is predicted once from its full context, with mirrored context at the image
    border, and no blending is needed. The output has the input's spatial size.

    Geometry: ``border`` (context per side) and ``valid_tile_size`` (which input sizes the network accepts) are,
    when not given, read from the network when it declares them (:func:`declared_tile_geometry`, e.g.
    ``UNet2015``), else probed from it (:func:`probe_tile_geometry`, a meta-device scan, cached per network).
    Tile starts are multiples of the period of the valid sizes (``2**depth`` for a U-Net), so that a tiled result
    equals one forward pass over the whole mirror-padded image extended to the next valid size, independent of
    the tiling (see :func:`_axis_tiles`).

    Tile size heuristic (``roi_size=None``):
        1. The *covering* tile per axis is the smallest valid size ``>= image + 2 * border``: one tile for the whole
           image (a 512x512 image and the paper's U-Net: one 700x700 tile rather than four 572x572 tiles).
        2. If ``memory_budget_mb`` is set and ``sw_batch_size`` tiles of that size exceed it (activation memory from
           :func:`estimate_activation_bytes`, a conservative meta-device count), the tile is shrunk one valid step
           at a time along its currently longest axis until it fits (a linear-in-voxels model gets close first, the
           exact count confirms). If even the smallest valid tile does not fit it is used with a warning.
        3. Each axis is then reduced to the smallest valid size that needs the same number of tiles, so that tiles
           are equal-sized with as little wasted overlap as possible.
        An explicit ``roi_size`` must be valid; it is only reduced to the covering size when larger than that.

    Args:
        roi_size: input tile size (one int or one per spatial axis), or ``None`` to choose it (see above).
        sw_batch_size: number of tiles per forward pass.
        border: context per side of each axis, mirror-padded around the image and cropped from every tile's output;
            ``None`` uses the border the network loses. A larger value than the network's (e.g. the receptive-field
            radius of a "same"-padded network) crops zero-padding artefacts off each tile.
        valid_tile_size: predicate ``size -> bool`` (one, or one per axis) telling which input sizes the network
            accepts; ``None`` probes it. For ``UNet2015``: ``lambda s: is_valid_tile_size(s, depth, padding)``.
        memory_budget_mb: activation memory allowed for one forward pass of ``sw_batch_size`` tiles when
            ``roi_size=None``; ``None`` means no limit (one covering tile).
        padding_mode: extrapolation outside the image: ``"reflect"`` (paper), ``"symmetric"``, ``"replicate"`` or
            ``"circular"``; repeated as needed when the image is smaller than the border.
        sw_device: device the tiles are computed on (default: the input's device).
        device: device of the stitched output (default: the input's device).
        max_probe_size: largest size tried by the geometry probe.

    Example::

        inferer = OverlapTileInferer(sw_batch_size=2)
        with torch.no_grad():
            logits = inferer(image, net)  # same spatial size as ``image``
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int | None = None,
        sw_batch_size: int = 1,
        border: Sequence[int] | int | None = None,
        valid_tile_size: Callable[[int], bool] | Sequence[Callable[[int], bool]] | None = None,
        memory_budget_mb: float | None = 2048.0,
        padding_mode: str = "reflect",
        sw_device: torch.device | str | None = None,
        device: torch.device | str | None = None,
        max_probe_size: int = 512,
    ) -> None:
        super().__init__()
        if isinstance(sw_batch_size, bool) or int(sw_batch_size) != sw_batch_size or sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be an int >= 1, got {sw_batch_size!r}.")
        if padding_mode not in EXTRAPOLATION_MODES:
            raise ValueError(f"padding_mode must be one of {EXTRAPOLATION_MODES}, got {padding_mode!r}.")
        if border is not None and any(int(b) != b or b < 0 for b in ensure_tuple(border)):
            raise ValueError(f"border must be int(s) >= 0 or None, got {border!r}.")
        if roi_size is not None and any(int(r) != r or r < 1 for r in ensure_tuple(roi_size)):
            raise ValueError(f"roi_size must be int(s) >= 1 or None, got {roi_size!r}.")
        if memory_budget_mb is not None and memory_budget_mb <= 0:
            raise ValueError(f"memory_budget_mb must be positive or None, got {memory_budget_mb!r}.")
        self.roi_size = roi_size
        self.sw_batch_size = int(sw_batch_size)
        self.border = border
        self.valid_tile_size = valid_tile_size
        self.memory_budget_mb = memory_budget_mb
        self.padding_mode = padding_mode
        self.sw_device = sw_device
        self.device = device
        self.max_probe_size = max_probe_size
        self._explicit_geometry: dict[tuple, TileGeometry] = {}
        # tile sizes depend on the architecture only, not on the weights: choose once per network and image size
        self._tile_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def geometry(
        self,
        network: Callable[..., torch.Tensor],
        in_channels: int,
        spatial_dims: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> TileGeometry:
        """The network's tile geometry: the explicit arguments where given, else what the network declares
        (:func:`declared_tile_geometry`), else probed (a plain callable with inputs of ``dtype`` on ``device``)."""
        if self.valid_tile_size is not None and self.border is not None:
            return self._from_predicate(spatial_dims, ensure_tuple_rep(self.border, spatial_dims))
        known = declared_tile_geometry(network, spatial_dims)
        if known is None:  # only networks that cannot tell their geometry are probed
            if isinstance(network, nn.Module):
                dtype = device = None
            known = probe_tile_geometry(network, in_channels, spatial_dims, self.max_probe_size, device, dtype)
        if self.valid_tile_size is not None:
            return self._from_predicate(spatial_dims, known.border)
        return known

    def _from_predicate(self, spatial_dims: int, border: tuple[int | None, ...]) -> TileGeometry:
        key = (spatial_dims, border)
        if key not in self._explicit_geometry:  # scanning the predicate takes a few milliseconds: do it once
            self._explicit_geometry[key] = TileGeometry.from_predicate(self.valid_tile_size, spatial_dims, border)
        return self._explicit_geometry[key]

    def _context(self, geometry: TileGeometry) -> tuple[int, ...]:
        if self.border is not None:
            return tuple(int(b) for b in ensure_tuple_rep(self.border, geometry.spatial_dims))
        if any(b is None for b in geometry.border):
            raise ValueError("the network border is unknown; pass border.")
        return tuple(int(b) for b in geometry.border)  # type: ignore[arg-type]

    def tile_size(
        self,
        image_size: Sequence[int],
        network: Callable[..., torch.Tensor],
        in_channels: int,
        geometry: TileGeometry | None = None,
    ) -> tuple[int, ...]:
        """The input tile size used for an image of spatial size ``image_size`` (see the class docstring)."""
        key = (int(in_channels), tuple(int(s) for s in image_size))
        cacheable = geometry is None and isinstance(network, nn.Module)
        if cacheable and key in self._tile_cache.get(network, {}):
            return self._tile_cache[network][key]
        tile = self._choose_tile_size(image_size, network, in_channels, geometry)
        if cacheable:
            self._tile_cache.setdefault(network, {})[key] = tile
        return tile

    def _choose_tile_size(
        self,
        image_size: Sequence[int],
        network: Callable[..., torch.Tensor],
        in_channels: int,
        geometry: TileGeometry | None,
    ) -> tuple[int, ...]:
        spatial_dims = len(image_size)
        geometry = geometry or self.geometry(network, in_channels, spatial_dims)
        context = self._context(geometry)
        cover = [
            geometry.valid_at_least(s + 2 * c, a) for a, (s, c) in enumerate(zip(image_size, context, strict=True))
        ]
        if self.roi_size is not None:
            requested = ensure_tuple_rep(self.roi_size, spatial_dims)
            for axis, size in enumerate(requested):
                if not geometry.is_valid(int(size), axis):
                    below, above = geometry.valid_at_most(int(size), axis), geometry.valid_at_least(int(size), axis)
                    raise ValueError(
                        f"roi_size {size} (spatial axis {axis}) is not a valid input size for this network; "
                        f"nearest valid sizes: {below} and {above}."
                    )
            return tuple(min(int(r), c) for r, c in zip(requested, cover, strict=True))
        if self.memory_budget_mb is None:
            return tuple(cover)
        budget = self.memory_budget_mb * 2**20

        def estimate(tile: Sequence[int]) -> int:
            value = estimate_activation_bytes(network, in_channels, tile)  # type: ignore[arg-type]
            if value is None:
                raise ValueError(
                    "roi_size=None needs an nn.Module network that runs on the meta device to estimate its memory; "
                    "pass roi_size or memory_budget_mb=None."
                )
            return value * self.sw_batch_size

        def smaller(tile: list[int]) -> bool:
            order = sorted(range(spatial_dims), key=lambda a: tile[a], reverse=True)
            for axis in order:
                candidate = geometry.valid_at_most(tile[axis] - 1, axis)
                if candidate is not None and candidate - 2 * context[axis] >= 1:
                    tile[axis] = candidate
                    return True
            return False

        tile = list(cover)
        cover_bytes = estimate(cover)
        if cover_bytes > budget:
            bytes_per_voxel = cover_bytes / math.prod(cover)
            while bytes_per_voxel * math.prod(tile) > budget and smaller(tile):
                pass
            while estimate(tile) > budget:
                if not smaller(tile):
                    warnings.warn(
                        f"the smallest valid tile {tuple(tile)} needs more than memory_budget_mb="
                        f"{self.memory_budget_mb}; using it anyway.",
                        stacklevel=2,
                    )
                    break
        for axis in range(spatial_dims):
            needed = len(_axis_tiles(image_size[axis], tile[axis], context[axis], geometry.period[axis]))
            candidate = geometry.valid_at_least(2 * context[axis] + 1, axis)
            while candidate < tile[axis]:
                tiles = _axis_tiles(image_size[axis], candidate, context[axis], geometry.period[axis])
                if len(tiles) <= needed:
                    tile[axis] = candidate
                    break
                candidate = geometry.valid_at_least(candidate + 1, axis)
        return tuple(tile)

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Predicts ``inputs`` (``B, C, *spatial``) tile by tile.

        Args:
            inputs: batch of images.
            network: the network (or a callable); extra ``args``/``kwargs`` are passed to it with every tile batch.

        Returns:
            ``B, out_channels, *spatial`` on ``device``; a :class:`MetaTensor` with the input's metadata when the
            input is one.
        """
        if not isinstance(inputs, torch.Tensor) or inputs.dim() < 3:
            raise ValueError(f"inputs must be a (B, C, *spatial) tensor, got {getattr(inputs, 'shape', inputs)!r}.")
        image = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        batch, in_channels, *image_size = image.shape
        if min(image_size) < 1:
            raise ValueError(f"inputs has an empty spatial axis: {tuple(image.shape)}.")
        spatial_dims = len(image_size)
        sw_device = torch.device(self.sw_device) if self.sw_device is not None else image.device
        device = torch.device(self.device) if self.device is not None else image.device
        geometry = self.geometry(network, in_channels, spatial_dims, image.dtype, sw_device)
        context = self._context(geometry)
        tile = self.tile_size(image_size, network, in_channels)
        axis_tiles = [_axis_tiles(image_size[a], tile[a], context[a], geometry.period[a]) for a in range(spatial_dims)]
        index_cache: dict[tuple[int, int], torch.Tensor] = {}

        def cut(sample: int, position: tuple[_AxisTile, ...]) -> torch.Tensor:
            piece = image[sample]
            for axis, axis_tile in enumerate(position):
                first = axis_tile.output_start - context[axis]
                if (axis, first) not in index_cache:
                    index_cache[(axis, first)] = extrapolated_indices(
                        image_size[axis], first, first + tile[axis], self.padding_mode, image.device
                    )
                piece = piece.index_select(axis + 1, index_cache[(axis, first)])
            return piece

        jobs = [(s, p) for s in range(batch) for p in itertools.product(*axis_tiles)]
        output: torch.Tensor | None = None
        crop: tuple[int, ...] = ()
        for chunk_start in range(0, len(jobs), self.sw_batch_size):
            chunk = jobs[chunk_start : chunk_start + self.sw_batch_size]
            tiles = torch.stack([cut(s, p) for s, p in chunk]).to(sw_device)
            predicted = network(tiles, *args, **kwargs)
            if output is None:
                crop = self._output_crop(predicted, tile, context)
                # fp32 at least: under autocast the tiles come back in bf16/fp16
                dtype = torch.promote_types(predicted.dtype, torch.float32)
                output = torch.empty((batch, predicted.shape[1], *image_size), dtype=dtype, device=device)
            valid_region = tuple(slice(c, c + t - 2 * k) for c, t, k in zip(crop, tile, context, strict=True))
            valid = predicted[(slice(None), slice(None)) + valid_region].to(device)
            for item, (sample, position) in enumerate(chunk):
                target = tuple(slice(t.write_from, t.write_to) for t in position)
                source = tuple(slice(t.write_from - t.output_start, t.write_to - t.output_start) for t in position)
                output[(sample, slice(None)) + target] = valid[(item, slice(None)) + source]
        assert output is not None
        if isinstance(inputs, MetaTensor):
            return convert_to_dst_type(output, inputs, dtype=output.dtype, device=output.device)[0]
        return output

    @staticmethod
    def _output_crop(predicted: Any, tile: Sequence[int], context: Sequence[int]) -> tuple[int, ...]:
        """Pixels to crop per side from a tile output: the context minus what the network already lost."""
        output_size = output_spatial_shape(predicted, len(tile))
        crop = []
        for axis, (t, o, c) in enumerate(zip(tile, output_size, context, strict=True)):
            lost = t - o
            if lost < 0 or lost % 2 != 0:
                raise ValueError(
                    f"a tile of size {t} gave an output of size {o} along spatial axis {axis}; overlap-tile inference "
                    "needs an output smaller than the input by the same amount on both sides."
                )
            if lost // 2 > c:
                raise ValueError(
                    f"border={c} is smaller than the {lost // 2} pixels per side the network loses "
                    f"(spatial axis {axis})."
                )
            crop.append(c - lost // 2)
        return tuple(crop)
