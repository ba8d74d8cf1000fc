"""The configs' shared plumbing is the same in every bundle, so that drift in one bundle fails here.

``evaluate.json`` and ``multi_gpu_train.json`` are one file copied into each bundle; what they reference must
exist in every ``train.json``; the paths, device, AMP switch, checkpointing, logging, early stopping and the
``initialize``/``run`` steps of ``train.json`` are written the same way everywhere. What may differ (the
network, the data, the transforms, the metrics) is what makes each bundle.
"""

import json
import re

import pytest
from monai.bundle import ConfigParser

from tests.conftest import REPO_ROOT

BUNDLES = sorted(p for p in (REPO_ROOT / "bundles").iterdir() if (p / "configs").is_dir())
NAMES = [bundle.name for bundle in BUNDLES]
REFERENCE = re.compile(r"@([A-Za-z_][\w#]*)")


def _config(bundle, name):
    return json.loads((bundle / "configs" / name).read_text())


def _get(config, config_id):
    value = config
    for key in config_id.split("#"):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def _same_everywhere(config_id, name="train.json"):
    values = {bundle.name: json.dumps(_get(_config(bundle, name), config_id), sort_keys=True) for bundle in BUNDLES}
    assert len(set(values.values())) == 1, f"{name}: {config_id} differs between bundles: {values}"


def _references(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, str):
        yield from REFERENCE.findall(value)


def test_there_are_several_bundles():
    assert len(BUNDLES) >= 2


@pytest.mark.parametrize("name", ["evaluate.json", "multi_gpu_train.json"])
def test_overlay_configs_are_one_file_shared_by_every_bundle(name):
    texts = {bundle.name: (bundle / "configs" / name).read_text() for bundle in BUNDLES}
    first = texts[NAMES[0]]
    assert [bundle for bundle, text in texts.items() if text != first] == [], f"{name} must be the same everywhere"


@pytest.mark.parametrize("name", ["evaluate.json", "multi_gpu_train.json"])
@pytest.mark.parametrize("bundle", BUNDLES, ids=NAMES)
def test_what_overlay_configs_use_exists_in_every_train_json(bundle, name):
    overlay = _config(bundle, name)
    parser = ConfigParser(_config(bundle, "train.json"))
    defined_by_overlay = set(overlay)
    for reference in set(_references(overlay)) - defined_by_overlay:
        assert reference in parser, f"{bundle.name}: {name} refers to @{reference}, missing from train.json"
    for key in overlay:
        if "#" in key:
            parent = key.rsplit("#", 1)[0]
            assert parent in parser, f"{bundle.name}: {name} overrides {key}, but train.json has no {parent}"


@pytest.mark.parametrize(
    "config_id",
    [
        # paths and devices: what users override (--bundle_root, --ckpt_dir, --output_dir, --device, --amp)
        "imports",
        "bundle_root",
        "data_root",
        "ckpt_dir",
        "output_dir",
        "log_dir",
        "device",
        "amp",
        "resume",
        # the cosine schedule over the time budget (train_minutes itself is each recipe's own)
        "wall_time_stopper",
        "lr_scheduler",
        "train#handlers#0",
        # the datalists, read by scripts (reproduce: validate#datalist) and MONAI Label (train#dataset#data)
        "train#datalist",
        "validate#datalist",
        "validate#dataset",
        "validate#dataloader",
        "validate#preprocessing",
        "validate#inferer",
        "validate#postprocessing",
        # checkpoints and early stopping
        "train#resume",
        "train#checkpoint_saver",
        "train#early_stopper",
        "train#early_stop_engine",
        # what runs
        "initialize",
        "run",
        "finalize",
        "training",
    ],
)
def test_train_json_plumbing_is_the_same_everywhere(config_id):
    _same_everywhere(config_id)


