"""Tests for transforms/instances.py and weight_map.py: instances, separation borders, the U-Net weight map (eq. 2)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from monai.data import MetaTensor
from transforms import (
    BorderWeightMap,
    BorderWeightMapd,
    InstancesFromBinary,
    InstancesFromBinaryd,
    InstancesToForegroundWithBorders,
    InstancesToForegroundWithBordersd,
    class_balance_weights,
)


def border_term(distance_sum: float, w0: float = 10.0, sigma: float = 5.0) -> float:
    return w0 * math.exp(-(distance_sum**2) / (2 * sigma**2))


def phc_instances(phc_dir) -> np.ndarray:
    return np.array(Image.open(phc_dir / "set1" / "instances_ids.png"))[None]


# ---------------------------------------------------------------- InstancesFromBinary


def test_instances_from_binary_connectivity():
    binary = np.zeros((1, 5, 5), dtype=np.uint8)
    binary[0, :2, :2] = 255
    binary[0, 2:4, 2:4] = 255  # touches the first block at one corner only
    binary[0, 4, 0] = 255
    four = InstancesFromBinary()(binary)
    assert four.shape == (1, 5, 5) and four.dtype == np.int32
    assert four.max() == 3
    assert len(np.unique(four[0, :2, :2])) == 1 and four[0, 0, 0] != four[0, 3, 3]
    eight = InstancesFromBinary(connectivity=2)(binary)
    assert eight.max() == 2 and eight[0, 0, 0] == eight[0, 3, 3]
    assert np.array_equal(four > 0, binary > 0)


def test_instances_from_binary_threshold_tensor_and_errors():
    label = torch.tensor([[[0.0, 0.4, 0.6, 0.0, 1.0]]])
    out = InstancesFromBinary(threshold=0.5)(label)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int32
    assert out.tolist() == [[[0, 0, 1, 0, 2]]]
    with pytest.raises(ValueError, match="connectivity"):
        InstancesFromBinary(connectivity=3)(label)
    with pytest.raises(ValueError, match="channel-first"):
        InstancesFromBinary()(np.zeros((2, 4, 4)))


def test_instances_from_binary_dict_and_isbi(isbi_dir):
    label = np.array(Image.open(isbi_dir / "label" / "0.png"))[None]
    data = InstancesFromBinaryd("label", output_keys="label_instances")({"label": label})
    assert data["label"] is label
    instances = data["label_instances"]
    assert instances.shape == label.shape
    # the membranes (0) separate the EM cells into many instances
    assert instances.max() > 50
    assert np.array_equal(instances > 0, label > 0)


# ---------------------------------------------------------------- separation borders


def two_touching_blocks() -> np.ndarray:
    instances = np.zeros((1, 8, 14), dtype=np.int32)
    instances[0, 1:7, 1:5] = 1
    instances[0, 1:7, 5:9] = 2  # shares the boundary between columns 4 and 5 with instance 1
    instances[0, 2:5, 11:13] = 3  # isolated
    return instances


@pytest.mark.parametrize(
    "border_width, removed_from_1, removed_from_2", [(1, [], [5]), (2, [4], [5]), (3, [4], [5, 6])]
)
def test_border_width_splits_between_touching_instances(border_width, removed_from_1, removed_from_2):
    instances = two_touching_blocks()
    foreground = InstancesToForegroundWithBorders(border_width=border_width)(instances)
    assert foreground.dtype == np.float32 and set(np.unique(foreground)) == {0.0, 1.0}
    gap_columns = sorted(removed_from_1 + removed_from_2)
    assert len(gap_columns) == border_width
    for column in range(1, 9):
        expected = 0.0 if column in gap_columns else 1.0
        assert np.all(foreground[0, 1:7, column] == expected), column
    # the isolated instance and the outer background are untouched
    assert np.array_equal(foreground[0, :, 10:], (instances[0, :, 10:] > 0).astype(np.float32))
    assert foreground[0, 0].sum() == 0 and foreground[0, 7].sum() == 0


def test_border_separates_diagonal_contacts_and_keeps_separated_cells():
    instances = np.zeros((1, 6, 12), dtype=np.int32)
    instances[0, 0:2, 0:2] = 1
    instances[0, 2:4, 2:4] = 2  # touches instance 1 only diagonally
    instances[0, 0:3, 6:8] = 3
    instances[0, 0:3, 10:12] = 4  # two background columns from instance 3
    foreground = InstancesToForegroundWithBorders()(instances)[0] > 0
    components, count = ndimage.label(foreground, structure=np.ones((3, 3)))
    assert count == 4
    for component in range(1, count + 1):
        assert len(np.unique(instances[0][components == component])) == 1
    assert foreground[0, 0] and foreground[3, 3]
    assert not foreground[1, 1] and not foreground[2, 2]
    assert np.array_equal(foreground[:, 5:], instances[0, :, 5:] > 0)
    assert np.array_equal(InstancesToForegroundWithBorders(border_width=0)(instances)[0] > 0, instances[0] > 0)


def test_border_errors_and_dict():
    with pytest.raises(ValueError, match="border_width"):
        InstancesToForegroundWithBorders(border_width=-1)
    with pytest.raises(ValueError, match="integer ids"):
        InstancesToForegroundWithBorders()(np.full((1, 3, 3), 0.5))
    with pytest.raises(ValueError, match="output_keys"):
        InstancesToForegroundWithBordersd("a", output_keys=("b", "c"))
    instances = torch.as_tensor(two_touching_blocks())
    data = InstancesToForegroundWithBordersd("label_instances", output_keys="label")({"label_instances": instances})
    assert isinstance(data["label"], torch.Tensor) and data["label"].shape == instances.shape
    assert data["label"].sum() == (instances > 0).sum() - 2 * 6


def test_border_on_phc_leaves_one_instance_per_component(phc_dir):
    instances = phc_instances(phc_dir)
    foreground = InstancesToForegroundWithBorders()(instances)[0] > 0
    assert 0 < foreground.sum() < (instances > 0).sum()
    components, count = ndimage.label(foreground, structure=np.ones((3, 3)))
    ids_per_component = ndimage.labeled_comprehension(
        instances[0], components, np.arange(1, count + 1), lambda v: len(np.unique(v)), int, 0
    )
    assert np.all(ids_per_component == 1)


# ---------------------------------------------------------------- class balance


def test_class_balance_weights_formula():
    class_map = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    # N = 9, K = 3: 9 / (3 * 6), 9 / (3 * 2), 9 / (3 * 1)
    assert np.allclose(class_balance_weights(class_map), [0.5, 1.5, 3.0])
    assert np.allclose(class_balance_weights(class_map)[class_map].mean(), 1.0)
    # class 1 absent: K = 2 present classes, the absent one weighs 0
    assert np.allclose(class_balance_weights(np.array([0, 0, 0, 2])), [4 / 6, 0.0, 2.0])
    assert np.allclose(class_balance_weights(np.zeros(5, dtype=int)), [1.0])


# ---------------------------------------------------------------- weight map: hand-computed cases

W_BG_1X9 = 9 / (2 * 7)  # N = 9 pixels, K = 2 classes, 7 background pixels
W_FG_1X9 = 9 / (2 * 2)  # 2 foreground pixels


def test_weight_map_two_pixels_on_a_row_by_hand():
    instances = np.zeros((1, 1, 9), dtype=np.int32)
    instances[0, 0, 2] = 1
    instances[0, 0, 6] = 2
    weight = BorderWeightMap(w0=10.0, sigma=5.0)(instances)
    assert weight.shape == (1, 1, 9) and weight.dtype == np.float32
    # column: (d1, d2) -> d1 + d2; foreground columns 2 and 6 carry no border term
    expected = [
        W_BG_1X9 + border_term(2 + 6),  # column 0
        W_BG_1X9 + border_term(1 + 5),  # column 1
        W_FG_1X9,
        W_BG_1X9 + border_term(1 + 3),  # column 3
        W_BG_1X9 + border_term(2 + 2),  # column 4
        W_BG_1X9 + border_term(3 + 1),  # column 5
        W_FG_1X9,
        W_BG_1X9 + border_term(5 + 1),  # column 7
        W_BG_1X9 + border_term(6 + 2),  # column 8
    ]
    # the same numbers written out: exp(-64/50), exp(-36/50), exp(-16/50)
    assert expected[0] == pytest.approx(0.642857 + 2.780373, abs=1e-5)
    assert expected[1] == pytest.approx(0.642857 + 4.867523, abs=1e-5)
    assert expected[4] == pytest.approx(0.642857 + 7.261490, abs=1e-5)
    np.testing.assert_allclose(weight[0, 0], expected, rtol=1e-6)


def test_weight_map_uses_second_nearest_not_farthest():
    instances = np.zeros((1, 1, 9), dtype=np.int32)
    instances[0, 0, [0, 4, 8]] = [1, 2, 3]
    weight = BorderWeightMap()(instances)[0, 0]
    w_bg, w_fg = 9 / (2 * 6), 9 / (2 * 3)
    # every background pixel has d1 + d2 = 4 (e.g. column 1: d = 1, 3, 7)
    expected = [w_fg] + [w_bg + border_term(4)] * 3 + [w_fg] + [w_bg + border_term(4)] * 3 + [w_fg]
    np.testing.assert_allclose(weight, expected, rtol=1e-6)


def test_weight_map_euclidean_distances_by_hand():
    instances = np.zeros((1, 4, 5), dtype=np.int32)
    instances[0, 0, 0] = 1
    instances[0, 3, 4] = 2
    weight = BorderWeightMap(class_weights=(1.0, 1.0))(instances)[0]
    assert weight[0, 0] == pytest.approx(1.0) and weight[3, 4] == pytest.approx(1.0)
    assert weight[3, 0] == pytest.approx(1.0 + border_term(3 + 4), rel=1e-6)
    assert weight[0, 4] == pytest.approx(1.0 + border_term(4 + 3), rel=1e-6)
    assert weight[1, 2] == pytest.approx(1.0 + border_term(math.sqrt(1 + 4) + math.sqrt(4 + 4)), rel=1e-6)
    assert weight[2, 2] == pytest.approx(1.0 + border_term(math.sqrt(4 + 4) + math.sqrt(1 + 4)), rel=1e-6)


def test_weight_map_3d_and_anisotropic_spacing_by_hand():
    instances = np.zeros((1, 3, 3, 5), dtype=np.int32)
    instances[0, 1, 1, 0] = 1
    instances[0, 1, 1, 4] = 2
    weight = BorderWeightMap(class_weights=(1.0, 1.0))(instances)[0]
    assert weight.shape == (3, 3, 5)
    assert weight[0, 0, 2] == pytest.approx(1.0 + border_term(2 * math.sqrt(1 + 1 + 4)), rel=1e-6)
    assert weight[1, 1, 2] == pytest.approx(1.0 + border_term(2 + 2), rel=1e-6)

    column = np.zeros((1, 5, 1), dtype=np.int32)
    column[0, 0, 0], column[0, 4, 0] = 1, 2
    stretched = BorderWeightMap(class_weights=(1.0, 1.0), spacing=(2.0, 1.0))(column)[0, :, 0]
    assert stretched[2] == pytest.approx(1.0 + border_term(4 + 4), rel=1e-6)


# ---------------------------------------------------------------- weight map: properties


def close_and_far_cells() -> np.ndarray:
    instances = np.zeros((1, 40, 60), dtype=np.int32)
    instances[0, 10:30, 5:20] = 1
    instances[0, 10:30, 22:35] = 2  # two background columns (20, 21) from cell 1
    instances[0, 15:25, 50:56] = 3  # far from both
    return instances


def test_weight_map_is_at_least_class_weight_and_peaks_between_close_cells():
    instances = close_and_far_cells()
    weight = BorderWeightMap()(instances)[0]
    class_weight = class_balance_weights(instances[0] > 0)[(instances[0] > 0).astype(int)]
    border = weight - class_weight
    assert np.all(border >= -1e-6)
    assert np.allclose(border[instances[0] > 0], 0.0, atol=1e-6)
    row, column = np.unravel_index(np.argmax(border), border.shape)
    assert 10 <= row < 30 and column in (20, 21)
    # in the gap d1 = 1, d2 = 2
    assert border[row, column] == pytest.approx(border_term(1 + 2), rel=1e-5)
    assert border[20, 42] < border[20, 20]


def test_weight_map_with_zero_or_one_instance_is_class_weight():
    empty = np.zeros((1, 6, 7), dtype=np.int32)
    np.testing.assert_array_equal(BorderWeightMap()(empty), np.ones((1, 6, 7), dtype=np.float32))
    single = np.zeros((1, 6, 7), dtype=np.int32)
    single[0, 1:3, 1:4] = 5
    weight = BorderWeightMap()(single)[0]
    # N = 42, 6 foreground and 36 background pixels, no second cell so no border term
    assert np.allclose(weight[single[0] > 0], 42 / (2 * 6))
    assert np.allclose(weight[single[0] == 0], 42 / (2 * 36))
    nearest, second = BorderWeightMap().nearest_two_distances(single[0], (1.0, 1.0))
    assert np.all(np.isinf(second)) and nearest[0, 0] == pytest.approx(math.sqrt(2))


def test_weight_map_options():
    instances = close_and_far_cells()
    fixed = BorderWeightMap(class_weights=(1.0, 3.0), w0=0.0)(instances)[0]
    np.testing.assert_allclose(fixed, np.where(instances[0] > 0, 3.0, 1.0))
    on_foreground = BorderWeightMap(class_weights=(1.0, 1.0), border_on_foreground=True)(instances)[0]
    # last pixel of cell 1 before the gap: d1 = 0, d2 = 3
    assert on_foreground[20, 19] == pytest.approx(1.0 + border_term(0 + 3), rel=1e-6)
    with pytest.raises(ValueError, match="class_weights has 2 entries"):
        BorderWeightMap(class_weights=(1.0, 1.0))(instances, foreground=np.full_like(instances, 2))
    with pytest.raises(ValueError, match="sigma"):
        BorderWeightMap(sigma=0.0)
    with pytest.raises(ValueError, match="tolerance"):
        BorderWeightMap(tolerance=1.0)
    with pytest.raises(ValueError, match="channel-first"):
        BorderWeightMap()(instances[0])
    with pytest.raises(ValueError, match="negative"):
        BorderWeightMap()(-instances)
    with pytest.raises(ValueError, match="foreground shape"):
        BorderWeightMap()(instances, foreground=np.zeros((1, 40, 59)))


def test_weight_map_foreground_with_borders_gives_border_pixels_background_weight():
    instances = two_touching_blocks()
    foreground = InstancesToForegroundWithBorders(border_width=2)(instances)
    weight = BorderWeightMap(class_weights=(1.0, 2.0))(instances, foreground)[0]
    # the removed columns 4 and 5 are background: distances 1 and 2 to the separated cells
    np.testing.assert_allclose(weight[1:7, 4], 1.0 + border_term(1 + 2), rtol=1e-5)
    np.testing.assert_allclose(weight[1:7, 5], 1.0 + border_term(2 + 1), rtol=1e-5)
    assert np.allclose(weight[foreground[0] > 0], 2.0)


def test_weight_map_cutoff_matches_full_distance_transforms():
    rng = np.random.default_rng(0)
    instances = np.zeros((1, 80, 90), dtype=np.int32)
    for index in range(1, 13):
        row, column = rng.integers(0, 75, size=2)
        instances[0, row : row + 4, column : column + 5] = index * 7  # sparse ids
    fast = BorderWeightMap(tolerance=1e-6)(instances)[0]
    # tolerance 1e-300: the cutoff covers the whole image, i.e. full distance transforms
    full = BorderWeightMap(tolerance=1e-300)(instances)[0]
    assert np.abs(fast - full).max() <= 10.0 * 1e-6 + 1e-6
    assert BorderWeightMap(sigma=5.0, tolerance=1e-6).cutoff == pytest.approx(26.28, abs=0.01)


def test_weight_map_containers_and_dict():
    instances = MetaTensor(torch.as_tensor(close_and_far_cells()), meta={"filename_or_obj": "cells.png"})
    weight = BorderWeightMap()(instances)
    assert isinstance(weight, MetaTensor) and weight.dtype == torch.float32 and weight.shape == (1, 40, 60)
    assert weight.meta["filename_or_obj"] == "cells.png"
    data = {"label_instances": instances}
    data = InstancesToForegroundWithBordersd("label_instances", output_keys="label")(data)
    data = BorderWeightMapd("label_instances", weight_key="weight", foreground_key="label")(data)
    expected = BorderWeightMap()(instances, data["label"])
    assert torch.equal(data["weight"], expected)
    with pytest.raises(KeyError, match="foreground_key"):
        BorderWeightMapd("label_instances", foreground_key="missing")({"label_instances": instances})
    with pytest.raises(ValueError, match="weight_key"):
        BorderWeightMapd(("a", "b"), weight_key="weight")


def test_weight_map_on_phc_touching_cells(phc_dir):
    instances = phc_instances(phc_dir)
    start = time.perf_counter()
    foreground = InstancesToForegroundWithBorders()(instances)
    weight = BorderWeightMap(w0=10.0, sigma=5.0)(instances, foreground)
    elapsed = time.perf_counter() - start
    cells = len(np.unique(instances)) - 1
    print(f"phc set1 {instances.shape[1:]} with {cells} cells: borders + weight map {elapsed:.2f} s")
    assert elapsed < 60.0  # generous: catches full-image distance transforms per cell, not machine noise
    assert weight.shape == instances.shape and weight.dtype == np.float32
    is_foreground = foreground[0] > 0
    w_bg, w_fg = class_balance_weights(is_foreground)
    assert np.allclose(weight[0][is_foreground], w_fg)
    assert weight.min() == pytest.approx(w_bg)
    # the largest weight sits in a separation gap (d1 + d2 = 2 or 3 px): close to w_c + w0
    assert w_bg + border_term(3) - 1e-4 <= weight.max() <= w_bg + 10.0
    row, column = np.unravel_index(np.argmax(weight[0]), weight.shape[1:])
    window = instances[0, max(row - 2, 0) : row + 3, max(column - 2, 0) : column + 3]
    assert len(np.unique(window[window > 0])) >= 2
