"""NIfTI volumes: header checks before a run and the writer that keeps the input's header codes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import ImageWriter, NibabelWriter
from monai.data.utils import to_affine_nd
from monai.transforms import Transform
from monai.utils import convert_data_type

from ..utils import DataValidationError

__all__ = ["NIFTI_SUFFIXES", "is_nifti_path", "check_nifti_volume", "volume_name_formatter", "VolumeNiftiWriter"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_path(path: str | os.PathLike) -> bool:
    """Whether the file name ends with ``.nii`` or ``.nii.gz`` (case-insensitive)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def check_nifti_volume(path: str | os.PathLike) -> tuple[int, ...]:
    """Check a NIfTI file's header (no pixel data): 2D or 3D, or 4D+ with singleton extra dimensions.

    Returns:
        The header shape.

    Raises:
        DataValidationError: naming the file: missing, unreadable, 1D, or a 4th+ dimension larger than 1 (a time
            series or several volumes in one file).
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"NIfTI file {path} does not exist.")
    try:
        shape = tuple(int(size) for size in nib.load(str(path)).shape)
    except Exception as error:
        raise DataValidationError(f"cannot read NIfTI file {path}: {type(error).__name__}: {error}") from error
    if len(shape) < 2:
        raise DataValidationError(f"NIfTI file {path} has shape {shape}: expected a 2D slice or a 3D volume.")
    if any(size > 1 for size in shape[3:]):
        raise DataValidationError(
            f"NIfTI file {path} is {len(shape)}D with shape {shape}: {int(np.prod(shape[3:]))} volumes in one file "
            "(a time series?); the network segments one 3D volume at a time: split it (e.g. nibabel's "
            "`image.slicer[..., t]`, FSL's fslsplit) and pass the volumes."
        )
    return shape


def volume_name_formatter(metadict: Mapping | None, saver: Transform | None = None) -> dict:
    """``output_name_formatter`` of ``SaveImaged`` for volumes: the output of ``scan.nii.gz`` is named after ``scan``,
    that of a DICOM series folder after the folder's full name (series folders are often named by their UID, whose
    dots MONAI's name builder would otherwise take for an extension)."""
    metadict = metadict or {}
    subject = str(metadict.get("filename_or_obj", getattr(saver, "_data_index", 0)))
    if os.path.isdir(subject):
        subject = subject.rstrip("/\\") + ".dicom"  # the one extension MONAI's name builder strips
    return {"subject": subject, "idx": metadict.get("patch_index")}


def _header_code(value: Any, default: int) -> int:
    """A NIfTI header code from (collated) metadata: numpy/torch scalars or one-element arrays; ``default`` when
    absent or unreadable."""
    if value is None:
        return default
    try:
        return int(np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return default


class VolumeNiftiWriter(NibabelWriter):
    """MONAI ``NibabelWriter`` whose files also keep their input's NIfTI header codes: the qform/sform codes and the
    spatial unit of a NIfTI input, copied from its metadata (as MONAI's ``NibabelReader`` reads them); "scanner" (1)
    and millimetres when the metadata has none (DICOM input). MONAI's writer sets both codes to 1 and leaves the unit
    unknown.

    Use it as ``SaveImaged(writer=transforms.VolumeNiftiWriter, resample=False, ...)``.
    """

    form_codes: dict[str, int]
    spatial_unit: int

    def set_metadata(self, meta_dict: Mapping | None, resample: bool = True, **options: Any) -> None:
        super().set_metadata(meta_dict, resample=resample, **options)
        meta = meta_dict or {}
        self.form_codes = {key: _header_code(meta.get(f"{key}_code"), 1) for key in ("qform", "sform")}
        self.spatial_unit = _header_code(meta.get("xyzt_units"), 2) & 0x07  # NIfTI unit codes: 2 = mm

    def write(self, filename: str | os.PathLike, verbose: bool = False, **obj_kwargs: Any) -> None:
        import nibabel as nib

        ImageWriter.write(self, filename, verbose=verbose)  # logs only
        affine = np.eye(4) if self.affine is None else convert_data_type(self.affine, np.ndarray)[0]
        affine = to_affine_nd(r=3, affine=affine)
        image = self.create_backend_obj(self.data_obj, affine=affine, dtype=self.output_dtype, **obj_kwargs)
        codes = getattr(self, "form_codes", {"qform": 1, "sform": 1})
        image.set_sform(affine, code=codes["sform"])
        image.set_qform(affine, code=codes["qform"])
        image.header["xyzt_units"] = getattr(self, "spatial_unit", 2)
        nib.save(image, filename)
