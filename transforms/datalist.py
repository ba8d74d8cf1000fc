"""Dataset listing and validation for the bundles' ``datalist`` expressions.

Bundle configs build their MONAI datalists (lists of ``{"image": path, "label": path}`` dicts) with
:func:`folder_datalist` (training/evaluation folders in a registered layout) or :func:`image_datalist`
(inference inputs), and wrap them in :func:`validate_datalist` so that a missing, corrupt or
inconsistent file stops the run with a message naming that file before training starts, instead of a
shape error deep inside a data loader worker (config excerpt)::

    "train_ids": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
    "train_files": "$transforms.datalist.folder_datalist(@dataset_dir, 'isbi', ids=@train_ids)",
    "train_datalist": "$transforms.datalist.validate_datalist(@train_files, label_values=[0, 255], label_kind='binary')",

Folder layouts are kept in a small registry (:data:`LAYOUTS`, :func:`register_layout`): a layout is a
pair of relative path patterns with an ``{id}`` placeholder, e.g. ``image/{id}.png`` and
``label/{id}.png`` for the ISBI 2012 EM set.
"""

from __future__ import annotations

import glob as globlib
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "DataValidationError",
    "DatasetLayout",
    "DatalistSummary",
    "LAYOUTS",
    "register_layout",
    "get_layout",
    "natural_sort_key",
    "folder_datalist",
    "split_ids",
    "split_datalist",
    "image_datalist",
    "read_image_array",
    "read_image_header",
    "check_datalist",
    "validate_datalist",
]

logger = logging.getLogger(__name__)

ID_PLACEHOLDER = "{id}"
TIFF_SUFFIXES = (".tif", ".tiff")
DEFAULT_IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
LABEL_KINDS = ("binary", "instances", None)
# Lines of problems quoted in one error message; the rest are counted, the full list is on the exception.
MAX_REPORTED_PROBLEMS = 20
MAX_REPORTED_VALUES = 12


class DataValidationError(ValueError):
    """A dataset problem found before training: the message names the offending file(s) and the problem.

    Args:
        message: human-readable description.
        problems: one line per problem when several files were checked at once (``message`` quotes the
            first :data:`MAX_REPORTED_PROBLEMS` of them).
    """

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        problems = list(problems) if problems is not None else [message]
        # both arguments in ``args``, so that the error survives pickling (e.g. from a data loader worker)
        super().__init__(message, problems)
        self.problems = problems

    def __str__(self) -> str:
        return str(self.args[0])


def natural_sort_key(value: object) -> tuple:
    """Sort key that orders embedded integers numerically: ``"2" < "10"``, ``"set2" < "set10"``."""
    parts = re.split(r"(\d+)", str(value))
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in parts if part != "")


def _normalise_id(raw_id: str) -> int | str:
    """Integer when the id is a plain decimal number (``"7"`` -> 7), else the string stem itself."""
    return int(raw_id) if raw_id.isdigit() and str(int(raw_id)) == raw_id else raw_id


