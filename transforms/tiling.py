"""Training crops for networks with valid (unpadded) convolutions, as in the U-Net paper.

A network with valid convolutions maps an input tile of size ``output_size + 2 * border`` to an output of size
``output_size``: the label window it is trained on is surrounded by ``border`` pixels of context on every side.
Where that context lies outside the image it is extrapolated by mirroring, the paper's "missing context is
extrapolated by mirroring the input image" (Ronneberger et al., MICCAI 2015, Sec. 2 and Fig. 2).

Reference:
    O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015, arXiv:1505.04597.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from copy import deepcopy
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.meta_obj import get_track_meta
from monai.data.meta_tensor import MetaTensor
from monai.transforms import MapTransform, Randomizable
from monai.utils import TransformBackends, convert_to_tensor, ensure_tuple, ensure_tuple_rep

__all__ = ["EXTRAPOLATION_MODES", "extrapolated_indices", "extrapolate_crop", "RandOverlapTileCropd"]

EXTRAPOLATION_MODES = ("reflect", "symmetric", "replicate", "circular")


def extrapolated_indices(
    length: int, start: int, stop: int, mode: str = "reflect", device: torch.device | str | None = None
) -> torch.Tensor:
    """Indices into an axis of ``length`` samples for the positions ``start, ..., stop - 1`` of its infinite
    extrapolation, which may lie outside ``[0, length)``.

    Unlike ``torch.nn.functional.pad`` the extension may be longer than the axis itself: the reflection is
    repeated (``numpy.pad`` semantics), which is what an image smaller than the network's border needs.

    Args:
        length: number of samples along the axis (>= 1).
        start: first position (may be negative).
        stop: one past the last position (may exceed ``length``).
        mode: ``"reflect"`` (mirror about the edge samples, which are not repeated: ``d c b | a b c d | c b a``;
            the paper's mirroring, ``numpy``/``torch`` "reflect"), ``"symmetric"`` (edge samples repeated:
            ``c b a | a b c d | d c b``), ``"replicate"`` (edge value repeated) or ``"circular"`` (periodic).
            ``"reflect"`` on a single sample degenerates to ``"replicate"``.
        device: device of the returned index tensor.

    Returns:
        ``torch.long`` tensor of ``stop - start`` indices in ``[0, length)``.

    Raises:
        ValueError: for ``length < 1``, ``stop < start`` or an unknown ``mode``.
    """
    if length < 1:
        raise ValueError(f"cannot extrapolate an empty axis (length={length}).")
    if stop < start:
        raise ValueError(f"stop ({stop}) must not be smaller than start ({start}).")
    if mode not in EXTRAPOLATION_MODES:
        raise ValueError(f"mode must be one of {EXTRAPOLATION_MODES}, got {mode!r}.")
    positions = torch.arange(start, stop, device=device, dtype=torch.long)
    if mode == "replicate" or (mode == "reflect" and length == 1):
        return positions.clamp(0, length - 1)
    if mode == "circular":
        return positions.remainder(length)
    if mode == "reflect":
        period = 2 * (length - 1)
        folded = positions.remainder(period)
        return torch.where(folded < length, folded, period - folded)
    period = 2 * length  # symmetric
    folded = positions.remainder(period)
    return torch.where(folded < length, folded, period - 1 - folded)


def extrapolate_crop(
    img: torch.Tensor, start: Sequence[int], size: Sequence[int], mode: str = "reflect"
) -> torch.Tensor:
    """Window ``[start, start + size)`` of the spatial axes of a channel-first ``img`` (``C, *spatial``), the
    parts outside the image extrapolated with ``mode`` (see :func:`extrapolated_indices`).

    Returns a plain tensor; metadata is the caller's business (see :class:`RandOverlapTileCropd`).
    """
    out = img.as_tensor() if isinstance(img, MetaTensor) else img
    for axis, (first, extent) in enumerate(zip(start, size, strict=True)):
        indices = extrapolated_indices(out.shape[axis + 1], first, first + extent, mode, out.device)
        out = out.index_select(axis + 1, indices)
    return out


def _constant_window(img: torch.Tensor, start: Sequence[int], size: Sequence[int], value: float) -> torch.Tensor:
    """Window ``[start, start + size)`` of a channel-first tensor, positions outside the image set to ``value``."""
    out = img.as_tensor() if isinstance(img, MetaTensor) else img
    for axis, (first, extent) in enumerate(zip(start, size, strict=True)):
        length = out.shape[axis + 1]
        positions = torch.arange(first, first + extent, device=out.device)
        out = out.index_select(axis + 1, positions.clamp(0, length - 1))
        outside = torch.nonzero((positions < 0) | (positions >= length)).flatten()
        if outside.numel() > 0:
            out = out.index_fill(axis + 1, outside, value)
    return out


def _with_shifted_meta(cropped: torch.Tensor, source: Any, shift: Sequence[int]) -> torch.Tensor:
    """``cropped`` as a :class:`MetaTensor` carrying ``source``'s metadata, its affine moved to the window origin."""
    if not isinstance(source, MetaTensor) or not get_track_meta():
        return cropped
    affine = source.affine.clone()
    rank = affine.shape[0] - 1
    translation = torch.eye(rank + 1, dtype=affine.dtype, device=affine.device)
    for axis, value in enumerate(list(shift)[:rank]):
        translation[axis, rank] = float(value)
    meta = {k: deepcopy(v) for k, v in source.meta.items() if k != "affine"}
    return MetaTensor(
        cropped, affine=affine @ translation, meta=meta, applied_operations=deepcopy(source.applied_operations)
    )


