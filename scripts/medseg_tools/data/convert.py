"""Conversions of the datasets' distributed files (ISBI 2012 TIFF stacks, the Usiigaci repository) to folders."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
from medseg_tools.data.sources import USIIGACI_MEMBER

from transforms import DataValidationError

logger = logging.getLogger("prepare_data")


def _save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)


def _read_stack(path: str | os.PathLike) -> np.ndarray:
    """Pages of a multi-page gray TIFF as a (pages, H, W) array."""
    import tifffile

    if not Path(path).is_file():
        raise DataValidationError(f"file not found: {path}")
    try:
        stack = tifffile.imread(path)
    except Exception as error:
        raise DataValidationError(f"cannot read TIFF stack {path}: {type(error).__name__}: {error}") from error
    if stack.ndim != 3:
        raise DataValidationError(f"{path} is not a multi-page gray stack: array shape {stack.shape}.")
    return stack


def convert_isbi(volume_tif: str | os.PathLike, labels_tif: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Split the ISBI 2012 multi-page stacks into ``dest/image/N.png`` and ``dest/label/N.png`` (N from 0).

    Args:
        volume_tif: ``train-volume.tif`` (N x 512 x 512, 8-bit EM slices).
        labels_tif: ``train-labels.tif`` (same shape, 255 = cell interior, 0 = membrane).
        dest: dataset folder to write (created; existing PNGs of the same names are overwritten).

    Raises:
        DataValidationError: a stack is unreadable, not a 3D gray stack, or the two stacks differ in shape.
    """
    volume, labels = _read_stack(volume_tif), _read_stack(labels_tif)
    if volume.shape != labels.shape:
        raise DataValidationError(
            f"{volume_tif} has {volume.shape[0]} pages of {volume.shape[1:]} but {labels_tif} has "
            f"{labels.shape[0]} pages of {labels.shape[1:]}."
        )
    dest = Path(dest)
    for index, (image, label) in enumerate(zip(volume, labels)):
        _save_png(image, dest / "image" / f"{index}.png")
        _save_png(label, dest / "label" / f"{index}.png")
    logger.info("wrote %d image/label pairs to %s", len(volume), dest)
    return dest


def convert_usiigaci(source_dir: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy the Usiigaci annotated sets to ``dest/setN/raw.tif`` and ``dest/setN/instances_ids.png``.

    Args:
        source_dir: an extracted oist/Usiigaci archive or clone (searched for
            ``Mask R-CNN/{train,val}/setN/``); set numbers are unique across train and val and kept.
        dest: dataset folder to write.

    Raises:
        DataValidationError: no complete set (raw.tif + instances_ids.png) under ``source_dir``.
    """
    source_dir = Path(source_dir)
    sets = {}
    for raw in source_dir.rglob("raw.tif"):
        match = USIIGACI_MEMBER.search(raw.relative_to(source_dir).as_posix())
        ids_png = raw.with_name("instances_ids.png")
        if match and ids_png.is_file():
            sets[int(match.group("set"))] = (raw, ids_png)
    if not sets:
        raise DataValidationError(
            f"no Usiigaci set (Mask R-CNN/train|val/setN/raw.tif + instances_ids.png) under {source_dir}."
        )
    dest = Path(dest)
    for number, (raw, ids_png) in sorted(sets.items()):
        (dest / f"set{number}").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(raw, dest / f"set{number}" / "raw.tif")
        shutil.copyfile(ids_png, dest / f"set{number}" / "instances_ids.png")
    logger.info("copied %d Usiigaci sets to %s", len(sets), dest)
    return dest
