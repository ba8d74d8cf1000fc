"""HED stain augmentation (Tellez et al. 2018): colour deconvolution, its inverse, and the random jitter."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image
from skimage.color import hed2rgb, rgb2hed

from tests.conftest import require_dataset
from transforms import RandHEDStainJitter, RandHEDStainJitterd, hed_to_rgb, jitter_hed_stains, rgb_to_hed


def he_image(size: int = 64, seed: int = 0) -> torch.Tensor:
    """A small RGB image [3, H, W] in [0, 1]: a real MoNuSeg crop when the data are there, else pink/purple noise."""
    try:
        folder = require_dataset("monuseg2018")
    except pytest.skip.Exception:
        folder = None
    if folder is not None:
        path = sorted((folder / "images").glob("*.tif"))[0]
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))[300 : 300 + size, 400 : 400 + size] / 255.0
    else:
        rng = np.random.default_rng(seed)
        array = np.clip(np.array([0.75, 0.45, 0.7]) + 0.15 * rng.standard_normal((size, size, 3)), 0.05, 1)
    return torch.as_tensor(array, dtype=torch.float32).permute(2, 0, 1).contiguous()


def test_deconvolution_matches_skimage_and_inverts_exactly():
    image = he_image()
    stains = rgb_to_hed(image)
    reference = rgb2hed(image.permute(1, 2, 0).double().numpy())
    ours = stains.permute(1, 2, 0).double().numpy()
    # skimage clips negative concentrations (colours outside the stain cone) to 0; elsewhere both agree
    inside = (ours >= 0).all(axis=-1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(ours[inside], reference[inside], atol=1e-5)
    np.testing.assert_allclose(np.maximum(ours, 0), reference, atol=1e-5)
    # the inverse is skimage.color.hed2rgb for concentrations skimage can produce, and exact on our own
    np.testing.assert_allclose(
        hed_to_rgb(torch.as_tensor(reference).permute(2, 0, 1)).permute(1, 2, 0).numpy(), hed2rgb(reference), atol=1e-6
    )
    assert torch.allclose(hed_to_rgb(stains), image, atol=1e-5)


def test_scale_and_shift_act_on_the_stain_concentrations():
    image = he_image()
    scale, shift = (1.1, 0.9, 1.0), (0.01, -0.005, 0.0)
    expected = hed_to_rgb(
        rgb_to_hed(image) * torch.tensor(scale).view(3, 1, 1) + torch.tensor(shift).view(3, 1, 1)
    )
    assert torch.allclose(jitter_hed_stains(image, scale, shift), expected, atol=1e-6)
    # Beer-Lambert by hand: 0.02 more haematoxylin raises the optical density -ln(I) of every pixel by
    # 0.02 * ln(10^6) times the haematoxylin stain vector (0.65, 0.70, 0.29) of Ruifrok and Johnston
    darker = jitter_hed_stains(image, (1.0, 1.0, 1.0), (0.02, 0.0, 0.0))
    assert bool((darker <= image + 1e-6).all())
    density_rise = -torch.log(darker / image).mean(dim=(1, 2))
    expected_rise = 0.02 * np.log(1e6) * torch.tensor([0.65, 0.70, 0.29])
    assert torch.allclose(density_rise, expected_rise, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_jitter_keeps_shape_dtype_range_and_meta(dtype):
    image = MetaTensor(he_image().to(dtype), meta={"filename_or_obj": "tile.tif"})
    jitter = RandHEDStainJitter(scale_range=0.2, shift_range=0.05, prob=1.0)
    jitter.set_random_state(seed=3)
    out = jitter(image)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "tile.tif"
    assert out.shape == image.shape and out.dtype == dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.allclose(out, image, atol=1e-3)
    assert np.all((jitter.scale >= 0.8) & (jitter.scale <= 1.2)) and np.all(np.abs(jitter.shift) <= 0.05)
    numpy_out = jitter(image.numpy())
    assert isinstance(numpy_out, torch.Tensor)  # MONAI convention: random transforms return tensors


def test_identity_when_the_ranges_are_zero():
    image = he_image()
    out = RandHEDStainJitter(scale_range=0.0, shift_range=0.0, prob=1.0)(image)
    assert torch.allclose(out, image, atol=1e-5)


def test_same_seed_same_result_and_probability_zero_is_a_no_op():
    image = he_image()
    first = RandHEDStainJitterd(keys="image", prob=1.0).set_random_state(seed=7)({"image": image})["image"]
    second = RandHEDStainJitterd(keys="image", prob=1.0).set_random_state(seed=7)({"image": image})["image"]
    other = RandHEDStainJitterd(keys="image", prob=1.0).set_random_state(seed=8)({"image": image})["image"]
    assert torch.equal(first, second) and not torch.equal(first, other)
    untouched = RandHEDStainJitterd(keys="image", prob=0.0)({"image": image})["image"]
    assert torch.equal(untouched, image)


def test_dictionary_version_applies_the_same_factors_to_every_key():
    image = he_image()
    jitter = RandHEDStainJitterd(keys=["a", "b"], scale_range=0.1, shift_range=0.02, prob=1.0).set_random_state(0)
    out = jitter({"a": image, "b": image.clone(), "label": torch.ones(1, 4, 4)})
    assert torch.equal(out["a"], out["b"]) and torch.equal(out["label"], torch.ones(1, 4, 4))
    assert torch.allclose(out["a"], jitter_hed_stains(image, jitter.jitter.scale, jitter.jitter.shift))


def test_bad_inputs_name_the_problem_and_the_file():
    jitter = RandHEDStainJitter(prob=1.0)
    with pytest.raises(ValueError, match=r"gray\.png: HED stain augmentation expects a channel-first RGB"):
        jitter(MetaTensor(torch.rand(1, 8, 8), meta={"filename_or_obj": "gray.png"}))
    with pytest.raises(ValueError, match="expects intensities in \\[0, 1\\].*ScaleIntensityRanged"):
        jitter(torch.rand(3, 8, 8) * 255)
    with pytest.raises(ValueError, match="expects float intensities"):
        jitter(torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8))
    with pytest.raises(ValueError, match="scale_range must be a finite number >= 0"):
        RandHEDStainJitter(scale_range=-0.1)
    with pytest.raises(ValueError, match="scale_range must be < 1"):
        RandHEDStainJitter(scale_range=1.0)
    with pytest.raises(ValueError, match="one value per stain"):
        jitter_hed_stains(he_image(), (1.0, 1.0), (0.0, 0.0, 0.0))
