"""Mirror extrapolation and the random overlap-tile training crop (U-Net 2015, Sec. 2, Fig. 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from transforms.tiling import RandOverlapTileCropd, extrapolate_crop, extrapolated_indices

NUMPY_MODES = {"reflect": "reflect", "symmetric": "symmetric", "replicate": "edge", "circular": "wrap"}


@pytest.mark.parametrize("mode", sorted(NUMPY_MODES))
@pytest.mark.parametrize("length", [1, 2, 5])
def test_extrapolated_indices_match_numpy_pad_even_beyond_the_axis_length(mode, length):
    before, after = 13, 9  # longer than the axis: repeated extrapolation
    expected = np.pad(np.arange(length), (before, after), mode=NUMPY_MODES[mode])
    indices = extrapolated_indices(length, -before, length + after, mode)
    assert indices.dtype == torch.long
    np.testing.assert_array_equal(indices.numpy(), expected)


def test_extrapolated_indices_reflect_by_hand_and_errors():
    # a b c d -> (d c b) a b c d (c b a)
    assert extrapolated_indices(4, -3, 7).tolist() == [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert extrapolated_indices(4, 1, 3).tolist() == [1, 2]
    with pytest.raises(ValueError, match="empty axis"):
        extrapolated_indices(0, 0, 1)
    with pytest.raises(ValueError, match="mode"):
        extrapolated_indices(3, 0, 1, mode="zeros")


def test_extrapolate_crop_equals_numpy_pad_window():
    image = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)
    crop = extrapolate_crop(image, start=(-5, 3), size=(12, 9))
    padded = np.pad(image.numpy(), ((0, 0), (5, 5), (0, 9)), mode="reflect")
    np.testing.assert_array_equal(crop.numpy(), padded[:, 0:12, 3:12])


def _coordinate_image(shape: tuple[int, ...]) -> torch.Tensor:
    """One channel per spatial axis holding that axis' coordinate: every pixel knows where it came from."""
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    return torch.stack(grids)


def _label_ids(shape: tuple[int, ...]) -> torch.Tensor:
    """A unique positive id per pixel (the flat index + 1)."""
    return (torch.arange(int(np.prod(shape))) + 1).reshape(1, *shape)


def _window_start(cropped: MetaTensor, spatial_dims: int) -> list[int]:
    """Crop origin from the affine (the inputs carry an identity affine)."""
    return [int(round(v)) for v in cropped.affine[:spatial_dims, -1].tolist()]


def test_crop_geometry_2d_centre_of_image_crop_is_the_label_crop():
    shape = (50, 61)
    data = {
        "image": MetaTensor(_coordinate_image(shape)),
        "label": MetaTensor(_label_ids(shape)),
        "weight": MetaTensor(torch.rand(1, *shape)),
        "name": "case_0",
    }
    crop = RandOverlapTileCropd("image", ("label", "weight"), output_size=(20, 24), border=8, num_samples=6)
    crop.set_random_state(seed=1)
    samples = crop(data)
    assert isinstance(samples, list) and len(samples) == 6
    starts = set()
    for sample in samples:
        image, label, weight = sample["image"], sample["label"], sample["weight"]
        assert image.shape == (2, 36, 40) and label.shape == (1, 20, 24) and weight.shape == (1, 20, 24)
        assert all(isinstance(sample[k], MetaTensor) for k in ("image", "label", "weight"))
        assert sample["name"] == "case_0"
        row, col = _window_start(label, 2)
        starts.add((row, col))
        assert 0 <= row <= 30 and 0 <= col <= 37  # a window that fits stays inside the label
        assert _window_start(image, 2) == [row - 8, col - 8]
        # the label crop is the label at the window, the weight crop the weight there
        torch.testing.assert_close(label.as_tensor(), data["label"].as_tensor()[:, row : row + 20, col : col + 24])
        torch.testing.assert_close(weight.as_tensor(), data["weight"].as_tensor()[:, row : row + 20, col : col + 24])
        # centre alignment: the image crop minus the border shows the label window's coordinates
        centre = image.as_tensor()[:, 8:-8, 8:-8]
        torch.testing.assert_close(centre[0], torch.arange(row, row + 20, dtype=torch.float32)[:, None].expand(20, 24))
        torch.testing.assert_close(centre[1], torch.arange(col, col + 24, dtype=torch.float32)[None].expand(20, 24))
        # outside the image the context is the mirror image (reflect): row -k shows row k
        expected = np.pad(data["image"].numpy(), ((0, 0), (8, 8), (8, 8)), mode="reflect")
        np.testing.assert_array_equal(image.numpy(), expected[:, row : row + 36, col : col + 40])
    assert len(starts) > 1


