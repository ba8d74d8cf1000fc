"""Training-free baselines of a reproduction (e.g. an Otsu threshold): image -> binary mask."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _as_gray(image: np.ndarray) -> np.ndarray:
    """2D float view of a channel-first ``[C, H, W]`` or plain ``[H, W]`` image (channels averaged)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image.mean(axis=0)
    if image.ndim != 2:
        raise ValueError(f"training-free baselines segment 2D images, got shape {image.shape}.")
    return image


def otsu_threshold(image: np.ndarray) -> np.ndarray:
    """Foreground = pixels brighter than Otsu's threshold (Otsu 1979: maximal between-class variance)."""
    from skimage.filters import threshold_otsu

    gray = _as_gray(image)
    if float(gray.max()) == float(gray.min()):
        return np.zeros(gray.shape, dtype=bool)
    return gray > threshold_otsu(gray)


def otsu_threshold_dark(image: np.ndarray) -> np.ndarray:
    """Foreground = pixels darker than Otsu's threshold (for dark objects on a bright background)."""
    gray = _as_gray(image)
    if float(gray.max()) == float(gray.min()):
        return np.zeros(gray.shape, dtype=bool)
    return ~otsu_threshold(gray)


#: name -> fn(image [C, H, W] or [H, W], preprocessed as in the bundle's validation) -> binary mask [H, W]
TRAINING_FREE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "otsu": otsu_threshold,
    "otsu_dark": otsu_threshold_dark,
}
