"""The Attention Residual-UNet bundle end to end through ``python -m monai.bundle`` on real phase-contrast images.

Training and evaluation run on 256x256 crops of real Usiigaci frames (written to a temporary folder in the bundle's
``phc`` layout) so that a CPU run takes seconds; inference runs on a whole 1022x1024 16-bit frame.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser
from monai.networks.nets import BasicUNet
from PIL import Image

import custom_networks
from medseg_tools.runner import bundle_dir, run_bundle
from tests.conftest import REPO_ROOT, saved_epoch

BUNDLE = "attention_resunet_cell_segmentation"
SMOKE = json.loads((REPO_ROOT / "tests" / "bundle_smoke_overrides.json").read_text())[BUNDLE]
FEATURES = SMOKE["features"]
CONFIGS = bundle_dir(BUNDLE) / "configs"
CROP = (slice(300, 556), slice(400, 656))
TRAIN_IDS, VAL_IDS, EMPTY_LABEL_ID = [1, 2], [29, 30], 31
METRICS = {"val_mean_dice", "val_mean_iou", "val_accuracy", "val_sensitivity", "val_specificity"}
BASIC_UNET = {"_target_": "BasicUNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 1}
BASIC_UNET["features"] = [4, 4, 8, 16, 32, 4]


def _write_set(folder: Path, image: np.ndarray, label: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "raw.tif", image)
    Image.fromarray(label).save(folder / "instances_ids.png")


@pytest.fixture(scope="module")
def phc_crops(tmp_path_factory, phc_dir) -> Path:
    """Crops of real frames in the phc layout, plus one set whose label has no cell at all."""
    root = tmp_path_factory.mktemp("phc_crops")
    for set_id in TRAIN_IDS + VAL_IDS:
        image = tifffile.imread(phc_dir / f"set{set_id}" / "raw.tif")
        label = np.asarray(Image.open(phc_dir / f"set{set_id}" / "instances_ids.png"))
        assert image.dtype == np.uint16
        _write_set(root / f"set{set_id}", image[CROP], label[CROP])
    empty_image = tifffile.imread(phc_dir / f"set{EMPTY_LABEL_ID}" / "raw.tif")[CROP]
    _write_set(root / f"set{EMPTY_LABEL_ID}", empty_image, np.zeros(empty_image.shape, np.uint8))
    return root


def train(workdir: Path, dataset_dir: Path, epochs: int = 1, **overrides):
    settings = {
        **SMOKE,
        "dataset_dir": dataset_dir,
        "train_ids": TRAIN_IDS,
        "val_ids": VAL_IDS,
        "epochs": epochs,
        "ckpt_dir": workdir / "models",
        "output_dir": workdir / "eval",
        "log_dir": workdir / "runs",
        **overrides,
    }
    return run_bundle(BUNDLE, ["train.json"], target="training", overrides=settings, capture=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, phc_crops):
    workdir = tmp_path_factory.mktemp("attention_resunet_bundle")
    return workdir, train(workdir, phc_crops)


def test_training_writes_checkpoints_and_reports_the_paper_metrics(trained):
    workdir, result = trained
    models = workdir / "models"
    record = json.loads((models / "model.pt.json").read_text())
    assert record["metric_name"] == "val_mean_dice" and 0 <= record["metric"] <= 1
    state = torch.load(models / "checkpoint_last.pt", weights_only=True)
    assert set(state) == {"model", "optimizer", "lr_scheduler", "trainer"}
    assert saved_epoch(models / "checkpoint_last.pt") == 1
    assert not list(models.glob("*.tmp")), "atomic saves must not leave temporary files"
    # 2 crops of 256x256, each giving crops_per_image random 64x64 windows: one batch of the 2 images
    assert "Iter: 1/1" in result.stdout and "Iter: 2/" not in result.stdout
    assert all(name in result.stdout for name in METRICS | {"train_epoch_loss"})
    from custom_networks import AttentionResUNet

    AttentionResUNet(out_channels=1, features=FEATURES).load_state_dict(torch.load(models / "model.pt"))


def test_training_resumes_from_last_checkpoint(trained, tmp_path, phc_crops):
    workdir, _ = trained
    models = tmp_path / "models"
    models.mkdir()
    for name in ("checkpoint_last.pt", "model.pt", "model.pt.json"):
        (models / name).write_bytes((workdir / "models" / name).read_bytes())
    result = train(tmp_path, phc_crops, epochs=2, val_interval=1000)  # no validation needed for the resume check
    assert "resumed from" in result.stdout and "at epoch 1" in result.stdout
    assert "Epoch: 1/2" not in result.stdout, "the finished epoch must not run again"
    assert saved_epoch(models / "checkpoint_last.pt") == 2


def test_evaluate_scores_a_whole_folder_including_an_empty_label(trained, phc_crops):
    workdir, _ = trained
    out = workdir / "eval_all"
    overrides = {
        **SMOKE,
        "dataset_dir": phc_crops,
        "ckpt_dir": workdir / "models",
        "output_dir": out,
        "val_ids": "all",
        "patch_size": [256, 256],  # one window per crop: the trained network is fully convolutional
    }
    run_bundle(BUNDLE, ["train.json", "evaluate.json"], overrides=overrides, capture=True)
    summary = dict(line.split(",") for line in (out / "metrics.csv").read_text().splitlines())
    assert set(summary) == METRICS
    assert all(0.0 <= float(value) <= 1.0 for value in summary.values())
    for name in METRICS:
        rows = (out / f"{name}_raw.csv").read_text().splitlines()
        assert len(rows) == 1 + 5, "the whole folder (5 sets), not the validation split, is scored"
        assert "nan" not in "".join(rows).lower(), f"{name}: an empty label must give a defined value"
    empty_row = next(r for r in (out / "val_sensitivity_raw.csv").read_text().splitlines() if "set31" in r)
    assert float(empty_row.split(",")[1]) == 1.0, "no cell to miss: sensitivity 1"


def test_inference_on_a_whole_16_bit_frame_and_an_all_zero_image(trained, phc_dir, phc_crops, tmp_path):
    workdir, _ = trained
    inputs = tmp_path / "inputs"
    (inputs / "set29").mkdir(parents=True)
    (inputs / "set29" / "raw.tif").symlink_to(phc_dir / "set29" / "raw.tif")
    (inputs / "crop").mkdir()
    (inputs / "crop" / "raw.tif").symlink_to(phc_crops / "set30" / "raw.tif")
    tifffile.imwrite(inputs / "zeros.tif", np.zeros((40, 50), np.uint16))  # smaller than one window, too
    out = tmp_path / "predictions"
    overrides = {
        "features": FEATURES,
        "ckpt_path": workdir / "models" / "model.pt",
        "output_dir": out,
        "input_images": [str(inputs / name) for name in ("set29/raw.tif", "crop/raw.tif", "zeros.tif")],
    }
    run_bundle(BUNDLE, ["inference.json"], overrides=overrides, capture=True)
    # both inputs are called raw.tif: their folders are kept below output_dir, so neither overwrites the other
    for relative, size in (("set29/raw", (1024, 1022)), ("crop/raw", (256, 256)), ("zeros", (50, 40))):
        mask = Image.open(out / f"{relative}_mask.png")
        probability = Image.open(out / f"{relative}_prob.png")
        assert mask.size == size and probability.size == size
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        assert np.asarray(probability).dtype == np.uint16
        # the mask is the probability thresholded at 0.5
        expected = np.where(np.asarray(probability).astype(np.float64) / 65535 > 0.5, 255, 0)
        assert np.mean(expected == np.asarray(mask)) > 0.999


def test_all_zero_image_gives_finite_probabilities_through_the_inference_pipeline(trained, tmp_path):
    workdir, _ = trained
    zeros = tmp_path / "zeros.tif"
    tifffile.imwrite(zeros, np.zeros((300, 280), np.uint16))
    parser = ConfigParser()
    parser.read_config(CONFIGS / "inference.json")
    parser.update({"bundle_root": str(bundle_dir(BUNDLE)), "features": FEATURES, "device": "$torch.device('cpu')"})
    network = parser.get_parsed_content("network")
    network.load_state_dict(torch.load(workdir / "models" / "model.pt"))
    network.eval()
    with pytest.warns(Warning, match="Divide by zero"):
        image = parser.get_parsed_content("preprocessing")({"image": str(zeros)})["image"]
    assert torch.isfinite(image).all() and float(image.abs().max()) == 0.0
    with torch.no_grad():
        probability = torch.sigmoid(parser.get_parsed_content("inferer")(image[None], network))
    assert probability.shape == (1, 1, 280, 300)  # PILReader: spatial axes (W, H)
    assert torch.isfinite(probability).all() and 0 <= float(probability.min()) <= float(probability.max()) <= 1


def test_multi_process_training_with_gloo_and_monai_basic_unet_swapped_in(tmp_path, phc_crops):
    """``multi_gpu_train.json`` on two CPU processes, with the network replaced by a ``network_def`` dictionary."""
    settings = {**SMOKE, "dataset_dir": phc_crops, "train_ids": TRAIN_IDS, "val_ids": VAL_IDS, "epochs": 1}
    settings.update(network_def=BASIC_UNET)
    settings.update(ckpt_dir=tmp_path / "models", output_dir=tmp_path / "eval", log_dir=tmp_path / "runs")
    configs = ["train.json", "multi_gpu_train.json"]
    result = run_bundle(BUNDLE, configs, overrides=settings, capture=True, timeout=600, nproc_per_node=2)
    # the 2 training images split between 2 processes: one batch of one image's random windows each
    assert "Iter: 1/1" in result.stdout + result.stderr
    assert saved_epoch(tmp_path / "models" / "checkpoint_last.pt") == 1
    weights = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    BasicUNet(**{k: v for k, v in BASIC_UNET.items() if k != "_target_"}).load_state_dict(weights)


def test_ablation_switches_reach_the_network_through_network_def():
    parser = ConfigParser()
    parser.read_config(CONFIGS / "train.json")
    parser.update({"network_def#use_residual": False, "network_def#use_attention": False, "features": FEATURES})
    network = parser.get_parsed_content("network_def")
    assert not network.use_residual and not network.use_attention
    with torch.no_grad():
        logits, maps = network.eval().forward_with_attention(torch.rand(1, 1, 32, 32))
    assert logits.shape == (1, 1, 32, 32) and maps == []


@pytest.mark.parametrize(
    "metric, scores, stop_epoch",
    [
        # training loss (the paper): lower is better; it stops improving after epoch 3
        ("train_epoch_loss", [0.9, 0.8, 0.7] + [0.75] * 20, 3 + 10),
        # validation Dice: higher is better
        ("val_mean_dice", [0.1, 0.2, 0.3, 0.4] + [0.35] * 20, 4 + 10),
    ],
)
def test_early_stopping_default_patience_and_direction(metric, scores, stop_epoch):
    """The paper's early stop (configs/paper.json; the release recipe trains for its time budget instead)."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "paper.json")])
    parser["early_stop_metric"] = metric
    assert parser.get_parsed_content("early_stop_patience") == 10
    stopper = parser.get_parsed_content("train#early_stopper")
    trainer = Engine(lambda engine, batch: None)

    @trainer.on(Events.EPOCH_COMPLETED)
    def _report(engine):
        engine.state.metrics[metric] = scores[engine.state.epoch - 1]

    stopper.set_trainer(trainer)
    stopper.attach(trainer)
    trainer.run([0], max_epochs=len(scores))
    assert trainer.state.epoch == stop_epoch


