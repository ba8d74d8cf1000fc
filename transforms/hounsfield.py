"""CT intensities: checks that a volume is in Hounsfield units, and the HU window to [0, 1]."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, ScaleIntensity, ScaleIntensityRange, Transform
from monai.utils import TransformBackends

from .utils import DataValidationError, check_choice

__all__ = [
    "DEFAULT_HU_WINDOW_LEVEL",
    "DEFAULT_HU_WINDOW_WIDTH",
    "hounsfield_problem",
    "CheckHounsfieldRange",
    "CheckHounsfieldRanged",
    "CTWindow",
    "CTWindowd",
]

logger = logging.getLogger(__name__)

# HU window of the bundle (level -500, width 1000 -> [-1000, 0] HU to [0, 1]): measured on the 50 MedSeg training
# JPEGs, air (trachea, 0.5th percentile) sits at a median 16/255 and the modal lung value at 44/255 while soft tissue
# saturates at 255, which a [-1000, 0] window reproduces for lung parenchyma near -850 HU; the classic lung window
# (level -600, width 1500 -> [-1350, 150]) would put air at 60/255 and parenchyma near 85/255.
DEFAULT_HU_WINDOW_LEVEL = -500.0
DEFAULT_HU_WINDOW_WIDTH = 1000.0

ON_NON_CT_MODES = ("error", "warn", "rescale")
INTENSITY_MODES = ("hu_window", "minmax")


def _source_name(img: Any, fallback: str = "volume") -> str:
    meta = getattr(img, "meta", None) or {}
    return str(meta.get("filename_or_obj", fallback))


def hounsfield_problem(
    img: NdarrayOrTensor, bone_hu: float = 200.0, air_hu: float = -500.0, modality: str | None = None
) -> str | None:
    """Why a volume does not look like CT in Hounsfield units, or None when it does.

    A CT volume holding lungs has air (about -1000 HU, so its minimum is below ``air_hu``) and denser tissue such as
    bone (its maximum is above ``bone_hu``). A volume rescaled to 8 bits, to [0, 1] or to positive values fails one of
    the two tests. This is a plausibility check of the intensity scale, not a modality check: an MR volume with
    negative values may pass (DICOM input also passes its Modality, which must then be ``CT``).

    Args:
        img: the volume (any shape).
        bone_hu: the maximum must reach this value.
        air_hu: the minimum must be at most this value.
        modality: the DICOM Modality when known; anything but ``"CT"`` is a problem.

    Returns:
        A sentence naming the failed tests, or None.
    """
    if modality not in (None, "", "CT"):
        return f"the DICOM modality is {modality!r}, not 'CT'"
    values = torch.as_tensor(img)
    if values.numel() == 0:
        return "the volume is empty"
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        return f"{int((~finite).sum())} voxel(s) are NaN or infinite"
    low, high = float(values.min()), float(values.max())
    reasons = []
    if high < bone_hu:
        reasons.append(f"its maximum {high:g} is below {bone_hu:g} HU (no bone)")
    if low > air_hu:
        reasons.append(f"its minimum {low:g} is above {air_hu:g} HU (no air)")
    return "; ".join(reasons) + f" (range [{low:g}, {high:g}])" if reasons else None


def _non_ct_message(name: str, problem: str, stored_dtype: str | None) -> str:
    stored = f", stored as {stored_dtype}" if stored_dtype else ""
    return (
        f"{name} does not look like a CT volume in Hounsfield units: {problem}{stored}. The default intensity_mode "
        "'hu_window' maps a HU window to [0, 1]; for a volume that is not in HU pass --intensity_mode minmax "
        "(min-max scaling of each volume to [0, 1]), or --on_non_ct rescale to fall back to it automatically."
    )


class CheckHounsfieldRange(Transform):
    """Refuse (or warn about) a volume whose intensities are not plausible Hounsfield units, see
    :func:`hounsfield_problem`. The data pass through unchanged.

    Args:
        on_non_ct: ``"error"`` raises a :class:`DataValidationError` naming the file (from the ``MetaTensor``'s
            ``filename_or_obj``) with the hint to use ``intensity_mode="minmax"``; ``"warn"`` logs it.
            (``"rescale"``, which falls back to min-max scaling, is :class:`CTWindow`'s.)
        bone_hu: see :func:`hounsfield_problem`.
        air_hu: see :func:`hounsfield_problem`.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, on_non_ct: str = "error", bone_hu: float = 200.0, air_hu: float = -500.0) -> None:
        self.on_non_ct = check_choice("on_non_ct", on_non_ct, ("error", "warn"))
        if air_hu >= bone_hu:
            raise ValueError(f"air_hu ({air_hu}) must be below bone_hu ({bone_hu}).")
        self.bone_hu = bone_hu
        self.air_hu = air_hu

    def problem(self, img: NdarrayOrTensor) -> str | None:
        """The :func:`hounsfield_problem` of ``img``, using its DICOM modality when the metadata has one."""
        meta = getattr(img, "meta", None) or {}
        return hounsfield_problem(img, self.bone_hu, self.air_hu, meta.get("modality"))

    def message(self, img: NdarrayOrTensor, problem: str) -> str:
        meta = getattr(img, "meta", None) or {}
        return _non_ct_message(_source_name(img), problem, meta.get("stored_dtype"))

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        problem = self.problem(img)
        if problem is not None:
            if self.on_non_ct == "error":
                raise DataValidationError(self.message(img, problem))
            logger.warning(self.message(img, problem))
        return img