@pytest.mark.parametrize(
    "bundle, configs, spec",
    [(bundle, ["train.json"], "release.json") for bundle in NAMES]
    + [("unet_em_segmentation", ["train.json", "phc_cells.json"], "release_phc_cells.json")],
)
def test_train_minutes_is_the_budget_of_the_release_spec(bundle, configs, spec):
    # train.json reproduces the shipped model, which `reproduce.py <bundle> release` trained with the spec's budget
    root = REPO_ROOT / "bundles" / bundle
    minutes = None
    for name in configs:
        minutes = _config(root, name).get("train_minutes", minutes)
    budget = _config(root, f"reproduce/{spec}")["budget"]["minutes"]
    assert isinstance(minutes, (int, float)) and minutes > 0, f"{bundle}: train_minutes {minutes!r}"
    assert minutes == budget, f"{bundle}: train_minutes {minutes} in {configs}, but {spec} budgets {budget} minutes"


def test_handlers_share_their_logging_and_checkpoint_entries():
    # multi_gpu_train.json drops the last two training handlers on ranks > 0: they must be the loggers
    last_two = {b.name: json.dumps(_config(b, "train.json")["train"]["handlers"][-2:], sort_keys=True) for b in BUNDLES}
    assert len(set(last_two.values())) == 1, last_two
    targets = [entry["_target_"] for entry in json.loads(next(iter(last_two.values())))]
    assert targets == ["StatsHandler", "TensorBoardStatsHandler"]
    for bundle in BUNDLES:
        handlers = _config(bundle, "train.json")["train"]["handlers"]
        validation = [entry for entry in handlers if entry["_target_"] == "ValidationHandler"]
        assert validation == [
            {
                "_target_": "ValidationHandler",
                "validator": "@validate#evaluator",
                "epoch_level": True,
                "interval": "@val_interval",
            }
        ], bundle.name
    # validation: stats, tensorboard, then the best-model saver; only the saved network may differ (EMA)
    savers = {}
    for bundle in BUNDLES:
        handlers = _config(bundle, "train.json")["validate"]["handlers"]
        assert [entry["_target_"] for entry in handlers] == [
            "StatsHandler",
            "TensorBoardStatsHandler",
            "transforms.AtomicCheckpointSaver",
        ], bundle.name
        saver = dict(handlers[2])
        assert saver.pop("save_dict")["model"] in ("@network", "@validate#network"), bundle.name
        savers[bundle.name] = json.dumps([handlers[:2], saver], sort_keys=True)
    assert len(set(savers.values())) == 1, savers


def test_trainers_and_evaluators_are_wired_the_same_way():
    optional = {"key_train_metric": "@train#key_metric", "metric_cmp_fn": "$transforms.lower_is_better"}
    trainers, evaluators = {}, {}
    for bundle in BUNDLES:
        config = _config(bundle, "train.json")
        trainer = dict(config["train"]["trainer"])
        for key, value in optional.items():
            assert trainer.pop(key, value) == value, (bundle.name, key)
        trainers[bundle.name] = json.dumps(trainer, sort_keys=True)
        evaluator = dict(config["validate"]["evaluator"])
        assert evaluator.pop("network") in ("@network", "@validate#network"), bundle.name
        evaluators[bundle.name] = json.dumps(evaluator, sort_keys=True)
        checkpoint = config["train"]["checkpoint_dict"]
        if isinstance(checkpoint, dict):
            assert {key: checkpoint[key] for key in ("model", "optimizer", "trainer")} == {
                "model": "@network",
                "optimizer": "@optimizer",
                "trainer": "@train#trainer",
            }, bundle.name
        else:
            assert checkpoint.startswith("$transforms.training_checkpoint(@network, @optimizer, @train#trainer")
        assert isinstance(config["train"]["extra_initialize"], list), bundle.name
        assert isinstance(config["validate"]["evaluate_only_metrics"], dict), bundle.name
    assert len(set(trainers.values())) == 1, trainers
    assert len(set(evaluators.values())) == 1, evaluators


@pytest.mark.parametrize("config_id", ["bundle_root", "device"])
def test_inference_json_shares_the_basics_with_train_json(config_id):
    # inference.json is read alone (MONAI Label), so it repeats these; they must not drift
    _same_everywhere(config_id, "inference.json")
    assert _get(_config(BUNDLES[0], "inference.json"), config_id) == _get(_config(BUNDLES[0], "train.json"), config_id)
