"""The MCSA-UNet nuclei bundle end to end through ``python -m monai.bundle`` on real MoNuSeg 2018 images.

Training and evaluation run on 256x256 crops of real H&E tiles (written to a temporary folder in the bundle's
``monuseg`` layout, masks kept in their gray + alpha PNG mode) so that a CPU run takes seconds; inference runs on a
whole 1000x1000 tile as well. The paper's weight EMA, its metrics, the instance post-processing, the network swaps
of the reproduction specs and the input checks are tested here; ``tests/test_bundles.py`` runs the generic checks.
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.metrics import ConfusionMatrixMetric
from PIL import Image

from medseg_tools import reproduce
from medseg_tools.runner import bundle_dir, run_bundle
from tests.conftest import REPO_ROOT, require_dataset
from transforms import DataValidationError, EnsureChannels, folder_datalist, nuclei_instances, validate_datalist

BUNDLE = "mcsa_unet_nuclei_segmentation"
ROOT = bundle_dir(BUNDLE)
CONFIGS = ROOT / "configs"
SMOKE = json.loads((REPO_ROOT / "tests" / "bundle_smoke_overrides.json").read_text())[BUNDLE]
FEATURES = SMOKE["features"]
TRAIN_IDS = ["TCGA-18-5592-01Z-00-DX1", "TCGA-A7-A13E-01Z-00-DX1"]
VAL_ID = "TCGA-E2-A1B5-01Z-00-DX1"
CROP = (200, 300, 456, 556)  # left, upper, right, lower: 256x256 px with many nuclei
METRICS = {"val_mean_dice", "val_nucleus_dice", "val_miou", "val_mpa"}
INSTANCE_METRICS = {"val_aji", "val_object_f1"}
UNET_PLUS_PLUS = {
    "_target_": "custom_networks.SelectOutput",
    "network": {
        "_target_": "BasicUNetPlusPlus",
        "spatial_dims": 2,
        "in_channels": 3,
        "out_channels": "@num_classes",
        "features": "$list(@features) + [@features[0]]",
        "norm": "batch",
        "act": "relu",
    },
}


def parser_of(*names: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / name) for name in names])
    parser.update({"bundle_root": str(ROOT), **{key: reproduce._plain(v) for key, v in overrides.items()}})
    return parser


def write_crops(folder: Path, source: Path, stems, box=CROP) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for stem in stems:
        with Image.open(source / "images" / f"{stem}.tif") as image:
            image.crop(box).save(folder / "images" / f"{stem}.tif")
        with Image.open(source / "masks" / f"{stem}.png") as mask:
            assert mask.mode == "LA"
            mask.crop(box).save(folder / "masks" / f"{stem}.png")
    return folder


@pytest.fixture(scope="module")
def monuseg_dir() -> Path:
    return require_dataset("monuseg2018")


@pytest.fixture(scope="module")
def crops(tmp_path_factory, monuseg_dir) -> Path:
    return write_crops(tmp_path_factory.mktemp("monuseg_crops"), monuseg_dir, TRAIN_IDS + [VAL_ID])


def training_overrides(workdir: Path, dataset_dir: Path, **extra) -> dict:
    return {
        **SMOKE,
        "dataset_dir": dataset_dir,
        "train_ids": TRAIN_IDS,
        "val_ids": [VAL_ID],
        "epochs": 1,
        "patch_size": [128, 128],
        "ckpt_dir": workdir / "models",
        "output_dir": workdir / "eval",
        "log_dir": workdir / "runs",
        **extra,
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory, crops):
    workdir = tmp_path_factory.mktemp("mcsa_bundle")
    result = run_bundle(BUNDLE, ["train.json"], "training", training_overrides(workdir, crops), capture=True)
    return workdir, result


def test_training_saves_the_ema_weights_as_the_best_model(trained):
    workdir, result = trained
    models = workdir / "models"
    last = torch.load(models / "checkpoint_last.pt", weights_only=True)
    assert set(last) == {"model", "optimizer", "trainer", "ema_model", "lr_scheduler"}
    assert last["trainer"]["iteration"] == 1  # 2 crops x 2 patches, batches of 2 crops
    best = torch.load(models / "model.pt", weights_only=True)
    assert set(best) == set(last["ema_model"])
    for name, value in best.items():
        assert torch.equal(value, last["ema_model"][name]), f"model.pt must hold the EMA weights ({name})"
    weights = [name for name in best if name.endswith("weight")]
    assert any(not torch.equal(best[name], last["model"][name]) for name in weights), "EMA must differ from raw"
    record = json.loads((models / "model.pt.json").read_text())
    assert record["metric_name"] == "val_mean_dice" and 0 <= record["metric"] <= 1
    assert all(name in result.stdout for name in METRICS | {"train_epoch_loss"})
    assert not list(models.glob("*.tmp"))
    from custom_networks import MCSAUNet

    norm = parser_of("train.json").get_parsed_content("norm")  # the release recipe's (instance norm)
    MCSAUNet(in_channels=3, out_channels=2, features=FEATURES, norm=norm).load_state_dict(best)


def test_ema_momentum_warms_up_like_tensorflow_and_is_capped_by_the_decay():
    parser = parser_of("train.json", ema_decay=0.999)
    schedule = parser.get_parsed_content("ema_momentum_schedule")
    engine = Engine(lambda engine, batch: None)
    momenta = {}
    for iteration in (1, 91, 10**6):
        engine.state.iteration = iteration
        schedule(engine)
        momenta[iteration] = engine.state.ema_momentum
    # decay_t = min(decay, (1 + t) / (10 + t)) with t = iteration - 1 updates before this one
    assert momenta[1] == pytest.approx(0.9) and momenta[91] == pytest.approx(1 - 91 / 100)
    assert momenta[10**6] == pytest.approx(0.001)
    parser["ema_warmup"] = False
    engine.state.iteration = 1
    parser.get_parsed_content("ema_momentum_schedule", lazy=False)(engine)
    assert engine.state.ema_momentum == pytest.approx(0.001)


def test_resume_restores_the_raw_and_the_ema_weights(trained, tmp_path, crops):
    workdir, _ = trained
    shutil.copytree(workdir / "models", tmp_path / "models")
    parser = parser_of("train.json", **training_overrides(tmp_path, crops, epochs=2))
    trainer = parser.get_parsed_content("train#trainer")
    ema = parser.get_parsed_content("ema")
    assert parser.get_parsed_content("validate#network") is ema.ema_model
    parser.get_parsed_content("train#resume")(trainer)
    last = torch.load(tmp_path / "models" / "checkpoint_last.pt", weights_only=True)
    assert trainer.state.epoch == 1
    for module, key in ((parser.get_parsed_content("network"), "model"), (ema.ema_model, "ema_model")):
        state = module.state_dict()
        assert all(torch.equal(state[name], last[key][name]) for name in state), key


def test_evaluate_scores_a_whole_folder_with_pixel_and_instance_metrics(trained, crops):
    workdir, _ = trained
    out = workdir / "eval_all"
    overrides = {**SMOKE, "dataset_dir": crops, "ckpt_dir": workdir / "models", "output_dir": out}
    overrides.update(val_ids="all", patch_size=[128, 128], tta="none")  # as the training validated (no TTA)
    run_bundle(BUNDLE, ["train.json", "evaluate.json"], overrides=overrides, capture=True)
    summary = dict(line.split(",") for line in (out / "metrics.csv").read_text().splitlines())
    assert set(summary) == METRICS | INSTANCE_METRICS
    assert all(0.0 <= float(value) <= 1.0 for value in summary.values())
    for name in METRICS | INSTANCE_METRICS:
        rows = (out / f"{name}_raw.csv").read_text().splitlines()
        assert len(rows) == 1 + 3, "the whole folder (3 tiles), not the validation split, is scored"
    # evaluate.json scores model.pt itself: on the validation tile it reproduces the value the training recorded
    record = json.loads((workdir / "models" / "model.pt.json").read_text())
    row = next(r for r in (out / "val_mean_dice_raw.csv").read_text().splitlines() if VAL_ID in r)
    assert float(row.split(",")[-1]) == pytest.approx(record["metric"], abs=1e-5)


def test_mpa_is_the_mean_of_the_per_class_precisions():
    """The paper's MPA (Eq. 8) on two hand-made 2x2 images, one-hot [B, 2, H, W] as the evaluator gives them."""
    handler = parser_of("train.json").get_parsed_content("validate#additional_metrics#val_mpa")
    # image 1: 3 pixels predicted nucleus, 1 of them true: P(nucleus) = 1/3, P(background) = 1/1 -> MPA 2/3
    # image 2: nothing predicted, 1 true nucleus: P(nucleus) = 0/0 := 1, P(background) = 3/4 -> MPA 7/8
    pred = torch.tensor([[[1, 1], [1, 0]], [[0, 0], [0, 0]]]).unsqueeze(1)
    true = torch.tensor([[[1, 0], [0, 0]], [[1, 0], [0, 0]]]).unsqueeze(1)
    one_hot = lambda nucleus: torch.cat([1 - nucleus, nucleus], dim=1).float()  # noqa: E731
    metric = handler.metric_fn
    metric(one_hot(pred), one_hot(true))
    assert float(metric.aggregate()) == pytest.approx((2 / 3 + 7 / 8) / 2)
    # MONAI's ConfusionMatrixMetric agrees per image (compute_sample=True) where no denominator is 0; its default
    # compute_sample=False pools the counts over the classes, which for one-hot input is the pixel accuracy
    per_image = ConfusionMatrixMetric(include_background=True, metric_name="precision", compute_sample=True)
    per_image(one_hot(pred[:1]), one_hot(true[:1]))
    assert float(per_image.aggregate()[0]) == pytest.approx(2 / 3)
    pooled = ConfusionMatrixMetric(include_background=True, metric_name="precision")
    pooled(one_hot(pred[:1]), one_hot(true[:1]))
    assert float(pooled.aggregate()[0]) == pytest.approx(2 / 4)


