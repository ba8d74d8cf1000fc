"""The CT volume reader: NIfTI files and DICOM series folders, checked, in Hounsfield units.

The LG-Net bundle's network segments 2D axial slices. Its volume configuration (``configs/inference_volume.json``, an
overlay of ``configs/inference.json``) chains pieces of several modules of this package::

    volume_datalist(...)                 lists the inputs, checks every DICOM folder / NIfTI header before the run
                                         (data/datalists.py, io/dicom.py, io/nifti.py)
    LoadImaged(reader=CTVolumeReader())  ITK for DICOM series (+ checks), nibabel for NIfTI (this module)
    Orientationd(axcodes="PLS")          axial slices along the last axis, in-plane axes as the training slices
    CTWindowd(...)                       HU window (or min-max) to [0, 1], refusing volumes that are not in HU
                                         (hounsfield.py)
    AxialSliceInferer(...)               each slice resized to the network's size and the logits resized back
                                         (inferers/slices.py)
    Invertd(...)                         undoes the orientation: the prediction has the input's voxel grid
    SaveImaged(resample=False,           NIfTI mask with the input's shape, affine and header codes (io/nifti.py)
               writer=VolumeNiftiWriter)
    SaveDicomSegd(...)                   DICOM SEG referencing the source slices, DICOM input only (io/dicom_seg.py)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader, ITKReader, MetaTensor, NibabelReader
from monai.transforms import LoadImage

from ..utils import DataValidationError, check_choice
from .dicom import ON_SLICE_GAP_MODES, DicomSeriesInfo, check_dicom_series
from .nifti import check_nifti_volume, is_nifti_path

__all__ = ["CTVolumeReader", "load_ct_volume"]


@dataclass
class _LoadedVolume:
    kind: str  # "dicom" or "nifti"
    image: Any
    path: Path
    series: DicomSeriesInfo | None = None


class CTVolumeReader(ImageReader):
    """MONAI image reader for CT volumes: a DICOM series folder (checked, then read by MONAI's ``ITKReader``) or a
    NIfTI file (checked, then read by MONAI's ``NibabelReader``), for ``LoadImage(d)(reader=CTVolumeReader())``.

    DICOM: :func:`check_dicom_series` runs first; after ITK's read, the volume must have the series' slice count and
    size and its origin at the first slice (ITK groups files by more attributes than the SeriesInstanceUID and would
    otherwise read a part silently). Values are ITK's rescaled ones (``RescaleSlope``/``RescaleIntercept`` applied),
    i.e. HU for CT; the affine is ITK's, converted to RAS (spacing between slices: ITK's mean spacing).

    NIfTI: :func:`check_nifti_volume` runs first (a 4D file with several volumes is refused); a 2D file gets a
    trailing singleton axis, so every volume is 3D downstream (``SaveImage`` squeezes it again when writing).

    Both add ``meta["source_format"]`` (``"dicom"`` / ``"nifti"``) and ``meta["stored_dtype"]``; DICOM adds
    ``meta["modality"]``.

    Args:
        on_slice_gap: see :func:`check_dicom_series`.
        max_gap_ratio: see :func:`check_dicom_series`.
        ignore_non_dicom: see :func:`check_dicom_series`.
        itk_kwargs: passed to ``ITKReader``.
    """

    def __init__(
        self,
        on_slice_gap: str = "error",
        max_gap_ratio: float = 1.5,
        ignore_non_dicom: bool = False,
        **itk_kwargs: Any,
    ) -> None:
        super().__init__()
        self.on_slice_gap = check_choice("on_slice_gap", on_slice_gap, ON_SLICE_GAP_MODES)
        self.max_gap_ratio = max_gap_ratio
        self.ignore_non_dicom = ignore_non_dicom
        self.dicom_reader = ITKReader(affine_lps_to_ras=True, **itk_kwargs)
        self.nifti_reader = NibabelReader(squeeze_non_spatial_dims=True)

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """A single DICOM series folder or NIfTI file."""
        if isinstance(filename, (list, tuple)):
            return len(filename) == 1 and self.verify_suffix(filename[0])
        return os.path.isdir(filename) or is_nifti_path(filename)

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> _LoadedVolume:
        if isinstance(data, (list, tuple)):
            if len(data) != 1:
                raise ValueError(f"CTVolumeReader reads one volume at a time, got {len(data)} paths: {list(data)}.")
            data = data[0]
        path = Path(os.fspath(data))
        if path.is_dir():
            series = check_dicom_series(
                path, self.on_slice_gap, self.max_gap_ratio, ignore_non_dicom=self.ignore_non_dicom
            )
            return _LoadedVolume("dicom", self.dicom_reader.read(str(path), **kwargs), path, series)
        check_nifti_volume(path)
        return _LoadedVolume("nifti", self.nifti_reader.read(str(path), **kwargs), path)

    def get_data(self, img: _LoadedVolume) -> tuple[np.ndarray, dict]:
        if img.kind == "dicom":
            array, meta = self.dicom_reader.get_data(img.image)
            self._check_itk_volume(img, meta)
            meta["modality"] = img.series.modality
            meta["stored_dtype"] = img.series.stored_dtype
        else:
            array, meta = self.nifti_reader.get_data(img.image)
            meta["stored_dtype"] = str(img.image.get_data_dtype())
            if len(meta["spatial_shape"]) == 2:
                array = array[:, :, None] if array.ndim == 2 else array[:, :, None, ...]
                meta["spatial_shape"] = np.asarray(list(meta["spatial_shape"]) + [1])
        meta["source_format"] = img.kind
        return array, meta

    @staticmethod
    def _check_itk_volume(img: _LoadedVolume, meta: dict) -> None:
        series = img.series
        expected = (series.columns, series.rows, series.num_slices)
        shape = tuple(int(size) for size in meta["spatial_shape"])
        if series.num_slices == 1:
            shape = shape + (1,) * (3 - len(shape))
        if shape != expected:
            raise DataValidationError(
                f"DICOM series folder {img.path}: ITK read a volume of shape {shape} but the series has "
                f"{series.num_slices} slices of {series.rows}x{series.columns} (ITK splits series by more attributes "
                "than the SeriesInstanceUID, e.g. slice thickness): check the series' slices."
            )
        origin_ras = np.asarray(meta["affine"], dtype=np.float64)[:3, 3]
        first_ras = series.positions[0] * np.array([-1.0, -1.0, 1.0])
        if not np.allclose(origin_ras, first_ras, rtol=0.0, atol=1e-2):
            raise DataValidationError(
                f"DICOM series folder {img.path}: ITK's volume origin {origin_ras.round(3).tolist()} (RAS) is not the "
                f"position of the first slice {series.files[0].name} ({first_ras.round(3).tolist()} RAS)."
            )


def load_ct_volume(path: str | os.PathLike, **reader_kwargs: Any) -> MetaTensor:
    """Read one CT volume (DICOM series folder or NIfTI file) with the checks of :class:`CTVolumeReader`.

    Returns:
        A channel-first ``MetaTensor`` ``(1, X, Y, Z)``, float32, with ``affine`` (RAS) and the reader's metadata.
    """
    return LoadImage(reader=CTVolumeReader(**reader_kwargs), image_only=True, ensure_channel_first=True)(path)
