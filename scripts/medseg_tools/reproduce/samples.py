"""Validation images with the bundle's own preprocessing, and the masks of a variant: paths, reading, writing,
scores."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from medseg_tools.scoring import prediction_path, segmentation_scores
from monai.bundle import ConfigParser

from transforms import common_input_root

#: metric names of the bundles (``metrics.csv``) and the function of ``segmentation_scores`` that computes them
PYTHON_METRICS = {
    "val_class_mean_dice": "mean_dice",
    "val_mean_dice": "dice",
    "val_mean_iou": "iou",
    "val_pixel_error": "pixel_error",
    "val_rand_error": "rand_error",
    "dice": "dice",
    "mean_dice": "mean_dice",
    "iou": "iou",
    "pixel_error": "pixel_error",
    "rand_error": "rand_error",
    "val_accuracy": "accuracy",
    "val_sensitivity": "sensitivity",
    "val_specificity": "specificity",
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
}


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def validation_samples(parser: ConfigParser, datalist_id: str, preprocessing_id: str) -> list[dict]:
    """The validation items with the bundle's own preprocessing: ``{"id", "image_path", "input_root", "image",
    "truth"}``.

    ``image`` is channel-first as the network sees it, ``truth`` the binary foreground [H, W] the bundle
    scores against (label > 0, or its argmax for a one-hot label). ``image_path`` is absolute (the bundle runs
    in another working directory) and ``input_root`` the common folder of all of them, below which inference.json
    keeps the inputs' sub-folders (``set29/raw_mask.png``): see :func:`mask_path`.
    """
    datalist = parser.get_parsed_content(datalist_id)
    preprocessing = parser.get_parsed_content(preprocessing_id)
    samples = []
    for index, item in enumerate(datalist):
        data = preprocessing(dict(item))
        label = _to_numpy(data["label"])
        truth = label[0] > 0 if label.shape[0] == 1 else label.argmax(axis=0) > 0
        samples.append(
            {
                "id": item.get("id", index),
                "image_path": os.path.abspath(item["image"]),
                "image": _to_numpy(data["image"]),
                "truth": truth,
            }
        )
    if not samples:
        raise ValueError(f"the validation split ({datalist_id}) is empty.")
    input_root = common_input_root([sample["image_path"] for sample in samples])
    return [{**sample, "input_root": input_root} for sample in samples]


def score_mask(mask: np.ndarray, truth: np.ndarray, metrics: Sequence[str]) -> dict[str, float]:
    """The table's metrics of one binary mask, with the bundles' definitions; NaN for a metric not known here."""
    scores = segmentation_scores(mask, truth)
    return {name: scores[PYTHON_METRICS[name]] if name in PYTHON_METRICS else float("nan") for name in metrics}


def mask_path(predictions: Path, sample: Mapping) -> Path:
    """Mask file of a validation sample where inference.json writes it: ``NAME_mask.png`` in the image's
    sub-folder below the common input folder (phase-contrast images are all called ``setN/raw.tif``)."""
    return prediction_path(predictions, sample["image_path"], sample["input_root"], "mask")


def write_mask(path: Path, mask: np.ndarray) -> None:
    """Saves a [H, W] mask indexed as MONAI's readers index it, as a 0/255 PNG the right way up."""
    from monai.data import PILWriter

    writer = PILWriter(output_dtype=np.uint8, scale=None)
    writer.set_data_array(np.asarray(mask, dtype=np.uint8) * 255, channel_dim=None)
    writer.write(str(path))


def read_mask(path: Path) -> np.ndarray:
    """Binary mask of a bundle's ``NAME_mask.png``, indexed like the bundle's (PIL) reader indexes the labels."""
    from monai.transforms import LoadImage

    if not path.is_file():
        raise FileNotFoundError(f"expected the mask {path}; did the inference run?")
    mask = np.asarray(LoadImage(reader="PILReader", image_only=True)(str(path)))
    return (mask[..., 0] if mask.ndim == 3 else mask) > 0


def display_view(array: np.ndarray) -> np.ndarray:
    """The picture as stored in its file: MONAI's PIL/ITK readers index 2D images (x, y), i.e. transposed."""
    return np.swapaxes(np.asarray(array), 0, 1)
