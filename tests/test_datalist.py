"""Dataset listing and validation: real folders pass, each kind of bad input names its file."""

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.conftest import require_dataset
from transforms import DataValidationError as ExportedError
from transforms import (
    LAYOUTS,
    DataValidationError,
    DatasetLayout,
    check_datalist,
    folder_datalist,
    image_datalist,
    natural_sort_key,
    read_image_array,
    read_image_header,
    register_layout,
    split_datalist,
    split_ids,
    validate_datalist,
)

ISBI_CHECKS = {"image_channels": 1, "label_values": (0, 255), "label_kind": "binary"}


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path)
    return path


@pytest.fixture
def small_isbi(tmp_path: Path) -> Path:
    """A valid ISBI-layout folder with ids 1, 2, 10 (gray 24x32 images, labels in {0, 255})."""
    rng = np.random.default_rng(0)
    for sample_id in (1, 2, 10):
        write_png(tmp_path / "image" / f"{sample_id}.png", rng.integers(0, 256, (24, 32), dtype=np.uint8))
        write_png(tmp_path / "label" / f"{sample_id}.png", (rng.random((24, 32)) > 0.5).astype(np.uint8) * 255)
    return tmp_path


def assert_error_names(error: pytest.ExceptionInfo, *texts: str) -> None:
    message = str(error.value)
    for text in texts:
        assert text in message, f"{text!r} not in error message:\n{message}"


# ---------------------------------------------------------------------------------------------- real data


def test_real_isbi_folder_validates(isbi_dir, caplog):
    datalist = folder_datalist(isbi_dir, "isbi")
    assert [item["id"] for item in datalist] == list(range(24))
    assert datalist[10]["image"] == str(isbi_dir / "image" / "10.png")
    assert datalist[10]["label"] == str(isbi_dir / "label" / "10.png")
    with caplog.at_level(logging.INFO, logger="transforms.data.validation"):
        assert validate_datalist(datalist, **ISBI_CHECKS) is datalist
    assert "24 item(s)" in caplog.text and "512x512 (24)" in caplog.text
    summary = check_datalist(datalist, **ISBI_CHECKS)
    assert summary.label_values == {0, 255}
    assert dict(summary.image_dtypes) == {"uint8": 24}


def test_real_phc_folder_validates(phc_dir):
    subset = folder_datalist(phc_dir, "phc", ids=[2, "1"])
    assert [item["id"] for item in subset] == [1, 2]
    assert subset[0]["image"].endswith("set1/raw.tif") and subset[0]["label"].endswith("set1/instances_ids.png")
    summary = check_datalist(subset, image_channels=1, label_kind="instances")
    assert dict(summary.image_sizes) == {"1022x1024": 2}
    assert dict(summary.image_dtypes) == {"uint16": 2}
    assert min(summary.label_values) == 0 and max(summary.label_values) > 30  # dozens of cells per frame
    # The whole folder (35 frames of 2 MB) decodes in about a second, so it is checked too.
    whole = folder_datalist(phc_dir, "phc")
    assert [item["id"] for item in whole][:3] == [1, 2, 3] and len(whole) >= 30
    validate_datalist(whole, image_channels=1, label_kind="instances")


def test_real_16bit_tiff_keeps_values(phc_dir):
    array = read_image_array(phc_dir / "set1" / "raw.tif")
    header = read_image_header(phc_dir / "set1" / "raw.tif")
    assert array.dtype == np.uint16 and array.shape == (1022, 1024) == header.spatial_shape
    assert array.max() > 255  # truly 16-bit content, not rescaled to 8 bits


def test_real_covid_layout_lists_pairs():
    covid_dir = require_dataset("covid_medseg")
    datalist = folder_datalist(covid_dir, "covid", ids=[0, 1, 10])
    assert [Path(item["image"]).name for item in datalist] == ["0.jpg", "1.jpg", "10.jpg"]
    assert [Path(item["label"]).parent.name for item in datalist] == ["GT"] * 3
    validate_datalist(datalist, image_channels=1, label_values=(0, 255))


# ---------------------------------------------------------------------------------------------- listing