def test_inference_writes_mask_probability_and_instances_keeping_sub_folders(trained, monuseg_dir, crops, tmp_path):
    workdir, _ = trained
    inputs = tmp_path / "inputs"
    for name in ("full", "rgb", "rgba", "gray"):
        (inputs / name).mkdir(parents=True)
    (inputs / "full" / "tile.tif").symlink_to(monuseg_dir / "images" / f"{VAL_ID}.tif")
    with Image.open(crops / "images" / f"{VAL_ID}.tif") as crop:
        crop.save(inputs / "rgb" / "tile.tif")
        crop.convert("RGBA").save(inputs / "rgba" / "tile.png")
        crop.convert("L").save(inputs / "gray" / "tile.png")
    out = tmp_path / "predictions"
    overrides = {
        "features": FEATURES,
        "patch_size": [256, 256],
        "ckpt_path": workdir / "models" / "model.pt",
        "output_dir": out,
        "input_images": [str(path) for path in sorted(inputs.glob("*/tile.*"))],
    }
    run_bundle(BUNDLE, ["inference.json"], overrides=overrides, capture=True)
    masks = {}
    for name, size in (("full", (1000, 1000)), ("rgb", (256, 256)), ("rgba", (256, 256)), ("gray", (256, 256))):
        mask = np.asarray(Image.open(out / name / "tile_mask.png"))
        probability = Image.open(out / name / "tile_prob.png")
        instances = Image.open(out / name / "tile_instances.png")
        assert mask.shape == size and probability.size == size and instances.size == size
        assert probability.mode == "I;16" and instances.mode == "I;16"
        assert set(np.unique(mask)) <= {0, 255}
        expected = np.where(np.asarray(probability).astype(np.float64) / 65535 > 0.5, 255, 0)
        assert np.mean(expected == mask) > 0.999, "the mask is the nucleus probability above 0.5"
        ids = np.asarray(instances).astype(np.int64)
        assert not np.any((ids > 0) & (mask == 0)), "instances lie inside the mask"
        # the bundle splits the mask as MONAI's PIL reader indexes it, (x, y): so does the reference here
        reference = nuclei_instances((mask > 0).T, "watershed", min_distance=3, min_size=10).T
        assert np.array_equal(ids, reference), "instances: the documented watershed of the mask"
        masks[name] = mask
    assert np.array_equal(masks["rgba"], masks["rgb"]), "RGBA input: the alpha channel is dropped"


