"""2D image headers and pixels (TIFF through tifffile, everything else through Pillow)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import DataValidationError

__all__ = ["read_image_header", "read_image_array", "unreadable_image_message"]

TIFF_SUFFIXES = (".tif", ".tiff")

_PIL_MODE_DTYPES = {
    "1": np.dtype(bool),
    "L": np.dtype(np.uint8),
    "P": np.dtype(np.uint8),
    "LA": np.dtype(np.uint8),
    "PA": np.dtype(np.uint8),
    "RGB": np.dtype(np.uint8),
    "RGBA": np.dtype(np.uint8),
    "RGBX": np.dtype(np.uint8),
    "CMYK": np.dtype(np.uint8),
    "YCbCr": np.dtype(np.uint8),
    "LAB": np.dtype(np.uint8),
    "HSV": np.dtype(np.uint8),
    "I": np.dtype(np.int32),
    "F": np.dtype(np.float32),
    "I;16": np.dtype(np.uint16),
    "I;16L": np.dtype(np.uint16),
    "I;16B": np.dtype(np.uint16),
    "I;16N": np.dtype(np.uint16),
}


@dataclass(frozen=True)
class ImageHeader:
    """What a file header says about an image: spatial size (H, W), channel count, dtype, format details."""

    spatial_shape: tuple[int, int]
    channels: int
    dtype: np.dtype
    description: str


def unreadable_image_message(path: Any, accepted: str, reason: str = "") -> str:
    """``cannot read image file <path>: ... not a readable image (<accepted>)``; an empty file is called so."""
    path = str(path)
    empty = os.path.isfile(path) and os.path.getsize(path) == 0
    what = "an empty file (0 bytes), not a readable image" if empty else "not a readable image"
    text = f"cannot read image file {path}: it is {what} ({accepted})"
    return f"{text}; {reason}" if reason else text


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in TIFF_SUFFIXES


def _tiff_layout(shape: Sequence[int], axes: str) -> tuple[tuple[int, int], int, list[int]]:
    """(spatial shape, channel count, order of dims that puts channels last) of a TIFF series."""
    if "Y" in axes and "X" in axes and len(axes) == len(shape):
        spatial_dims = [axes.index("Y"), axes.index("X")]
    else:  # unknown axes: the last two dims, or the first two when a small samples dim comes last
        ndim = len(shape)
        spatial_dims = [ndim - 3, ndim - 2] if ndim == 3 and shape[-1] <= 4 else [ndim - 2, ndim - 1]
    other_dims = [dim for dim in range(len(shape)) if dim not in spatial_dims]
    channels = int(np.prod([shape[dim] for dim in other_dims])) if other_dims else 1
    return (int(shape[spatial_dims[0]]), int(shape[spatial_dims[1]])), channels, spatial_dims + other_dims


def _tiff_header(path: Path) -> ImageHeader:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape, axes, dtype = tuple(series.shape), series.axes, np.dtype(series.dtype)
    spatial, channels, _ = _tiff_layout(shape, axes)
    return ImageHeader(spatial, channels, dtype, f"TIFF {dtype} shape {shape} axes {axes}")


def _tiff_array(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        array, axes = series.asarray(), series.axes
    _, _, order = _tiff_layout(array.shape, axes)
    array = np.transpose(array, order)
    return array.reshape(array.shape[:2] + (-1,)) if array.ndim > 3 else array


def _pillow_header(path: Path) -> ImageHeader:
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        mode, image_format, channels = image.mode, image.format, len(image.getbands())
    dtype = _PIL_MODE_DTYPES.get(mode, np.dtype(np.uint8))
    return ImageHeader((height, width), channels, dtype, f"{image_format} mode {mode}")


def _pillow_array(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
            # Pillow's array interface of the I;16 variants is endian-specific: normalise to native uint16.
            return np.array(image).astype(np.uint16)
        if image.mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
            image = image.convert("RGB")
        return np.array(image)


def _read_with(path: str | os.PathLike, tiff_reader, pillow_reader):
    """Run the reader for the file type, turning any reader exception into a DataValidationError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"file not found: {path}")
    try:
        if not _is_tiff(path):
            return pillow_reader(path)
        try:
            return tiff_reader(path)
        except Exception as tiff_error:
            # tifffile needs the optional imagecodecs package for LZW/JPEG-compressed TIFFs (MONuSeg's are
            # LZW); Pillow decodes those natively, so it is the fallback before giving up.
            try:
                return pillow_reader(path)
            except Exception:
                raise tiff_error from None
    except Exception as error:  # readers raise many types (OSError, ValueError, SyntaxError, zlib.error...)
        reason = f"{type(error).__name__}: {error}"
        raise DataValidationError(unreadable_image_message(path, "PNG, JPEG, TIFF", reason)) from error


def read_image_header(path: str | os.PathLike) -> ImageHeader:
    """Spatial size, channel count and dtype of a 2D image from its header, without decoding pixels.

    TIFF files are read with tifffile (Pillow as fallback), everything else (PNG, JPEG, ...) with Pillow.

    Raises:
        DataValidationError: the file is missing or its header cannot be parsed; the message names the file.
    """
    return _read_with(path, _tiff_header, _pillow_header)


def read_image_array(path: str | os.PathLike) -> np.ndarray:
    """Decode a 2D image file to a numpy array, (H, W) or channel-last (H, W, C), keeping stored values.

    TIFF (8/16-bit, float) is read with tifffile, channel axes moved last, with Pillow as fallback for
    compressions that need the optional imagecodecs package. PNG/JPEG are read with Pillow: mode ``L`` and
    ``P`` (palette indices, as used by label maps) give uint8 (H, W), ``I;16`` uint16, ``I`` int32,
    ``F`` float32, ``LA``/``RGB``/``RGBA`` uint8 (H, W, C), ``1`` bool.

    Raises:
        DataValidationError: the file is missing, truncated or not an image; the message names the file.
    """
    return _read_with(path, _tiff_array, _pillow_array)
