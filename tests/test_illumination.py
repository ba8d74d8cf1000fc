"""Flat-field correction of uneven illumination (transforms/illumination.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRangePercentiles

from transforms import FlatFieldCorrection, FlatFieldCorrectiond, estimate_background


def _illuminated_texture(shape=(96, 128), seed=0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image, illumination, reflectance): fine random texture times a smooth left-to-right brightness ramp."""
    generator = torch.Generator().manual_seed(seed)
    reflectance = 1.0 + 0.2 * torch.rand((1, *shape), generator=generator)
    ramp = torch.linspace(0.5, 1.5, shape[1]).expand(1, *shape)
    return reflectance * ramp * 1000.0, ramp, reflectance


def test_background_of_a_constant_image_is_that_constant_up_to_the_border():
    image = torch.full((2, 40, 50), 7.0)
    background = estimate_background(image, sigma=8.0)
    assert background.shape == image.shape and background.dtype == torch.float32
    # normalised convolution: no darkening towards the zero padding
    torch.testing.assert_close(background, image, rtol=1e-5, atol=1e-4)


def test_background_follows_a_smooth_ramp_and_ignores_fine_texture():
    image, ramp, _ = _illuminated_texture()
    background = estimate_background(image, sigma=12.0)
    # the ramp is linear, which a symmetric blur keeps, except within a few sigma of the left/right border
    interior = (slice(None), slice(None), slice(40, 88))
    relative = background[interior] / (ramp[interior] * 1100.0)  # 1100 = mean of the texture times 1000
    assert float((relative - 1).abs().max()) < 0.02


def test_downsampled_background_matches_the_full_resolution_blur():
    image, _, _ = _illuminated_texture(seed=1)
    exact = estimate_background(image, sigma=16.0, downsample=1)
    fast = estimate_background(image, sigma=16.0, downsample=4)
    assert float(((fast - exact).abs() / exact).max()) < 0.02


def test_divide_removes_a_multiplicative_ramp():
    image, _, reflectance = _illuminated_texture()
    corrected = FlatFieldCorrection(sigma=12.0)(image)
    columns_before = image[0, :, 40:88].mean(dim=0)
    columns_after = corrected[0, :, 40:88].mean(dim=0)
    # the brightness ramp (x1.46 over these columns) is gone, the texture (reflectance) is kept
    assert float(columns_before.max() / columns_before.min()) > 1.4
    assert float(columns_after.max() / columns_after.min()) < 1.05
    correlation = np.corrcoef(corrected[0, :, 40:88].flatten(), reflectance[0, :, 40:88].flatten())[0, 1]
    assert correlation > 0.95
    # multiplied back by the mean background: same intensity scale as the input
    assert abs(float(corrected.mean() / image.mean()) - 1.0) < 0.05


def test_subtract_removes_an_additive_ramp():
    shape = (64, 96)
    texture = 100.0 * torch.rand((1, *shape), generator=torch.Generator().manual_seed(2))
    ramp = torch.linspace(0.0, 500.0, shape[1]).expand(1, *shape)
    corrected = FlatFieldCorrection(sigma=10.0, mode="subtract")(texture + ramp)
    columns = corrected[0, :, 30:66].mean(dim=0)
    assert float(columns.max() - columns.min()) < 15.0  # the ramp spans 190 over these columns


def test_all_zero_image_stays_zero_through_the_bundle_normalisation():
    scale = ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)
    corrected = FlatFieldCorrection()(torch.zeros(1, 50, 60))
    assert float(corrected.abs().max()) == 0.0
    with pytest.warns(Warning, match="Divide by zero"):  # MONAI's percentile scaling of a constant image
        normalised = scale(corrected)
    assert torch.isfinite(normalised).all() and float(normalised.abs().max()) == 0.0


def test_constant_image_stays_constant_and_finite():
    corrected = FlatFieldCorrection()(torch.full((1, 50, 60), 1234.0))
    torch.testing.assert_close(corrected, torch.full((1, 50, 60), 1234.0), rtol=1e-5, atol=0.0)


def test_dark_corner_is_floored_not_blown_up():
    image = torch.zeros(1, 64, 64)
    image[:, 32:, 32:] = 1000.0
    corrected = FlatFieldCorrection(sigma=4.0)(image)
    assert torch.isfinite(corrected).all()
    assert float(corrected.max()) <= 1000.0 / 1e-3  # at most image / (min_background * mean) * mean


def test_types_metadata_and_16_bit_input_are_kept():
    array = (np.random.default_rng(0).integers(0, 65535, (1, 32, 48))).astype(np.uint16)
    out = FlatFieldCorrection(sigma=6.0)(array)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == array.shape
    image = MetaTensor(torch.as_tensor(array.astype(np.float32)), meta={"filename_or_obj": "frame.tif"})
    out = FlatFieldCorrectiond(keys="image", sigma=6.0)({"image": image, "other": 1})
    assert isinstance(out["image"], MetaTensor) and out["image"].meta["filename_or_obj"] == "frame.tif"
    assert out["other"] == 1


def test_sigma_zero_is_the_identity():
    image = torch.rand(1, 20, 20)
    torch.testing.assert_close(FlatFieldCorrection(sigma=0)(image), image)


def test_3d_input():
    image = torch.rand(1, 16, 20, 24) + 1.0
    assert FlatFieldCorrection(sigma=3.0)(image).shape == image.shape


def test_non_finite_input_names_the_file():
    image = MetaTensor(torch.ones(1, 8, 8), meta={"filename_or_obj": "/data/bad.tif"})
    image[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="bad.tif.*NaN"):
        FlatFieldCorrection(sigma=2.0)(image)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"mode": "multiply"}, "mode"),
        ({"downsample": 0}, "downsample"),
        ({"min_background": 0.0}, "min_background"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlatFieldCorrection(**kwargs)


def test_estimate_background_rejects_bad_shapes():
    with pytest.raises(ValueError, match="channel-first"):
        estimate_background(torch.ones(5), sigma=2.0)
    with pytest.raises(ValueError, match="sigma"):
        estimate_background(torch.ones(1, 5, 5), sigma=0.0)