def test_inference_can_refuse_gray_and_rgba_inputs_naming_the_file(tmp_path, crops):
    with Image.open(crops / "images" / f"{VAL_ID}.tif") as crop:
        crop.convert("RGBA").save(tmp_path / "rgba.png")
    parser = parser_of("inference.json", convert_channels=False, input_images=[str(tmp_path / "rgba.png")])
    with pytest.raises(RuntimeError) as error:
        parser.get_parsed_content("datalist")
    assert isinstance(error.value.__cause__, DataValidationError)
    assert "rgba.png has 4 channel(s)" in str(error.value.__cause__) and "expected 3" in str(error.value.__cause__)


def test_preprocessing_reads_rgb_tiles_and_gray_alpha_masks(crops):
    preprocessing = parser_of("train.json").get_parsed_content("preprocessing")
    item = folder_datalist(crops, "monuseg", ids=[VAL_ID])[0]
    assert item["id"] == VAL_ID  # TCGA stems stay string ids
    data = preprocessing(item)
    image, label = data["image"], data["label"]
    assert image.shape == (3, 256, 256) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    mask = np.asarray(Image.open(crops / "masks" / f"{VAL_ID}.png"))[..., 0]
    assert label.shape == (1, 256, 256) and set(torch.unique(label).tolist()) == {0.0, 1.0}
    assert np.array_equal(label[0].numpy().T, (mask > 0).astype(np.float32))  # PILReader indexes (x, y)
    assert [entry["id"] for entry in folder_datalist(crops, "monuseg", ids="all")] == sorted(TRAIN_IDS + [VAL_ID])


