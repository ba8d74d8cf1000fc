"""CT volume input/output of the LG-Net bundle (``transforms/io/``, ``hounsfield.py``, ``inferers/slices.py``,
``configs/inference_volume.json``, an overlay of ``configs/inference.json``).

Real data: ``volumes/ct_3slice_dicom/ct-3slice`` (a 3-slice CT series, 512x512, slices 1 mm apart, instance numbers
1-3), ``volumes/monai_testing_data/CT_DICOM`` (4 slices of 16x16: one 202.5 mm away from three contiguous ones),
``volumes/nifti_ct`` (NIfTI volumes rescaled, not in HU). Damaged series are copies of those in ``tmp_path``.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import LoadImage, Orientation

from medseg_tools.runner import bundle_command, bundle_env, run_bundle
from tests.conftest import REPO_ROOT, require_dataset
from transforms import (
    AxialSliceInferer,
    CheckHounsfieldRange,
    CheckHounsfieldRanged,
    CTWindow,
    CTWindowd,
    DataValidationError,
    ResizedSliceNetwork,
    SpatialDimsDispatchd,
    SpatialDimsDispatchInferer,
    check_dicom_series,
    check_nifti_volume,
    dicom_frames_from_volume,
    hounsfield_problem,
    load_ct_volume,
    volume_datalist,
    volume_input_root,
    volume_name_formatter,
    write_dicom_seg,
)

BUNDLE = "lgnet_covid_ct_segmentation"
# inference_volume.json is an overlay of inference.json: only the keys that differ
CONFIGS = ["inference.json", "inference_volume.json"]
TINY_FEATURES = [4, 8, 16, 32, 64]


@pytest.fixture(scope="module")
def volumes_dir() -> Path:
    return require_dataset("volumes")


@pytest.fixture(scope="module")
def ct_series(volumes_dir) -> Path:
    return volumes_dir / "ct_3slice_dicom" / "ct-3slice"


@pytest.fixture(scope="module")
def uneven_series(volumes_dir) -> Path:
    return volumes_dir / "monai_testing_data" / "CT_DICOM"


@pytest.fixture(scope="module")
def itk_reference(ct_series) -> MetaTensor:
    """The series as MONAI's ITKReader reads it: (512, 512, 3), HU, RAS affine."""
    return LoadImage(reader="ITKReader", image_only=True)(str(ct_series))


def copy_series(source: Path, target: Path, skip: tuple[str, ...] = ()) -> Path:
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.name not in skip:
            shutil.copy(path, target / path.name)
    return target


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


# ----------------------------------------------------------------------------------------------------------
# DICOM series checks on real series and damaged copies


def test_real_series_is_sorted_along_the_normal_like_itk(ct_series):
    info = check_dicom_series(ct_series)
    assert [path.name for path in info.files] == ["03.dcm", "02.dcm", "01.dcm"]  # z -128.69, -127.69, -126.69
    np.testing.assert_allclose(info.slice_spacings, [1.0, 1.0], atol=1e-5)
    assert (info.rows, info.columns, info.modality, info.stored_dtype) == (512, 512, "CT", "int16")
    assert info.warnings == []


def test_series_with_its_middle_slice_deleted_is_refused_naming_the_folder(ct_series, tmp_path):
    damaged = copy_series(ct_series, tmp_path / "no_middle", skip=("02.dcm",))
    with pytest.raises(DataValidationError) as error:
        check_dicom_series(damaged)
    message = str(error.value)
    assert str(damaged) in message and "missing" in message
    assert "instance numbers of the two slices 03.dcm and 01.dcm are 3 and 1" in message


def test_real_series_with_a_202_mm_gap_is_refused_or_accepted_with_a_warning(uneven_series, caplog):
    with pytest.raises(DataValidationError) as error:
        check_dicom_series(uneven_series)
    message = str(error.value)
    assert str(uneven_series) in message
    assert "202.500 mm" in message and "instance numbers jump from 18 to 180" in message
    assert "on_slice_gap" in message
    with caplog.at_level(logging.WARNING, logger="transforms.io.dicom"):
        info = check_dicom_series(uneven_series, on_slice_gap="warn")
    assert info.num_slices == 4 and len(info.warnings) == 1
    assert "202.500 mm" in caplog.text