@dataclass(frozen=True)
class DatasetLayout:
    """Relative file patterns of one dataset folder layout.

    Args:
        name: registry key.
        image_pattern: image path relative to the dataset folder, with one ``{id}`` placeholder,
            e.g. ``"image/{id}.png"`` or ``"set{id}/raw.tif"``.
        label_pattern: label path pattern with the same placeholder, or None for image-only layouts.
    """

    name: str
    image_pattern: str
    label_pattern: str | None = None
    _id_regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for kind, pattern in (("image", self.image_pattern), ("label", self.label_pattern)):
            if pattern is None and kind == "label":
                continue
            if not isinstance(pattern, str) or pattern.count(ID_PLACEHOLDER) != 1:
                raise ValueError(
                    f"layout {self.name!r}: {kind} pattern must be a relative path with exactly one "
                    f"{ID_PLACEHOLDER} placeholder, got {pattern!r}."
                )
            if os.path.isabs(pattern) or any(char in pattern.replace(ID_PLACEHOLDER, "") for char in "*?["):
                raise ValueError(
                    f"layout {self.name!r}: {kind} pattern must be relative and free of glob characters, "
                    f"got {pattern!r}."
                )
        prefix, suffix = self.image_pattern.split(ID_PLACEHOLDER)
        # The id never spans folders, so "set{id}/raw.tif" cannot match "set1/extra/raw.tif".
        regex = re.compile(re.escape(prefix) + r"(?P<id>[^/]+?)" + re.escape(suffix) + r"\Z")
        object.__setattr__(self, "_id_regex", regex)

    @property
    def image_glob(self) -> str:
        """Glob pattern, relative to the dataset folder, that lists the layout's images."""
        return self.image_pattern.replace(ID_PLACEHOLDER, "*")

    def extract_id(self, relative_image_path: str) -> str | None:
        """Raw id string of an image path relative to the dataset folder (``/`` separators), None if no match."""
        match = self._id_regex.match(relative_image_path)
        return match.group("id") if match else None

    def image_path(self, dataset_dir: str | os.PathLike, sample_id: object) -> Path:
        """Image path of ``sample_id`` inside ``dataset_dir``."""
        return Path(dataset_dir) / self.image_pattern.replace(ID_PLACEHOLDER, str(sample_id))

    def label_path(self, dataset_dir: str | os.PathLike, sample_id: object) -> Path:
        """Label path of ``sample_id`` inside ``dataset_dir``."""
        if self.label_pattern is None:
            raise ValueError(f"layout {self.name!r} has no label pattern.")
        return Path(dataset_dir) / self.label_pattern.replace(ID_PLACEHOLDER, str(sample_id))


LAYOUTS: dict[str, DatasetLayout] = {}


def register_layout(
    name: str, image_pattern: str, label_pattern: str | None = None, overwrite: bool = False
) -> DatasetLayout:
    """Add a folder layout to :data:`LAYOUTS` and return it.

    Args:
        name: registry key used as ``layout=`` in :func:`folder_datalist`.
        image_pattern: relative image path with one ``{id}`` placeholder, e.g. ``"Imgs/{id}.jpg"``.
        label_pattern: relative label path with one ``{id}`` placeholder, or None (images only).
        overwrite: replace an existing layout of the same name instead of raising.

    Raises:
        ValueError: the name is taken (and ``overwrite`` is False) or a pattern is malformed.
    """
    if name in LAYOUTS and not overwrite:
        raise ValueError(f"layout {name!r} is already registered ({LAYOUTS[name]}); pass overwrite=True to replace it.")
    layout = DatasetLayout(name=name, image_pattern=image_pattern, label_pattern=label_pattern)
    LAYOUTS[name] = layout
    return layout


register_layout("isbi", "image/{id}.png", "label/{id}.png")
register_layout("phc", "set{id}/raw.tif", "set{id}/instances_ids.png")
register_layout("covid", "Imgs/{id}.jpg", "GT/{id}.png")
register_layout("covid_multiclass", "Imgs/{id}.jpg", "GT-multiclass/{id}.png")
register_layout("monuseg", "images/{id}.tif", "masks/{id}.png")


def get_layout(layout: str | DatasetLayout) -> DatasetLayout:
    """The registered layout of that name (a :class:`DatasetLayout` is returned as is)."""
    if isinstance(layout, DatasetLayout):
        return layout
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; registered layouts: {sorted(LAYOUTS)} (see register_layout).")
    return LAYOUTS[layout]


def _as_python(value: object) -> object:
    if isinstance(value, (np.integer, np.floating, float)):
        return int(value) if float(value).is_integer() else float(value)
    return value