def test_natural_sort_and_id_selection(small_isbi):
    assert [item["id"] for item in folder_datalist(small_isbi)] == [1, 2, 10]
    assert sorted(["set10", "set2", "set1"], key=natural_sort_key) == ["set1", "set2", "set10"]
    selected = folder_datalist(small_isbi, ids=["10", 2])
    assert [item["id"] for item in selected] == [2, 10]
    with pytest.raises(DataValidationError) as error:
        folder_datalist(small_isbi, ids=[1, 7, 99])
    assert_error_names(error, "[7, 99]", str(small_isbi), "available ids: [1, 2, 10]")


def test_images_only_listing(small_isbi):
    (small_isbi / "label" / "2.png").unlink()
    datalist = folder_datalist(small_isbi, with_labels=False)
    assert [sorted(item) for item in datalist] == [["id", "image"]] * 3


def test_missing_label_names_both_paths(small_isbi):
    (small_isbi / "label" / "2.png").unlink()
    with pytest.raises(DataValidationError) as error:
        folder_datalist(small_isbi)
    assert_error_names(error, str(small_isbi / "image" / "2.png"), str(small_isbi / "label" / "2.png"), "no label")


def test_empty_and_missing_folder(tmp_path):
    (tmp_path / "image").mkdir()
    with pytest.raises(DataValidationError) as error:
        folder_datalist(tmp_path, "isbi")
    assert_error_names(error, "empty dataset", "image/{id}.png", str(tmp_path))
    with pytest.raises(DataValidationError) as error:
        folder_datalist(tmp_path / "nowhere", "phc")
    assert_error_names(error, str(tmp_path / "nowhere"), "does not exist")
    with pytest.raises(DataValidationError, match="empty datalist"):
        validate_datalist([])


def test_string_ids_and_custom_layout(tmp_path):
    layout = DatasetLayout("slides", "slides/{id}.png", "masks/{id}_mask.png")
    for stem in ("TCGA-B", "TCGA-A2", "TCGA-A10"):
        write_png(tmp_path / "slides" / f"{stem}.png", np.zeros((8, 8), np.uint8))
        write_png(tmp_path / "masks" / f"{stem}_mask.png", np.zeros((8, 8), np.uint8))
    write_png(tmp_path / "slides" / "nested" / "x.png", np.zeros((8, 8), np.uint8))  # in a sub-folder: not listed
    datalist = folder_datalist(tmp_path, layout)
    assert [item["id"] for item in datalist] == ["TCGA-A2", "TCGA-A10", "TCGA-B"]
    assert datalist[0]["label"] == str(tmp_path / "masks" / "TCGA-A2_mask.png")
    assert layout.extract_id("slides/007.png") == "007"


def test_register_layout_rules():
    assert LAYOUTS["isbi"].image_pattern == "image/{id}.png"
    assert LAYOUTS["phc"].label_pattern == "set{id}/instances_ids.png"
    try:
        layout = register_layout("test_tmp_layout", "img/{id}.tif", "lbl/{id}.png")
        assert LAYOUTS["test_tmp_layout"] is layout and layout.image_glob == "img/*.tif"
        with pytest.raises(ValueError, match="already registered"):
            register_layout("test_tmp_layout", "a/{id}.png")
    finally:
        LAYOUTS.pop("test_tmp_layout", None)
    with pytest.raises(ValueError, match="placeholder"):
        register_layout("bad_layout", "image/all.png")
    with pytest.raises(ValueError, match="unknown layout"):
        folder_datalist(".", "no_such_layout")


def test_split_ids_is_deterministic():
    ids = list(range(10))
    train, val = split_ids(ids, val_fraction=0.2, seed=3)
    assert (train, val) == split_ids(ids, val_fraction=0.2, seed=3)
    assert len(val) == 2 and sorted(train + val) == ids and train == sorted(train)
    train, val = split_ids(ids, val_ids=["3", 7])
    assert val == [3, 7] and 3 not in train and len(train) == 8
    assert split_ids([1, 2, 3], val_fraction=0.01)[1] != []  # at least one validation id
    with pytest.raises(ValueError, match="not among"):
        split_ids(ids, val_ids=[42])
    with pytest.raises(ValueError, match="no training id"):
        split_ids([1], val_fraction=0.5)


