"""CT volumes (NIfTI files, DICOM series folders) through a 2D slice network: checked reading, Hounsfield windowing,
slice-by-slice inference at the network's input size, NIfTI and DICOM SEG outputs in the input's exact geometry.

The LG-Net bundle's network segments 2D axial slices. Its volume configuration (``configs/inference_volume.json``)
chains the pieces of this module::

    volume_datalist(...)                 lists the inputs, checks every DICOM folder / NIfTI header before the run
    LoadImaged(reader=CTVolumeReader())  ITK for DICOM series (+ checks), nibabel for NIfTI
    Orientationd(axcodes="PLS")          axial slices along the last axis, in-plane axes as the training slices
    CTWindowd(...)                       HU window (or min-max) to [0, 1], refusing volumes that are not in HU
    AxialSliceInferer(...)               each slice resized to the network's size and the logits resized back
    Invertd(...)                         undoes the orientation: the prediction has the input's voxel grid
    SaveImaged(resample=False,           NIfTI mask with the input's shape, affine and header codes
               writer=VolumeNiftiWriter)
    SaveDicomSegd(...)                   DICOM SEG referencing the source slices (DICOM input only)

DICOM series checks (:func:`check_dicom_series`, the folder is named in every message): files that are not DICOM,
DICOM files that are not image slices (a SEG, a report, a multi-frame image), several series in one folder (listed,
with the hint to pass one), slices whose rows/columns, orientation or pixel spacing differ, two slices at the same
position, and missing slices. A slice is taken as missing where the distance between neighbouring slices along the
slice normal exceeds ``max_gap_ratio`` (1.5) times the median distance, or, for a two-slice series where distances
cannot be compared, where the instance numbers of the two slices are not consecutive. Spacings that vary by more than
10 % without such a gap are accepted with a warning (ITK then assumes their mean spacing in the NIfTI affine; the
DICOM SEG references every slice at its own position).
"""

from __future__ import annotations

import copy
import glob as globlib
import logging
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import FolderLayout, ImageReader, ImageWriter, ITKReader, MetaTensor, NibabelReader, NibabelWriter
from monai.data.utils import to_affine_nd
from monai.inferers import Inferer, SliceInferer
from monai.transforms import (
    InvertibleTransform,
    LoadImage,
    MapTransform,
    Resize,
    ScaleIntensity,
    ScaleIntensityRange,
    SpatialPad,
    Transform,
)
from monai.utils import TransformBackends, convert_data_type, ensure_tuple_rep

from .datalist import DataValidationError, natural_sort_key
from .outputs import common_folder

__all__ = [
    "NIFTI_SUFFIXES",
    "DEFAULT_HU_WINDOW_LEVEL",
    "DEFAULT_HU_WINDOW_WIDTH",
    "INFECTION_SEGMENT_LABEL",
    "DicomSeriesInfo",
    "check_dicom_series",
    "check_nifti_volume",
    "is_nifti_path",
    "volume_datalist",
    "volume_input_root",
    "volume_name_formatter",
    "VolumeNiftiWriter",
    "CTVolumeReader",
    "load_ct_volume",
    "hounsfield_problem",
    "CheckHounsfieldRange",
    "CheckHounsfieldRanged",
    "CTWindow",
    "CTWindowd",
    "ResizedSliceNetwork",
    "AxialSliceInferer",
    "SpatialDimsDispatchd",
    "SpatialDimsDispatchInferer",
    "dicom_frames_from_volume",
    "write_dicom_seg",
    "SaveDicomSegd",
]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
# HU window of the bundle (level -500, width 1000 -> [-1000, 0] HU to [0, 1]): measured on the 50 MedSeg training
# JPEGs, air (trachea, 0.5th percentile) sits at a median 16/255 and the modal lung value at 44/255 while soft tissue
# saturates at 255, which a [-1000, 0] window reproduces for lung parenchyma near -850 HU; the classic lung window
# (level -600, width 1500 -> [-1350, 150]) would put air at 60/255 and parenchyma near 85/255.
DEFAULT_HU_WINDOW_LEVEL = -500.0
DEFAULT_HU_WINDOW_WIDTH = 1000.0
INFECTION_SEGMENT_LABEL = "COVID-19 infection"