def test_a_mask_of_another_size_stops_training_naming_the_file(tmp_path, monuseg_dir):
    dataset = write_crops(tmp_path / "data", monuseg_dir, [VAL_ID])
    with Image.open(monuseg_dir / "masks" / f"{VAL_ID}.png") as mask:
        mask.crop((0, 0, 256, 200)).save(dataset / "masks" / f"{VAL_ID}.png")
    parser = parser_of("train.json", dataset_dir=dataset, train_ids=[VAL_ID])
    with pytest.raises(RuntimeError) as error:
        parser.get_parsed_content("train#datalist")
    message = str(error.value.__cause__)
    assert isinstance(error.value.__cause__, DataValidationError)
    assert "size mismatch" in message and f"masks/{VAL_ID}.png" in message and "200x256" in message


def test_channel_checks_accept_a_set_of_counts_and_gray_alpha():
    gray_alpha = torch.stack([torch.full((4, 4), 7.0), torch.full((4, 4), 255.0)])
    assert torch.equal(EnsureChannels(1, convert=True)(gray_alpha), gray_alpha[:1])
    assert torch.equal(EnsureChannels(3, convert=True)(gray_alpha), gray_alpha[:1].repeat(3, 1, 1))
    with pytest.raises(ValueError, match="expected 3 channel"):
        EnsureChannels(3)(gray_alpha)


def test_validate_datalist_accepts_a_list_of_channel_counts(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "rgb.png")
    Image.new("RGBA", (8, 8)).save(tmp_path / "rgba.png")
    Image.new("LA", (8, 8)).save(tmp_path / "mask.png")
    validate_datalist([{"image": str(tmp_path / "rgb.png"), "label": str(tmp_path / "mask.png")}],
                      image_channels=[1, 3], label_channels=[1, 2], label_kind="binary")
    with pytest.raises(DataValidationError, match=r"rgba\.png has 4 channel\(s\).*expected one of \[1, 3\]"):
        validate_datalist([{"image": str(tmp_path / "rgba.png")}], image_channels=[1, 3])


