"""``LoadImaged`` whose reader failures name the file and say what the bundle reads."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any

from monai.transforms import LoadImaged

from ..utils import DataValidationError
from .images import unreadable_image_message

__all__ = ["CheckedLoadImaged"]

# what each reader of the bundles decodes, for the message
_READER_KINDS = {
    "PILReader": "PNG, JPEG, TIFF",
    "CTVolumeReader": "NIfTI volume, DICOM series folder",
    "PydicomReader": "DICOM",
    "NibabelReader": "NIfTI",
    "ITKReader": "NIfTI, DICOM, NRRD, MHA",
    "NumpyReader": "NPY, NPZ",
}


class CheckedLoadImaged(LoadImaged):
    """MONAI ``LoadImaged`` (same arguments) that turns a reader failure into a :class:`DataValidationError`
    naming the file and the kinds of image the configured readers read, instead of the last error of MONAI's
    fallback reader chain (for a broken ``.png``: ``pydicom.errors.InvalidDicomError``).

    It stays a ``LoadImaged``, so MONAI Label, which wraps the bundle's ``LoadImaged`` in its own loader, still
    uses it for the image paths it is sent.

    Args:
        accepted: the kinds of image named in the message; default: from the ``reader`` argument.
        args, kwargs: those of ``LoadImaged``.
    """

    def __init__(self, *args: Any, accepted: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if accepted is None:
            readers = kwargs.get("reader", args[1] if len(args) > 1 else None)
            readers = readers if isinstance(readers, (list, tuple)) else [readers]
            names = [reader if isinstance(reader, str) else type(reader).__name__ for reader in readers if reader]
            kinds = [_READER_KINDS.get(name, name) for name in names]
            accepted = ", ".join(kinds) if kinds else "any format MONAI's readers know"
        self.accepted = accepted

    def __call__(self, data: Mapping[Hashable, Any], reader: Any = None) -> dict[Hashable, Any]:
        try:
            return super().__call__(data, reader)
        except DataValidationError:
            raise
        except Exception as error:
            paths = [data[key] for key in self.key_iterator(dict(data)) if isinstance(data[key], (str, os.PathLike))]
            if not paths:
                raise
            missing = [path for path in paths if not os.path.exists(path)]
            if missing:
                raise DataValidationError(f"image file not found: {missing[0]}") from error
            broken = [path for path in paths if os.path.isfile(path) and os.path.getsize(path) == 0] or paths
            reason = str(error).strip().splitlines()[0] if not str(error).startswith("LoadImage") else ""
            raise DataValidationError(unreadable_image_message(broken[0], self.accepted, reason)) from error
