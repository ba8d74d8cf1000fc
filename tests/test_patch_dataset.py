"""Sliding-window training patches (transforms/data/patches.py) and output folders (transforms/data/outputs.py)."""

from __future__ import annotations

import os

import pytest
import torch
from monai.data import DataLoader, MetaTensor
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval
from monai.transforms import Flipd

from transforms import SlidingWindowPatchDataset, common_input_root, sliding_window_slices


def _image_item(height: int, width: int, name: str = "frame.tif") -> dict:
    """Image whose pixel values are their own coordinates (row * 1000 + column), and a matching label."""
    rows = torch.arange(height, dtype=torch.float32).view(-1, 1) * 1000
    columns = torch.arange(width, dtype=torch.float32).view(1, -1)
    image = MetaTensor((rows + columns)[None], meta={"filename_or_obj": name})
    return {"image": image, "label": (image > 500).float(), "id": name}


def test_window_starts_by_hand():
    # 10 px wide, windows of 4 with overlap 0.5: stride 2, starts 0 2 4 6 (6 + 4 = 10 reaches the border)
    windows = sliding_window_slices((4, 10), (4, 4), 0.5)
    assert [w[1].start for w in windows] == [0, 2, 4, 6] and all(w[0] == slice(0, 4) for w in windows)
    # 11 px: the last window is moved back to end at the border (start 7, overlapping more)
    assert [w[1].start for w in sliding_window_slices((4, 11), (4, 4), 0.5)] == [0, 2, 4, 6, 7]
    # no overlap on a 1022 x 1024 Usiigaci frame with 256 px windows: 4 x 4, the last row shifted to 766
    windows = sliding_window_slices((1022, 1024), 256, 0.0)
    assert len(windows) == 16 and sorted({w[0].start for w in windows}) == [0, 256, 512, 766]


@pytest.mark.parametrize("image_size, overlap", [((1022, 1024), 0.25), ((300, 257), 0.5), ((256, 256), 0.0)])
def test_same_grid_as_monai_sliding_window_inferer(image_size, overlap):
    roi = (256, 256)
    expected = dense_patch_slices(image_size, roi, _get_scan_interval(image_size, roi, 2, (overlap, overlap)))
    assert sliding_window_slices(image_size, roi, overlap) == expected


def test_every_pixel_is_covered_and_windows_stay_inside():
    coverage = torch.zeros(70, 90)
    for window in sliding_window_slices((70, 90), (32, 32), 0.25):
        assert all(s.stop - s.start == 32 and 0 <= s.start and s.stop <= size for s, size in zip(window, (70, 90)))
        coverage[window] += 1
    assert bool((coverage >= 1).all())


def test_items_are_the_right_crops_of_the_right_images():
    images = [_image_item(64, 96, "a.tif"), _image_item(32, 32, "b.tif")]
    dataset = SlidingWindowPatchDataset(images, keys=["image", "label"], patch_size=32, overlap=0.0)
    assert len(dataset) == 2 * 3 + 1
    for index, (image_index, window) in enumerate(dataset.windows):
        item = dataset[index]
        assert item["id"] == images[image_index]["id"]
        assert item["image"].shape == (1, 32, 32)
        top, left = window[0].start, window[1].start
        assert float(item["image"][0, 0, 0]) == top * 1000 + left  # the pixel value encodes its position
        torch.testing.assert_close(item["label"], (item["image"] > 500).float())
    # the source images are not modified by cropping
    assert images[0]["image"].shape == (1, 64, 96)


def test_transform_is_applied_to_each_patch_and_loader_shuffles_across_images():
    images = [_image_item(32, 64, "a.tif"), _image_item(32, 64, "b.tif")]
    flip = Flipd(keys=["image", "label"], spatial_axis=1)
    dataset = SlidingWindowPatchDataset(images, keys=("image", "label"), patch_size=(32, 32), transform=flip)
    first = dataset[0]
    assert float(first["image"][0, 0, 0]) == 31.0  # flipped left-right: the first column is now x = 31
    torch.manual_seed(0)
    batches = list(DataLoader(dataset, batch_size=4, shuffle=True))
    assert sum(len(batch["id"]) for batch in batches) == len(dataset) == 6
    assert batches[0]["image"].shape == (4, 1, 32, 32)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="overlap"):
        SlidingWindowPatchDataset([], keys="image", patch_size=16, overlap=1.0)
    with pytest.raises(ValueError, match="patch_size"):
        SlidingWindowPatchDataset([], keys="image", patch_size=(16, 0))
    small = SlidingWindowPatchDataset([_image_item(20, 40, "small.tif")], keys="image", patch_size=32)
    with pytest.raises(ValueError, match="small.tif.*does not fit.*pad it first"):
        len(small)
    missing = SlidingWindowPatchDataset([_image_item(40, 40)], keys=["image", "weight"], patch_size=32)
    with pytest.raises(ValueError, match="lacks \\['weight'\\]"):
        len(missing)
    item = _image_item(40, 40, "mismatch.tif")
    item["label"] = item["label"][:, :30]
    with pytest.raises(ValueError, match="mismatch.tif.*different spatial sizes"):
        len(SlidingWindowPatchDataset([item], keys=["image", "label"], patch_size=16))
    with pytest.raises(ValueError, match="expected a dict"):
        len(SlidingWindowPatchDataset([torch.zeros(1, 40, 40)], keys="image", patch_size=16))


def test_common_input_root(tmp_path):
    (tmp_path / "set1").mkdir()
    (tmp_path / "set2").mkdir()
    for name in ("set1/raw.tif", "set2/raw.tif"):
        (tmp_path / name).write_bytes(b"")
    root = str(tmp_path)
    assert common_input_root(root) == root  # a folder
    assert common_input_root(tmp_path / "set1" / "raw.tif") == os.path.join(root, "set1")  # a file
    assert common_input_root(os.path.join(root, "set*", "raw.tif")) == root  # a glob
    assert common_input_root([tmp_path / "set1" / "raw.tif", tmp_path / "set2" / "raw.tif"]) == root
    assert common_input_root([]) == ""
