"""Overlay pictures of segmentations, shared by the demo and the reproduction script."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def to_display_gray(image: np.ndarray) -> np.ndarray:
    """8-bit gray version of any 2D (or channel-last RGB) image, contrast stretched by 0.5/99.5 percentiles."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[..., :3].mean(axis=-1)
    low, high = np.percentile(image, (0.5, 99.5))
    scaled = (image - low) / max(high - low, 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def overlay(image: np.ndarray, prediction: np.ndarray, truth: np.ndarray | None = None, alpha: float = 0.45):
    """RGB picture of ``image`` with the predicted foreground tinted.

    Without ``truth``: foreground green. With ``truth``: agreement green, false positives red, false
    negatives blue, so errors stand out.
    """
    gray = to_display_gray(image)
    rgb = np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
    pred = np.asarray(prediction) > 0
    tints = []
    if truth is None:
        tints.append((pred, (0, 255, 0)))
    else:
        true = np.asarray(truth) > 0
        if true.shape != pred.shape:
            raise ValueError(f"prediction {pred.shape} and truth {true.shape} differ in size.")
        tints += [(pred & true, (0, 255, 0)), (pred & ~true, (255, 0, 0)), (~pred & true, (0, 0, 255))]
    for mask, colour in tints:
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(colour, dtype=np.float32)
    return rgb.astype(np.uint8)


def save_overlay(path: str | os.PathLike, image, prediction, truth=None) -> None:
    Image.fromarray(overlay(image, prediction, truth)).save(path)
