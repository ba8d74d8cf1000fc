"""The U-Net (2015) bundle end to end through ``python -m monai.bundle`` on real ISBI and phc images."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medseg_tools.runner import bundle_command, bundle_dir, run_bundle
from tests.conftest import REPO_ROOT, saved_epoch

BUNDLE = "unet_em_segmentation"
SMOKE = json.loads((REPO_ROOT / "tests" / "bundle_smoke_overrides.json").read_text())[BUNDLE]
FEATURES = SMOKE["features"]


def train(workdir: Path, epochs: int = 1, configs=("train.json",), **overrides):
    settings = {
        **SMOKE,
        "epochs": epochs,
        "ckpt_dir": workdir / "models",
        "output_dir": workdir / "eval",
        "log_dir": workdir / "runs",
        "train_output_size": 96,
        **overrides,
    }
    return run_bundle(BUNDLE, list(configs), target="training", overrides=settings, capture=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, isbi_dir):
    workdir = tmp_path_factory.mktemp("unet_bundle")
    result = train(workdir, dataset_dir=isbi_dir)
    return workdir, result


def test_training_writes_checkpoints(trained):
    workdir, result = trained
    models = workdir / "models"
    assert (models / "model.pt").is_file() and (models / "checkpoint_last.pt").is_file()
    record = json.loads((models / "model.pt.json").read_text())
    assert record["metric_name"] == "val_class_mean_dice" and 0 <= record["metric"] <= 1
    state = torch.load(models / "checkpoint_last.pt", weights_only=True)
    assert set(state) == {"model", "optimizer", "lr_scheduler", "trainer"}
    assert saved_epoch(models / "checkpoint_last.pt") == 1
    assert not list(models.glob("*.tmp")), "atomic saves must not leave temporary files"
    assert "val_rand_error" in result.stdout and "val_pixel_error" in result.stdout


def test_training_resumes_from_last_checkpoint(trained, tmp_path, isbi_dir):
    workdir, _ = trained
    models = tmp_path / "models"
    models.mkdir()
    for name in ("checkpoint_last.pt", "model.pt", "model.pt.json"):
        (models / name).write_bytes((workdir / "models" / name).read_bytes())
    result = train(tmp_path, epochs=2, dataset_dir=isbi_dir)
    assert "resumed from" in result.stdout and "at epoch 1" in result.stdout
    assert "Epoch: 1/2" not in result.stdout, "the finished epoch must not run again"
    assert saved_epoch(models / "checkpoint_last.pt") == 2


def test_killed_training_resumes(tmp_path, isbi_dir):
    # 32: instance norm needs more than one pixel at the bottom of the 4-level network
    settings = {**SMOKE, "train_ids": [0], "epochs": 500, "val_interval": 1000, "train_output_size": 32}
    settings.update(ckpt_dir=tmp_path / "models", output_dir=tmp_path / "eval", log_dir=tmp_path / "runs")
    settings["dataset_dir"] = isbi_dir
    command = bundle_command(BUNDLE, ["train.json"], target="training", overrides=settings)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "models" / "checkpoint_last.pt"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and process.poll() is None:
            if checkpoint.is_file() and saved_epoch(checkpoint) >= 2:
                break
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    epochs_done = saved_epoch(checkpoint)
    assert 2 <= epochs_done < 500
    result = run_bundle(BUNDLE, ["train.json"], "training", {**settings, "epochs": epochs_done + 1}, capture=True)
    assert f"at epoch {epochs_done}" in result.stdout
    assert saved_epoch(checkpoint) == epochs_done + 1


def test_evaluate_scores_a_whole_labelled_folder(trained, isbi_dir):
    workdir, _ = trained
    out = workdir / "eval_all"
    overrides = {"features": FEATURES, "ckpt_dir": workdir / "models", "output_dir": out, "val_ids": "all"}
    overrides["dataset_dir"] = isbi_dir
    run_bundle(BUNDLE, ["train.json", "evaluate.json"], overrides=overrides, capture=True)
    summary = dict(line.split(",") for line in (out / "metrics.csv").read_text().splitlines())
    assert set(summary) == {"val_class_mean_dice", "val_mean_dice", "val_mean_iou", "val_pixel_error", "val_rand_error"}
    assert all(0.0 <= float(value) <= 1.0 for value in summary.values())
    rows = (out / "val_rand_error_raw.csv").read_text().splitlines()
    assert len(rows) == 1 + 24, "the whole folder (24 images), not the validation split, is scored"


def test_inference_writes_masks_probabilities_and_uncertainty(trained, isbi_dir, phc_dir):
    workdir, _ = trained
    images = [isbi_dir / "image" / "20.png", phc_dir / "set29" / "raw.tif"]
    out = workdir / "predictions"
    overrides = {
        "features": FEATURES,
        "ckpt_path": workdir / "models" / "model.pt",
        "output_dir": out,
        "input_images": [str(path) for path in images],
        "tta": "flips",
        "uncertainty": "variance",
    }
    run_bundle(BUNDLE, ["inference.json"], overrides=overrides, capture=True)
    # outputs keep the inputs' sub-folders below their common folder, so same-named inputs do not collide
    for image_path, stem in zip(images, ("isbi2012_em/image/20", "phc_usiigaci/set29/raw")):
        size = Image.open(image_path).size
        mask = Image.open(out / f"{stem}_mask.png")
        probability = Image.open(out / f"{stem}_prob.png")
        assert mask.size == size and probability.size == size
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        assert np.asarray(probability).dtype == np.uint16
        uncertainty = np.asarray(Image.open(out / f"{stem}_uncertainty.tif"))
        assert uncertainty.shape == size[::-1] and np.isfinite(uncertainty).all() and uncertainty.min() >= 0


def test_phase_contrast_config_trains_and_reports_iou(tmp_path, phc_dir):
    result = train(tmp_path, configs=("train.json", "phc_cells.json"), dataset_dir=phc_dir, train_ids=[1], val_ids=[29])
    assert "val_mean_iou" in result.stdout
    assert (tmp_path / "models" / "model.pt").is_file()


def test_torchscript_export_matches_eager(trained, tmp_path):
    workdir, _ = trained
    root = bundle_dir(BUNDLE)
    exported = tmp_path / "model.ts"
    command = [
        *bundle_command(BUNDLE, ["inference.json"])[:3],
        "ckpt_export",
        "network_def",
        "--filepath",
        str(exported),
        "--ckpt_file",
        str(workdir / "models" / "model.pt"),
        "--meta_file",
        str(root / "configs" / "metadata.json"),
        "--config_file",
        str(root / "configs" / "inference.json"),
        "--bundle_root",
        str(root),
        "--features",
        json.dumps(FEATURES),
    ]
    subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, check=True)
    scripted = torch.jit.load(str(exported))
    from custom_networks import UNet2015

    eager = UNet2015(features=FEATURES, padding="same", norm="instance")  # the release recipe's network
    eager.load_state_dict(torch.load(workdir / "models" / "model.pt", weights_only=True))
    eager.eval()
    x = torch.rand(1, 1, 208, 208)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), eager(x), rtol=1e-4, atol=1e-5)


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.mark.parametrize(
    "problem, expected",
    [("size_mismatch", ["1.png", "size"]), ("rgb", ["0.png", "channel"]), ("empty", ["image/{id}.png"])],
)
def test_bad_dataset_fails_before_training_with_clear_error(tmp_path, problem, expected):
    dataset = tmp_path / "data"
    (dataset / "image").mkdir(parents=True)
    (dataset / "label").mkdir(parents=True)
    rng = np.random.default_rng(0)
    if problem != "empty":
        for index in range(3):
            _write_png(dataset / "image" / f"{index}.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))
            _write_png(dataset / "label" / f"{index}.png", np.full((64, 64), 255, np.uint8))
    if problem == "size_mismatch":
        _write_png(dataset / "label" / "1.png", np.full((60, 64), 255, np.uint8))
    if problem == "rgb":
        _write_png(dataset / "image" / "0.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(subprocess.CalledProcessError) as error:
        train(tmp_path, dataset_dir=dataset, train_ids="all", val_ids="all")
    assert "DataValidationError" in error.value.output
    for fragment in expected:
        assert fragment in error.value.output
    assert "Epoch: 1/" not in error.value.output


def test_inference_refuses_colour_image_naming_it(trained, tmp_path):
    workdir, _ = trained
    colour = tmp_path / "colour.png"
    _write_png(colour, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    overrides = {
        "features": FEATURES,
        "ckpt_path": workdir / "models" / "model.pt",
        "output_dir": tmp_path / "out",
        "input_images": str(colour),
    }
    with pytest.raises(subprocess.CalledProcessError) as error:
        run_bundle(BUNDLE, ["inference.json"], overrides=overrides, capture=True)
    assert "colour.png" in error.value.output and "expected 1 channel(s), found 3" in error.value.output
