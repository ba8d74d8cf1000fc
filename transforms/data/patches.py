"""Training on every overlapping sliding-window patch of whole images, shuffled across images.

Zhang et al. (Acta Optica Sinica 2020, Sec. 3.1) cut each training frame into overlapping 256x256 patches with a
sliding window and train on the patches in batches of 16. MONAI offers the pieces but not the combination:
``GridPatchDataset``/``PatchDataset`` are iterable datasets (no global shuffling, no ``DistributedSampler``) and
``RandSpatialCropSamplesd`` draws random rather than sliding-window positions and puts the patches of one image
in the same batch. :class:`SlidingWindowPatchDataset` is a map-style dataset with one index per (image, window),
on the same window grid as MONAI's ``SlidingWindowInferer`` (``dense_patch_slices``), so ``DataLoader(shuffle=True)``
mixes patches of all images and ``DistributedSampler`` splits them between processes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import dense_patch_slices
from monai.transforms import SpatialCrop, apply_transform
from monai.utils import ensure_tuple, ensure_tuple_rep

__all__ = ["sliding_window_slices", "SlidingWindowPatchDataset"]


def sliding_window_slices(
    image_size: Sequence[int], patch_size: Sequence[int] | int, overlap: Sequence[float] | float = 0.25
) -> list[tuple[slice, ...]]:
    """Windows of a sliding window over an image: the grid of MONAI's ``SlidingWindowInferer``.

    Windows start every ``int(patch_size * (1 - overlap))`` pixels (at least 1) along each axis; the last one is
    moved back so that it ends at the image border, so every window lies inside the image and together they
    cover it.

    Args:
        image_size: spatial size of the image.
        patch_size: window size, one int for all axes or one per axis; each must fit in the image.
        overlap: fraction of a window shared with its neighbour along each axis, in [0, 1).

    Returns:
        One tuple of spatial slices per window, in row-major order.

    Raises:
        ValueError: for a window larger than the image, non-positive sizes or an overlap outside [0, 1).
    """
    image_size = tuple(int(size) for size in image_size)
    patch, overlaps = _check_window_arguments(patch_size, overlap, len(image_size))
    if any(p > size for p, size in zip(patch, image_size, strict=True)):
        raise ValueError(f"patch size {tuple(patch)} does not fit in an image of size {image_size}.")
    intervals = [max(1, int(p * (1.0 - o))) for p, o in zip(patch, overlaps, strict=True)]
    return dense_patch_slices(image_size, list(patch), intervals)


def _check_window_arguments(
    patch_size: Sequence[int] | int, overlap: Sequence[float] | float, spatial_dims: int
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``(patch size, overlap)`` per axis, or a ValueError naming the bad argument."""
    try:
        patch = ensure_tuple_rep(patch_size, spatial_dims)
        overlaps = ensure_tuple_rep(overlap, spatial_dims)
    except ValueError as error:
        raise ValueError(f"patch_size and overlap need one value or {spatial_dims} values: {error}") from error
    if any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in patch):
        raise ValueError(f"patch_size must be positive ints, got {patch_size!r}.")
    if any(isinstance(o, bool) or not isinstance(o, (int, float)) or not 0.0 <= o < 1.0 for o in overlaps):
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}.")
    return tuple(patch), tuple(float(o) for o in overlaps)


class SlidingWindowPatchDataset(torch.utils.data.Dataset):
    """Map-style dataset of all overlapping sliding-window patches of the images of another dataset.

    Item ``i`` is one window of one image: the dict of ``data[image_index]`` with each of ``keys`` cropped to the
    window (``SpatialCrop``, so MetaTensor affines follow), then passed through ``transform`` (e.g. the
    augmentation). Other entries of the dict are kept as they are.

    The window grid is that of :func:`sliding_window_slices`; it needs each image's size, which is read from
    ``data`` the first time the length or an item is requested (with a ``CacheDataset`` that is the cached
    item; any other dataset loads each image once more for it).

    Args:
        data: map-style dataset (or list) of dicts holding channel-first arrays, e.g. a ``CacheDataset`` of
            loaded and normalised whole images.
        keys: entries to crop; they must share their spatial size within each item.
        patch_size: window size (one int for all axes or one per axis).
        overlap: fraction of a window shared with its neighbours, in [0, 1).
        transform: callable applied to each cropped patch dict, e.g. random flips/rotations.

    Raises:
        ValueError: (when the windows are computed) for an item that is not a dict, lacks a key, has keys of
            different spatial sizes, or is smaller than the window (the message names the file).

    Example::

        images = CacheDataset(datalist, transform=load_and_normalise)
        patches = SlidingWindowPatchDataset(images, keys=["image", "label"], patch_size=256, overlap=0.25)
        loader = DataLoader(patches, batch_size=16, shuffle=True)
    """

    def __init__(
        self,
        data: Sequence[Mapping[Hashable, Any]],
        keys: KeysCollection,
        patch_size: Sequence[int] | int,
        overlap: Sequence[float] | float = 0.25,
        transform: Callable | None = None,
    ) -> None:
        self.data = data
        self.keys = ensure_tuple(keys)
        if not self.keys:
            raise ValueError("keys must name at least one entry to crop.")
        self.patch_size = patch_size
        self.overlap = overlap
        self.transform = transform
        _check_window_arguments(patch_size, overlap, len(ensure_tuple(patch_size)))
        self._windows: list[tuple[int, tuple[slice, ...]]] | None = None

    def _spatial_shape(self, index: int, item: Any) -> tuple[int, ...]:
        if not isinstance(item, Mapping):
            raise ValueError(f"item {index} of the image dataset is a {type(item).__name__}, expected a dict.")
        missing = [key for key in self.keys if key not in item]
        if missing:
            raise ValueError(f"item {index} of the image dataset lacks {missing}; it has {sorted(map(str, item))}.")
        shapes = {key: tuple(item[key].shape[1:]) for key in self.keys}
        if len(set(shapes.values())) > 1:
            raise ValueError(f"{_source(item, self.keys[0], index)}: keys have different spatial sizes {shapes}.")
        return shapes[self.keys[0]]

    @property
    def windows(self) -> list[tuple[int, tuple[slice, ...]]]:
        """``(image index, window slices)`` of every patch, computed once."""
        if self._windows is None:
            windows = []
            for index in range(len(self.data)):
                item = self.data[index]
                shape = self._spatial_shape(index, item)
                try:
                    slices = sliding_window_slices(shape, self.patch_size, self.overlap)
                except ValueError as error:
                    raise ValueError(f"{_source(item, self.keys[0], index)}: {error} (pad it first)") from error
                windows.extend((index, window) for window in slices)
            self._windows = windows
        return self._windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> Any:
        image_index, window = self.windows[index]
        item = self.data[image_index]
        crop = SpatialCrop(roi_slices=window)
        patch = dict(item)
        for key in self.keys:
            patch[key] = crop(item[key])
        return apply_transform(self.transform, patch) if self.transform is not None else patch


def _source(item: Mapping, key: Hashable, index: int) -> str:
    value = item.get(key)
    if isinstance(value, MetaTensor) and "filename_or_obj" in value.meta:
        return str(value.meta["filename_or_obj"])
    return f"item {index} of the image dataset"