def _format_values(values: Sequence | np.ndarray) -> str:
    """``[a, b, ...]`` with at most MAX_REPORTED_VALUES entries, numpy scalars shown as plain numbers."""
    shown = ", ".join(str(_as_python(value)) for value in values[:MAX_REPORTED_VALUES])
    return f"[{shown}, ... ({len(values)} in all)]" if len(values) > MAX_REPORTED_VALUES else f"[{shown}]"


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
        sample_id = _normalise_id(raw_id)
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
        requested = [str(_normalise_id(str(sample_id))) for sample_id in ids]
        missing = [sample_id for sample_id, key in zip(ids, requested, strict=True) if key not in found]
        if missing:
            available = sorted(found, key=natural_sort_key)
            raise DataValidationError(
                f"ids {_format_values(missing)} not found in {root}: no {layout.image_pattern} for them "
                f"(layout {layout.name!r}); available ids: {_format_values(available)}."
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
        raise _problems_error(problems, f"{len(problems)} image(s) without label in {root}")
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
            raise ValueError(f"validation ids {missing} are not among the dataset ids {_format_values(keys)}.")
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


# ----------------------------------------------------------------------------------------------------------
# Reading


_PIL_MODE_DTYPES = {
    "1": np.dtype(bool),
    "L": np.dtype(np.uint8),
    "P": np.dtype(np.uint8),
    "LA": np.dtype(np.uint8),
    "PA": np.dtype(np.uint8),
    "RGB": np.dtype(np.uint8),
    "RGBA": np.dtype(np.uint8),
    "RGBX": np.dtype(np.uint8),
    "CMYK": np.dtype(np.uint8),
    "YCbCr": np.dtype(np.uint8),
    "LAB": np.dtype(np.uint8),
    "HSV": np.dtype(np.uint8),
    "I": np.dtype(np.int32),
    "F": np.dtype(np.float32),
    "I;16": np.dtype(np.uint16),
    "I;16L": np.dtype(np.uint16),
    "I;16B": np.dtype(np.uint16),
    "I;16N": np.dtype(np.uint16),
}


@dataclass(frozen=True)
class ImageHeader:
    """What a file header says about an image: spatial size (H, W), channel count, dtype, format details."""

    spatial_shape: tuple[int, int]
    channels: int
    dtype: np.dtype
    description: str


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in TIFF_SUFFIXES


def _tiff_layout(shape: Sequence[int], axes: str) -> tuple[tuple[int, int], int, list[int]]:
    """(spatial shape, channel count, order of dims that puts channels last) of a TIFF series."""
    if "Y" in axes and "X" in axes and len(axes) == len(shape):
        spatial_dims = [axes.index("Y"), axes.index("X")]
    else:  # unknown axes: the last two dims, or the first two when a small samples dim comes last
        ndim = len(shape)
        spatial_dims = [ndim - 3, ndim - 2] if ndim == 3 and shape[-1] <= 4 else [ndim - 2, ndim - 1]
    other_dims = [dim for dim in range(len(shape)) if dim not in spatial_dims]
    channels = int(np.prod([shape[dim] for dim in other_dims])) if other_dims else 1
    return (int(shape[spatial_dims[0]]), int(shape[spatial_dims[1]])), channels, spatial_dims + other_dims


def _tiff_header(path: Path) -> ImageHeader:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape, axes, dtype = tuple(series.shape), series.axes, np.dtype(series.dtype)
    spatial, channels, _ = _tiff_layout(shape, axes)
    return ImageHeader(spatial, channels, dtype, f"TIFF {dtype} shape {shape} axes {axes}")


def _tiff_array(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        array, axes = series.asarray(), series.axes
    _, _, order = _tiff_layout(array.shape, axes)
    array = np.transpose(array, order)
    return array.reshape(array.shape[:2] + (-1,)) if array.ndim > 3 else array


def _pillow_header(path: Path) -> ImageHeader:
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        mode, image_format, channels = image.mode, image.format, len(image.getbands())
    dtype = _PIL_MODE_DTYPES.get(mode, np.dtype(np.uint8))
    return ImageHeader((height, width), channels, dtype, f"{image_format} mode {mode}")


def _pillow_array(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
            # Pillow's array interface of the I;16 variants is endian-specific: normalise to native uint16.
            return np.array(image).astype(np.uint16)
        if image.mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
            image = image.convert("RGB")
        return np.array(image)


def _read_with(path: str | os.PathLike, tiff_reader, pillow_reader):
    """Run the reader for the file type, turning any reader exception into a DataValidationError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"file not found: {path}")
    try:
        if not _is_tiff(path):
            return pillow_reader(path)
        try:
            return tiff_reader(path)
        except Exception as tiff_error:
            # tifffile needs the optional imagecodecs package for LZW/JPEG-compressed TIFFs (MONuSeg's are
            # LZW); Pillow decodes those natively, so it is the fallback before giving up.
            try:
                return pillow_reader(path)
            except Exception:
                raise tiff_error from None
    except Exception as error:  # readers raise many types (OSError, ValueError, SyntaxError, zlib.error...)
        raise DataValidationError(f"cannot read image file {path}: {type(error).__name__}: {error}") from error


def read_image_header(path: str | os.PathLike) -> ImageHeader:
    """Spatial size, channel count and dtype of a 2D image from its header, without decoding pixels.

    TIFF files are read with tifffile (Pillow as fallback), everything else (PNG, JPEG, ...) with Pillow.

    Raises:
        DataValidationError: the file is missing or its header cannot be parsed; the message names the file.
    """
    return _read_with(path, _tiff_header, _pillow_header)


def read_image_array(path: str | os.PathLike) -> np.ndarray:
    """Decode a 2D image file to a numpy array, (H, W) or channel-last (H, W, C), keeping stored values.

    TIFF (8/16-bit, float) is read with tifffile, channel axes moved last, with Pillow as fallback for
    compressions that need the optional imagecodecs package. PNG/JPEG are read with Pillow: mode ``L`` and
    ``P`` (palette indices, as used by label maps) give uint8 (H, W), ``I;16`` uint16, ``I`` int32,
    ``F`` float32, ``LA``/``RGB``/``RGBA`` uint8 (H, W, C), ``1`` bool.

    Raises:
        DataValidationError: the file is missing, truncated or not an image; the message names the file.
    """
    return _read_with(path, _tiff_array, _pillow_array)


# ----------------------------------------------------------------------------------------------------------
# Validation


@dataclass
class DatalistSummary:
    """Statistics gathered by :func:`check_datalist`."""

    num_items: int = 0
    image_sizes: Counter = field(default_factory=Counter)
    image_channels: Counter = field(default_factory=Counter)
    image_dtypes: Counter = field(default_factory=Counter)
    num_labels: int = 0
    label_values: set = field(default_factory=set)

    def label_values_text(self) -> str:
        values = sorted(self.label_values)
        if not values:
            return "not read"
        if len(values) > MAX_REPORTED_VALUES:
            return f"{len(values)} distinct values in [{values[0]}, {values[-1]}]"
        return "{" + ", ".join(str(value) for value in values) + "}"

    def __str__(self) -> str:
        def counts(counter: Counter) -> str:
            return ", ".join(f"{key} ({count})" for key, count in counter.most_common())

        if len(self.image_sizes) > 4:
            heights, widths = zip(*(map(int, size.split("x")) for size in self.image_sizes), strict=True)
            sizes = f"{len(self.image_sizes)} distinct, H {min(heights)}-{max(heights)}, W {min(widths)}-{max(widths)}"
        else:
            sizes = counts(self.image_sizes)
        text = (
            f"{self.num_items} item(s); image size(s) HxW: {sizes}; "
            f"channels: {counts(self.image_channels)}; dtype(s): {counts(self.image_dtypes)}"
        )
        if self.num_labels:
            text += f"; {self.num_labels} label(s), values: {self.label_values_text()}"
        return text


def _unique_values(array: np.ndarray) -> np.ndarray:
    """Sorted distinct values; bincount for 8/16-bit labels is several times faster than np.unique."""
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype.kind == "u" and array.dtype.itemsize <= 2:
        return np.flatnonzero(np.bincount(array.ravel(), minlength=1)).astype(array.dtype)
    return np.unique(array)


def _check_label_values(
    path: str, values: np.ndarray, label_values: np.ndarray | None, label_kind: str | None
) -> list[str]:
    """Problems of one label file given its sorted distinct ``values`` (vectorised: soft labels have many)."""
    problems = []
    if label_values is not None:
        unexpected = values[~np.isin(values, label_values)]
        if unexpected.size:
            problems.append(
                f"label {path} has unexpected value(s) {_format_values((unexpected))}; "
                f"expected only {_format_values((label_values))}"
            )
    elif label_kind == "binary":
        if values.size > 2 or not (np.isin(values, (0, 1)).all() or np.isin(values, (0, 255)).all()):
            problems.append(
                f"label {path} is not binary: values {_format_values((values))}; "
                "expected a subset of {0, 1} or {0, 255} (or pass label_values)"
            )
    if label_kind == "instances":
        if values.dtype.kind == "f":
            fractional = values[~np.isfinite(values) | (np.mod(values, 1) != 0)]
            if fractional.size:
                problems.append(
                    f"instance label {path} has non-integer value(s) {_format_values((fractional))}; "
                    "instance ids must be integers"
                )
        negative = values[values < 0]
        if negative.size:
            problems.append(
                f"instance label {path} has negative id(s) {_format_values((negative))}; "
                "expected 0 = background and positive instance ids"
            )
    return problems


def _channel_problem(
    path: str, role: str, header: ImageHeader, expected: int | Sequence[int] | None, allow_rgb_to_gray: bool
) -> str | None:
    if expected is None:
        return None
    if not isinstance(expected, (int, np.integer)):  # accepted counts, e.g. [1, 2, 3, 4] when the loader converts
        accepted = sorted({int(count) for count in expected})
        if header.channels in accepted:
            return None
        return (
            f"{role} {path} has {header.channels} channel(s) ({header.description}), expected one of "
            f"{_format_values(accepted)}"
        )
    if header.channels == expected:
        return None
    if expected == 1 and allow_rgb_to_gray and header.channels in (3, 4):
        return None
    hint = ""
    if expected == 1 and header.channels in (3, 4):
        hint = " (convert it to grayscale, or pass allow_rgb_to_gray=True)"
    return f"{role} {path} has {header.channels} channel(s) ({header.description}), expected {expected}{hint}"


def check_datalist(
    datalist: Sequence[dict],
    image_channels: int | Sequence[int] | None = 1,
    label_values: Iterable[int | float] | None = None,
    label_kind: str | None = None,
    allow_rgb_to_gray: bool = False,
    check_sizes: bool = True,
    label_channels: int | Sequence[int] | None = 1,
    read_pixels: bool = True,
    image_key: str = "image",
    label_key: str = "label",
) -> DatalistSummary:
    """Check every file of a datalist once and return statistics; see :func:`validate_datalist`."""
    if label_kind not in LABEL_KINDS:
        raise ValueError(f"label_kind must be one of {LABEL_KINDS}, got {label_kind!r}.")
    if isinstance(datalist, dict) or not isinstance(datalist, Sequence):
        raise DataValidationError(f"a datalist must be a list of dicts, got {type(datalist).__name__}.")
    if len(datalist) == 0:
        raise DataValidationError("empty datalist: no image to train or evaluate on.")
    allowed_values = None if label_values is None else np.unique(np.asarray(list(label_values), dtype=np.float64))

    summary = DatalistSummary(num_items=len(datalist))
    problems: list[str] = []
    headers: dict[str, ImageHeader | None] = {}

    def inspect(path_value: object, role: str, expected_channels: int | Sequence[int] | None) -> ImageHeader | None:
        path = str(path_value)
        if path in headers:
            return headers[path]
        header = None
        try:
            header = read_image_header(path)
            is_label = role == "label"
            needs_values = is_label and (allowed_values is not None or label_kind is not None)
            needs_finite_check = not is_label and header.dtype.kind == "f"
            if read_pixels or needs_values or needs_finite_check:
                array = read_image_array(path)
                if needs_finite_check and not np.isfinite(array).all():
                    problems.append(
                        f"image {path} has {int(np.isnan(array).sum())} NaN and {int(np.isinf(array).sum())} "
                        "infinite value(s)"
                    )
                if needs_values:
                    values = _unique_values(array)
                    problems.extend(_check_label_values(path, values, allowed_values, label_kind))
                    if values.size <= 4096:  # keeps the summary cheap for soft (float) labels
                        summary.label_values.update(_as_python(value) for value in values[np.isfinite(values)])
            channel_problem = _channel_problem(
                path, role, header, expected_channels, allow_rgb_to_gray and not is_label
            )
            if channel_problem:
                problems.append(channel_problem)
        except DataValidationError as error:
            problems.append(str(error))
            header = None
        headers[path] = header
        return header

    for index, item in enumerate(datalist):
        if not isinstance(item, dict) or image_key not in item:
            problems.append(f"datalist item {index} has no {image_key!r} key: {item!r}")
            continue
        image_header = inspect(item[image_key], "image", image_channels)
        if image_header is not None:
            summary.image_sizes["x".join(map(str, image_header.spatial_shape))] += 1
            summary.image_channels[image_header.channels] += 1
            summary.image_dtypes[str(image_header.dtype)] += 1
        if label_key not in item:
            continue
        summary.num_labels += 1
        label_header = inspect(item[label_key], "label", label_channels)
        if check_sizes and image_header is not None and label_header is not None:
            if image_header.spatial_shape != label_header.spatial_shape:
                problems.append(
                    f"size mismatch: image {item[image_key]} is {image_header.spatial_shape[0]}x"
                    f"{image_header.spatial_shape[1]} (HxW) but label {item[label_key]} is "
                    f"{label_header.spatial_shape[0]}x{label_header.spatial_shape[1]}"
                )
    if problems:
        raise _problems_error(problems, f"{len(problems)} problem(s) in a datalist of {len(datalist)} item(s)")
    return summary


def validate_datalist(
    datalist: Sequence[dict],
    image_channels: int | Sequence[int] | None = 1,
    label_values: Iterable[int | float] | None = None,
    label_kind: str | None = None,
    allow_rgb_to_gray: bool = False,
    check_sizes: bool = True,
    label_channels: int | Sequence[int] | None = 1,
    read_pixels: bool = True,
) -> Sequence[dict]:
    """Check a datalist before training and return it unchanged, so configs can wrap it inline.

    Every file is opened once. Problems found in all items are gathered and raised together as one
    :class:`DataValidationError` naming each offending file: empty datalist, missing file, unreadable or
    corrupt file, wrong channel count, image/label spatial size mismatch, NaN/inf in float images,
    unexpected label values, non-binary labels, negative or non-integer instance ids. A one-line
    summary is logged at INFO level.

    Args:
        datalist: ``[{"image": path, "label": path (optional)}, ...]``.
        image_channels: expected image channel count (gray = 1, RGB = 3), or a list of accepted counts
            (e.g. ``[1, 2, 3, 4]`` when the loader converts gray/RGBA to RGB); None accepts any.
        label_values: the only values allowed in labels, e.g. ``{0, 255}`` for ISBI 2012; None = no list.
        label_kind: ``"binary"`` (at most two values, a subset of {0, 1} or {0, 255}, unless
            ``label_values`` is given), ``"instances"`` (integer ids >= 0), or None (no check).
        allow_rgb_to_gray: accept 3/4-channel images when ``image_channels`` is 1 (the loader converts).
        check_sizes: require image and label to have the same height and width.
        label_channels: expected label channel count, or a list of accepted counts (e.g. ``[1, 2]`` for masks
            stored as gray + alpha); None accepts any.
        read_pixels: decode every pixel so that truncated files are caught now (default); False reads
            only headers, except labels that need value checks and float images that need NaN checks.

    Returns:
        ``datalist`` itself.

    Raises:
        DataValidationError: at least one problem; ``error.problems`` holds them all.
    """
    summary = check_datalist(
        datalist,
        image_channels=image_channels,
        label_values=label_values,
        label_kind=label_kind,
        allow_rgb_to_gray=allow_rgb_to_gray,
        check_sizes=check_sizes,
        label_channels=label_channels,
        read_pixels=read_pixels,
    )
    logger.info("datalist validated: %s", summary)
    return datalist


def _problems_error(problems: list[str], headline: str) -> DataValidationError:
    if len(problems) == 1:
        return DataValidationError(problems[0], problems)
    shown = problems[:MAX_REPORTED_PROBLEMS]
    lines = [f"{headline}:"] + [f"  - {problem}" for problem in shown]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more (see error.problems)")
    return DataValidationError("\n".join(lines), problems)