class CheckHounsfieldRanged(MapTransform):
    """Dictionary version of :class:`CheckHounsfieldRange`."""

    backend = CheckHounsfieldRange.backend

    def __init__(
        self,
        keys: KeysCollection,
        on_non_ct: str = "error",
        bone_hu: float = 200.0,
        air_hu: float = -500.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckHounsfieldRange(on_non_ct, bone_hu, air_hu)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.checker(d[key])
        return d


class CTWindow(Transform):
    """Network input intensities of a CT volume: a Hounsfield window mapped to ``[b_min, b_max]``, or min-max scaling.

    ``intensity_mode="hu_window"`` (default): values in ``[level - width / 2, level + width / 2]`` HU are mapped
    linearly to ``[b_min, b_max]`` (MONAI ``ScaleIntensityRange``), values outside clipped. The volume is first
    checked with :class:`CheckHounsfieldRange`; a volume that is not in HU then follows ``on_non_ct``: ``"error"``
    (default) raises a :class:`DataValidationError` naming the file with the hint to pass ``intensity_mode="minmax"``,
    ``"warn"`` logs it and windows anyway, ``"rescale"`` logs it and scales that volume min-max instead.

    ``intensity_mode="minmax"``: each volume's minimum and maximum map to ``b_min`` and ``b_max`` (MONAI
    ``ScaleIntensity``), for volumes that are not in HU (8-bit exports, rescaled NIfTI).

    Args:
        level: window centre, HU (default -500: see the module's ``DEFAULT_HU_WINDOW_LEVEL``).
        width: window width, HU (default 1000, i.e. [-1000, 0] HU).
        intensity_mode: ``"hu_window"`` or ``"minmax"``.
        on_non_ct: ``"error"``, ``"warn"`` or ``"rescale"``.
        b_min: output value of the window's lower end (or of the minimum).
        b_max: output value of the window's upper end (or of the maximum).
        clip: clip values outside the window.
        bone_hu: see :func:`hounsfield_problem`.
        air_hu: see :func:`hounsfield_problem`.
    """

    backend = ScaleIntensityRange.backend

    def __init__(
        self,
        level: float = DEFAULT_HU_WINDOW_LEVEL,
        width: float = DEFAULT_HU_WINDOW_WIDTH,
        intensity_mode: str = "hu_window",
        on_non_ct: str = "error",
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        bone_hu: float = 200.0,
        air_hu: float = -500.0,
    ) -> None:
        if not width > 0:
            raise ValueError(f"the HU window width must be positive, got {width}.")
        self.intensity_mode = check_choice("intensity_mode", intensity_mode, INTENSITY_MODES)
        self.on_non_ct = check_choice("on_non_ct", on_non_ct, ON_NON_CT_MODES)
        self.level, self.width = float(level), float(width)
        self.checker = CheckHounsfieldRange("warn", bone_hu, air_hu)
        self.window = ScaleIntensityRange(
            a_min=self.level - self.width / 2, a_max=self.level + self.width / 2, b_min=b_min, b_max=b_max, clip=clip
        )
        self.minmax = ScaleIntensity(minv=b_min, maxv=b_max)

    @property
    def hu_range(self) -> tuple[float, float]:
        """The window's ``(lower, upper)`` HU."""
        return self.level - self.width / 2, self.level + self.width / 2

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        _check_finite(img)
        if self.intensity_mode == "minmax":
            return self.minmax(img)
        problem = self.checker.problem(img)
        if problem is not None:
            message = self.checker.message(img, problem)
            if self.on_non_ct == "error":
                raise DataValidationError(message)
            if self.on_non_ct == "rescale":
                logger.warning("%s -> min-max scaling for this volume (on_non_ct='rescale').", message)
                return self.minmax(img)
            logger.warning("%s Windowing it anyway (on_non_ct='warn').", message)
        return self.window(img)


def _check_finite(img: NdarrayOrTensor) -> None:
    """No intensity mode can scale NaN or infinite voxels: always an error naming the file."""
    values = torch.as_tensor(img)
    if values.numel() == 0:
        raise DataValidationError(f"{_source_name(img)} is an empty volume.")
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        raise DataValidationError(f"{_source_name(img)} has {int((~finite).sum())} NaN or infinite voxel(s).")


class CTWindowd(MapTransform):
    """Dictionary version of :class:`CTWindow`."""

    backend = CTWindow.backend

    def __init__(
        self,
        keys: KeysCollection,
        level: float = DEFAULT_HU_WINDOW_LEVEL,
        width: float = DEFAULT_HU_WINDOW_WIDTH,
        intensity_mode: str = "hu_window",
        on_non_ct: str = "error",
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        bone_hu: float = 200.0,
        air_hu: float = -500.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.windower = CTWindow(level, width, intensity_mode, on_non_ct, b_min, b_max, clip, bone_hu, air_hu)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.windower(d[key])
        return d
