"""Flat-field correction of uneven illumination in microscopy images.

Phase-contrast frames are brighter in some parts of the field of view than in others, and the contrast
between cells and background is low (Zhang et al., "Cell Image Segmentation Method Based on Residual Block
and Attention Mechanism", Acta Optica Sinica 40(17), 2020, Sec. 1). A global intensity scaling keeps that
gradient. The classical remedy is a flat-field correction: estimate the illumination as a very smooth version
of the image itself (a "pseudo flat field", since no blank reference frame is available) and divide it out,
``I_corrected = I / B * mean(B)``, or subtract it for additive backgrounds, ``I - B + mean(B)``. ``B`` is a
Gaussian blur whose standard deviation is several cell diameters, so cells are averaged away and only the
illumination remains. MONAI has Gaussian smoothing but no such correction, hence these transforms.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.networks.layers import GaussianFilter
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

__all__ = ["estimate_background", "FlatFieldCorrection", "FlatFieldCorrectiond"]

FLAT_FIELD_MODES = ("divide", "subtract")
_INTERPOLATION_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0 (pixels), got {sigma!r}.")
    return float(sigma)


def _check_downsample(downsample: int | None) -> int | None:
    if downsample is not None and (isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 1):
        raise ValueError(f"downsample must be a positive int or None, got {downsample!r}.")
    return downsample


def estimate_background(img: torch.Tensor, sigma: float, downsample: int | None = None) -> torch.Tensor:
    """Smooth illumination background of a channel-first image: a Gaussian blur of standard deviation ``sigma``.

    The blur is a normalised convolution, ``G * img / G * 1``, so the estimate near the border is the average of
    the pixels inside the image instead of being pulled towards the zero padding. For speed the image is first
    reduced by ``downsample`` with area averaging, blurred with ``sigma / downsample`` and brought back with
    (bi/tri)linear interpolation; the background is smooth at that scale, so the result is close to the
    full-resolution blur.

    Args:
        img: ``[C, *spatial]`` image with 1 to 3 spatial dimensions.
        sigma: standard deviation of the Gaussian in pixels, > 0.
        downsample: reduction factor before blurring; ``None`` picks ``max(1, sigma // 4)`` (the blur then
            runs with a standard deviation of about 4 pixels).

    Returns:
        float32 ``[C, *spatial]`` background on the device of ``img``.

    Raises:
        ValueError: for a wrong number of dimensions, ``sigma <= 0`` or ``downsample < 1``.
    """
    sigma = _check_sigma(sigma)
    if sigma == 0:
        raise ValueError("sigma must be > 0 to estimate a background.")
    spatial_dims = img.ndim - 1
    if spatial_dims not in _INTERPOLATION_MODES:
        raise ValueError(
            f"img must be channel-first [C, *spatial] with 1-3 spatial dims, got shape {tuple(img.shape)}."
        )
    factor = max(1, int(sigma // 4)) if _check_downsample(downsample) is None else downsample
    image = convert_to_tensor(img, track_meta=False).float().unsqueeze(0)
    spatial_shape = tuple(image.shape[2:])
    if factor > 1:
        coarse_shape = tuple(max(1, math.ceil(size / factor)) for size in spatial_shape)
        image = F.interpolate(image, size=coarse_shape, mode="area")
    blur = GaussianFilter(spatial_dims, sigma=sigma / factor).to(image.device)
    coverage = blur(torch.ones_like(image[:, :1]))
    background = blur(image) / coverage
    if factor > 1:
        background = F.interpolate(
            background, size=spatial_shape, mode=_INTERPOLATION_MODES[spatial_dims], align_corners=False
        )
    return background[0]


class FlatFieldCorrection(Transform):
    """Removes uneven illumination by dividing (or subtracting) a smooth background estimated from the image.

    Per channel, with ``B`` from :func:`estimate_background`::

        divide:   out = img / max(B, floor) * mean(B),  floor = min_background * mean(B)
        subtract: out = img - B + mean(B)

    Multiplying back by ``mean(B)`` keeps the image in its original intensity range, so the transform can
    precede any intensity scaling (e.g. ``ScaleIntensityRangePercentiles``). The floor keeps dark corners from
    being blown up; an all-zero channel stays all zero (never NaN).

    Args:
        sigma: standard deviation of the background blur in pixels; choose several cell diameters (the default
            50 px suits 10x phase contrast). 0 disables the correction (the image is returned as float32), so a
            bundle can switch it off with one number.
        mode: ``"divide"`` (multiplicative illumination, the flat-field model) or ``"subtract"`` (additive
            background).
        downsample: see :func:`estimate_background`.
        min_background: floor of the divisor as a fraction of the mean background (``"divide"`` only).

    Raises:
        ValueError: at construction for bad arguments; when called, for an image with NaN or infinite values
            (the message names the file when the image carries MONAI metadata).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, sigma: float = 50.0, mode: str = "divide", downsample: int | None = None, min_background: float = 1e-3
    ) -> None:
        self.sigma = _check_sigma(sigma)
        if mode not in FLAT_FIELD_MODES:
            raise ValueError(f"mode must be one of {FLAT_FIELD_MODES}, got {mode!r}.")
        _check_downsample(downsample)
        if not 0 < min_background <= 1:
            raise ValueError(f"min_background must be in (0, 1], got {min_background!r}.")
        self.mode = mode
        self.downsample = downsample
        self.min_background = float(min_background)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """
        Args:
            img: channel-first image ``[C, *spatial]`` (numpy or torch, any numeric dtype).

        Returns:
            float32 corrected image of the same shape and container type (MetaTensor metadata kept).
        """
        image = convert_to_tensor(img, track_meta=False).float()
        if not torch.isfinite(image).all():
            name = img.meta.get("filename_or_obj", "<in-memory image>") if isinstance(img, MetaTensor) else "image"
            raise ValueError(f"{name}: flat-field correction needs finite intensities, found NaN or infinite values.")
        if self.sigma > 0:
            background = estimate_background(image, self.sigma, self.downsample)
            reduce_dims = tuple(range(1, image.ndim))
            mean_background = background.mean(dim=reduce_dims, keepdim=True)
            if self.mode == "divide":
                floor = torch.clamp(self.min_background * mean_background, min=torch.finfo(torch.float32).tiny)
                image = image / torch.maximum(background, floor) * mean_background
            else:
                image = image - background + mean_background
        out, *_ = convert_to_dst_type(image, img, dtype=torch.float32)
        return out


class FlatFieldCorrectiond(MapTransform):
    """Dictionary version of :class:`FlatFieldCorrection`."""

    backend = FlatFieldCorrection.backend

    def __init__(
        self,
        keys: KeysCollection,
        sigma: float = 50.0,
        mode: str = "divide",
        downsample: int | None = None,
        min_background: float = 1e-3,
        allow_missing_keys: bool = False,
    ) -> None:
        """
        Args:
            keys: keys of the images to correct.
            sigma: see :class:`FlatFieldCorrection`.
            mode: see :class:`FlatFieldCorrection`.
            downsample: see :class:`FlatFieldCorrection`.
            min_background: see :class:`FlatFieldCorrection`.
            allow_missing_keys: don't raise when a key is missing.
        """
        super().__init__(keys, allow_missing_keys)
        self.corrector = FlatFieldCorrection(
            sigma=sigma, mode=mode, downsample=downsample, min_background=min_background
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.corrector(d[key])
        return d
