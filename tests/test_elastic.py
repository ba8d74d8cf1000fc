"""Tests for transforms.elastic.RandPaperElasticd: the U-Net paper's coarse-grid elastic deformation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai.transforms import Compose
from transforms.elastic import RandPaperElasticd


def coordinate_image(height: int, width: int) -> np.ndarray:
    """Channels: row index, column index, ones (the ones show where sampling stayed inside the image)."""
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows, columns, np.ones_like(rows)]).astype(np.float32)


def measured_displacement(transform: RandPaperElasticd, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Displacement read from a deformed coordinate image (bilinear reproduces coordinates exactly)."""
    image = coordinate_image(height, width)
    out = np.asarray(transform({"img": image})["img"])
    inside = out[2] > 1 - 1e-6
    return out[:2] - image[:2], inside


def cubic_convolution_weights(size: int, nodes: int, a: float = -0.75) -> np.ndarray:
    """[size, nodes] matrix of bicubic interpolation with align_corners=True and repeated end nodes."""

    def kernel(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        if x < 2:
            return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
        return 0.0

    weights = np.zeros((size, nodes))
    for pixel in range(size):
        position = pixel * (nodes - 1) / (size - 1)
        base = int(np.floor(position))
        for node in range(base - 1, base + 3):
            weights[pixel, min(max(node, 0), nodes - 1)] += kernel(position - node)
    return weights


def elastic(**kwargs) -> RandPaperElasticd:
    kwargs.setdefault("keys", "img")
    kwargs.setdefault("mode", "bilinear")
    kwargs.setdefault("padding_mode", "zeros")
    return RandPaperElasticd(**kwargs)


@pytest.mark.parametrize("size", [(65, 65), (64, 64), (101, 64), (512, 512)])
def test_zero_std_is_exact_identity(size):
    image = coordinate_image(*size)
    out = elastic(displacement_std=0.0)({"img": image})["img"]
    np.testing.assert_allclose(np.asarray(out), image, atol=1e-4)


def test_control_points_on_corners_edges_and_centre():
    transform = elastic().set_random_state(7)
    height, width = 129, 97
    displacement, inside = measured_displacement(transform, height, width)
    control = transform.control_displacements().numpy()
    assert control.shape == (2, 3, 3)
    assert transform.rand_2d_elastic.deform_grid.spacing == (64.0, 48.0)
    field = transform.displacement_field((height, width)).numpy()
    for i, row in enumerate((0, 64, 128)):
        for j, column in enumerate((0, 48, 96)):
            np.testing.assert_allclose(field[:, row, column], control[:, i, j], atol=1e-4)
    # the resampled image moved by exactly that field wherever it sampled inside the image
    assert inside[64, 48]
    np.testing.assert_allclose(displacement[:, inside], field[:, inside], atol=1e-3)


def test_field_is_bicubic_interpolation_of_control_displacements():
    transform = elastic(grid_points=4).set_random_state(3)
    height, width = 70, 53
    transform({"img": coordinate_image(height, width)})
    control = transform.control_displacements().numpy()
    along_rows = cubic_convolution_weights(height, 4)
    along_columns = cubic_convolution_weights(width, 4)
    expected = np.einsum("hi,cij,wj->chw", along_rows, control, along_columns)
    np.testing.assert_allclose(transform.displacement_field((height, width)).numpy(), expected, atol=1e-4)


def test_displacement_statistics_match_the_paper():
    transform = elastic(displacement_std=10.0).set_random_state(2015)
    # A 5x5 image has its control points at 0, 2, 4 and the half-way points at 1, 3, the same relative
    # positions as 64 and 32 in a 129x129 image; small images keep the 400 draws fast.
    # test_control_points_on_corners_edges_and_centre shows that images move by displacement_field.
    samples = {"centre": [], "half_half": [], "half_control": []}
    for _ in range(400):
        transform({"img": np.zeros((1, 5, 5), dtype=np.float32)})
        displacement = transform.displacement_field((5, 5)).numpy()
        samples["centre"].append(displacement[:, 2, 2])
        samples["half_half"].append(displacement[:, 1, 1])
        samples["half_control"].append(displacement[:, 1, 2])
    centre = np.array(samples["centre"])
    # a control point: N(0, 10^2) per component, components independent
    assert centre.std() == pytest.approx(10.0, rel=0.1)
    assert abs(centre.mean()) < 1.5
    assert abs(np.corrcoef(centre[:, 0], centre[:, 1])[0, 1]) < 0.15
    # half-way between control points 0 and 1 the cubic weights on nodes (0, 1, 2) are
    # (-0.09375 + 0.59375, 0.59375, -0.09375) = (0.5, 0.59375, -0.09375): variance factor 0.611328 per axis
    factor = 0.5**2 + 0.59375**2 + 0.09375**2
    assert factor == pytest.approx(0.611328, abs=1e-6)
    assert np.array(samples["half_control"]).std() == pytest.approx(10.0 * np.sqrt(factor), rel=0.1)
    assert np.array(samples["half_half"]).std() == pytest.approx(10.0 * factor, rel=0.1)


def test_field_is_smooth():
    transform = elastic().set_random_state(11)
    size = 257
    for _ in range(20):
        transform({"img": np.zeros((1, 8, 8), dtype=np.float32)})
        field = transform.displacement_field((size, size)).numpy()
        for axis in (1, 2):
            first = np.diff(field, axis=axis)
            second = np.diff(field, n=2, axis=axis)
            # control spacing 128 px: a 10 px std field changes by well under a pixel per pixel,
            # and its slope changes slowly (no jumps as a nearest/linear upsampling would have)
            assert np.abs(first).max() < 1.0
            assert np.abs(second).max() < 0.02


def test_label_keeps_its_values_and_keys_share_the_deformation():
    rng = np.random.default_rng(0)
    label = np.zeros((1, 96, 80), dtype=np.float32)
    label[0, 20:60, 10:50] = 1
    label[0, 50:90, 40:75] = 2
    image = label * 100 + rng.normal(size=label.shape).astype(np.float32)
    transform = RandPaperElasticd(keys=("image", "label")).set_random_state(5)
    out = transform({"image": image, "label": label})
    assert out["image"].shape == image.shape and out["label"].shape == label.shape
    assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0, 2.0}
    assert not torch.equal(out["label"], torch.as_tensor(label))
    # the deformed image still lines up with the deformed label
    deformed_image, deformed_label = out["image"][0], out["label"][0]
    assert (deformed_image[deformed_label == 2] > 150).float().mean() > 0.95
    assert (deformed_image[deformed_label == 0] < 50).float().mean() > 0.95


