"""Checks every bundle in bundles/ must pass: model-zoo layout, metadata schema, workflow properties."""

import json
from pathlib import Path

import jsonschema
import pytest
import torch
from medseg_tools.runner import run_bundle
from medseg_tools.zoo.checks import ZOO_INFERENCE_IDS, ZOO_TRAIN_IDS
from monai.bundle import ConfigParser, ConfigWorkflow

from tests.conftest import REPO_ROOT, require_dataset, saved_epoch
from tests.ddp_probe import probe_override, read_ranks
from transforms import BUNDLE_DATASETS  # the real dataset each bundle's default config lists

BUNDLES = sorted(p for p in (REPO_ROOT / "bundles").iterdir() if (p / "configs").is_dir())
SCHEMA = json.loads((REPO_ROOT / "scripts" / "schemas" / "meta_schema_20240725.json").read_text())
REQUIRED_FILES = [
    "configs/train.json",
    "configs/evaluate.json",
    "configs/inference.json",
    "configs/multi_gpu_train.json",
    "configs/metadata.json",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
]
# the ids the Model Zoo expects (what scripts/package_bundle.py checks), plus this project's AMP switch
TRAIN_IDS = [*ZOO_TRAIN_IDS, "amp"]
INFERENCE_IDS = list(ZOO_INFERENCE_IDS)
# small networks and few real images per bundle, so that each check runs in seconds on a CPU
SMOKE_OVERRIDES = json.loads((REPO_ROOT / "tests" / "bundle_smoke_overrides.json").read_text())


def test_there_are_bundles():
    assert BUNDLES, "no bundle found in bundles/"
    assert {bundle.name for bundle in BUNDLES} <= set(BUNDLE_DATASETS) & set(SMOKE_OVERRIDES)


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_layout_and_metadata(bundle: Path):
    missing = [name for name in REQUIRED_FILES if not (bundle / name).is_file()]
    assert not missing, f"{bundle.name} lacks {missing}"
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    jsonschema.validate(metadata, SCHEMA)
    assert metadata["version"] in metadata["changelog"]
    outputs = metadata["network_data_format"]["outputs"]
    first_output = next(iter(outputs.values()))
    assert len(first_output["channel_def"]) == first_output["num_channels"]


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_config_ids(bundle: Path):
    train = ConfigParser()
    train.read_config(bundle / "configs" / "train.json")
    assert not [key for key in TRAIN_IDS if key not in train], f"train.json of {bundle.name} lacks ids"
    inference = ConfigParser()
    inference.read_config(bundle / "configs" / "inference.json")
    assert not [key for key in INFERENCE_IDS if key not in inference]
    # evaluate.json and multi_gpu_train.json override pieces of train.json instead of copying it
    for name in ("evaluate.json", "multi_gpu_train.json"):
        override = json.loads((bundle / "configs" / name).read_text())
        assert "network_def" not in override and "train" not in override and "validate" not in override


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
@pytest.mark.parametrize(
    "workflow_type, configs",
    [("train", ["train.json"]), ("infer", ["inference.json"])],
    ids=["train", "inference"],
)
def test_workflow_properties(bundle: Path, workflow_type, configs, tmp_path):
    require_dataset(BUNDLE_DATASETS[bundle.name])
    overrides = SMOKE_OVERRIDES[bundle.name]
    workflow = ConfigWorkflow(
        config_file=[str(bundle / "configs" / name) for name in configs],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=str(bundle / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(bundle),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "eval"),
        log_dir=str(tmp_path / "runs"),
        **overrides,
    )
    workflow.initialize()
    assert workflow.check_properties() == []


