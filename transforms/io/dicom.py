"""DICOM series checks: one series of image slices per folder, consistent geometry, no missing slice.

:func:`check_dicom_series` names the folder in every message. It refuses files that are not DICOM, DICOM files that
are not image slices (a SEG, a report, a multi-frame image), several series in one folder (listed, with the hint to
pass one), slices whose rows/columns, orientation or pixel spacing differ, two slices at the same position, and
missing slices. A slice is taken as missing where the distance between neighbouring slices along the slice normal
exceeds ``max_gap_ratio`` (1.5) times the median distance, or, for a two-slice series where distances cannot be
compared, where the instance numbers of the two slices are not consecutive. Spacings that vary by more than 10 %
without such a gap are accepted with a warning (ITK then assumes their mean spacing in the NIfTI affine; the DICOM
SEG references every slice at its own position).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import DataValidationError, check_choice, natural_sort_key

__all__ = ["DicomSeriesInfo", "slice_normal", "check_dicom_series"]

logger = logging.getLogger(__name__)

ON_SLICE_GAP_MODES = ("error", "warn", "ignore")

# DICOM attributes every slice of a series must carry to be placed in a volume.
_SLICE_GEOMETRY_TAGS = ("Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
_MAX_LISTED_FILES = 8


def _listed(paths: Sequence[str | os.PathLike], limit: int = _MAX_LISTED_FILES) -> str:
    names = [Path(path).name for path in paths]
    shown = ", ".join(names[:limit])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > limit else shown


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
        return slice_normal(self.orientation)

    @property
    def slice_spacings(self) -> np.ndarray:
        """Distances between neighbouring slices along the normal, mm (``n - 1`` values)."""
        return np.diff(self.slice_positions)


def slice_normal(orientation: np.ndarray) -> np.ndarray:
    """Unit normal of the slice plane, ``cross(row, column)`` of the ImageOrientationPatient cosines."""
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
    check_choice("on_slice_gap", on_slice_gap, ON_SLICE_GAP_MODES)
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
    normal = slice_normal(orientation)
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