def test_uneven_but_complete_spacing_is_accepted_with_a_warning(ct_series, tmp_path, caplog):
    uneven = copy_series(ct_series, tmp_path / "uneven")
    dataset = pydicom.dcmread(uneven / "03.dcm")
    dataset.ImagePositionPatient = [-235.199997, -226.800003, -129.090002]  # spacings 1.4 and 1.0 mm
    dataset.save_as(uneven / "03.dcm")
    with caplog.at_level(logging.WARNING, logger="transforms.io.dicom"):
        info = check_dicom_series(uneven)
    np.testing.assert_allclose(info.slice_spacings, [1.4, 1.0], atol=1e-5)
    assert len(info.warnings) == 1 and info.warnings[0].startswith("uneven slice spacing")
    assert "uneven slice spacing" in caplog.text and str(uneven) in caplog.text


def test_two_series_in_one_folder_are_listed(ct_series, uneven_series, tmp_path):
    mixed = copy_series(ct_series, tmp_path / "mixed")
    for path in uneven_series.iterdir():
        shutil.copy(path, mixed / path.name)
    with pytest.raises(DataValidationError) as error:
        check_dicom_series(mixed)
    message = str(error.value)
    assert str(mixed) in message and "2 series" in message and "pass one series" in message
    for folder in (ct_series, uneven_series):
        uid = str(pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).SeriesInstanceUID)
        assert uid in message


def test_non_dicom_files_and_a_dicom_seg_next_to_a_series_are_named(volumes_dir):
    folder = volumes_dir / "ct_3slice_dicom"  # holds the LICENSE, .nrrd label maps and liver.dcm (a DICOM SEG)
    with pytest.raises(DataValidationError) as error:
        check_dicom_series(folder)
    message = str(error.value)
    assert "not DICOM" in message and "LICENSE.dcmqi" in message and "liver_seg.nrrd" in message
    assert "Segmentation Storage" in message and "liver.dcm" in message


def test_slices_of_different_sizes_are_refused(ct_series, tmp_path):
    folder = copy_series(ct_series, tmp_path / "sizes")
    dataset = pydicom.dcmread(folder / "02.dcm")
    dataset.Rows, dataset.Columns = 256, 256
    dataset.save_as(folder / "02.dcm")
    with pytest.raises(DataValidationError, match=r"slices differ in rows x columns: \(512, 512\)"):
        check_dicom_series(folder)


def test_nifti_header_checks(tmp_path):
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    four_d = tmp_path / "series4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 9, 5, 3), np.int16), affine), four_d)
    with pytest.raises(DataValidationError, match=r"series4d.nii.gz is 4D with shape \(8, 9, 5, 3\)"):
        check_nifti_volume(four_d)
    single = tmp_path / "single4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 9, 5, 1), np.int16), affine), single)
    assert check_nifti_volume(single) == (8, 9, 5, 1)
    flat = tmp_path / "slice2d.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(72, dtype=np.float32).reshape(8, 9), affine), flat)
    volume = load_ct_volume(flat)
    assert tuple(volume.shape) == (1, 8, 9, 1)
    np.testing.assert_allclose(volume[0, :, :, 0], np.arange(72).reshape(8, 9))


def test_volume_datalist_reports_every_bad_input_at_once(ct_series, tmp_path):
    four_d = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.int16), np.eye(4)), four_d)
    with pytest.raises(DataValidationError) as error:
        volume_datalist([ct_series, four_d, ct_series / "01.dcm", tmp_path / "absent.nii"])
    problems = error.value.problems
    assert len(problems) == 3
    assert any("t.nii.gz is 4D" in problem for problem in problems)
    assert any("01.dcm is neither a NIfTI file" in problem for problem in problems)
    assert any("absent.nii does not exist" in problem for problem in problems)
    assert volume_datalist([ct_series, str(ct_series) + "/"]) == [{"image": str(ct_series)}]