def _truncated_tiff(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes()[:4000])


def test_corrupt_16_bit_frame_stops_training_before_the_first_epoch(tmp_path, phc_crops):
    dataset = tmp_path / "data"
    for set_id in (1, 29):
        _write_set(
            dataset / f"set{set_id}",
            tifffile.imread(phc_crops / f"set{set_id}" / "raw.tif"),
            np.asarray(Image.open(phc_crops / f"set{set_id}" / "instances_ids.png")),
        )
    _truncated_tiff(phc_crops / "set1" / "raw.tif", dataset / "set1" / "raw.tif")
    with pytest.raises(subprocess.CalledProcessError) as error:
        train(tmp_path, dataset, train_ids=[1], val_ids=[29])
    assert "DataValidationError" in error.value.output and "set1/raw.tif" in error.value.output
    assert "Epoch: 1/" not in error.value.output


def test_inference_refuses_a_corrupt_frame_naming_it(trained, tmp_path, phc_crops):
    workdir, _ = trained
    broken = tmp_path / "broken.tif"
    _truncated_tiff(phc_crops / "set29" / "raw.tif", broken)
    overrides = {"features": FEATURES, "ckpt_path": workdir / "models" / "model.pt", "input_images": str(broken)}
    overrides["output_dir"] = tmp_path / "out"
    with pytest.raises(subprocess.CalledProcessError) as error:
        run_bundle(BUNDLE, ["inference.json"], overrides=overrides, capture=True)
    assert "DataValidationError" in error.value.output and "broken.tif" in error.value.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_paper_tables_spec_builds_every_variant_network_at_its_width():
    from medseg_tools import reproduce

    spec = reproduce.load_spec(BUNDLE, "paper_tables")
    assert [table["title"].split(":")[0] for table in spec.tables] == ["Table 1", "Table 2"]
    switches = {}
    for variant in spec.variants:
        if variant.training_free:
            assert variant.training_free == "otsu"
            continue
        for configs in (["train.json"], ["inference.json"]):
            parser = reproduce.load_parser(BUNDLE, configs, reproduce.applicable_overrides(
                reproduce.load_parser(BUNDLE, configs), variant.overrides))
            network = parser.get_parsed_content("network_def")
            with torch.no_grad():
                assert network.eval()(torch.rand(1, 1, 64, 64)).shape == (1, 1, 64, 64)
        if isinstance(network, custom_networks.AttentionResUNet):
            switches[variant.name] = (network.use_residual, network.use_attention)
    # the ablation is four configurations of one class
    assert sorted(switches.values()) == [(False, False), (False, True), (True, False), (True, True)]