def test_determinism_and_probability():
    image = {"img": coordinate_image(40, 50)}
    first = elastic().set_random_state(42)(image)["img"]
    second = elastic().set_random_state(42)(image)["img"]
    assert torch.equal(first, second)
    other = elastic().set_random_state(43)(image)["img"]
    assert not torch.equal(first, other)
    composed = Compose([elastic()]).set_random_state(42)
    again = Compose([elastic()]).set_random_state(42)
    assert torch.equal(composed(image)["img"], again(image)["img"])
    unchanged = elastic(prob=0.0)(image)["img"]
    np.testing.assert_allclose(np.asarray(unchanged), image["img"], atol=1e-4)


def test_spacing_follows_each_sample_size():
    transform = elastic(displacement_std=3.0).set_random_state(0)
    for height, width in ((33, 65), (129, 41)):
        displacement, _ = measured_displacement(transform, height, width)
        assert transform.rand_2d_elastic.deform_grid.spacing == ((height - 1) / 2, (width - 1) / 2)
        centre = transform.control_displacements().numpy()[:, 1, 1]
        np.testing.assert_allclose(displacement[:, (height - 1) // 2, (width - 1) // 2], centre, atol=1e-3)


def test_tensor_input_and_errors():
    data = {"img": torch.rand(2, 32, 48)}
    out = elastic().set_random_state(1)(data)["img"]
    assert out.shape == (2, 32, 48) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="2D"):
        elastic()({"img": torch.rand(1, 8, 8, 8)})
    with pytest.raises(ValueError, match="one spatial size"):
        elastic(keys=("a", "b"))({"a": torch.rand(1, 8, 8), "b": torch.rand(1, 8, 9)})
    with pytest.raises(ValueError, match="one per key"):
        RandPaperElasticd(keys=("a", "b", "c"), mode=("bicubic", "nearest"))
    with pytest.raises(ValueError, match="grid_points"):
        RandPaperElasticd(keys="a", grid_points=1)
    with pytest.raises(ValueError, match="displacement_std"):
        RandPaperElasticd(keys="a", displacement_std=-1.0)
