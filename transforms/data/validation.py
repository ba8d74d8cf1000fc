"""Datalist validation: every file readable, consistent shapes, channels and label values."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..io.images import ImageHeader, read_image_array, read_image_header
from ..utils import MAX_REPORTED_VALUES, DataValidationError, as_python, format_values, problems_error

__all__ = ["LABEL_KINDS", "DatalistSummary", "check_datalist", "validate_datalist"]

logger = logging.getLogger(__name__)

LABEL_KINDS = ("binary", "instances", None)


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
                f"label {path} has unexpected value(s) {format_values((unexpected))}; "
                f"expected only {format_values((label_values))}"
            )
    elif label_kind == "binary":
        if values.size > 2 or not (np.isin(values, (0, 1)).all() or np.isin(values, (0, 255)).all()):
            problems.append(
                f"label {path} is not binary: values {format_values((values))}; "
                "expected a subset of {0, 1} or {0, 255} (or pass label_values)"
            )
    if label_kind == "instances":
        if values.dtype.kind == "f":
            fractional = values[~np.isfinite(values) | (np.mod(values, 1) != 0)]
            if fractional.size:
                problems.append(
                    f"instance label {path} has non-integer value(s) {format_values((fractional))}; "
                    "instance ids must be integers"
                )
        negative = values[values < 0]
        if negative.size:
            problems.append(
                f"instance label {path} has negative id(s) {format_values((negative))}; "
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
            f"{format_values(accepted)}"
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
                        summary.label_values.update(as_python(value) for value in values[np.isfinite(values)])
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
        raise problems_error(problems, f"{len(problems)} problem(s) in a datalist of {len(datalist)} item(s)")
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
