"""H&E stain augmentation in the HED colour space (colour deconvolution), which MONAI lacks.

Reference:
    D. Tellez, M. Balkenhol, I. Otte-Höller, R. van de Loo, R. Vogels, P. Bult, C. Wauters, W. Vreuls, S. Mol,
    N. Karssemeijer, G. Litjens, J. van der Laak, F. Ciompi, "Whole-Slide Mitosis Detection in H&E Breast Histology
    Using PHH3 as a Reference to Train Distilled Stain-Invariant Convolutional Networks", IEEE Transactions on
    Medical Imaging 37(9), 2126-2136, 2018 (the "HED" colour augmentation).

    D. Tellez, G. Litjens, P. Bándi, W. Bulten, J.-M. Bokhorst, F. Ciompi, J. van der Laak, "Quantifying the effects
    of data augmentation and stain color normalization in convolutional neural networks for computational
    pathology", Medical Image Analysis 58, 101544, 2019 (the "HED-light" and "HED-strong" ranges).

    A. C. Ruifrok, D. A. Johnston, "Quantification of histochemical staining by color deconvolution", Analytical
    and Quantitative Cytology and Histology 23(4), 291-299, 2001 (the HED stain matrix).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type, convert_to_tensor
from skimage.color import hed_from_rgb, rgb_from_hed

__all__ = ["rgb_to_hed", "hed_to_rgb", "jitter_hed_stains", "RandHEDStainJitter", "RandHEDStainJitterd"]

# skimage.color.rgb2hed floors intensities at 1e-6 before the logarithm and divides by log(1e-6), so that the
# stain concentrations of an 8-bit image lie in about [0, 0.4]; the same constants keep the values comparable.
_INTENSITY_FLOOR = 1e-6
_LOG_FLOOR = math.log(_INTENSITY_FLOOR)
# values slightly outside [0, 1] come from interpolation or float round-off and are accepted
_RANGE_TOLERANCE = 1e-3


def _source_name(img: Any) -> str:
    if isinstance(img, MetaTensor):
        return str(img.meta.get("filename_or_obj", "<in-memory image>"))
    return "<in-memory image>"


def _check_rgb(image: torch.Tensor, name: str) -> None:
    if image.ndim < 2 or image.shape[0] != 3:
        raise ValueError(
            f"{name}: HED stain augmentation expects a channel-first RGB image [3, ...], got shape "
            f"{tuple(image.shape)}."
        )
    if not torch.is_floating_point(image):
        raise ValueError(
            f"{name}: HED stain augmentation expects float intensities in [0, 1], got dtype {image.dtype}; "
            "scale the image first (e.g. ScaleIntensityRanged to [0, 1])."
        )
    low, high = float(image.min()), float(image.max())
    if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
        raise ValueError(
            f"{name}: HED stain augmentation expects intensities in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
            "scale the image first (e.g. ScaleIntensityRanged to [0, 1])."
        )


def _matrix(matrix: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(matrix, dtype=like.dtype, device=like.device)


def rgb_to_hed(image: torch.Tensor) -> torch.Tensor:
    """Colour deconvolution of a channel-first RGB image in [0, 1] into haematoxylin, eosin and DAB concentrations.

    The optical density ``log(max(rgb, 1e-6)) / log(1e-6)`` is multiplied by the inverse of Ruifrok and
    Johnston's stain matrix (``skimage.color.hed_from_rgb``), exactly as ``skimage.color.rgb2hed`` does, except
    that negative concentrations (colours outside the cone of the three stain vectors, e.g. 7 % of the pixels of a
    MoNuSeg image) are kept instead of clipped to 0, so that :func:`hed_to_rgb` inverts this function exactly.

    Args:
        image: ``[3, *spatial]`` float tensor, RGB in [0, 1].

    Returns:
        ``[3, *spatial]`` tensor of the same dtype: H, E, D concentrations.
    """
    optical_density = torch.log(torch.clamp(image, min=_INTENSITY_FLOOR)) / _LOG_FLOOR
    return torch.einsum("c...,cd->d...", optical_density, _matrix(hed_from_rgb, image))


def hed_to_rgb(stains: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hed` (``skimage.color.hed2rgb``): RGB in [0, 1] from H, E, D concentrations.

    Args:
        stains: ``[3, *spatial]`` float tensor of H, E, D concentrations.

    Returns:
        ``[3, *spatial]`` RGB tensor of the same dtype, clipped to [0, 1].
    """
    log_rgb = _LOG_FLOOR * torch.einsum("c...,cd->d...", stains, _matrix(rgb_from_hed, stains))
    return torch.clamp(torch.exp(log_rgb), 0.0, 1.0)