SECOND_VALIDATION_ID = {
    "unet_em_segmentation": 21,
    "attention_resunet_cell_segmentation": 30,
    "mcsa_unet_nuclei_segmentation": "TCGA-21-5784-01Z-00-DX1",
    "lgnet_covid_ct_segmentation": 51,
}


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_multi_process_training_with_gloo(bundle: Path, tmp_path):
    """``multi_gpu_train.json`` runs one epoch under ``torchrun --nproc_per_node 2`` on CPU (gloo backend).

    The two ranks train on different samples, and DDP all-reduces their gradients: after each step their
    parameters are identical. Only rank 0 saves, and what it saves loads into the single-process network of
    ``inference.json``.
    """
    require_dataset(BUNDLE_DATASETS[bundle.name])
    settings = {**SMOKE_OVERRIDES[bundle.name], "epochs": 1}
    # MONAI's DistributedSampler needs at least one validation item per process
    settings["val_ids"] = settings["val_ids"] + [SECOND_VALIDATION_ID[bundle.name]]
    settings.update(ckpt_dir=tmp_path / "models", output_dir=tmp_path / "eval", log_dir=tmp_path / "runs")
    train_config = json.loads((bundle / "configs" / "train.json").read_text())
    settings["train#extra_initialize"] = probe_override(train_config, tmp_path / "ranks")
    configs = ["train.json", "multi_gpu_train.json"]
    result = run_bundle(bundle, configs, overrides=settings, capture=True, timeout=600, nproc_per_node=2)
    assert "Epoch[1] Complete" in result.stdout + result.stderr
    assert saved_epoch(tmp_path / "models" / "checkpoint_last.pt") == 1
    (record0, weights0), (record1, weights1) = read_ranks(tmp_path / "ranks", world_size=2)
    batches0, batches1 = record0["batches"], record1["batches"]
    # DistributedSampler(even_divisible=True): both ranks run the same number of steps, so every all-reduce pairs up
    assert len(batches0) == len(batches1) >= 1
    assert not {b["digest"] for b in batches0} & {b["digest"] for b in batches1}, "the ranks must see other samples"
    if len(settings["train_ids"]) >= 2:  # whole images per rank (not patches of one image): other files, too
        assert not {f for b in batches0 for f in b["files"]} & {f for b in batches1 for f in b["files"]}
    # other samples give other local losses, hence other local gradients: equal parameters after the step can
    # only come from the all-reduce, and the step did move them
    assert batches0[0]["loss"] != batches1[0]["loss"]
    initial, stepped = weights0["initial"], weights0["after_first_step"]
    assert any(not torch.equal(initial[name], stepped[name]) for name in initial), "the first step changed nothing"
    for stage in ("initial", "after_first_step", "final"):
        mismatched = [n for n, value in weights0[stage].items() if not torch.equal(value, weights1[stage][n])]
        assert not mismatched, f"{stage}: parameters differ between the ranks: {mismatched[:3]}"
    inference = ConfigParser()
    inference.read_config(bundle / "configs" / "inference.json")
    inference.update({"bundle_root": str(bundle), "features": settings["features"]})
    weights = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    inference.get_parsed_content("network_def").load_state_dict(weights)  # strict: no DDP ``module.`` prefix


U2NET_TINY = {"features": [4] * 6, "mid_features": [2] * 6, "decoder_mid_features": [2] * 5}
# the paper baselines each bundle's docs compare against, swapped in through ``network_def``
NETWORK_SWAPS = [
    ("attention_resunet_cell_segmentation", {"_target_": "custom_networks.SegNet"}),
    ("attention_resunet_cell_segmentation", {"_target_": "custom_networks.FCN8s"}),
    ("attention_resunet_cell_segmentation", {"_target_": "custom_networks.R2UNet"}),
    ("lgnet_covid_ct_segmentation", {"_target_": "custom_networks.SegNet"}),
    ("lgnet_covid_ct_segmentation", {"_target_": "BasicUNet", "features": [4, 4, 8, 16, 32, 4]}),
    ("lgnet_covid_ct_segmentation", {"_target_": "custom_networks.U2Net", **U2NET_TINY}),
]


@pytest.mark.parametrize(
    "bundle_name, network_def", NETWORK_SWAPS, ids=[f"{b}-{n['_target_']}" for b, n in NETWORK_SWAPS]
)
def test_network_def_swap_keeps_the_bundle_arguments(bundle_name: str, network_def: dict):
    """Replacing ``network_def#_target_`` (and its own arguments) keeps the bundle's channels and features."""
    bundle = REPO_ROOT / "bundles" / bundle_name
    parser = ConfigParser()
    parser.read_config(bundle / "configs" / "train.json")
    parser.update({"features": SMOKE_OVERRIDES[bundle_name]["features"]})
    for key, value in network_def.items():
        parser[f"network_def#{key}"] = value
    network = parser.get_parsed_content("network_def")
    assert type(network).__name__ == network_def["_target_"].split(".")[-1]
    data_format = json.loads((bundle / "configs" / "metadata.json").read_text())["network_data_format"]
    in_channels = next(iter(data_format["inputs"].values()))["num_channels"]
    out_channels = next(iter(data_format["outputs"].values()))["num_channels"]
    with torch.no_grad():
        assert network.eval()(torch.rand(1, in_channels, 64, 64)).shape == (1, out_channels, 64, 64)