ON_SLICE_GAP_MODES = ("error", "warn", "ignore")
ON_NON_CT_MODES = ("error", "warn", "rescale")
INTENSITY_MODES = ("hu_window", "minmax")
# DICOM attributes every slice of a series must carry to be placed in a volume.
_SLICE_GEOMETRY_TAGS = ("Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
_MAX_LISTED_FILES = 8
_GLOB_CHARACTERS = "*?["


# ----------------------------------------------------------------------------------------------------------
# Input listing and structural checks


def is_nifti_path(path: str | os.PathLike) -> bool:
    """Whether the file name ends with ``.nii`` or ``.nii.gz`` (case-insensitive)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _listed(paths: Sequence[str | os.PathLike], limit: int = _MAX_LISTED_FILES) -> str:
    names = [Path(path).name for path in paths]
    shown = ", ".join(names[:limit])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > limit else shown


def _check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
    return value


@dataclass
class DicomSeriesInfo:
    """What :func:`check_dicom_series` learnt from the slice headers of one series folder.

    Slices are sorted by their position along the slice normal (``cross(row, column)`` direction cosines), ascending,
    the order in which ITK stacks them.

    Attributes:
        folder: the series folder.
        files: slice files, sorted along the normal.
        sop_instance_uids: their SOPInstanceUIDs, same order.
        series_instance_uid: the series' SeriesInstanceUID.
        modality: the Modality attribute (``"CT"`` for CT), ``""`` when absent.
        rows: pixel rows of every slice.
        columns: pixel columns of every slice.
        orientation: ImageOrientationPatient (row then column direction cosines, LPS).
        pixel_spacing: PixelSpacing (row spacing, column spacing) in mm.
        positions: ImagePositionPatient of each slice, ``(n, 3)`` LPS mm.
        slice_positions: positions projected on the slice normal, ascending, mm.
        instance_numbers: InstanceNumber of each slice (None where absent).
        stored_dtype: the stored pixel type (BitsAllocated, PixelRepresentation), e.g. ``"int16"``.
        warnings: problems found and accepted (uneven spacing, gaps with ``on_slice_gap="warn"``, gantry tilt).
    """

    folder: Path
    files: list[Path]
    sop_instance_uids: list[str]
    series_instance_uid: str
    modality: str
    rows: int
    columns: int
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    positions: np.ndarray
    slice_positions: np.ndarray
    instance_numbers: list[int | None]
    stored_dtype: str = "int16"
    warnings: list[str] = field(default_factory=list)

    @property
    def num_slices(self) -> int:
        return len(self.files)

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal (LPS), the direction of increasing slice index."""
        return _slice_normal(self.orientation)

    @property
    def slice_spacings(self) -> np.ndarray:
        """Distances between neighbouring slices along the normal, mm (``n - 1`` values)."""
        return np.diff(self.slice_positions)


def _slice_normal(orientation: np.ndarray) -> np.ndarray:
    normal = np.cross(orientation[:3], orientation[3:])
    return normal / np.linalg.norm(normal)


def _read_dicom_header(path: Path):
    """The file's DICOM header without pixel data, or None when the file is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        pass
    except Exception:  # truncated or corrupt DICOM: reported as unreadable below
        return None
    try:  # DICOM without the 128-byte preamble ("DICM" prefix): accepted only if it reads as an image slice
        dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        return dataset if "SOPClassUID" in dataset and "Rows" in dataset else None
    except Exception:
        return None


def _is_image_slice(dataset) -> bool:
    if any(tag not in dataset for tag in _SLICE_GEOMETRY_TAGS):
        return False
    return int(dataset.get("NumberOfFrames", 1) or 1) == 1


def _describe_series(uid: str, datasets: list, paths: list[Path]) -> str:
    first = datasets[0]
    details = [f"{len(paths)} file(s)", str(first.get("Modality", "") or "no modality")]
    if first.get("SeriesNumber") not in (None, ""):
        details.append(f"series number {first.SeriesNumber}")
    if str(first.get("SeriesDescription", "")).strip():
        details.append(repr(str(first.SeriesDescription).strip()))
    return f"{uid} ({', '.join(details)}; e.g. {_listed(paths, 3)})"


def check_dicom_series(
    folder: str | os.PathLike,
    on_slice_gap: str = "error",
    max_gap_ratio: float = 1.5,
    uneven_tolerance: float = 0.1,
    ignore_non_dicom: bool = False,
) -> DicomSeriesInfo:
    """Check that a folder holds exactly one complete DICOM image series, from the file headers (no pixel data).

    Hidden files (``.DS_Store``...) and sub-folders are ignored, as ITK does.

    Args:
        folder: the series folder.
        on_slice_gap: what a missing slice does: ``"error"`` (default) raises, ``"warn"`` logs a warning and
            accepts the series (ITK then spreads the slices evenly in the volume's affine), ``"ignore"`` accepts it
            silently.
        max_gap_ratio: a distance between neighbouring slices (along the normal) larger than this many times the
            median distance is a gap.
        uneven_tolerance: spacings deviating from the median by more than this fraction (without being gaps) give
            a warning ("uneven but complete").
        ignore_non_dicom: accept (and skip) files that are not DICOM, instead of raising.

    Returns:
        The series' :class:`DicomSeriesInfo`.

    Raises:
        DataValidationError: naming the folder (and the offending files): missing/empty folder, files that are not
            DICOM, DICOM files that are not single-frame image slices, several series, inconsistent rows/columns,
            orientation or pixel spacing, two slices at one position, missing slices (``on_slice_gap="error"``).
    """
    _check_choice("on_slice_gap", on_slice_gap, ON_SLICE_GAP_MODES)
    if max_gap_ratio <= 1.0:
        raise ValueError(f"max_gap_ratio must be > 1, got {max_gap_ratio}.")
    root = Path(os.path.abspath(Path(folder).expanduser()))
    if not root.is_dir():
        raise DataValidationError(f"DICOM series folder {root} does not exist.")
    entries = sorted(root.iterdir(), key=lambda path: natural_sort_key(path.name))
    files = [path for path in entries if path.is_file() and not path.name.startswith(".")]
    if not files:
        sub_folders = [path.name for path in entries if path.is_dir() and not path.name.startswith(".")]
        hint = f"; pass one of its sub-folders instead (a list is accepted): {sub_folders}" if sub_folders else ""
        raise DataValidationError(f"DICOM series folder {root} holds no file{hint}.")

    headers = {path: _read_dicom_header(path) for path in files}
    non_dicom = [path for path, dataset in headers.items() if dataset is None]
    dicom = {path: dataset for path, dataset in headers.items() if dataset is not None}
    problems = []
    if non_dicom and not ignore_non_dicom:
        problems.append(
            f"{len(non_dicom)} file(s) that are not DICOM (or unreadable): {_listed(non_dicom)}; a series folder must "
            "hold only the slices of one series (move the other files out, or pass ignore_non_dicom=True)"
        )
    not_slices = [path for path, dataset in dicom.items() if not _is_image_slice(dataset)]
    if not_slices:
        kinds = sorted({str(getattr(dicom[path].get("SOPClassUID", ""), "name", "unknown")) for path in not_slices})
        problems.append(
            f"{len(not_slices)} DICOM file(s) that are not single-frame image slices with a position "
            f"({', '.join(kinds)}): {_listed(not_slices)}"
        )
    slices = {path: dataset for path, dataset in dicom.items() if path not in not_slices}
    by_series: dict[str, list[Path]] = {}
    for path, dataset in slices.items():
        by_series.setdefault(str(dataset.get("SeriesInstanceUID", "")), []).append(path)
    if len(by_series) > 1:
        listing = "\n".join(
            f"  - {_describe_series(uid, [slices[path] for path in paths], paths)}" for uid, paths in by_series.items()
        )
        problems.append(
            f"{len(by_series)} series (different SeriesInstanceUID) are mixed; pass one series: move each into its "
            f"own folder and pass that folder (a list of folders is accepted):\n{listing}"
        )
    if not slices and not problems:
        problems.append("no DICOM image slice")
    if problems:
        raise _folder_error(root, problems)

    ordered_paths = list(slices)
    datasets = [slices[path] for path in ordered_paths]
    problems.extend(_consistency_problems(ordered_paths, datasets))
    if problems:
        raise _folder_error(root, problems)

    orientation = np.asarray([float(value) for value in datasets[0].ImageOrientationPatient], dtype=np.float64)
    normal = _slice_normal(orientation)
    positions = np.asarray([[float(value) for value in ds.ImagePositionPatient] for ds in datasets], dtype=np.float64)
    along_normal = positions @ normal
    order = np.argsort(along_normal, kind="stable")
    ordered_paths = [ordered_paths[index] for index in order]
    datasets = [datasets[index] for index in order]
    positions, along_normal = positions[order], along_normal[order]
    instance_numbers = [_instance_number(ds) for ds in datasets]

    info = DicomSeriesInfo(
        folder=root,
        files=ordered_paths,
        sop_instance_uids=[str(ds.SOPInstanceUID) for ds in datasets],
        series_instance_uid=next(iter(by_series)),
        modality=str(datasets[0].get("Modality", "") or ""),
        rows=int(datasets[0].Rows),
        columns=int(datasets[0].Columns),
        orientation=orientation,
        pixel_spacing=(float(datasets[0].PixelSpacing[0]), float(datasets[0].PixelSpacing[1])),
        positions=positions,
        slice_positions=along_normal,
        instance_numbers=instance_numbers,
        stored_dtype=("int" if int(datasets[0].get("PixelRepresentation", 0) or 0) == 1 else "uint")
        + str(int(datasets[0].get("BitsAllocated", 16) or 16)),
    )
    duplicates, gaps, accepted = _spacing_findings(info, max_gap_ratio, uneven_tolerance)
    if duplicates:
        raise _folder_error(root, duplicates)
    if gaps:
        hint = (
            "pass on_slice_gap='warn' (bundle: --on_slice_gap warn) to segment the series anyway: the NIfTI mask "
            "then has ITK's even spacing, the DICOM SEG still references each slice at its own position"
        )
        if on_slice_gap == "error":
            raise _folder_error(root, gaps + [hint], headline="missing slice(s)")
        accepted = gaps + accepted
    info.warnings.extend(accepted)
    if on_slice_gap != "ignore":
        for finding in accepted:
            _warn_once(f"DICOM series folder {root}: {finding}")
    return info


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Log a warning once per process: the datalist check and the reader see the same folder."""
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)


def _folder_error(root: Path, problems: list[str], headline: str = "") -> DataValidationError:
    title = f"DICOM series folder {root}" + (f": {headline}" if headline else "")
    if len(problems) == 1:
        return DataValidationError(f"{title}: {problems[0]}.", [f"{root}: {problems[0]}"])
    lines = [f"{title}:"] + [f"  - {problem}" for problem in problems]
    return DataValidationError("\n".join(lines), [f"{root}: {problem}" for problem in problems])


def _instance_number(dataset) -> int | None:
    value = dataset.get("InstanceNumber")
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _consistency_problems(paths: list[Path], datasets: list) -> list[str]:
    """Rows/columns, orientation and pixel spacing must be the same on every slice of the series."""
    problems = []

    def differing(name: str, values: list, same: Callable[[Any, Any], bool]) -> None:
        groups: list[tuple[Any, list[Path]]] = []
        for path, value in zip(paths, values, strict=True):
            for reference, members in groups:
                if same(reference, value):
                    members.append(path)
                    break
            else:
                groups.append((value, [path]))
        if len(groups) > 1:
            listing = "; ".join(f"{value} in {_listed(members, 3)}" for value, members in groups)
            problems.append(f"slices differ in {name}: {listing}")

    def close(tolerance: float) -> Callable[[Any, Any], bool]:
        return lambda a, b: bool(np.allclose(np.asarray(a, float), np.asarray(b, float), atol=tolerance))

    differing("rows x columns", [(int(ds.Rows), int(ds.Columns)) for ds in datasets], lambda a, b: a == b)
    differing(
        "ImageOrientationPatient",
        [tuple(round(float(v), 6) for v in ds.ImageOrientationPatient) for ds in datasets],
        close(1e-4),
    )
    differing("PixelSpacing", [tuple(round(float(v), 6) for v in ds.PixelSpacing) for ds in datasets], close(1e-4))
    return problems


def _spacing_findings(
    info: DicomSeriesInfo, max_gap_ratio: float, uneven_tolerance: float
) -> tuple[list[str], list[str], list[str]]:
    """(duplicate positions, gaps, accepted irregularities) of a sorted series."""
    names = [path.name for path in info.files]
    positions = info.slice_positions
    spacings = np.diff(positions)
    duplicates, gaps, accepted = [], [], []
    if spacings.size == 0:
        return duplicates, gaps, accepted
    in_plane_size = min(info.pixel_spacing)
    for index in np.flatnonzero(spacings < 1e-3 * max(in_plane_size, 1e-3)):
        duplicates.append(
            f"slices {names[index]} and {names[index + 1]} are at the same position ({positions[index]:.3f} mm along "
            "the slice normal): two acquisitions or duplicated files in one series"
        )
    if duplicates:
        return duplicates, gaps, accepted

    numbers = info.instance_numbers
    numbered = all(number is not None for number in numbers) and len(set(numbers)) == len(numbers)
    median = float(np.median(spacings))
    if spacings.size >= 2:
        for index in np.flatnonzero(spacings > max_gap_ratio * median):
            missing = max(1, int(round(spacings[index] / median)) - 1)
            numbering = (
                f"; instance numbers jump from {numbers[index]} to {numbers[index + 1]}"
                if numbered and abs(numbers[index + 1] - numbers[index]) > 1
                else ""
            )
            gaps.append(
                f"the distance between {names[index]} ({positions[index]:.3f} mm) and {names[index + 1]} "
                f"({positions[index + 1]:.3f} mm) along the slice normal is {spacings[index]:.3f} mm, "
                f"{spacings[index] / median:.1f} times the median spacing {median:.3f} mm (about {missing} slice(s) "
                f"missing){numbering}"
            )
        deviation = np.abs(spacings - median) / median
        if not gaps and deviation.max() > uneven_tolerance:
            accepted.append(
                f"uneven slice spacing (from {spacings.min():.3f} to {spacings.max():.3f} mm, median {median:.3f} mm) "
                "without missing slices: accepted; ITK assumes the mean spacing in the volume's affine, the DICOM SEG "
                "references each slice at its own position"
            )
    if numbered:
        jumps = [index for index in range(len(numbers) - 1) if abs(numbers[index + 1] - numbers[index]) != 1]
        if jumps and spacings.size == 1:  # two slices: the positions alone cannot reveal a gap
            gaps.append(
                f"the instance numbers of the two slices {names[0]} and {names[1]} are {numbers[0]} and {numbers[1]}, "
                "not consecutive: slice(s) between them seem missing"
            )
        elif jumps and not gaps:
            accepted.append(
                "instance numbers are not consecutive along the slice normal ("
                + ", ".join(f"{numbers[index]} -> {numbers[index + 1]}" for index in jumps[:5])
                + ") while the positions are complete: accepted"
            )
    # A gantry tilt shears the volume: slice origins drift in-plane, which ITK's affine (no shear) cannot describe.
    offsets = info.positions - info.positions[0]
    lateral = offsets - np.outer(offsets @ info.normal, info.normal)
    drift = float(np.linalg.norm(lateral, axis=1).max())
    if drift > 0.1 * in_plane_size:
        accepted.append(
            f"slice origins drift up to {drift:.2f} mm in-plane (gantry tilt?): the NIfTI affine cannot represent the "
            "shear; masks keep the slice-by-slice voxel correspondence, the DICOM SEG references each slice"
        )
    return duplicates, gaps, accepted


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


def _expand_entry(entry: str | os.PathLike) -> list[str]:
    text = os.path.expanduser(os.fspath(entry))
    path = Path(text)
    if path.is_dir():
        niftis = sorted((item for item in path.iterdir() if item.is_file() and is_nifti_path(item)), key=_path_key)
        return [str(item) for item in niftis] if niftis else [text]  # a folder of NIfTI files, else a DICOM series
    if path.is_file():
        return [text]
    if any(char in text for char in _GLOB_CHARACTERS):
        matches = sorted(
            (Path(item) for item in globlib.glob(text) if Path(item).is_dir() or is_nifti_path(item)), key=_path_key
        )
        if not matches:
            raise DataValidationError(f"glob {text!r} matches no NIfTI file and no folder.")
        return [str(item) for item in matches]
    raise DataValidationError(f"input volume {path.resolve()} does not exist.")


def _path_key(path: Path) -> tuple:
    return natural_sort_key(path.as_posix())


def volume_datalist(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    on_slice_gap: str = "error",
    max_gap_ratio: float = 1.5,
    ignore_non_dicom: bool = False,
) -> list[dict]:
    """Inference inputs ``[{"image": path}, ...]`` from NIfTI files and DICOM series folders, each checked now.

    Args:
        path_or_paths: a NIfTI file (``.nii``, ``.nii.gz``), a DICOM series folder, a folder of NIfTI files, a glob
            of files/folders, or a list of those.
        on_slice_gap: see :func:`check_dicom_series`.
        max_gap_ratio: see :func:`check_dicom_series`.
        ignore_non_dicom: see :func:`check_dicom_series`.

    Returns:
        One dict per volume, absolute paths, in the given order (folders and globs sorted naturally), no duplicates.

    Raises:
        DataValidationError: every problem of every input in one message (``error.problems`` lists them), each
            naming its file or folder.
    """
    entries = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    if not entries:
        raise DataValidationError("volume_datalist: no input volume given.")
    problems: list[str] = []
    volumes: list[str] = []
    for entry in entries:
        try:
            volumes.extend(_expand_entry(entry))
        except DataValidationError as error:
            problems.extend(error.problems)
    unique = list(dict.fromkeys(os.path.abspath(path) for path in volumes))
    for path in unique:
        try:
            if os.path.isdir(path):
                check_dicom_series(path, on_slice_gap, max_gap_ratio, ignore_non_dicom=ignore_non_dicom)
            elif is_nifti_path(path):
                check_nifti_volume(path)
            else:
                raise DataValidationError(
                    f"input volume {path} is neither a NIfTI file ({', '.join(NIFTI_SUFFIXES)}) nor a DICOM series "
                    "folder (pass the folder holding the .dcm slices, not a slice file)."
                )
        except DataValidationError as error:
            problems.append(str(error))
    if problems:
        if len(problems) == 1:
            raise DataValidationError(problems[0], problems)
        raise DataValidationError(
            f"{len(problems)} problem(s) in the input volumes:\n" + "\n".join(f"  - {problem}" for problem in problems),
            problems,
        )
    return [{"image": path} for path in unique]


def _volume_input_folder(entry: str | os.PathLike) -> str:
    text = os.path.expanduser(os.fspath(entry))
    if any(char in text for char in _GLOB_CHARACTERS):
        fixed = []
        for part in text.replace("\\", "/").split("/"):
            if any(char in part for char in _GLOB_CHARACTERS):
                break
            fixed.append(part)
        return os.path.abspath("/".join(fixed) or ".")
    path = os.path.abspath(text)
    if os.path.isdir(path) and any(is_nifti_path(name) for name in os.listdir(path)):
        return path  # a folder of NIfTI files: its files are the volumes
    return os.path.dirname(path)  # a NIfTI file, or a DICOM series folder: the volume is the folder itself


def volume_input_root(path_or_paths: str | os.PathLike | Sequence[str | os.PathLike]) -> str:
    """Deepest folder holding every input volume, for ``SaveImaged(data_root_dir=...)`` to keep sub-folders.

    Like :func:`transforms.common_input_root` for 2D images, except that a DICOM series folder counts as one volume:
    its parent is the folder that holds it, so ``out/<series folder name>_mask.nii.gz`` is written next to the
    outputs of the other inputs instead of one level up.

    Args:
        path_or_paths: what :func:`volume_datalist` accepts.

    Returns:
        Absolute folder path, ``""`` for an empty list or entries without a common parent.
    """
    return common_folder(path_or_paths, _volume_input_folder)


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


# ----------------------------------------------------------------------------------------------------------
# Reading


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
        self.on_slice_gap = _check_choice("on_slice_gap", on_slice_gap, ON_SLICE_GAP_MODES)
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


# ----------------------------------------------------------------------------------------------------------
# Intensities


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
        self.on_non_ct = _check_choice("on_non_ct", on_non_ct, ("error", "warn"))
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
        self.intensity_mode = _check_choice("intensity_mode", intensity_mode, INTENSITY_MODES)
        self.on_non_ct = _check_choice("on_non_ct", on_non_ct, ON_NON_CT_MODES)
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


# ----------------------------------------------------------------------------------------------------------
# Slice-wise inference


class ResizedSliceNetwork(nn.Module):
    """Runs a 2D network at its fixed input size on slices of any size, the way the 2D bundle prepares its slices.

    ``(B, C, H, W)`` slices are resized (MONAI ``Resize``) so that their longer side equals ``min(spatial_size)``
    and zero-padded (MONAI ``SpatialPad``, centred) to ``spatial_size`` with ``keep_aspect_ratio=True``, or resized
    to ``spatial_size`` with ``keep_aspect_ratio=False``; the network's outputs (logits) are cropped back to the
    resized area and resized to ``(H, W)``. Slices already at ``spatial_size`` pass unresized and unpadded, so the
    wrapper is exact there.

    Args:
        network: the 2D network.
        spatial_size: the network's input size ``(H, W)`` (an int for a square).
        keep_aspect_ratio: resize the longer side and pad (the LG-Net bundle's ``keep_aspect_ratio``), or stretch.
        mode: interpolation mode of both resizes (MONAI ``Resize`` mode).
        anti_aliasing: Gaussian low-pass before shrinking (MONAI ``Resize(anti_aliasing=True)``).
    """

    def __init__(
        self,
        network: Callable[..., torch.Tensor],
        spatial_size: Sequence[int] | int,
        keep_aspect_ratio: bool = True,
        mode: str = "bilinear",
        anti_aliasing: bool = True,
    ) -> None:
        super().__init__()
        self.network = network
        self.spatial_size = tuple(int(size) for size in ensure_tuple_rep(spatial_size, 2))
        if len(self.spatial_size) != 2 or min(self.spatial_size) < 1:
            raise ValueError(f"spatial_size must be two positive ints (H, W), got {spatial_size!r}.")
        self.keep_aspect_ratio = bool(keep_aspect_ratio)
        self.mode = mode
        self.anti_aliasing = bool(anti_aliasing)
        self.padder = SpatialPad(spatial_size=self.spatial_size)

    def network_geometry(self, size: Sequence[int]) -> tuple[tuple[int, int], list[tuple[int, int]]]:
        """``(resized (H, W), [(before, after) padding of H, of W])`` of a slice of ``size`` at the network input."""
        size = tuple(int(value) for value in size)
        if tuple(size) == self.spatial_size:
            return size, [(0, 0), (0, 0)]
        if self.keep_aspect_ratio:
            scale = min(self.spatial_size) / max(size)  # MONAI Resize(size_mode="longest"), as the 2D bundle
            resized = tuple(int(round(value * scale)) for value in size)
        else:
            resized = self.spatial_size
        padding = [tuple(int(v) for v in pair) for pair in self.padder.compute_pad_width(resized)[1:]]
        return resized, padding

    def _resize(self, x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        if tuple(x.shape[2:]) == tuple(size):
            return x
        batch, channels = x.shape[:2]
        resizer = Resize(spatial_size=size, mode=self.mode, anti_aliasing=self.anti_aliasing)
        resized = resizer(x.reshape(batch * channels, *x.shape[2:]))  # channels of one image: one interpolate call
        resized = resized.as_tensor() if isinstance(resized, MetaTensor) else torch.as_tensor(resized)
        return resized.reshape(batch, channels, *size)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"ResizedSliceNetwork expects (B, C, H, W) slices, got shape {tuple(x.shape)}.")
        if isinstance(x, MetaTensor):
            x = x.as_tensor()
        size = (int(x.shape[2]), int(x.shape[3]))
        resized, ((top, bottom), (left, right)) = self.network_geometry(size)
        network_input = F.pad(self._resize(x, resized), (left, right, top, bottom))
        output = self.network(network_input, *args, **kwargs)
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"the network must return a tensor of logits, got {type(output).__name__}.")
        if isinstance(output, MetaTensor):
            output = output.as_tensor()
        output = output[:, :, top : top + resized[0], left : left + resized[1]]
        return self._resize(output, size)