def test_label_smaller_than_output_is_padded_and_image_mirrored_repeatedly():
    shape = (6, 9)
    image = torch.randn(1, *shape)
    data = {"image": image, "label": _label_ids(shape), "weight": torch.ones(1, *shape)}
    crop = RandOverlapTileCropd(
        image_keys="image", label_keys=("label", "weight"), output_size=16, border=11, label_pad_value=(-1, 0)
    )
    for seed in range(5):
        out = crop.set_random_state(seed=seed)(data)
        assert out["image"].shape == (1, 38, 38) and out["label"].shape == (1, 16, 16)
        row, col = _window_start(out["label"], 2)
        assert -10 <= row <= 0 and -7 <= col <= 0  # the whole label lies inside the window
        inside = out["label"][0, -row : -row + 6, -col : -col + 9]
        torch.testing.assert_close(inside.as_tensor(), data["label"][0])
        assert (out["label"] == -1).sum() == 16 * 16 - 6 * 9  # padded with the label pad value
        assert out["weight"].sum() == 6 * 9  # weight 0 outside the label: padding does not count in the loss
        big = 40  # border + window exceed the image: numpy repeats the reflection the same way
        expected = np.pad(image.numpy(), ((0, 0), (big, big), (big, big)), mode="reflect")
        np.testing.assert_array_equal(
            out["image"].numpy(), expected[:, big + row - 11 : big + row + 27, big + col - 11 : big + col + 27]
        )


def test_crop_3d_and_numpy_input():
    shape = (12, 10, 14)
    data = {"image": _coordinate_image(shape).numpy(), "label": _label_ids(shape).numpy()}
    crop = RandOverlapTileCropd("image", "label", output_size=(4, 6, 8), border=(2, 3, 1))
    out = crop.set_random_state(seed=0)(data)
    assert out["image"].shape == (3, 8, 12, 10) and out["label"].shape == (1, 4, 6, 8)
    assert isinstance(out["image"], torch.Tensor)
    centre = out["image"][:, 2:-2, 3:-3, 1:-1]
    first_id = int(out["label"][0, 0, 0, 0])
    start = np.unravel_index(first_id - 1, shape)  # label ids give the window position
    assert [int(centre[a, 0, 0, 0]) for a in range(3)] == [int(s) for s in start]
    for axis in range(3):
        steps = torch.diff(centre[axis], dim=axis)
        assert torch.all(steps == 1)


def test_random_state_makes_crops_reproducible():
    shape = (40, 40)
    data = {"image": torch.randn(1, *shape), "label": _label_ids(shape)}
    crop = RandOverlapTileCropd("image", "label", output_size=10, border=3, num_samples=3)
    first = crop.set_random_state(seed=42)(data)
    second = crop.set_random_state(seed=42)(data)
    other = crop.set_random_state(seed=7)(data)
    for a, b in zip(first, second):
        torch.testing.assert_close(a["label"], b["label"])
        torch.testing.assert_close(a["image"], b["image"])
    assert any(not torch.equal(a["label"], b["label"]) for a, b in zip(first, other))


def test_metadata_kept_and_input_untouched():
    affine = torch.tensor([[0.5, 0, 0, 10.0], [0, 2.0, 0, -4.0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    image = MetaTensor(torch.randn(1, 20, 20), affine=affine, meta={"filename_or_obj": "img.tif"})
    data = {"image": image, "label": MetaTensor(torch.zeros(1, 20, 20), affine=affine)}
    out = RandOverlapTileCropd("image", "label", output_size=8, border=4).set_random_state(seed=3)(data)
    shift = torch.linalg.solve(affine, out["label"].affine)  # the crop's translation in voxel units
    row, col = int(round(shift[0, 3].item())), int(round(shift[1, 3].item()))
    assert 0 <= row <= 12 and 0 <= col <= 12
    assert out["image"].meta["filename_or_obj"] == "img.tif"
    torch.testing.assert_close(out["image"].affine, affine @ _translation(row - 4, col - 4))
    torch.testing.assert_close(out["label"].affine, affine @ _translation(row, col))
    torch.testing.assert_close(image.affine, affine)  # the source is not modified
    assert data["image"].shape == (1, 20, 20)


def _translation(row: int, col: int) -> torch.Tensor:
    shift = torch.eye(4, dtype=torch.float64)
    shift[0, 3], shift[1, 3] = row, col
    return shift


def test_argument_and_shape_errors():
    with pytest.raises(ValueError, match="output_size"):
        RandOverlapTileCropd("image", "label", output_size=0, border=2)
    with pytest.raises(ValueError, match="border"):
        RandOverlapTileCropd("image", "label", output_size=4, border=-1)
    with pytest.raises(ValueError, match="both image and label"):
        RandOverlapTileCropd("image", "image", output_size=4, border=1)
    with pytest.raises(ValueError, match="image_pad_mode"):
        RandOverlapTileCropd("image", "label", output_size=4, border=1, image_pad_mode="zeros")
    crop = RandOverlapTileCropd("image", "label", output_size=4, border=1)
    with pytest.raises(ValueError, match="spatial shape"):
        crop({"image": torch.zeros(1, 10, 10), "label": torch.zeros(1, 10, 12)})
    missing_ok = RandOverlapTileCropd("image", "label", output_size=4, border=1, allow_missing_keys=True)
    out = missing_ok({"image": torch.zeros(1, 10, 10)})
    assert out["image"].shape == (1, 6, 6)
