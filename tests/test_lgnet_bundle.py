"""The LG-Net bundle end to end through ``python -m monai.bundle`` on real MedSeg COVID-19 CT slices.

The slices (lung crops of 153 to 487 pixels per side) are linked into a temporary folder in the bundle's ``covid``
layout; a tiny network at 64x64 keeps every run to seconds on a CPU. What matters here is the plumbing: slices of
any size in, predictions and scores at each slice's own size out.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from PIL import Image

import custom_networks
from medseg_tools.runner import bundle_dir, run_bundle
from tests.conftest import REPO_ROOT, require_dataset
from transforms import DataValidationError

BUNDLE = "lgnet_covid_ct_segmentation"
SMOKE = json.loads((REPO_ROOT / "tests" / "bundle_smoke_overrides.json").read_text())[BUNDLE]
FEATURES = SMOKE["features"]
CONFIGS = bundle_dir(BUNDLE) / "configs"
TRAIN_IDS, VAL_IDS = [0, 1], [50]
METRICS = {
    "val_mean_dice",
    "val_mean_iou",
    "val_accuracy",
    "val_sensitivity",
    "val_specificity",
    "val_threshold_averaged_dice",
}


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


@pytest.fixture(scope="module")
def covid_dir() -> Path:
    return require_dataset("covid_medseg")


@pytest.fixture(scope="module")
def covid_subset(tmp_path_factory, covid_dir) -> Path:
    """Three real slices (two for training, one for validation) in the covid / covid_multiclass layouts."""
    root = tmp_path_factory.mktemp("covid_subset")
    for folder, suffix in (("Imgs", "jpg"), ("GT", "png"), ("GT-multiclass", "png")):
        (root / folder).mkdir()
        for sample_id in TRAIN_IDS + VAL_IDS:
            (root / folder / f"{sample_id}.{suffix}").symlink_to(covid_dir / folder / f"{sample_id}.{suffix}")
    return root


def run(configs, workdir: Path, target=None, **overrides):
    settings = {
        **SMOKE,
        "ckpt_dir": workdir / "models",
        "output_dir": workdir / "eval",
        "log_dir": workdir / "runs",
        **overrides,
    }
    return run_bundle(BUNDLE, configs, target=target, overrides=settings, capture=True)


def run_in_process(configs, **overrides) -> None:
    """``initialize`` and ``run`` of merged configs in this process: as ``monai.bundle run`` without its start-up."""
    workflow = ConfigWorkflow(
        config_file=[str(CONFIGS / name) for name in configs],
        workflow_type="infer",
        logging_file=False,
        bundle_root=str(bundle_dir(BUNDLE)),
        device="$torch.device('cpu')",
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, covid_subset):
    workdir = tmp_path_factory.mktemp("lgnet_bundle")
    result = run(["train.json"], workdir, "training", dataset_dir=covid_subset, epochs=1)
    return workdir, result


def test_training_writes_checkpoints_and_reports_every_metric(trained):
    workdir, result = trained
    models = workdir / "models"
    record = json.loads((models / "model.pt.json").read_text())
    assert record["metric_name"] == "val_mean_dice" and 0 <= record["metric"] <= 1
    state = torch.load(models / "checkpoint_last.pt", weights_only=True)
    assert set(state) == {"model", "optimizer", "lr_scheduler", "trainer"}
    assert state["trainer"]["iteration"] == 1, "2 slices in batches of 4: one iteration"
    assert not list(models.glob("*.tmp")), "atomic saves must not leave temporary files"
    assert all(name in result.stdout for name in METRICS | {"train_epoch_loss"})
    network = custom_networks.LGNet(out_channels=1, features=FEATURES)
    network.load_state_dict(torch.load(models / "model.pt", weights_only=True))
    assert network.use_mrc and network.use_lg_attention and network.use_feature_fusion


def test_evaluate_scores_a_whole_folder_at_the_original_slice_sizes(trained, covid_subset):
    workdir, _ = trained
    out = workdir / "eval_all"
    run(["train.json", "evaluate.json"], workdir, dataset_dir=covid_subset, val_ids="all", output_dir=out)
    lines = (out / "metrics.csv").read_text().splitlines()
    summary = {name: float(value) for name, value in (line.split(",") for line in lines)}
    assert set(summary) == METRICS
    assert all(0.0 <= value <= 1.0 for value in summary.values())
    rows = (out / "val_threshold_averaged_dice_raw.csv").read_text().splitlines()
    assert len(rows) == 1 + 3, "the whole folder (3 slices), not the validation split, is scored"
    assert "nan" not in "".join(rows).lower()
    # mIoU averages background and infection: its per-class summary has both
    iou_classes = [line.split(",")[0] for line in (out / "val_mean_iou_summary.csv").read_text().splitlines()[1:]]
    assert iou_classes == ["class0", "class1", "mean"]


def test_postprocessing_maps_the_prediction_back_to_the_label_size(covid_dir):
    """Validation scores at each slice's own size: the 64x64 network output is inverted to the label's size."""
    parser = ConfigParser()
    parser.read_config(CONFIGS / "train.json")
    parser.update({"bundle_root": str(bundle_dir(BUNDLE)), "spatial_size": [64, 64]})
    preprocessing = parser.get_parsed_content("preprocessing")
    postprocessing = parser.get_parsed_content("postprocessing")
    sample_id = 52  # 153 x 277 pixels (W x H): neither square nor a multiple of anything
    item = preprocessing({"image": str(covid_dir / "Imgs/52.jpg"), "label": str(covid_dir / "GT/52.png")})
    width, height = image_size(covid_dir / "Imgs" / f"{sample_id}.jpg")
    assert item["image"].shape == (1, 64, 64) and item["label"].shape == (1, width, height)
    # the longest side fills the network input, the other is padded: aspect ratio kept
    assert float(item["image"][:, 0, :].abs().max()) == 0.0 and float(item["image"][:, 20:44, :].max()) > 0.0
    item["pred"] = item["image"].clone() * 8.0 - 4.0  # logits with the image's metadata, as the evaluator gives
    item = postprocessing(item)
    assert item["pred"].shape == (2, width, height) and item["label"].shape == (2, width, height)
    assert item["probability"].shape == (1, width, height)
    assert torch.equal(item["pred"][1], (item["probability"][0] >= 0.5).float())


def test_inference_keeps_sub_folders_and_each_slice_size(trained, covid_dir, tmp_path):
    workdir, _ = trained
    inputs = tmp_path / "inputs"
    for folder, sample_id in (("a", 0), ("b", 52)):
        (inputs / folder).mkdir(parents=True)
        (inputs / folder / "slice.jpg").symlink_to(covid_dir / "Imgs" / f"{sample_id}.jpg")
    # an RGB PNG of a gray slice is converted to gray
    Image.open(covid_dir / "Imgs" / "50.jpg").convert("RGB").save(inputs / "rgb.png")
    out = tmp_path / "predictions"
    overrides = {
        "features": FEATURES,
        "spatial_size": SMOKE["spatial_size"],
        "ckpt_path": workdir / "models" / "model.pt",
        "output_dir": out,
        "input_images": [str(inputs / "*" / "slice.jpg"), str(inputs / "rgb.png")],
    }
    run_bundle(BUNDLE, ["inference.json"], overrides=overrides, capture=True)
    for relative, source in (("a/slice", "0.jpg"), ("b/slice", "52.jpg"), ("rgb", "50.jpg")):
        mask = Image.open(out / f"{relative}_mask.png")
        probability = Image.open(out / f"{relative}_prob.png")
        assert mask.size == probability.size == image_size(covid_dir / "Imgs" / source) != (512, 512)
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        assert np.asarray(probability).dtype == np.uint16
        expected = np.where(np.asarray(probability).astype(np.float64) / 65535 >= 0.5, 255, 0)
        assert np.mean(expected == np.asarray(mask)) > 0.999


def test_multiclass_config_trains_evaluates_and_segments(tmp_path, covid_subset, covid_dir):
    run(["train.json", "multiclass.json"], tmp_path, "training", dataset_dir=covid_subset, epochs=1)
    weights = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert weights["output_conv.weight"].shape[0] == 3, "background, ground-glass opacity, consolidation"
    # evaluate.json and inference.json with the same override, in this process (the command line is tested above)
    out = tmp_path / "eval_all"
    settings = {**SMOKE, "dataset_dir": str(covid_subset), "val_ids": "all", "ckpt_dir": str(tmp_path / "models")}
    run_in_process(["train.json", "multiclass.json", "evaluate.json"], **settings, output_dir=str(out))
    assert {line.split(",")[0] for line in (out / "metrics.csv").read_text().splitlines()} == METRICS
    # per-class values of the two lesion classes (background excluded)
    for name in ("val_mean_dice", "val_threshold_averaged_dice", "val_sensitivity"):
        header = (out / f"{name}_raw.csv").read_text().splitlines()[0]
        assert header == "filename,class0,class1,mean", name
    # class-id masks at the slice's size
    predictions = tmp_path / "predictions"
    run_in_process(
        ["inference.json", "multiclass.json"],
        features=FEATURES,
        spatial_size=SMOKE["spatial_size"],
        ckpt_path=str(tmp_path / "models" / "model.pt"),
        input_images=str(covid_subset / "Imgs" / "0.jpg"),
        output_dir=str(predictions),
    )
    mask = Image.open(predictions / "0_mask.png")
    assert mask.size == image_size(covid_dir / "Imgs" / "0.jpg")
    assert set(np.unique(np.asarray(mask))) <= {0, 1, 2}
    assert Image.open(predictions / "0_prob.png").size == mask.size


def test_label_of_another_size_stops_the_run_naming_the_file(tmp_path, covid_dir):
    dataset = tmp_path / "data"
    for folder in ("Imgs", "GT"):
        (dataset / folder).mkdir(parents=True)
    (dataset / "Imgs" / "0.jpg").symlink_to(covid_dir / "Imgs" / "0.jpg")
    label = np.asarray(Image.open(covid_dir / "GT" / "0.png"))
    Image.fromarray(label[:-10]).save(dataset / "GT" / "0.png")  # 10 rows short
    parser = ConfigParser()
    parser.read_config(CONFIGS / "train.json")
    parser.update({"bundle_root": str(bundle_dir(BUNDLE)), "dataset_dir": str(dataset), "train_ids": [0]})
    with pytest.raises(Exception) as error:
        parser.get_parsed_content("train#datalist")
    cause = error.value
    while cause.__cause__ is not None and not isinstance(cause, DataValidationError):
        cause = cause.__cause__
    assert isinstance(cause, DataValidationError)
    assert "size mismatch" in str(cause) and str(dataset / "GT" / "0.png") in str(cause)


def test_ablation_switches_reach_lgnet_through_network_def():
    parser = ConfigParser()
    parser.read_config(CONFIGS / "train.json")
    parser.update({"features": FEATURES, "network_def#use_mrc": False, "network_def#use_feature_fusion": False})
    network = parser.get_parsed_content("network_def")
    assert (network.use_mrc, network.use_lg_attention, network.use_feature_fusion) == (False, True, False)


def test_paper_tables_spec_builds_every_variant():
    from medseg_tools import reproduce

    spec = reproduce.load_spec(BUNDLE, "paper_tables")
    assert [table["title"].split(":")[0] for table in spec.tables] == ["Table 1", "Table 2"]
    assert set(spec.metrics) == METRICS
    switches = {}
    for variant in spec.variants:
        assert not variant.training_free
        networks = []
        for configs in (["train.json"], ["inference.json"]):
            overrides = reproduce.applicable_overrides(reproduce.load_parser(BUNDLE, configs), variant.overrides)
            networks.append(reproduce.load_parser(BUNDLE, configs, overrides).get_parsed_content("network_def"))
        trained, inferred = networks
        assert trained.state_dict().keys() == inferred.state_dict().keys(), "inference must build the trained network"
        with torch.no_grad():  # fully convolutional: a 64 x 64 input checks the variant at its width cheaply
            assert trained.eval()(torch.rand(1, 1, 64, 64)).shape == (1, 1, 64, 64)
        if isinstance(trained, custom_networks.LGNet):
            switches[variant.name] = (trained.use_mrc, trained.use_lg_attention, trained.use_feature_fusion)
    # the ablation is five configurations of one class: none, each module alone, all
    assert sorted(switches.values()) == sorted(
        [(False, False, False), (True, False, False), (False, True, False), (False, False, True), (True, True, True)]
    )
