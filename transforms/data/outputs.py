"""Where a bundle's inference writes its outputs when the inputs share file names.

MONAI's ``SaveImaged`` names an output after the input file's stem; images that share a name in different
folders (the Usiigaci frames are all ``setN/raw.tif``) would overwrite each other's outputs. With
``data_root_dir`` set to the folder the inputs were listed from, ``SaveImaged`` keeps their sub-folders instead
(``out/set29/raw_mask.png``). :func:`common_input_root` finds that folder from the bundle's ``input_images``
argument alone, without listing or reading files, so that a config can evaluate it even where the inputs are
not available (e.g. when MONAI Label instantiates the post-processing of ``inference.json``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

__all__ = ["common_input_root", "common_folder"]

_GLOB_CHARACTERS = "*?["


def _input_folder(entry: str | os.PathLike) -> str:
    text = os.path.expanduser(os.fspath(entry))
    if any(char in text for char in _GLOB_CHARACTERS):
        parts = text.replace("\\", "/").split("/")
        fixed = []
        for part in parts:
            if any(char in part for char in _GLOB_CHARACTERS):
                break
            fixed.append(part)
        text = "/".join(fixed) or "."
        return os.path.abspath(text)
    path = os.path.abspath(text)
    return path if os.path.isdir(path) else os.path.dirname(path)


def common_input_root(path_or_paths: str | os.PathLike | Sequence[str | os.PathLike]) -> str:
    """Deepest folder holding every input of an inference run, from its folder/file/glob specification.

    Args:
        path_or_paths: what ``transforms.image_datalist`` accepts: a folder, a file, a glob pattern or a
            list of those.

    Returns:
        Absolute folder path: the folder itself for a folder, the file's folder for a file, the part before the
        first wildcard for a glob (``data/set*/raw.tif`` -> ``data``), the common parent of several entries;
        ``""`` (no sub-folders kept) for an empty list or entries without a common parent (different drives).
    """
    return common_folder(path_or_paths, _input_folder)


def common_folder(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike], folder_of: Callable[[str | os.PathLike], str]
) -> str:
    """Common parent of ``folder_of(entry)`` over the entries (one path or a list); ``""`` for an empty list or
    entries without a common parent (different drives)."""
    entries = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    folders = [folder_of(entry) for entry in entries]
    if not folders:
        return ""
    try:
        return os.path.commonpath(folders)
    except ValueError:
        return ""
