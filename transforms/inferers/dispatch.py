"""Dispatch on the number of spatial dimensions: one config for 2D images and 3D volumes."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.inferers import Inferer
from monai.transforms import InvertibleTransform, MapTransform

__all__ = ["SpatialDimsDispatchd", "SpatialDimsDispatchInferer"]


def _by_spatial_dims(options: Mapping[int | str, Any], what: str) -> dict[int, Any]:
    """``options`` keyed by the number of spatial dimensions (JSON configs give the keys as strings)."""
    if not options:
        raise ValueError(f"{what}: no option given; map spatial dimensions to options, e.g. {{2: ..., 3: ...}}.")
    return {int(dims): option for dims, option in options.items()}


def _pick_by_spatial_dims(options: Mapping[int, Any], spatial_dims: int, what: str) -> Any:
    if spatial_dims not in options:
        raise ValueError(
            f"{what} has {spatial_dims} spatial dimension(s); this pipeline handles {sorted(options)} "
            "(2: a slice, 3: a volume)."
        )
    return options[spatial_dims]


class SpatialDimsDispatchd(MapTransform, InvertibleTransform):
    """Runs the transform registered for the number of spatial dimensions of ``data[key]`` (channel-first), so that
    one config reads 2D slices and 3D volumes: e.g. ``{2: slice_preprocessing, 3: volume_preprocessing}`` in the
    LG-Net bundle's ``inference.json``, which MONAI Label reads alone and feeds both. ``inverse`` (``Invertd``)
    undoes the same transform, chosen by the same rule.

    Args:
        keys: the key whose array decides (one key).
        transforms: ``{spatial dims: transform}``; keys may be strings (JSON).
        allow_missing_keys: see :class:`monai.transforms.MapTransform`.
    """

    def __init__(
        self, keys: KeysCollection, transforms: Mapping[int | str, Callable], allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"SpatialDimsDispatchd decides by one key, got {list(self.keys)}.")
        self.transforms = _by_spatial_dims(transforms, "SpatialDimsDispatchd")

    def _transform_for(self, data: Mapping[Hashable, Any]) -> Callable:
        key = self.keys[0]
        return _pick_by_spatial_dims(self.transforms, np.ndim(data[key]) - 1, f"{key!r} (channel-first)")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        return self._transform_for(data)(dict(data))

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        transform = self._transform_for(data)
        if not isinstance(transform, InvertibleTransform):
            raise TypeError(f"{type(transform).__name__} is not invertible: Invertd cannot undo it.")
        return transform.inverse(dict(data))


class SpatialDimsDispatchInferer(Inferer):
    """Runs the inferer registered for the number of spatial dimensions of ``inputs`` (``B, C, *spatial``): e.g.
    ``{2: SimpleInferer(), 3: AxialSliceInferer(...)}`` for a 2D network that also segments volumes slice by slice.

    Args:
        inferers: ``{spatial dims: inferer}``; keys may be strings (JSON).
    """

    def __init__(self, inferers: Mapping[int | str, Inferer]) -> None:
        super().__init__()
        self.inferers = _by_spatial_dims(inferers, "SpatialDimsDispatchInferer")

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        inferer = _pick_by_spatial_dims(self.inferers, inputs.ndim - 2, "the input (batch, channel first)")
        return inferer(inputs, network, *args, **kwargs)
