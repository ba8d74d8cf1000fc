"""Reading and writing: 2D image headers and pixels, DICOM series and NIfTI checks, the CT volume reader, the
NIfTI writer and DICOM SEG output."""

from .ct_volume import CTVolumeReader, load_ct_volume
from .dicom import DicomSeriesInfo, check_dicom_series, slice_normal
from .dicom_seg import INFECTION_SEGMENT_LABEL, SaveDicomSegd, dicom_frames_from_volume, write_dicom_seg
from .images import read_image_array, read_image_header, unreadable_image_message
from .loading import CheckedLoadImaged
from .nifti import NIFTI_SUFFIXES, VolumeNiftiWriter, check_nifti_volume, is_nifti_path, volume_name_formatter

__all__ = [
    "CTVolumeReader",
    "load_ct_volume",
    "DicomSeriesInfo",
    "slice_normal",
    "check_dicom_series",
    "INFECTION_SEGMENT_LABEL",
    "dicom_frames_from_volume",
    "write_dicom_seg",
    "SaveDicomSegd",
    "read_image_header",
    "read_image_array",
    "CheckedLoadImaged",
    "unreadable_image_message",
    "NIFTI_SUFFIXES",
    "is_nifti_path",
    "check_nifti_volume",
    "volume_name_formatter",
    "VolumeNiftiWriter",
]
