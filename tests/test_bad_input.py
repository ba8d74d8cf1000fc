"""Issue 14: a checkpoint of another width and an unreadable image give clear errors in every bundle's inference."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser, ConfigWorkflow
from PIL import Image

import custom_networks  # noqa: F401  (configs import it)
from tests.conftest import REPO_ROOT
from transforms import CheckpointMismatchError, DataValidationError, ResumeFromCheckpoint, check_checkpoint_fits

SMOKE = json.loads((REPO_ROOT / "tests" / "bundle_smoke_overrides.json").read_text())
BUNDLES = sorted(SMOKE)
WIDER = [8, 16, 32, 64, 128]


def _chain(error: BaseException) -> str:
    """Messages of an exception and all its causes (the config parser wraps the real error)."""
    texts = []
    while error is not None:
        texts.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return "\n".join(texts)


def _config(bundle: str) -> str:
    return str(REPO_ROOT / "bundles" / bundle / "configs" / "inference.json")


def _overrides(bundle: str, tmp_path: Path, **extra) -> dict:
    return {
        "bundle_root": str(REPO_ROOT / "bundles" / bundle),
        "features": SMOKE[bundle]["features"],
        "output_dir": str(tmp_path / "out"),
        "dataloader_workers": 0,
        **extra,
    }


def _network(bundle: str, features) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(_config(bundle))
    parser.update({"bundle_root": str(REPO_ROOT / "bundles" / bundle), "features": features})
    return parser.get_parsed_content("network_def")


def _good_image(bundle: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shape = (64, 64, 3) if bundle == "mcsa_unet_nuclei_segmentation" else (64, 64)
    path = folder / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)).save(path)
    return path


def _run_inference(bundle: str, tmp_path: Path, **extra) -> None:
    workflow = ConfigWorkflow(
        config_file=_config(bundle), workflow_type="infer", **_overrides(bundle, tmp_path, **extra)
    )
    workflow.initialize()
    workflow.run()


@pytest.mark.parametrize("bundle", BUNDLES)
def test_inference_with_checkpoint_of_another_width_names_file_widths_and_fix(bundle, tmp_path):
    checkpoint = tmp_path / "wide.pt"
    torch.save(_network(bundle, WIDER).state_dict(), checkpoint)
    image = _good_image(bundle, tmp_path / "in")
    with pytest.raises(Exception) as error:
        _run_inference(bundle, tmp_path, ckpt_path=str(checkpoint), input_images=str(image))
    text = _chain(error.value)
    assert "CheckpointMismatchError" in text
    assert str(checkpoint) in text
    assert "channel widths 8-128 (features [8, 16, 32, 64, 128])" in text
    assert "channel widths 4-64 (features [4, 8, 16, 32, 64])" in text
    assert "--features '[8, 16, 32, 64, 128]'" in text and "--ckpt_path" in text
    assert "first mismatch" in text


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("content", [b"", b"this is not an image\n"], ids=["empty", "text"])
def test_inference_with_unreadable_png_names_it(bundle, content, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x.png").write_bytes(content)
    checkpoint = tmp_path / "model.pt"
    torch.save(_network(bundle, SMOKE[bundle]["features"]).state_dict(), checkpoint)
    with pytest.raises(Exception) as error:
        _run_inference(bundle, tmp_path, ckpt_path=str(checkpoint), input_images=str(folder))
    text = _chain(error.value)
    assert "InvalidDicomError" not in text
    assert f"cannot read image file {folder / 'x.png'}" in text
    assert "not a readable image (PNG, JPEG, TIFF" in text
    assert ("empty file (0 bytes)" in text) == (content == b"")


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("content", [b"", b"this is not an image\n"], ids=["empty", "text"])
def test_loader_of_inference_config_names_unreadable_file(bundle, content, tmp_path):
    """The ``LoadImaged`` of the config, run on one path as MONAI Label (which wraps it) and evaluation do."""
    path = tmp_path / "x.png"
    path.write_bytes(content)
    parser = ConfigParser()
    parser.read_config(_config(bundle))
    parser.update(_overrides(bundle, tmp_path))
    loader = next(
        t for t in parser.get_parsed_content("preprocessing").transforms if type(t).__name__ == "CheckedLoadImaged"
    )
    with pytest.raises(DataValidationError) as error:
        loader({"image": str(path)})
    assert f"cannot read image file {path}" in str(error.value) and "not a readable image" in str(error.value)
    assert "InvalidDicomError" not in str(error.value)


def test_resume_from_stale_checkpoint_of_another_width_says_how_to_start_fresh(tmp_path):
    stale = custom_networks.UNet2015(spatial_dims=2, in_channels=1, out_channels=2, features=WIDER)
    optimizer = torch.optim.SGD(stale.parameters(), lr=0.1)
    path = tmp_path / "checkpoint_last.pt"
    torch.save({"model": stale.state_dict(), "optimizer": optimizer.state_dict(), "trainer": {"epoch": 1}}, path)
    net = custom_networks.UNet2015(spatial_dims=2, in_channels=1, out_channels=2, features=[4, 8, 16, 32, 64])
    trainer = Engine(lambda engine, batch: None)
    objects = {"model": net, "optimizer": torch.optim.SGD(net.parameters(), lr=0.1), "trainer": trainer}
    ResumeFromCheckpoint(path, objects).attach(trainer)
    with pytest.raises(CheckpointMismatchError) as error:
        trainer.run([0], max_epochs=1)
    text = str(error.value)
    assert str(path) in text and "UNet2015" in text
    assert "channel widths 8-128" in text and "channel widths 4-64" in text
    assert "--resume False" in text and "--ckpt_dir" in text and "--features '[8, 16, 32, 64, 128]'" in text


def test_check_checkpoint_fits_accepts_a_fitting_and_reports_a_foreign_state_dict():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 2, 1))
    check_checkpoint_fits(net, net.state_dict(), "same.pt")
    with pytest.raises(CheckpointMismatchError, match="not in the checkpoint"):
        check_checkpoint_fits(net, {"other.weight": torch.zeros(1)}, "foreign.pt")


def test_checkpoint_of_another_norm_at_the_same_width_says_to_pass_norm():
    """The phase-contrast U-Net (batch norm) loaded by the instance-norm inference.json: --norm, not --features."""
    from custom_networks import UNet2015

    batch = UNet2015(2, 1, 2, features=[4, 8, 16, 32, 64], padding="same", norm="batch")
    instance = UNet2015(2, 1, 2, features=[4, 8, 16, 32, 64], padding="same", norm="instance")
    with pytest.raises(CheckpointMismatchError, match="another normalisation; run with --norm batch"):
        check_checkpoint_fits(instance, batch.state_dict(), "phc.pt", strict=True)
