"""DICOM SEG output: a predicted mask stored as a segmentation object referencing its source slices."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import FolderLayout, MetaTensor
from monai.transforms import MapTransform

from .dicom import check_dicom_series, slice_normal
from .nifti import volume_name_formatter

__all__ = ["INFECTION_SEGMENT_LABEL", "dicom_frames_from_volume", "write_dicom_seg", "SaveDicomSegd"]

logger = logging.getLogger(__name__)

INFECTION_SEGMENT_LABEL = "COVID-19 infection"

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
        order = np.argsort(positions @ slice_normal(orientation), kind="stable")
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
