"""The trained weights every bundle ships: within the size limits, listed with their md5 in large_files.yml,
segmenting out of the box through inference.json, and scoring through evaluate.json what metadata.json's
eval_metrics (and the docs) say, within 0.01 on the validation images."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from medseg_tools.reproduce import read_metrics_csv
from medseg_tools.runner import run_bundle
from medseg_tools.scoring import segmentation_scores
from medseg_tools.zoo.large_files import MAX_FILE_BYTES, MAX_TOTAL_BYTES, md5, read_large_files, shipped_weights
from PIL import Image

from tests.conftest import REPO_ROOT, require_dataset

BUNDLES_DIR = REPO_ROOT / "bundles"
# bundle, training configs, the shipped checkpoint folder, the prefix of its figures in eval_metrics, dataset
SHIPPED = [
    ("unet_em_segmentation", ["train.json"], "models", "", "isbi2012_em"),
    ("unet_em_segmentation", ["train.json", "phc_cells.json"], "models/phc_cells", "phc_cells/", "phc_usiigaci"),
    ("attention_resunet_cell_segmentation", ["train.json"], "models", "", "phc_usiigaci"),
    ("lgnet_covid_ct_segmentation", ["train.json"], "models", "", "covid_medseg"),
    ("mcsa_unet_nuclei_segmentation", ["train.json"], "models", "", "monuseg2018"),
]
TOLERANCE = 0.01


def metadata(bundle: str) -> dict:
    return json.loads((BUNDLES_DIR / bundle / "configs" / "metadata.json").read_text())


def test_every_bundle_ships_weights_within_the_zoo_limits():
    total = 0
    for bundle, _, folder, _, _ in SHIPPED:
        root = BUNDLES_DIR / bundle
        files = shipped_weights(root)  # raises when a listed file is missing or its md5 differs
        assert f"{folder}/model.pt" in files, f"{bundle}: large_files.yml does not list {folder}/model.pt"
        path = files[f"{folder}/model.pt"]
        assert path.stat().st_size <= MAX_FILE_BYTES, f"{path}: over 10 MiB"
        entry = {e["path"]: e for e in read_large_files(root / "large_files.yml")}[f"{folder}/model.pt"]
        assert entry["hash_type"] == "md5" and entry["hash_val"] == md5(path)
        assert entry["url"].startswith("https://") and entry["url"].endswith(".pt")
        # a plain fp32 state_dict, loadable without pickled code
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}
        total += path.stat().st_size
    assert total <= MAX_TOTAL_BYTES, f"{total / 2**20:.1f} MiB of shipped weights, over the 30 MiB of all bundles"


@pytest.mark.parametrize(
    "bundle, configs, folder, prefix, dataset", SHIPPED, ids=lambda v: v if isinstance(v, str) else None
)
def test_shipped_model_scores_its_documented_validation_metrics(bundle, configs, folder, prefix, dataset, tmp_path):
    require_dataset(dataset)
    documented = {
        name[len(prefix) :]: value
        for name, value in metadata(bundle)["eval_metrics"].items()
        if (name.startswith(prefix) if prefix else "/" not in name)
    }
    assert documented, f"{bundle}: metadata.json has no eval_metrics for {folder}"
    overrides = {
        "ckpt_dir": str(BUNDLES_DIR / bundle / folder),
        "output_dir": str(tmp_path / "eval"),
        "log_dir": str(tmp_path / "runs"),
        "device": "cpu",
    }
    run_bundle(bundle, [*configs, "evaluate.json"], overrides=overrides, capture=True, timeout=1800)
    measured = read_metrics_csv(tmp_path / "eval" / "metrics.csv")
    for name, value in documented.items():
        assert f"val_{name}" in measured, f"evaluate.json reported no val_{name}: {sorted(measured)}"
        assert measured[f"val_{name}"] == pytest.approx(
            value, abs=TOLERANCE
        ), f"{bundle} {folder}: val_{name} {measured[f'val_{name}']:.4f}, metadata.json says {value}"


INFERENCE_IMAGES = {
    "unet_em_segmentation": ("isbi2012_em", "image/21.png", "label/21.png"),
    "lgnet_covid_ct_segmentation": ("covid_medseg", "Imgs/51.jpg", "GT/51.png"),
}


@pytest.mark.parametrize("bundle", sorted(INFERENCE_IMAGES))
def test_inference_json_segments_with_the_shipped_model_out_of_the_box(bundle, tmp_path):
    """The documented command with nothing but --input_images and --output_dir: the mask beats the trivial ones."""
    dataset, image_name, label_name = INFERENCE_IMAGES[bundle]
    root = require_dataset(dataset)
    images = tmp_path / "images"
    images.mkdir()
    (images / Path(image_name).name).write_bytes((root / image_name).read_bytes())
    out = tmp_path / "out"
    run_bundle(
        bundle, ["inference.json"], overrides={"input_images": str(images), "output_dir": str(out)}, capture=True
    )
    mask = np.asarray(Image.open(out / f"{Path(image_name).stem}_mask.png")) > 0
    truth = np.asarray(Image.open(root / label_name).convert("L")) > 127
    assert mask.shape == truth.shape
    # Dice averaged over foreground and background: an all-foreground or all-background mask scores at most 0.5
    dice = segmentation_scores(mask, truth)["mean_dice"]
    assert dice > 0.7, f"{bundle}: class-mean Dice {dice:.3f} of the shipped model's mask"
