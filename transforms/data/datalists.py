"""Dataset listing and validation for the bundles' ``datalist`` expressions.

Bundle configs build their MONAI datalists (lists of ``{"image": path, "label": path}`` dicts) with
:func:`folder_datalist` (training/evaluation folders in a registered layout) or :func:`image_datalist`
(inference inputs), and wrap them in :func:`validate_datalist` so that a missing, corrupt or
inconsistent file stops the run with a message naming that file before training starts, instead of a
shape error deep inside a data loader worker (config excerpt)::

    "train_ids": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
    "train_files": "$transforms.folder_datalist(@dataset_dir, 'isbi', ids=@train_ids)",
    "train_datalist": "$transforms.validate_datalist(@train_files, label_values=[0, 255], label_kind='binary')",

Folder layouts are kept in a small registry (:data:`LAYOUTS`, :func:`register_layout`): a layout is a
pair of relative path patterns with an ``{id}`` placeholder, e.g. ``image/{id}.png`` and
``label/{id}.png`` for the ISBI 2012 EM set.
"""

from __future__ import annotations

import glob as globlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io.dicom import check_dicom_series
from ..io.nifti import NIFTI_SUFFIXES, check_nifti_volume, is_nifti_path
from ..utils import DataValidationError, format_values, natural_sort_key, problems_error
from .layouts import DatasetLayout, get_layout, normalise_id
from .outputs import common_folder

__all__ = ["volume_datalist", "volume_input_root", "folder_datalist", "split_ids", "split_datalist", "image_datalist"]

_GLOB_CHARACTERS = "*?["


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


DEFAULT_IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def folder_datalist(
    dataset_dir: str | os.PathLike,
    layout: str | DatasetLayout = "isbi",
    ids: Sequence[int | str] | str | None = None,
    with_labels: bool = True,
) -> list[dict]:
    """List a dataset folder as ``[{"image": path, "label": path, "id": id}, ...]``, sorted naturally by id.

    Args:
        dataset_dir: dataset folder, e.g. ``../shared/data/isbi2012_em``.
        layout: registered layout name (see :data:`LAYOUTS`) or a :class:`DatasetLayout`.
        ids: ids to keep, ints or strings (``[0, "1"]``), in any order; None or ``"all"`` keeps the whole
            folder (``"all"`` is what a bundle's command line passes: ``--val_ids all``).
        with_labels: add the ``"label"`` key and require every image to have its label.

    Returns:
        One dict per sample with absolute path strings; ``"id"`` is an int for numeric ids, else the stem.

    Raises:
        DataValidationError: the folder is missing, holds no image matching the layout, an image has no
            label, or requested ids are absent.
    """
    if isinstance(ids, str):
        if ids != "all":
            raise ValueError(f"ids must be a list of ids, None or 'all', got {ids!r}.")
        ids = None
    layout = get_layout(layout)
    root = Path(os.path.abspath(Path(dataset_dir).expanduser()))
    if not root.is_dir():
        raise DataValidationError(f"dataset folder {root} does not exist (layout {layout.name!r}).")
    if with_labels and layout.label_pattern is None:
        raise ValueError(f"layout {layout.name!r} has no label pattern; call with with_labels=False.")

    found: dict[str, tuple[int | str, str, Path]] = {}
    for image_path in root.glob(layout.image_glob):
        raw_id = layout.extract_id(image_path.relative_to(root).as_posix())
        if raw_id is None or not image_path.is_file():
            continue
        sample_id = normalise_id(raw_id)
        found[str(sample_id)] = (sample_id, raw_id, image_path)
    if not found:
        raise DataValidationError(
            f"empty dataset: no image matching {(root / layout.image_pattern).as_posix()} "
            f"(glob {layout.image_glob!r}, layout {layout.name!r}) in {root}."
        )

    if ids is None:
        selected = sorted(found, key=natural_sort_key)
    else:
        if isinstance(ids, (str, int)):
            ids = [ids]
        requested = [str(normalise_id(str(sample_id))) for sample_id in ids]
        missing = [sample_id for sample_id, key in zip(ids, requested, strict=True) if key not in found]
        if missing:
            available = sorted(found, key=natural_sort_key)
            raise DataValidationError(
                f"ids {format_values(missing)} not found in {root}: no {layout.image_pattern} for them "
                f"(layout {layout.name!r}); available ids: {format_values(available)}."
            )
        selected = sorted(dict.fromkeys(requested), key=natural_sort_key)

    datalist = []
    problems = []
    for key in selected:
        sample_id, raw_id, image_path = found[key]
        item: dict = {"image": str(image_path), "id": sample_id}
        if with_labels:
            label_path = layout.label_path(root, raw_id)
            if not label_path.is_file():
                problems.append(f"image {image_path} has no label: expected {label_path}")
            item["label"] = str(label_path)
        datalist.append(item)
    if problems:
        raise problems_error(problems, f"{len(problems)} image(s) without label in {root}")
    return datalist