def test_split_datalist(small_isbi):
    train, val = split_datalist(folder_datalist(small_isbi), val_ids=[10])
    assert [item["id"] for item in train] == [1, 2] and [item["id"] for item in val] == [10]


def test_image_datalist_folder_file_glob_list(small_isbi):
    (small_isbi / "image" / "notes.txt").write_text("not an image")
    from_folder = image_datalist(small_isbi / "image")
    assert [Path(item["image"]).name for item in from_folder] == ["1.png", "2.png", "10.png"]
    single = image_datalist(str(small_isbi / "label" / "2.png"))
    assert single == [{"image": str(small_isbi / "label" / "2.png")}]
    globbed = image_datalist(str(small_isbi / "*" / "1*.png"))
    assert [Path(item["image"]).parent.name for item in globbed] == ["image", "image", "label", "label"]
    mixed = image_datalist([small_isbi / "image" / "10.png", small_isbi / "image"])
    assert [Path(item["image"]).name for item in mixed] == ["10.png", "1.png", "2.png"]  # no duplicate
    assert len(image_datalist(small_isbi, recursive=True)) == 6
    with pytest.raises(DataValidationError) as error:
        image_datalist(small_isbi)  # only sub-folders hold images
    assert_error_names(error, str(small_isbi), "recursive=True")
    with pytest.raises(DataValidationError) as error:
        image_datalist([small_isbi / "image" / "1.png", small_isbi / "missing.png"])
    assert_error_names(error, "missing.png", "does not exist")
    with pytest.raises(DataValidationError, match="matches no image"):
        image_datalist(str(small_isbi / "*.jpg"))


# ---------------------------------------------------------------------------------------------- validation


def test_small_folder_is_valid(small_isbi):
    datalist = folder_datalist(small_isbi)
    assert validate_datalist(datalist, **ISBI_CHECKS) is datalist
    assert ExportedError is DataValidationError and issubclass(DataValidationError, ValueError)


def test_missing_file(small_isbi):
    datalist = folder_datalist(small_isbi)
    (small_isbi / "image" / "1.png").unlink()
    with pytest.raises(DataValidationError) as error:
        validate_datalist(datalist, **ISBI_CHECKS)
    assert_error_names(error, "file not found", str(small_isbi / "image" / "1.png"))