def test_unet_plus_plus_trains_validates_and_segments_through_the_bundle(tmp_path, crops):
    """MONAI's BasicUNetPlusPlus returns a list: wrapped in SelectOutput it runs the whole bundle (EMA off)."""
    overrides = training_overrides(tmp_path, crops, network_def=UNET_PLUS_PLUS, ema_decay=0)
    overrides = {key: reproduce._plain(value) for key, value in overrides.items()}
    workflow = ConfigWorkflow(
        str(CONFIGS / "train.json"), logging_file=False, workflow_type="train", bundle_root=str(ROOT), **overrides
    )
    workflow.initialize()
    assert workflow.parser.get_parsed_content("ema") is None
    workflow.run()
    workflow.finalize()
    assert 0 <= workflow.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"] <= 1
    last = torch.load(tmp_path / "models" / "checkpoint_last.pt", weights_only=True)
    assert set(last) == {"model", "optimizer", "trainer", "lr_scheduler"}, "no EMA model without EMA"
    best = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert all(torch.equal(best[name], last["model"][name]) for name in best), "without EMA: the raw weights"
    assert all(name.startswith("network.") for name in best)

    inference = ConfigWorkflow(
        str(CONFIGS / "inference.json"),
        logging_file=False,
        workflow_type="infer",
        bundle_root=str(ROOT),
        features=FEATURES,
        network_def=UNET_PLUS_PLUS,
        patch_size=[128, 128],
        ckpt_path=str(tmp_path / "models" / "model.pt"),
        input_images=str(crops / "images" / f"{VAL_ID}.tif"),
        output_dir=str(tmp_path / "predictions"),
        save_instances=False,
    )
    inference.initialize()
    inference.run()
    inference.finalize()
    assert Image.open(tmp_path / "predictions" / f"{VAL_ID}_mask.png").size == (256, 256)
    assert not (tmp_path / "predictions" / f"{VAL_ID}_instances.png").exists()


def test_reproduction_spec_builds_every_network_for_training_and_inference():
    loaded = reproduce.load_spec(BUNDLE, "paper_tables")
    assert loaded.split["train_ids"] == parser_of("train.json")["train_ids"] and len(loaded.split["val_ids"]) == 6
    assert set(loaded.metrics) == {"val_mpa", "val_miou", "val_mean_dice", "val_aji", "val_object_f1"}
    assert loaded.budget == {"epochs": 4} and len(loaded.variants) == 8
    # Table 2 reuses Table 1's full MCSA-UNet row instead of training it twice
    ablation, comparison = (table["variants"] for table in loaded.tables)
    assert len(ablation) == 5 and len(comparison) == 4 and ablation[-1] == comparison[-1]
    shapes = []
    for variant in loaded.variants:
        train = reproduce.load_parser(BUNDLE, loaded.configs, {"features": FEATURES})
        reproduce.check_overrides(train, variant, variant.overrides)
        infer = reproduce.load_parser(BUNDLE, loaded.inference_configs, {"features": FEATURES})
        infer_overrides = reproduce.applicable_overrides(infer, variant.overrides)
        for parser, overrides in ((train, variant.overrides), (infer, infer_overrides)):
            for key, value in overrides.items():
                parser[key] = reproduce._plain(value)
            network = parser.get_parsed_content("network_def").eval()
            with torch.no_grad():
                shapes.append(tuple(network(torch.rand(1, 3, 32, 32)).shape))
        if variant.name in ablation:
            attention = network.encoder_levels[0].attention
            switches = (attention.channel_attention is not None, attention.spatial_attention is not None)
            expected = {"U-Net": (False, False), "U-Net + CA": (True, False), "U-Net + SA": (False, True)}
            assert switches == expected.get(variant.name, switches)
    assert set(shapes) == {(1, 2, 32, 32)}


@pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")
def test_select_output_returns_one_output_and_scripts():
    from monai.networks.nets import BasicUNetPlusPlus

    from custom_networks import SelectOutput

    torch.manual_seed(0)
    # with deep supervision the list holds 4 outputs, the final one last
    inner = BasicUNetPlusPlus(2, 3, 2, features=(2, 2, 4, 4, 8, 2), deep_supervision=True)
    wrapped = SelectOutput(inner).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        outputs = inner(x)
        assert len(outputs) == 4 and torch.equal(wrapped(x), outputs[-1])
        assert torch.equal(SelectOutput(inner, index=0).eval()(x), outputs[0])
        assert torch.allclose(torch.jit.script(wrapped)(x), outputs[-1], atol=1e-6)
    with pytest.raises(ValueError, match="returned 4 output\\(s\\), there is no output at index 4"):
        SelectOutput(inner, index=4)(x)
    with pytest.raises(ValueError, match="Identity returned a single tensor"):
        SelectOutput(torch.nn.Identity())(x)
    with pytest.raises(ValueError, match="wraps a torch.nn.Module"):
        SelectOutput(lambda t: [t])