def split_ids(
    all_ids: Sequence[int | str],
    val_ids: Sequence[int | str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[list, list]:
    """Deterministic train/validation split of sample ids.

    Args:
        all_ids: every id of the dataset (e.g. ``[d["id"] for d in folder_datalist(...)]``).
        val_ids: explicit validation ids (matched as strings, so ``3`` and ``"3"`` are the same id);
            when given, ``val_fraction`` and ``seed`` are ignored.
        val_fraction: share of ids drawn for validation, in [0, 1); at least one id when > 0.
        seed: seed of the random draw, so the same call always gives the same split.

    Returns:
        ``(train_ids, val_ids)``, both in the order of ``all_ids``, elements taken from ``all_ids``.
    """
    all_ids = list(all_ids)
    keys = [str(sample_id) for sample_id in all_ids]
    if len(set(keys)) != len(keys):
        duplicates = sorted({key for key in keys if keys.count(key) > 1}, key=natural_sort_key)
        raise ValueError(f"all_ids holds duplicate ids {duplicates}.")
    if val_ids is not None:
        if isinstance(val_ids, (str, int)):
            val_ids = [val_ids]
        val_keys = {str(sample_id) for sample_id in val_ids}
        missing = sorted(val_keys - set(keys), key=natural_sort_key)
        if missing:
            raise ValueError(f"validation ids {missing} are not among the dataset ids {format_values(keys)}.")
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
        n_val = 0 if val_fraction == 0 else max(1, int(round(val_fraction * len(all_ids))))
        if n_val >= len(all_ids):
            raise ValueError(
                f"cannot split {len(all_ids)} id(s) with val_fraction={val_fraction}: no training id left."
            )
        chosen = np.random.default_rng(seed).permutation(len(all_ids))[:n_val]
        val_keys = {keys[index] for index in chosen}
    train = [sample_id for sample_id, key in zip(all_ids, keys, strict=True) if key not in val_keys]
    val = [sample_id for sample_id, key in zip(all_ids, keys, strict=True) if key in val_keys]
    if not train:
        raise ValueError("the validation ids cover the whole dataset: no training id left.")
    return train, val


def split_datalist(
    datalist: Sequence[dict],
    val_ids: Sequence[int | str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[list[dict], list[dict]]:
    """Split a :func:`folder_datalist` result by its ``"id"`` keys with :func:`split_ids`."""
    if any("id" not in item for item in datalist):
        raise ValueError("split_datalist needs an 'id' key in every item (use folder_datalist).")
    train_ids, _ = split_ids([item["id"] for item in datalist], val_ids, val_fraction, seed)
    train_keys = {str(sample_id) for sample_id in train_ids}
    train = [item for item in datalist if str(item["id"]) in train_keys]
    val = [item for item in datalist if str(item["id"]) not in train_keys]
    return train, val


def _has_glob_characters(text: str) -> bool:
    return any(char in text for char in "*?[")


def image_datalist(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    extensions: Sequence[str] = DEFAULT_IMAGE_EXTENSIONS,
    recursive: bool = False,
) -> list[dict]:
    """Inference inputs as ``[{"image": path}, ...]`` from a folder, a file, a glob or a list of them.

    Args:
        path_or_paths: a folder (its files with one of ``extensions``), a single file (taken whatever its
            extension), a glob pattern (``"data/*.png"``, ``**`` with ``recursive``) or a list of those.
        extensions: file name endings kept from folders and globs (case-insensitive).
        recursive: also list sub-folders of folders, and let ``**`` in globs span folders.

    Returns:
        Absolute path strings, folder contents sorted naturally, duplicates removed, order of inputs kept.

    Raises:
        DataValidationError: a path is missing, or nothing matches.
    """
    if isinstance(path_or_paths, (str, os.PathLike)):
        path_or_paths = [path_or_paths]
    if len(path_or_paths) == 0:
        raise DataValidationError("image_datalist: no input path given.")
    suffixes = tuple(("" if ext.startswith(".") else ".") + ext.lower() for ext in extensions)

    def keep(path: Path) -> bool:
        return path.is_file() and path.name.lower().endswith(suffixes)

    paths: list[Path] = []
    for entry in path_or_paths:
        text = os.path.expanduser(os.fspath(entry))
        path = Path(text)
        if path.is_dir():
            candidates = path.rglob("*") if recursive else path.iterdir()
            matches = sorted(
                (item for item in candidates if keep(item)), key=lambda item: natural_sort_key(item.as_posix())
            )
            if not matches:
                raise DataValidationError(
                    f"no image with extension {list(suffixes)} in folder {path.resolve()}"
                    + ("" if recursive else " (sub-folders not searched; use recursive=True)")
                    + "."
                )
            paths.extend(matches)
        elif path.is_file():
            paths.append(path)
        elif _has_glob_characters(text):
            matches = sorted(
                (Path(item) for item in globlib.glob(text, recursive=recursive) if keep(Path(item))),
                key=lambda item: natural_sort_key(item.as_posix()),
            )
            if not matches:
                raise DataValidationError(f"glob {text!r} matches no image file with extension {list(suffixes)}.")
            paths.extend(matches)
        else:
            raise DataValidationError(f"input image path {path.resolve()} does not exist.")
    unique = dict.fromkeys(os.path.abspath(path) for path in paths)
    return [{"image": path} for path in unique]
