"""Inferers: tile geometry, overlap-tile, test-time augmentation, slice-by-slice and spatial-dims dispatch."""

from .dispatch import SpatialDimsDispatchd, SpatialDimsDispatchInferer
from .geometry import (
    TileGeometry,
    declared_tile_geometry,
    estimate_activation_bytes,
    meta_call,
    meta_copy_state,
    output_spatial_shape,
    probe_tile_geometry,
)
from .overlap_tile import OverlapTileInferer
from .precision import Precision, PrecisionInferer, cpu_bf16_units, select_precision, to_float32
from .slices import AxialSliceInferer, ResizedSliceNetwork
from .tta import TTA_TRANSFORMS, SplitUncertaintyd, TestTimeAugmentationInferer

__all__ = [
    "SpatialDimsDispatchd",
    "SpatialDimsDispatchInferer",
    "TileGeometry",
    "meta_call",
    "meta_copy_state",
    "output_spatial_shape",
    "declared_tile_geometry",
    "probe_tile_geometry",
    "estimate_activation_bytes",
    "OverlapTileInferer",
    "Precision",
    "PrecisionInferer",
    "cpu_bf16_units",
    "select_precision",
    "to_float32",
    "ResizedSliceNetwork",
    "AxialSliceInferer",
    "TTA_TRANSFORMS",
    "TestTimeAugmentationInferer",
    "SplitUncertaintyd",
]