def test_unreadable_file(small_isbi):
    (small_isbi / "image" / "2.png").write_bytes(b"this is not a png at all" * 10)
    with pytest.raises(DataValidationError) as error:
        validate_datalist(folder_datalist(small_isbi), **ISBI_CHECKS)
    assert_error_names(error, "cannot read image file", str(small_isbi / "image" / "2.png"))
    (small_isbi / "image" / "3.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(DataValidationError) as error:
        read_image_array(small_isbi / "image" / "3.tif")
    assert_error_names(error, "3.tif")


def test_truncated_file_caught_by_pixel_read(small_isbi):
    path = small_isbi / "label" / "10.png"
    path.write_bytes(path.read_bytes()[:120])  # header intact, pixel data cut
    datalist = folder_datalist(small_isbi)
    with pytest.raises(DataValidationError) as error:
        validate_datalist(datalist, image_channels=1, label_kind=None)
    assert_error_names(error, str(path))
    assert read_image_header(path).spatial_shape == (24, 32)  # the header alone does not reveal it


def test_size_mismatch_names_both_files_and_sizes(small_isbi):
    write_png(small_isbi / "label" / "2.png", np.zeros((20, 32), np.uint8))
    with pytest.raises(DataValidationError) as error:
        validate_datalist(folder_datalist(small_isbi), **ISBI_CHECKS)
    image, label = str(small_isbi / "image" / "2.png"), str(small_isbi / "label" / "2.png")
    assert_error_names(error, "size mismatch", image, label, "24x32", "20x32")


def test_rgb_where_gray_expected(small_isbi):
    write_png(small_isbi / "image" / "10.png", np.zeros((24, 32, 3), np.uint8))
    datalist = folder_datalist(small_isbi)
    with pytest.raises(DataValidationError) as error:
        validate_datalist(datalist, **ISBI_CHECKS)
    assert_error_names(error, str(small_isbi / "image" / "10.png"), "3 channel(s)", "expected 1", "mode RGB")
    assert validate_datalist(datalist, allow_rgb_to_gray=True, **ISBI_CHECKS) is datalist
    validate_datalist(datalist, image_channels=None, **{k: v for k, v in ISBI_CHECKS.items() if k != "image_channels"})


def test_unexpected_label_value(small_isbi):
    label = np.zeros((24, 32), np.uint8)
    label[:4] = 255
    label[5, 5] = 128
    write_png(small_isbi / "label" / "1.png", label)
    with pytest.raises(DataValidationError) as error:
        validate_datalist(folder_datalist(small_isbi), **ISBI_CHECKS)
    assert_error_names(error, str(small_isbi / "label" / "1.png"), "unexpected value(s) [128]", "[0, 255]")
    with pytest.raises(DataValidationError, match="not binary"):
        validate_datalist(folder_datalist(small_isbi), label_kind="binary")


def test_nan_in_float_tiff(tmp_path):
    image = np.ones((16, 16), np.float32)
    image[3, 4] = np.nan
    image[0, 0] = np.inf
    tifffile.imwrite(tmp_path / "float.tif", image)
    for read_pixels in (True, False):  # float images are always decoded, even from headers only
        with pytest.raises(DataValidationError) as error:
            validate_datalist([{"image": str(tmp_path / "float.tif")}], read_pixels=read_pixels)
        assert_error_names(error, "float.tif", "1 NaN", "1 infinite")


def test_instance_labels_negative_or_fractional(tmp_path):
    tifffile.imwrite(tmp_path / "image.tif", np.zeros((16, 16), np.uint16))
    negative = np.zeros((16, 16), np.int32)
    negative[2:5, 2:5], negative[8, 8] = 3, -1
    tifffile.imwrite(tmp_path / "negative.tif", negative)
    fractional = np.zeros((16, 16), np.float32)
    fractional[1, 1] = 2.5
    tifffile.imwrite(tmp_path / "fractional.tif", fractional)
    datalist = [
        {"image": str(tmp_path / "image.tif"), "label": str(tmp_path / "negative.tif")},
        {"image": str(tmp_path / "image.tif"), "label": str(tmp_path / "fractional.tif")},
    ]
    with pytest.raises(DataValidationError) as error:
        validate_datalist(datalist, label_kind="instances")
    assert_error_names(error, "negative.tif", "negative id(s) [-1]", "fractional.tif", "non-integer value(s) [2.5]")
    assert len(error.value.problems) == 2  # all problems gathered, not just the first


def test_problems_are_gathered_and_capped(tmp_path):
    datalist = [{"image": str(tmp_path / f"missing_{index}.png")} for index in range(25)]
    with pytest.raises(DataValidationError) as error:
        validate_datalist(datalist)
    assert len(error.value.problems) == 25
    assert "missing_0.png" in str(error.value) and "and 5 more" in str(error.value)


def test_read_image_array_png_modes(tmp_path):
    values16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    write_png(tmp_path / "i16.png", values16)
    array = read_image_array(tmp_path / "i16.png")
    assert array.dtype == np.uint16 and np.array_equal(array, values16)
    palette = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="L").convert("P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    palette.save(tmp_path / "p.png")
    assert read_image_array(tmp_path / "p.png").tolist() == [[0, 1], [2, 1]]  # indices, not colours
    write_png(tmp_path / "rgba.png", np.zeros((4, 6, 4), np.uint8))
    assert read_image_array(tmp_path / "rgba.png").shape == (4, 6, 4)
    header = read_image_header(tmp_path / "rgba.png")
    assert (header.spatial_shape, header.channels) == ((4, 6), 4)
    tifffile.imwrite(tmp_path / "planar.tif", np.zeros((3, 5, 7), np.uint8), photometric="rgb", planarconfig="separate")
    assert read_image_array(tmp_path / "planar.tif").shape == (5, 7, 3)
    assert read_image_header(tmp_path / "planar.tif").channels == 3


def test_folder_datalist_all_means_whole_folder(isbi_dir):
    from transforms import folder_datalist

    assert folder_datalist(isbi_dir, "isbi", ids="all") == folder_datalist(isbi_dir, "isbi", ids=None)
    with pytest.raises(ValueError, match="'all'"):
        folder_datalist(isbi_dir, "isbi", ids="some")