class AxialSliceInferer(Inferer):
    """Slice-by-slice inference of a 2D network on 3D volumes ``(B, C, X, Y, Z)``: MONAI's ``SliceInferer`` over
    ``slice_axis``, each whole slice (no tiling) passed through :class:`ResizedSliceNetwork`, so the network always
    sees ``spatial_size`` slices prepared like the 2D bundle's, and the output has the input's voxel grid.

    Orient the volume first (``Orientationd``) so that ``slice_axis`` is the axial axis and the in-plane axes match
    the network's training slices; invert that orientation on the prediction (``Invertd``) before saving.

    Args:
        spatial_size: the network's input size ``(H, W)``.
        slice_axis: the spatial axis (0, 1 or 2) slid over; 2 for the last one.
        sw_batch_size: slices per network call.
        keep_aspect_ratio: see :class:`ResizedSliceNetwork`.
        mode: resize mode, see :class:`ResizedSliceNetwork`.
        anti_aliasing: see :class:`ResizedSliceNetwork`.
        sw_device: device of the network calls (default: the input's).
        device: device of the stitched output (default: the input's).
        progress: show a progress bar over the slice batches.
    """

    def __init__(
        self,
        spatial_size: Sequence[int] | int = 512,
        slice_axis: int = 2,
        sw_batch_size: int = 4,
        keep_aspect_ratio: bool = True,
        mode: str = "bilinear",
        anti_aliasing: bool = True,
        sw_device: torch.device | str | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__()
        if slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1 or 2 (a spatial axis of a 3D volume), got {slice_axis!r}.")
        if int(sw_batch_size) < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size!r}.")
        self.spatial_size = spatial_size
        self.keep_aspect_ratio = keep_aspect_ratio
        self.mode = mode
        self.anti_aliasing = anti_aliasing
        self.slice_inferer = SliceInferer(
            spatial_dim=slice_axis,
            roi_size=(-1, -1),  # non-positive: the whole slice, one window per slice
            sw_batch_size=int(sw_batch_size),
            overlap=0.0,
            mode="constant",
            sw_device=sw_device,
            device=device,
            progress=progress,
        )

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        if inputs.ndim != 5:
            raise ValueError(
                f"AxialSliceInferer expects a batch of 3D volumes (B, C, X, Y, Z), got shape {tuple(inputs.shape)}."
            )
        wrapped = ResizedSliceNetwork(network, self.spatial_size, self.keep_aspect_ratio, self.mode, self.anti_aliasing)
        return self.slice_inferer(inputs, wrapped, *args, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# DICOM SEG


_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _source_datasets(source: str | os.PathLike | Sequence) -> list:
    """Slice headers of a series folder (checked, gaps accepted) or of given paths/datasets."""
    import pydicom

    if isinstance(source, (str, os.PathLike)):
        # the folder was checked when it was read: only its slices, in order, are needed here
        paths = check_dicom_series(source, on_slice_gap="ignore", ignore_non_dicom=True).files
        datasets = [pydicom.dcmread(path, stop_before_pixels=True) for path in paths]
    else:
        datasets = [
            copy.deepcopy(item) if isinstance(item, pydicom.Dataset) else pydicom.dcmread(item, stop_before_pixels=True)
            for item in source
        ]
    if not datasets:
        raise ValueError("no source DICOM slice given.")
    for dataset in datasets:
        # An empty SpecificCharacterSet means the default repertoire (ISO_IR 6), but highdicom copies the attribute
        # into the SEG and rejects the empty value (real GE series carry it).
        if "SpecificCharacterSet" in dataset and not str(dataset.SpecificCharacterSet or "").strip():
            del dataset.SpecificCharacterSet
    return datasets


def dicom_frames_from_volume(
    volume: NdarrayOrTensor, source_datasets: Sequence, affine: NdarrayOrTensor | None = None
) -> tuple[list, np.ndarray]:
    """Pair each source slice with its frame of a volume in the series' voxel order.

    The volume is indexed ``(X, Y, Z)`` = (column, row, slice), as MONAI's ``ITKReader``/``PydicomReader`` read a
    series; ``frame = volume[:, :, k].T`` is then the ``(rows, columns)`` image of slice ``k``. With ``affine`` (RAS,
    e.g. the prediction's ``MetaTensor.affine``) every slice's ImagePositionPatient is mapped to its voxel index, the
    in-plane axes are checked against ImageOrientationPatient and the slices are ordered along the volume's slice axis
    (so ITK's ascending and pydicom's file order both work); without it, the slices are sorted along their normal,
    ascending, as ITK stacks them.

    Args:
        volume: ``(X, Y, Z)`` or ``(1, X, Y, Z)``.
        source_datasets: the series' slice headers (pixel data not needed), any order.
        affine: the volume's 4x4 RAS affine, or None.

    Returns:
        ``(datasets, frames)``: the datasets in frame order and the ``(Z, rows, columns)`` frames.

    Raises:
        ValueError: shapes, in-plane directions or slice positions do not match the series (e.g. a mask left in
            another orientation).
    """
    array = np.asarray(volume.detach().cpu() if isinstance(volume, torch.Tensor) else volume)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"expected a (X, Y, Z) or (1, X, Y, Z) volume, got shape {array.shape}.")
    datasets = list(source_datasets)
    rows, columns = int(datasets[0].Rows), int(datasets[0].Columns)
    if array.shape != (columns, rows, len(datasets)):
        raise ValueError(
            f"volume shape {array.shape} does not match the series: {len(datasets)} slices of {rows} rows x "
            f"{columns} columns, expected (columns, rows, slices) = {(columns, rows, len(datasets))}."
        )
    orientation = np.asarray([float(v) for v in datasets[0].ImageOrientationPatient])
    positions = np.asarray([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    if affine is None:
        order = np.argsort(positions @ _slice_normal(orientation), kind="stable")
    else:
        lps = _LPS_FROM_RAS @ np.asarray(torch.as_tensor(affine).detach().cpu(), dtype=np.float64)
        axes = lps[:3, :2] / np.linalg.norm(lps[:3, :2], axis=0)
        same_rows = np.allclose(axes[:, 0], orientation[:3], atol=1e-3)
        if not (same_rows and np.allclose(axes[:, 1], orientation[3:], atol=1e-3)):
            raise ValueError(
                "the volume's in-plane axes (from its affine, LPS) "
                f"{axes[:, 0].round(4).tolist()} / {axes[:, 1].round(4).tolist()} are not the series' row / column "
                f"directions {orientation[:3].tolist()} / {orientation[3:].tolist()}: pass the mask in the series' "
                "voxel order (invert any orientation transform first)."
            )
        voxels = (np.linalg.inv(lps) @ np.c_[positions, np.ones(len(datasets))].T).T[:, :3]
        order = np.argsort(voxels[:, 2], kind="stable")
        first, last = voxels[order[0], 2], voxels[order[-1], 2]
        if abs(first) > 0.5 or abs(last - (len(datasets) - 1)) > 0.5:
            raise ValueError(
                f"the series' slices lie at slice indices {first:.2f} .. {last:.2f} of the volume, expected "
                f"0 .. {len(datasets) - 1}: the affine does not belong to this series."
            )
    ordered = [datasets[index] for index in order]
    frames = np.ascontiguousarray(np.moveaxis(array, 2, 0).transpose(0, 2, 1))
    return ordered, frames


def write_dicom_seg(
    mask: NdarrayOrTensor,
    source: str | os.PathLike | Sequence,
    path: str | os.PathLike,
    affine: NdarrayOrTensor | None = None,
    label_name: str = INFECTION_SEGMENT_LABEL,
    algorithm_name: str = "lgnet_covid_ct_segmentation",
    algorithm_version: str = "unknown",
    segmented_property_category: Any = None,
    segmented_property_type: Any = None,
    anatomic_region: Any = None,
    series_description: str = "LG-Net COVID-19 infection",
    series_number: int | None = None,
    manufacturer: str = "medseg-bundles",
    omit_empty_frames: bool = True,
) -> Path:
    """Write a binary mask as a DICOM Segmentation (highdicom) derived from its source CT series.

    One segment (BINARY): ``label_name``, property category "Morphologically Abnormal Structure" (SCT 49755003),
    type "Lesion" (SCT 52988006), anatomic region "Lung" (SCT 39607008), algorithm type AUTOMATIC with the algorithm
    identification ``algorithm_name`` / ``algorithm_version`` (family "Artificial Intelligence", DCM 123110). Each
    frame references its source slice (SOPInstanceUID) and carries that slice's position; frames without a lesion
    pixel are left out with ``omit_empty_frames`` (all kept when the whole mask is empty).

    Args:
        mask: binary ``(X, Y, Z)`` or ``(1, X, Y, Z)`` in the series' voxel order (see
            :func:`dicom_frames_from_volume`); a ``MetaTensor`` brings its affine.
        source: the series folder, or its slice files / pydicom datasets.
        path: output ``.dcm`` file (folders created).
        affine: the mask's RAS affine; default: ``mask.affine`` for a ``MetaTensor``, else the ITK slice order.
        label_name: the segment label.
        algorithm_name: algorithm identification name (the bundle's name).
        algorithm_version: algorithm identification version (the bundle's version).
        segmented_property_category: pydicom/highdicom code replacing the default category.
        segmented_property_type: code replacing the default type.
        anatomic_region: code replacing the default anatomic region (Lung).
        series_description: SeriesDescription of the new series.
        series_number: SeriesNumber of the new series; default: the source's + 1000.
        manufacturer: Manufacturer of the SEG.
        omit_empty_frames: leave out frames without a lesion pixel.

    Returns:
        The written path.

    Raises:
        ValueError: the mask is not binary or does not match the series.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if affine is None and isinstance(mask, MetaTensor):
        affine = mask.affine
    values = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    if values.size and not np.isin(np.unique(values), (0, 1)).all():
        raise ValueError(f"the mask must be binary (0/1), found values {np.unique(values)[:8].tolist()}.")
    datasets, frames = dicom_frames_from_volume(values, _source_datasets(source), affine)
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label_name,
        segmented_property_category=segmented_property_category or codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=segmented_property_type or codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=str(algorithm_version)
        ),
        anatomic_regions=[anatomic_region or codes.SCT.Lung],
    )
    if series_number is None:
        source_number = datasets[0].get("SeriesNumber")
        series_number = 1000 + (int(source_number) if source_number not in (None, "") else 0)
    segmentation = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=int(series_number),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=manufacturer,
        manufacturer_model_name=algorithm_name,
        software_versions=str(algorithm_version),
        device_serial_number="0",
        series_description=series_description,
        content_label="INFECTION",
        omit_empty_frames=omit_empty_frames,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    segmentation.save_as(path)
    return path


class SaveDicomSegd(MapTransform):
    """Post-transform writing ``<name>_seg.dcm`` (:func:`write_dicom_seg`) for every item read from a DICOM series
    folder; items read from NIfTI files pass untouched.

    Place it after ``Invertd`` and the thresholding: the mask must be a binary ``MetaTensor`` in the input's voxel
    order, whose ``filename_or_obj`` is the series folder. Output names follow :func:`volume_name_formatter` and keep
    sub-folders relative to ``data_root_dir``, like ``SaveImaged`` does for the NIfTI mask.

    Args:
        keys: mask key(s).
        output_dir: output folder.
        output_postfix: name postfix (``<name>_<postfix>.dcm``).
        data_root_dir: see ``SaveImaged``.
        enabled: False turns the transform into a no-op (bundle switch ``write_dicom_seg``).
        allow_missing_keys: see ``MapTransform``.
        seg_kwargs: passed to :func:`write_dicom_seg` (``label_name``, ``algorithm_name``, ``algorithm_version``...).
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike = "./",
        output_postfix: str = "seg",
        data_root_dir: str | os.PathLike = "",
        enabled: bool = True,
        allow_missing_keys: bool = False,
        **seg_kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.enabled = bool(enabled)
        self.folder_layout = FolderLayout(
            output_dir=str(output_dir),
            postfix=output_postfix,
            extension=".dcm",
            parent=False,
            makedirs=True,
            data_root_dir=str(data_root_dir or ""),
        )
        self.seg_kwargs = seg_kwargs

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if not self.enabled:
            return d
        for key in self.key_iterator(d):
            mask = d[key]
            meta = getattr(mask, "meta", None) or {}
            source = str(meta.get("filename_or_obj", ""))
            if not os.path.isdir(source) or meta.get("source_format", "dicom") != "dicom":
                continue  # read from a NIfTI file
            path = self.folder_layout.filename(**volume_name_formatter(meta, self))
            write_dicom_seg(mask, source, path, **self.seg_kwargs)
            logger.info("DICOM SEG of %s written to %s", source, path)
        return d


def _by_spatial_dims(options: Mapping[int | str, Any], what: str) -> dict[int, Any]:
    """``options`` keyed by the number of spatial dimensions (JSON configs give the keys as strings)."""
    if not options:
        raise ValueError(f"{what}: no option given; map spatial dimensions to options, e.g. {{2: ..., 3: ...}}.")
    return {int(dims): option for dims, option in options.items()}


def _pick_by_spatial_dims(options: Mapping[int, Any], spatial_dims: int, what: str) -> Any:
    if spatial_dims not in options:
        raise ValueError(
            f"{what} has {spatial_dims} spatial dimension(s); this pipeline handles {sorted(options)} "
            "(2: a slice, 3: a volume)."
        )
    return options[spatial_dims]


class SpatialDimsDispatchd(MapTransform, InvertibleTransform):
    """Runs the transform registered for the number of spatial dimensions of ``data[key]`` (channel-first), so that
    one config reads 2D slices and 3D volumes: e.g. ``{2: slice_preprocessing, 3: volume_preprocessing}`` in the
    LG-Net bundle's ``inference.json``, which MONAI Label reads alone and feeds both. ``inverse`` (``Invertd``)
    undoes the same transform, chosen by the same rule.

    Args:
        keys: the key whose array decides (one key).
        transforms: ``{spatial dims: transform}``; keys may be strings (JSON).
        allow_missing_keys: see :class:`monai.transforms.MapTransform`.
    """

    def __init__(
        self, keys: KeysCollection, transforms: Mapping[int | str, Callable], allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"SpatialDimsDispatchd decides by one key, got {list(self.keys)}.")
        self.transforms = _by_spatial_dims(transforms, "SpatialDimsDispatchd")

    def _transform_for(self, data: Mapping[Hashable, Any]) -> Callable:
        key = self.keys[0]
        return _pick_by_spatial_dims(self.transforms, np.ndim(data[key]) - 1, f"{key!r} (channel-first)")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        return self._transform_for(data)(dict(data))

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        transform = self._transform_for(data)
        if not isinstance(transform, InvertibleTransform):
            raise TypeError(f"{type(transform).__name__} is not invertible: Invertd cannot undo it.")
        return transform.inverse(dict(data))


class SpatialDimsDispatchInferer(Inferer):
    """Runs the inferer registered for the number of spatial dimensions of ``inputs`` (``B, C, *spatial``): e.g.
    ``{2: SimpleInferer(), 3: AxialSliceInferer(...)}`` for a 2D network that also segments volumes slice by slice.

    Args:
        inferers: ``{spatial dims: inferer}``; keys may be strings (JSON).
    """

    def __init__(self, inferers: Mapping[int | str, Inferer]) -> None:
        super().__init__()
        self.inferers = _by_spatial_dims(inferers, "SpatialDimsDispatchInferer")

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        inferer = _pick_by_spatial_dims(self.inferers, inputs.ndim - 2, "the input (batch, channel first)")
        return inferer(inputs, network, *args, **kwargs)
