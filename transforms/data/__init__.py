"""Datasets and datalists: folder layouts, listing and splitting, validation, the patch dataset, output paths."""

from .datalists import folder_datalist, image_datalist, split_datalist, split_ids, volume_datalist, volume_input_root
from .datasets import (
    BUNDLE_DATASETS,
    DATA_ENV_VAR,
    DATASET_ALIASES,
    DATASETS,
    DatasetSpec,
    bundle_dataset,
    data_root,
    dataset_dir,
    dataset_spec,
)
from .layouts import LAYOUTS, DatasetLayout, get_layout, normalise_id, register_layout
from .outputs import common_folder, common_input_root
from .patches import SlidingWindowPatchDataset, sliding_window_slices
from .validation import LABEL_KINDS, DatalistSummary, check_datalist, validate_datalist

__all__ = [
    "volume_datalist",
    "volume_input_root",
    "folder_datalist",
    "split_ids",
    "split_datalist",
    "image_datalist",
    "DATA_ENV_VAR",
    "DatasetSpec",
    "DATASETS",
    "DATASET_ALIASES",
    "BUNDLE_DATASETS",
    "dataset_spec",
    "bundle_dataset",
    "data_root",
    "dataset_dir",
    "normalise_id",
    "DatasetLayout",
    "LAYOUTS",
    "register_layout",
    "get_layout",
    "common_input_root",
    "common_folder",
    "sliding_window_slices",
    "SlidingWindowPatchDataset",
    "LABEL_KINDS",
    "DatalistSummary",
    "check_datalist",
    "validate_datalist",
]