def test_output_names_keep_series_folder_names_whole(tmp_path):
    from monai.data import FolderLayout

    series = tmp_path / "patient1" / "1.2.840.113619.2.55"
    series.mkdir(parents=True)
    nifti = tmp_path / "patient2" / "scan.nii.gz"
    nifti.parent.mkdir()
    nifti.touch()
    root = volume_input_root([series, nifti])
    assert root == str(tmp_path)
    assert volume_input_root(series) == str(series.parent)
    layout = FolderLayout(str(tmp_path / "out"), postfix="mask", extension=".nii.gz", data_root_dir=root)
    assert Path(layout.filename(**volume_name_formatter({"filename_or_obj": str(series)}))) == (
        tmp_path / "out" / "patient1" / "1.2.840.113619.2.55_mask.nii.gz"
    )
    assert Path(layout.filename(**volume_name_formatter({"filename_or_obj": str(nifti)}))) == (
        tmp_path / "out" / "patient2" / "scan_mask.nii.gz"
    )


# ----------------------------------------------------------------------------------------------------------
# Hounsfield checks and windowing on synthetic arrays


def named(array: np.ndarray, name: str = "/data/scan.nii.gz", **meta) -> MetaTensor:
    return MetaTensor(torch.as_tensor(array, dtype=torch.float32), meta={"filename_or_obj": name, **meta})


def test_hounsfield_plausibility():
    assert hounsfield_problem(np.array([-1024.0, -850.0, 40.0, 700.0])) is None
    assert "minimum 0 is above -500 HU (no air)" in hounsfield_problem(np.array([0.0, 255.0]))
    both = hounsfield_problem(np.array([0.0, 1.0]))
    assert "maximum 1 is below 200 HU" in both and "no air" in both
    assert "modality is 'MR'" in hounsfield_problem(np.array([-1000.0, 1000.0]), modality="MR")
    assert "NaN" in hounsfield_problem(np.array([np.nan, -1000.0, 500.0]))


def test_check_transform_errors_or_warns_naming_the_file(caplog):
    volume = named(np.array([[0.0, 128.0, 255.0]]), stored_dtype="uint8")
    with pytest.raises(DataValidationError) as error:
        CheckHounsfieldRange()(volume)
    message = str(error.value)
    assert "/data/scan.nii.gz" in message and "stored as uint8" in message and "--intensity_mode minmax" in message
    with caplog.at_level(logging.WARNING, logger="transforms.hounsfield"):
        out = CheckHounsfieldRanged("image", on_non_ct="warn")({"image": volume})
    assert out["image"] is volume and "/data/scan.nii.gz" in caplog.text
    hu = named(np.array([-1000.0, 300.0]))
    assert CheckHounsfieldRanged("image")({"image": hu})["image"] is hu
    with pytest.raises(ValueError, match="on_non_ct"):
        CheckHounsfieldRange(on_non_ct="rescale")


def test_ct_window_maps_the_hu_window_to_unit_range_and_handles_non_hu_volumes(caplog):
    hu = named(np.array([-2000.0, -1000.0, -750.0, -500.0, 0.0, 500.0]))
    np.testing.assert_allclose(CTWindow()(hu), [0.0, 0.0, 0.25, 0.5, 1.0, 1.0])
    lung = CTWindowd("image", level=-600, width=1500)({"image": hu})["image"]  # classic lung window [-1350, 150]
    np.testing.assert_allclose(lung, np.clip((np.array([-2000, -1000, -750, -500, 0, 500]) + 1350) / 1500, 0, 1))

    eight_bit = named(np.array([10.0, 60.0, 210.0]), name="/data/pitch.nii.gz")
    with pytest.raises(DataValidationError, match=r"/data/pitch.nii.gz does not look like a CT volume"):
        CTWindow()(eight_bit)
    np.testing.assert_allclose(CTWindow(intensity_mode="minmax")(eight_bit), [0.0, 0.25, 1.0])
    with caplog.at_level(logging.WARNING, logger="transforms.hounsfield"):
        np.testing.assert_allclose(CTWindow(on_non_ct="rescale")(eight_bit), [0.0, 0.25, 1.0])
        np.testing.assert_allclose(CTWindow(on_non_ct="warn")(eight_bit), [1.0, 1.0, 1.0])  # all above 0 HU
    assert "min-max scaling for this volume" in caplog.text and "Windowing it anyway" in caplog.text
    with pytest.raises(DataValidationError, match="NaN or infinite"):
        CTWindow(intensity_mode="minmax")(named(np.array([np.inf, 0.0, 1.0])))


