"""MONAI Label studies folders of real images (and labels) of the bundles' datasets, and CT volumes as NIfTI."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg_tools.bundles import bundle_names
from medseg_tools.monailabel.environment import DEFAULT_WORK_DIR

from transforms import BUNDLE_DATASETS, data_root

#: the real CT series the LG-Net bundle's demo studies get as a NIfTI volume (relative to the data folder)
CT_SERIES = Path("volumes") / "ct_3slice_dicom" / "ct-3slice"


def _crop(array: Any, size: int | None) -> Any:
    return array if not size else array[:size, :size]


def _write_2d_study(studies: Path, name: str, image: Path, label: Path | None, crop: int | None, suffix: str) -> None:
    import numpy as np
    import tifffile
    from PIL import Image

    with Image.open(image) as source:
        pixels = np.asarray(source)
    if suffix == ".tif":
        tifffile.imwrite(studies / f"{name}.tif", _crop(pixels, crop))
    elif crop:
        Image.fromarray(_crop(pixels, crop)).save(studies / f"{name}{suffix}")
    else:
        shutil.copyfile(image, studies / f"{name}{suffix}")
    if label is not None:
        with Image.open(label) as source:
            Image.fromarray(_crop(np.asarray(source), crop)).save(studies / "labels" / "final" / f"{name}.png")


def write_nifti_volume(series: str | os.PathLike, path: str | os.PathLike) -> Path:
    """A CT volume (DICOM series folder or NIfTI file, read with ``transforms.CTVolumeReader``: checked, in HU) as a
    NIfTI file with the volume's affine, the form MONAI Label's local datastore holds volumes in."""
    import nibabel as nib
    import numpy as np

    from transforms import load_ct_volume

    volume = load_ct_volume(series)
    values = volume[0].numpy()
    dtype = np.int16 if np.array_equal(values, np.round(values)) and np.abs(values).max() < 2**15 else np.float32
    path = Path(path)
    nib.save(nib.Nifti1Image(values.astype(dtype), np.asarray(volume.affine, dtype=np.float64)), str(path))
    return path


def demo_studies(
    studies_dir: str | os.PathLike = DEFAULT_WORK_DIR / "studies",
    bundles: str | Sequence[str] = "all",
    images: int = 2,
    crop: int = 256,
    labels: bool | None = None,
    data: str | os.PathLike | None = None,
) -> str:
    """Writes a MONAI Label studies folder of real images (and labels) for the chosen bundles.

    Per bundle, ``images`` images of its dataset (see :data:`BUNDLE_DATASETS`), named ``<bundle>_<id>``: ISBI EM
    PNGs, phase-contrast 16-bit TIFFs and H&E RGB TIFFs cropped to ``crop`` x ``crop`` pixels (top left), the
    COVID CT JPEG slices whole, and for the LG-Net bundle also ``lgnet_covid_ct_segmentation_ct_volume.nii.gz``,
    the real 3-slice CT series of ``volumes/`` (no label). Labels go to ``labels/final/<name>.png`` in the dataset's
    own values, which the bundles' training configs read: ISBI 0/255, phase-contrast instance ids, MoNuSeg
    gray+alpha masks, COVID 0/255.

    Args:
        studies_dir: the folder (created; existing files of the same names are replaced).
        bundles: ``"all"``, a comma-separated string or a list of bundle names.
        images: images per bundle (at least 1; training needs 2, one for validation).
        crop: side of the crops (0: whole images).
        labels: write the final labels; default: only when one bundle is chosen, because MONAI Label trains a
            model on every labelled image of the studies folder, whatever bundle it was meant for.
        data: the data folder (default ``$MEDSEG_DATA``, else ``../shared/data``).

    Returns:
        The studies folder's path.

    Raises:
        ValueError: unknown bundles, ``images`` < 1 or ``crop`` < 0.
        FileNotFoundError: a dataset missing from the data folder.
    """
    names = bundle_names(bundles)
    if int(images) < 1:
        raise ValueError(f"images must be at least 1, got {images}.")
    if int(crop) < 0:
        raise ValueError(f"crop must be a side in pixels, or 0 for whole images; got {crop}.")
    write_labels = len(names) == 1 if labels is None else bool(labels)

    root = Path(data).expanduser().resolve() if data else data_root()
    studies = Path(studies_dir).resolve()
    (studies / "labels" / "final").mkdir(parents=True, exist_ok=True)
    for name in names:
        dataset = root / BUNDLE_DATASETS[name]
        if not dataset.is_dir():
            raise FileNotFoundError(
                f"dataset {BUNDLE_DATASETS[name]!r} of {name} not found at {dataset} (set MEDSEG_DATA)."
            )
        for image, label, suffix, size in _dataset_items(name, dataset, int(images), crop):
            stem = f"{name}_{image.parent.name if name == 'attention_resunet_cell_segmentation' else image.stem}"
            _write_2d_study(studies, stem, image, label if write_labels else None, size, suffix)
        if name == "lgnet_covid_ct_segmentation":
            series = root / CT_SERIES
            if not series.is_dir():
                raise FileNotFoundError(f"CT series {series} not found (set MEDSEG_DATA).")
            write_nifti_volume(series, studies / f"{name}_ct_volume.nii.gz")
    return str(studies)


def _dataset_items(bundle: str, dataset: Path, count: int, crop: int) -> list[tuple[Path, Path, str, int | None]]:
    """``(image, label, study suffix, crop)`` of the first ``count`` images of a bundle's dataset."""

    def first(paths: Sequence[Path]) -> list[Path]:
        found = sorted(paths, key=lambda path: _natural_key(path.stem if path.suffix else path.name))
        if len(found) < count:
            raise FileNotFoundError(f"{dataset} has {len(found)} image(s), {count} needed.")
        return found[:count]

    if bundle == "unet_em_segmentation":
        return [
            (path, dataset / "label" / path.name, ".png", crop)
            for path in first(list((dataset / "image").glob("*.png")))
        ]
    if bundle == "attention_resunet_cell_segmentation":
        folders = first([path for path in dataset.glob("set*") if (path / "raw.tif").is_file()])
        return [(folder / "raw.tif", folder / "instances_ids.png", ".tif", crop) for folder in folders]
    if bundle == "mcsa_unet_nuclei_segmentation":
        tiles = first(list((dataset / "images").glob("*.tif")))
        return [(path, dataset / "masks" / f"{path.stem}.png", ".tif", crop) for path in tiles]
    slices = first(list((dataset / "Imgs").glob("*.jpg")))
    return [(path, dataset / "GT" / f"{path.stem}.png", ".jpg", None) for path in slices]


def _natural_key(name: str) -> tuple:
    """Natural order (``set2`` before ``set10``), the order the datasets' ids are listed in."""
    from transforms import natural_sort_key

    return natural_sort_key(name)