def jitter_hed_stains(
    image: NdarrayOrTensor, scale: NdarrayOrTensor | tuple, shift: NdarrayOrTensor | tuple
) -> NdarrayOrTensor:
    """The HED augmentation of Tellez et al. (2018) with given factors: ``s'_c = scale_c * s_c + shift_c``.

    The RGB image is deconvolved into stain concentrations ``s`` (:func:`rgb_to_hed`), each stain channel ``c``
    (haematoxylin, eosin, DAB) is scaled and shifted, and the result is converted back to RGB
    (:func:`hed_to_rgb`) and clipped to [0, 1]. ``scale = (1, 1, 1), shift = (0, 0, 0)`` returns the image
    unchanged (up to float round-off; intensities below 1e-6 become 1e-6).

    Args:
        image: channel-first RGB ``[3, *spatial]``, float in [0, 1] (numpy array, tensor or MetaTensor).
        scale: three multiplicative factors (H, E, D).
        shift: three additive offsets (H, E, D), in the units of ``skimage.color.rgb2hed``.

    Returns:
        The augmented image, same type, shape, dtype and device as ``image`` (meta data kept).

    Raises:
        ValueError: ``image`` is not ``[3, ...]``, not float, or outside [0, 1] (the message names its file).
    """
    tensor = convert_to_tensor(image, track_meta=False)
    _check_rgb(tensor, _source_name(image))
    compute_dtype = tensor.dtype if tensor.dtype == torch.float64 else torch.float32
    tensor = tensor.to(compute_dtype)
    factors = torch.as_tensor(np.asarray(scale, dtype=np.float64), dtype=compute_dtype, device=tensor.device)
    offsets = torch.as_tensor(np.asarray(shift, dtype=np.float64), dtype=compute_dtype, device=tensor.device)
    if factors.shape != (3,) or offsets.shape != (3,):
        raise ValueError(
            f"scale and shift need one value per stain (3), got {tuple(factors.shape)} and {tuple(offsets.shape)}."
        )
    view = (3,) + (1,) * (tensor.ndim - 1)
    stains = rgb_to_hed(tensor) * factors.view(view) + offsets.view(view)
    output = hed_to_rgb(stains)
    return convert_to_dst_type(output, dst=image)[0]


class RandHEDStainJitter(RandomizableTransform):
    """Random H&E stain augmentation of Tellez et al. (IEEE TMI 2018): per stain channel of the HED
    colour space, a random scale ``alpha_c ~ U(1 - scale_range, 1 + scale_range)`` and a random shift
    ``beta_c ~ U(-shift_range, shift_range)``, ``s'_c = alpha_c * s_c + beta_c``, then back to RGB clipped to
    [0, 1] (see :func:`jitter_hed_stains`). It simulates the colour differences between laboratories, scanners and
    staining batches.

    Units: the concentrations are those of ``skimage.color.rgb2hed`` (natural-log optical density divided by
    ``ln(10^6)`` = 13.8). On a MoNuSeg H&E image haematoxylin lies in about [0, 0.07] and eosin in [0.02, 0.05]
    (1st-99th percentiles) in these units. Measured on such an image, ``shift_range=0.01`` changes the RGB values
    by 0.03 on average (0.07 at most over 20 draws) and ``scale_range=0.05`` by 0.007. Tellez et al. (2019) call
    ranges of 0.05 for both "HED-light"; the scaling of their stain channels is not given, and in the units here
    a shift range of 0.05 changes the RGB values by 0.14 on average and more than doubles the eosin of some draws,
    hence the smaller default shift.

    Args:
        scale_range: ``s`` of ``alpha ~ U(1 - s, 1 + s)``, >= 0. Defaults to 0.05 (Tellez et al.).
        shift_range: ``b`` of ``beta ~ U(-b, b)``, >= 0. Defaults to 0.01.
        prob: probability of augmenting an image.

    Example::

        jitter = RandHEDStainJitter(scale_range=0.05, shift_range=0.01, prob=0.9)
        jitter.set_random_state(seed=0)
        augmented = jitter(image)  # image: [3, H, W] float in [0, 1]
    """

    backend = [MetaTensor.__name__, "torch", "numpy"]

    def __init__(self, scale_range: float = 0.05, shift_range: float = 0.01, prob: float = 1.0) -> None:
        RandomizableTransform.__init__(self, prob)
        for name, value in (("scale_range", scale_range), ("shift_range", shift_range)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"RandHEDStainJitter: {name} must be a finite number >= 0, got {value!r}.")
        if scale_range >= 1:
            raise ValueError(f"RandHEDStainJitter: scale_range must be < 1 (scales stay positive), got {scale_range}.")
        self.scale_range = float(scale_range)
        self.shift_range = float(shift_range)
        self.scale = np.ones(3)
        self.shift = np.zeros(3)

    def randomize(self, data: Any | None = None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        self.scale = self.R.uniform(1.0 - self.scale_range, 1.0 + self.scale_range, size=3)
        self.shift = self.R.uniform(-self.shift_range, self.shift_range, size=3)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """
        Args:
            img: channel-first RGB ``[3, *spatial]``, float in [0, 1].
            randomize: draw new factors (``False`` reuses the last ones, e.g. for several keys).
        """
        img = convert_to_tensor(img, track_meta=get_track_meta())
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        return jitter_hed_stains(img, self.scale, self.shift)


class RandHEDStainJitterd(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandHEDStainJitter`: every key gets the same random factors.

    Args:
        keys: keys of the RGB images to augment (not the labels).
        scale_range: see :class:`RandHEDStainJitter`.
        shift_range: see :class:`RandHEDStainJitter`.
        prob: probability of augmenting a sample.
        allow_missing_keys: don't raise an exception when a key is missing.
    """

    backend = RandHEDStainJitter.backend

    def __init__(
        self,
        keys: KeysCollection,
        scale_range: float = 0.05,
        shift_range: float = 0.01,
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.jitter = RandHEDStainJitter(scale_range=scale_range, shift_range=shift_range, prob=1.0)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandHEDStainJitterd:
        super().set_random_state(seed, state)
        self.jitter.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            for key in self.key_iterator(d):
                d[key] = convert_to_tensor(d[key], track_meta=get_track_meta())
            return d
        self.jitter.randomize(None)
        for key in self.key_iterator(d):
            d[key] = self.jitter(d[key], randomize=False)
        return d