class RandOverlapTileCropd(Randomizable, MapTransform):
    """Random training tile for a network with valid convolutions (the U-Net paper's overlap-tile geometry).

    An output window of ``output_size`` is drawn uniformly inside the label; the target keys (``label_keys``,
    e.g. the label and its weight map) are cropped to that window and the input keys (``image_keys``) to the
    window enlarged by ``border`` on every side, so that the network's valid output for the image crop is
    pixel-aligned with the label crop (for the paper's 2D network: ``output_size=388, border=92`` gives a
    572x572 input tile and 388x388 targets). Context outside the image is mirrored (Sec. 2, Fig. 2 of Ronneberger
    et al. 2015), repeatedly when the image is smaller than the border.

    Placement: along an axis of label length ``L`` and window ``O`` the window start is uniform in
    ``[min(0, L - O), max(0, L - O)]``: a window that fits lies entirely inside the label; a label smaller than the
    window lies at a random place inside it, and the window positions outside the label are filled with
    ``label_pad_value`` (per label key; 0 by default, which for a weight map means "these pixels do not count" in
    a weighted loss, and for a label means background: pass e.g. an ignore index instead if the loss supports it).
    No foreground-weighted sampling is done (the paper samples tiles uniformly).

    All keys must share the spatial shape (the label is pixel-aligned with the image). Works for any number of
    spatial dimensions. :class:`MetaTensor` inputs keep their metadata, with the affine moved to the crop origin;
    the crop is not recorded in ``applied_operations`` (a training transform, not meant to be inverted).

    Args:
        image_keys: keys of the network inputs, cropped to ``output_size + 2 * border`` with mirrored context.
        label_keys: keys of the targets (label, weight map, ...), cropped to ``output_size``.
        output_size: spatial size of the network's output tile, one int for all axes or one per axis.
        border: context the network consumes on each side of each axis (``(input - output) / 2``: 92 for the
            paper's U-Net), one int or one per axis.
        num_samples: ``None`` returns one cropped dictionary; an int returns a list of that many independent
            crops (like ``RandSpatialCropSamplesd``; other keys are deep-copied into each).
        label_pad_value: fill value of each label key outside the label, one value or one per label key.
        image_pad_mode: extrapolation of the image keys, ``"reflect"`` (paper), ``"symmetric"``,
            ``"replicate"`` or ``"circular"``, one or one per image key.
        allow_missing_keys: don't raise when a key is missing.

    Example::

        crop = RandOverlapTileCropd(
            image_keys="image", label_keys=("label", "weight"), output_size=388, border=92
        )
        crop.set_random_state(seed=0)
        sample = crop({"image": image, "label": label, "weight": weight})  # image 572x572, label 388x388
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        image_keys: KeysCollection,
        label_keys: KeysCollection,
        output_size: Sequence[int] | int,
        border: Sequence[int] | int,
        num_samples: int | None = None,
        label_pad_value: Sequence[float] | float = 0.0,
        image_pad_mode: Sequence[str] | str = "reflect",
        allow_missing_keys: bool = False,
    ) -> None:
        self.image_keys = ensure_tuple(image_keys) if image_keys is not None else ()
        self.label_keys = ensure_tuple(label_keys) if label_keys is not None else ()
        if not self.image_keys and not self.label_keys:
            raise ValueError("RandOverlapTileCropd needs at least one image or label key.")
        overlap = set(self.image_keys) & set(self.label_keys)
        if overlap:
            raise ValueError(f"keys {sorted(map(str, overlap))} are both image and label keys.")
        MapTransform.__init__(self, self.image_keys + self.label_keys, allow_missing_keys)
        for name, value, minimum in (("output_size", output_size, 1), ("border", border, 0)):
            values = ensure_tuple(value)
            if not values or any(isinstance(v, bool) or int(v) != v or v < minimum for v in values):
                raise ValueError(f"{name} must be int(s) >= {minimum}, got {value!r}.")
        if num_samples is not None and (isinstance(num_samples, bool) or int(num_samples) < 1):
            raise ValueError(f"num_samples must be None or an int >= 1, got {num_samples!r}.")
        self.output_size = output_size
        self.border = border
        self.num_samples = num_samples
        self.label_pad_values = ensure_tuple_rep(label_pad_value, len(self.label_keys))
        self.image_pad_modes = ensure_tuple_rep(image_pad_mode, len(self.image_keys))
        for mode in self.image_pad_modes:
            if mode not in EXTRAPOLATION_MODES:
                raise ValueError(f"image_pad_mode must be one of {EXTRAPOLATION_MODES}, got {mode!r}.")
        self._window_start: tuple[int, ...] = ()

    def _sizes(self, spatial_dims: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        output_size = tuple(int(s) for s in ensure_tuple_rep(self.output_size, spatial_dims))
        border = tuple(int(b) for b in ensure_tuple_rep(self.border, spatial_dims))
        return output_size, border

    def randomize(self, data: Sequence[int]) -> None:
        """Draws the start of the output window for a label of spatial shape ``data``."""
        output_size, _ = self._sizes(len(data))
        starts = []
        for length, size in zip(data, output_size, strict=True):
            low, high = min(0, length - size), max(0, length - size)
            starts.append(int(self.R.randint(low, high + 1)))
        self._window_start = tuple(starts)

    def _spatial_shape(self, data: Mapping[Hashable, Any], keys: list[Hashable]) -> tuple[int, ...]:
        reference = next((k for k in self.label_keys if k in keys), keys[0])
        shape = tuple(int(s) for s in np.shape(data[reference])[1:])
        if not shape:
            raise ValueError(
                f"{reference!r} must be channel-first with spatial axes, got shape {np.shape(data[reference])}."
            )
        for key in keys:
            other = tuple(int(s) for s in np.shape(data[key])[1:])
            if other != shape:
                raise ValueError(
                    f"all keys must share the spatial shape: {reference!r} has {shape} but {key!r} has {other}."
                )
        return shape

    def _crop_all(self, data: Mapping[Hashable, Any], keys: list[Hashable], spatial_dims: int) -> dict:
        output_size, border = self._sizes(spatial_dims)
        out: dict[Hashable, Any] = {}
        for key, mode in zip(self.image_keys, self.image_pad_modes, strict=True):
            if key not in keys:
                continue
            img = convert_to_tensor(data[key], track_meta=get_track_meta())
            start = [s - b for s, b in zip(self._window_start, border, strict=True)]
            size = [o + 2 * b for o, b in zip(output_size, border, strict=True)]
            out[key] = _with_shifted_meta(extrapolate_crop(img, start, size, mode), img, start)
        for key, value in zip(self.label_keys, self.label_pad_values, strict=True):
            if key not in keys:
                continue
            img = convert_to_tensor(data[key], track_meta=get_track_meta())
            cropped = _constant_window(img, self._window_start, output_size, value)
            out[key] = _with_shifted_meta(cropped, img, self._window_start)
        return out

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any] | list[dict[Hashable, Any]]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d if self.num_samples is None else [deepcopy(d) for _ in range(self.num_samples)]
        shape = self._spatial_shape(d, keys)
        if self.num_samples is None:
            self.randomize(shape)
            d.update(self._crop_all(d, keys, len(shape)))
            return d
        samples = []
        for _ in range(self.num_samples):
            self.randomize(shape)
            sample = {k: deepcopy(v) for k, v in d.items() if k not in keys}
            sample.update(self._crop_all(d, keys, len(shape)))
            samples.append(sample)
        return samples
