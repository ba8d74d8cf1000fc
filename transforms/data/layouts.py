"""Folder layouts of the datasets: relative image/label path patterns with an ``{id}`` placeholder."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["normalise_id", "DatasetLayout", "LAYOUTS", "register_layout", "get_layout"]

ID_PLACEHOLDER = "{id}"


def normalise_id(raw_id: str) -> int | str:
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