# ----------------------------------------------------------------------------------------------------------
# Slice-wise inference


def test_resized_slice_network_pads_like_the_2d_bundle_and_maps_back():
    seen = []

    def network(x):
        seen.append(x.clone())
        return x * 3.0

    wrapper = ResizedSliceNetwork(network, spatial_size=(32, 32), keep_aspect_ratio=True, anti_aliasing=False)
    assert wrapper.network_geometry((40, 20)) == ((32, 16), [(0, 0), (8, 8)])
    slices = torch.full((2, 1, 40, 20), 0.5)
    out = wrapper(slices)
    assert tuple(seen[0].shape) == (2, 1, 32, 32)
    assert torch.all(seen[0][..., :8] == 0) and torch.all(seen[0][..., 24:] == 0)  # zero padding, centred
    torch.testing.assert_close(out, torch.full((2, 1, 40, 20), 1.5))
    exact = ResizedSliceNetwork(network, spatial_size=(40, 20))  # slices at the network size pass untouched
    values = torch.rand(1, 1, 40, 20)
    torch.testing.assert_close(exact(values), values * 3.0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        wrapper(torch.zeros(1, 1, 4, 4, 4))


def test_axial_slice_inferer_runs_slice_by_slice_and_keeps_the_voxel_grid():
    calls = []

    def network(x):
        calls.append(tuple(x.shape))
        return x + 1.0

    volume = torch.arange(5, dtype=torch.float32).reshape(1, 1, 1, 1, 5).expand(1, 1, 6, 10, 5).contiguous()
    inferer = AxialSliceInferer(spatial_size=(16, 16), slice_axis=2, sw_batch_size=2, anti_aliasing=False)
    out = inferer(volume, network)
    assert tuple(out.shape) == (1, 1, 6, 10, 5)
    assert sorted(calls) == [(1, 1, 16, 16), (2, 1, 16, 16), (2, 1, 16, 16)]  # 5 slices by 2, each 16 x 16
    torch.testing.assert_close(out, volume + 1.0)  # constant slices survive the resize round trip in order
    with pytest.raises(ValueError, match=r"\(B, C, X, Y, Z\)"):
        inferer(torch.zeros(1, 1, 8, 8), network)


# ----------------------------------------------------------------------------------------------------------
# DICOM SEG written from masks in the source's voxel order


def synthetic_mask(shape: tuple[int, int, int]) -> np.ndarray:
    """Asymmetric in x and y, different on every slice, empty on the middle slice."""
    x, y, z = np.meshgrid(*(np.arange(size) for size in shape), indexing="ij")
    mask = (x < shape[0] // 4 + 7 * z) & (y < shape[1] // 2 + 3 * z)
    mask[:, :, shape[2] // 2] = False
    return mask.astype(np.uint8)


def seg_frames_by_source(path: Path) -> dict[str, np.ndarray]:
    seg = hd.seg.segread(path)
    assert seg.SegmentSequence[0].SegmentLabel == "COVID-19 infection"
    frames = {}
    for index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        frames[str(uid)] = seg.pixel_array[index] if seg.pixel_array.ndim == 3 else seg.pixel_array
    return frames


def test_dicom_seg_frames_reference_their_source_slices_for_itk_and_pydicom_order(ct_series, tmp_path):
    itk_volume = load_ct_volume(ct_series)
    mask = synthetic_mask(tuple(itk_volume.shape[1:]))
    itk_mask = MetaTensor(torch.as_tensor(mask)[None], affine=itk_volume.affine)
    path = write_dicom_seg(itk_mask, ct_series, tmp_path / "a.dcm")
    frames = seg_frames_by_source(path)
    itk_order = check_dicom_series(ct_series).files  # 03, 02, 01: ITK's slice index k
    assert set(frames) == {sop_uid(itk_order[0]), sop_uid(itk_order[2])}  # the empty middle frame is omitted
    for k in (0, 2):
        np.testing.assert_array_equal(frames[sop_uid(itk_order[k])], mask[:, :, k].T)

    # PydicomReader stacks the files in the other order with its own affine: the same physical mask, same SEG frames
    pydicom_volume = LoadImage(reader="PydicomReader", image_only=True)(str(ct_series))
    np.testing.assert_allclose(pydicom_volume.numpy(), itk_volume[0].numpy()[:, :, ::-1])
    path_b = write_dicom_seg(
        MetaTensor(torch.as_tensor(mask[:, :, ::-1].copy())[None], affine=pydicom_volume.affine),
        ct_series,
        tmp_path / "b.dcm",
        omit_empty_frames=False,
    )
    frames_b = seg_frames_by_source(path_b)
    assert set(frames_b) == {sop_uid(path) for path in itk_order}
    for k, source in enumerate(itk_order):
        np.testing.assert_array_equal(frames_b[sop_uid(source)], mask[:, :, k].T)

    reoriented = Orientation(axcodes="PLS")(MetaTensor(torch.as_tensor(mask)[None], affine=itk_volume.affine))
    with pytest.raises(ValueError, match="invert any orientation"):
        write_dicom_seg(reoriented, ct_series, tmp_path / "c.dcm")
    with pytest.raises(ValueError, match="binary"):
        write_dicom_seg(mask * 2, ct_series, tmp_path / "d.dcm")


def test_dicom_seg_of_an_unevenly_spaced_series_keeps_each_slice_position(uneven_series, tmp_path):
    volume = load_ct_volume(uneven_series, on_slice_gap="ignore")  # ITK's mean spacing: 68.33 mm
    np.testing.assert_allclose(volume.affine[2, 2], 205.0 / 3, rtol=1e-4)
    mask = synthetic_mask((16, 16, 4))
    sources = [pydicom.dcmread(path) for path in sorted(uneven_series.iterdir())]
    datasets, frames = dicom_frames_from_volume(mask, sources, volume.affine)
    assert [ds.InstanceNumber for ds in datasets] == [18, 180, 181, 182]
    np.testing.assert_array_equal(frames[1], mask[:, :, 1].T)

    mask_tensor = MetaTensor(torch.as_tensor(mask)[None], affine=volume.affine)
    path = write_dicom_seg(mask_tensor, uneven_series, tmp_path / "u.dcm")
    written = {}
    for item in hd.seg.segread(path).PerFrameFunctionalGroupsSequence:
        uid = str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        written[uid] = [float(value) for value in item.PlanePositionSequence[0].ImagePositionPatient]
    assert len(written) == 3  # the middle slice of the mask is empty
    for dataset in datasets:
        if str(dataset.SOPInstanceUID) in written:
            expected = [float(value) for value in dataset.ImagePositionPatient]
            np.testing.assert_allclose(written[str(dataset.SOPInstanceUID)], expected)


# ----------------------------------------------------------------------------------------------------------
# The bundle's inference_volume.json through `python -m monai.bundle run`


def save_tiny_lgnet(path: Path) -> Path:
    from custom_networks import LGNet

    torch.manual_seed(0)
    torch.save(LGNet(spatial_dims=2, in_channels=1, out_channels=1, features=TINY_FEATURES).state_dict(), path)
    return path


def save_threshold_network(path: Path) -> Path:
    """A 1x1 convolution whose sigmoid is >= 0.5 exactly where the windowed input is >= 0.5 (-500 HU)."""
    torch.save({"weight": torch.full((1, 1, 1, 1), 20.0), "bias": torch.tensor([-10.0])}, path)
    return path


THRESHOLD_NETWORK = {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 1}


# The tiny networks gain nothing from threads, and on a loaded machine OpenMP's spin-waiting threads cost 10-20x
# the compute (measured: 1.3 s instead of 0.07 s of CPU for a tiny LGNet on 4 x 32 x 32 under load).
SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1"}


def run_volumes(overrides: dict) -> subprocess.CompletedProcess:
    return run_bundle(BUNDLE, CONFIGS, overrides=overrides, env=SUBPROCESS_ENV, capture=True, timeout=600)


def failed_run_output(overrides: dict) -> str:
    """The whole output of a run that must fail (the error is above MONAI's config traceback, out of
    ``run_bundle``'s tail)."""
    result = subprocess.run(
        bundle_command(BUNDLE, CONFIGS, overrides=overrides),
        cwd=REPO_ROOT,
        env=bundle_env(SUBPROCESS_ENV),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    return result.stdout + result.stderr


def parsed_config(**overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(REPO_ROOT / "bundles" / BUNDLE / "configs" / name) for name in CONFIGS])
    parser.update({"bundle_root": str(REPO_ROOT / "bundles" / BUNDLE), **overrides})
    return parser


@pytest.mark.slow
def test_dicom_series_gives_a_nifti_mask_in_itk_geometry_and_a_dicom_seg(ct_series, itk_reference, tmp_path):
    out = tmp_path / "out"
    run_volumes(
        {
            "input_volumes": str(ct_series),
            "output_dir": str(out),
            "ckpt_path": str(save_threshold_network(tmp_path / "model.pt")),
            "network_def": THRESHOLD_NETWORK,
            "save_probability": True,
            # the slices' own size: no resampling, so the threshold network's mask is the exact iso-surface
            "spatial_size": [512, 512],
        }
    )
    mask_file = nib.load(out / "ct-3slice_mask.nii.gz")
    assert mask_file.shape == tuple(itk_reference.shape) == (512, 512, 3)
    assert mask_file.get_data_dtype() == np.uint8
    np.testing.assert_allclose(mask_file.affine, itk_reference.affine.numpy(), atol=1e-5)
    np.testing.assert_allclose(mask_file.header.get_zooms(), [0.810547, 0.810547, 1.0], atol=1e-6)
    assert (int(mask_file.header["sform_code"]), mask_file.header.get_xyzt_units()[0]) == (1, "mm")
    mask = np.asarray(mask_file.dataobj)
    hu = itk_reference.numpy()
    wrong = mask != (hu >= -500)  # the threshold network: the mask is the -500 HU iso-surface
    assert 0.2 < mask.mean() < 0.8 and not np.any(wrong & (hu != -500))
    probability = nib.load(out / "ct-3slice_prob.nii.gz")
    assert probability.get_data_dtype() == np.float32 and probability.shape == mask.shape
    np.testing.assert_array_equal(np.asarray(probability.dataobj) >= 0.5, mask.astype(bool))

    frames = seg_frames_by_source(out / "ct-3slice_seg.dcm")
    itk_order = check_dicom_series(ct_series).files
    assert set(frames) == {sop_uid(path) for path in ct_series.iterdir()}
    for k, source in enumerate(itk_order):
        np.testing.assert_array_equal(frames[sop_uid(source)], mask[:, :, k].T)
    seg = pydicom.dcmread(out / "ct-3slice_seg.dcm")
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.SegmentationType == "BINARY"
    description = seg.SegmentSequence[0]
    assert description.SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"  # Lesion
    assert description.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    metadata = json.loads((REPO_ROOT / "bundles" / BUNDLE / "configs" / "metadata.json").read_text())
    algorithm = description.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == (metadata["name"], metadata["version"])
    assert seg.StudyInstanceUID == pydicom.dcmread(itk_order[0], stop_before_pixels=True).StudyInstanceUID


@pytest.mark.slow
def test_nifti_volumes_keep_their_exact_shape_and_affine_with_a_tiny_lgnet(volumes_dir, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(volumes_dir / "nifti_ct" / "CT_pitch.nii.gz", inputs / "CT_pitch.nii.gz")  # oblique, uint8, not HU
    slice_affine = np.array([[0.0, -0.7, 0.0, 12.0], [0.9, 0.0, 0.0, -3.0], [0.0, 0.0, 1.0, 5.0], [0, 0, 0, 1.0]])
    slice_2d = np.random.default_rng(0).random((30, 21)).astype(np.float32)
    nib.save(nib.Nifti1Image(slice_2d, slice_affine), inputs / "slice.nii.gz")
    out = tmp_path / "out"
    run_volumes(
        {
            "input_volumes": [str(inputs / "CT_pitch.nii.gz"), str(inputs / "slice.nii.gz")],
            "output_dir": str(out),
            "ckpt_path": str(save_tiny_lgnet(tmp_path / "model.pt")),
            "features": TINY_FEATURES,
            "spatial_size": [32, 32],  # the PCM's cost grows with the square of the pixels: keep the slices tiny
            "intensity_mode": "minmax",
        }
    )
    for name in ("CT_pitch", "slice"):
        source, mask = nib.load(inputs / f"{name}.nii.gz"), nib.load(out / f"{name}_mask.nii.gz")
        assert mask.get_fdata().shape == source.get_fdata().shape
        np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)
        np.testing.assert_allclose(mask.header.get_zooms(), source.header.get_zooms(), atol=1e-6)
        assert mask.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
        for key in ("qform_code", "sform_code"):
            assert mask.header[key] == source.header[key]
        assert mask.header.get_xyzt_units()[0] == source.header.get_xyzt_units()[0]
    assert sorted(path.name for path in out.iterdir()) == ["CT_pitch_mask.nii.gz", "slice_mask.nii.gz"]  # no SEG


@pytest.mark.slow
def test_bad_inputs_stop_the_bundle_naming_each_file(ct_series, uneven_series, volumes_dir, tmp_path):
    mixed = copy_series(ct_series, tmp_path / "mixed")
    for path in uneven_series.iterdir():
        shutil.copy(path, mixed / path.name)
    no_middle = copy_series(ct_series, tmp_path / "no_middle", skip=("02.dcm",))
    four_d = tmp_path / "dynamic.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 4, 3), np.int16), np.eye(4)), four_d)
    output = failed_run_output(
        {"input_volumes": [str(mixed), str(no_middle), str(four_d)], "output_dir": str(tmp_path / "out")}
    )
    assert "3 problem(s) in the input volumes" in output
    assert f"DICOM series folder {mixed}" in output and "2 series" in output
    assert f"DICOM series folder {no_middle}: missing slice(s)" in output
    assert f"NIfTI file {four_d} is 4D" in output

    assert "Engine run" not in output  # stopped before inference


def test_non_hu_volume_is_refused_by_the_default_preprocessing_naming_the_file(volumes_dir):
    not_hu = volumes_dir / "nifti_ct" / "CT_AVM.nii.gz"  # float64, [0, 563.2]: rescaled, not HU
    preprocessing = parsed_config(input_volumes=str(not_hu)).get_parsed_content("preprocessing")
    with pytest.raises(RuntimeError) as error:  # MONAI's Compose wraps the transform's error
        preprocessing({"image": str(not_hu)})
    cause = error.value.__cause__
    while cause is not None and not isinstance(cause, DataValidationError):
        cause = cause.__cause__
    assert isinstance(cause, DataValidationError)
    assert f"{not_hu} does not look like a CT volume in Hounsfield units" in str(cause)
    assert "minimum 0 is above -500 HU (no air)" in str(cause) and "--intensity_mode minmax" in str(cause)
    minmax = parsed_config(intensity_mode="minmax").get_parsed_content("preprocessing")({"image": str(not_hu)})
    assert float(minmax["image"].min()) == 0.0 and float(minmax["image"].max()) == 1.0
    rescaled = parsed_config(on_non_ct="rescale").get_parsed_content("preprocessing")({"image": str(not_hu)})
    torch.testing.assert_close(rescaled["image"].as_tensor(), minmax["image"].as_tensor())


def test_config_defaults_match_the_documented_ones():
    config = {}
    for name in CONFIGS:  # merged as `--config_file "[...]"` merges them: later files replace whole keys
        config.update(json.loads((REPO_ROOT / "bundles" / BUNDLE / "configs" / name).read_text()))
    # the release recipe's width and input size (the paper's 64-1024 and 512 are configs/paper.json's)
    assert config["features"] == [8, 16, 32, 64, 128] and config["spatial_size"] == [256, 256]
    assert (config["hu_window_level"], config["hu_window_width"]) == (-500.0, 1000.0)
    assert (config["intensity_mode"], config["on_non_ct"], config["on_slice_gap"]) == ("hu_window", "error", "error")
    assert config["threshold"] == 0.5 and config["write_dicom_seg"] is True
    assert config["network_def"]["_target_"] == "custom_networks.LGNet"
    assert config["network_def"]["features"] == "@features"


# ------------------------------------------------------------------ one config for slices and volumes (MONAI Label)


def test_spatial_dims_dispatch_runs_and_inverts_the_transform_of_the_input_dims():
    from monai.transforms import Flipd, Rotate90d

    dispatch = SpatialDimsDispatchd(
        "image", {"2": Flipd("image", spatial_axis=0), 3: Rotate90d("image", spatial_axes=(0, 1))}
    )
    slice_image = MetaTensor(torch.arange(6.0).reshape(1, 2, 3))
    flipped = dispatch({"image": slice_image})["image"]
    assert torch.equal(flipped.as_tensor(), slice_image.flip(1).as_tensor())
    assert torch.equal(dispatch.inverse({"image": flipped})["image"].as_tensor(), slice_image.as_tensor())
    volume = MetaTensor(torch.arange(24.0).reshape(1, 2, 3, 4))
    rotated = dispatch({"image": volume})["image"]
    assert rotated.shape == (1, 3, 2, 4)
    assert torch.equal(dispatch.inverse({"image": rotated})["image"].as_tensor(), volume.as_tensor())
    with pytest.raises(ValueError, match=r"'image' \(channel-first\) has 1 spatial dimension\(s\); .* \[2, 3\]"):
        dispatch({"image": torch.zeros(1, 5)})
    with pytest.raises(ValueError, match="decides by one key"):
        SpatialDimsDispatchd(["image", "label"], {2: Flipd("image", spatial_axis=0)})
    with pytest.raises(ValueError, match="no option given"):
        SpatialDimsDispatchd("image", {})


def test_spatial_dims_dispatch_inferer_picks_by_the_input_dims():
    from monai.inferers import SimpleInferer

    class Doubling(SimpleInferer):
        def __call__(self, inputs, network, *args, **kwargs):
            return 2 * network(inputs, *args, **kwargs)

    inferer = SpatialDimsDispatchInferer({"2": SimpleInferer(), 3: Doubling()})
    network = torch.nn.Identity()
    assert torch.equal(inferer(torch.ones(1, 1, 4, 4), network), torch.ones(1, 1, 4, 4))
    assert torch.equal(inferer(torch.ones(1, 1, 4, 4, 2), network), torch.full((1, 1, 4, 4, 2), 2.0))
    with pytest.raises(ValueError, match=r"has 1 spatial dimension\(s\); this pipeline handles \[2, 3\]"):
        inferer(torch.ones(1, 1, 4), network)
