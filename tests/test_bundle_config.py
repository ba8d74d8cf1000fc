"""The named helpers the bundle configs call instead of long ``$`` expressions (transforms/bundle_config.py)."""

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import EMAHandler
from PIL import Image

import transforms
from transforms import (
    DataValidationError,
    attach_ema,
    chain_transforms,
    checked_folder_datalist,
    checked_image_datalist,
    early_stop_engine,
    early_stop_score,
    ema_momentum_schedule,
    read_bundle_metadata,
    training_checkpoint,
)


def _engine_with(**metrics):
    engine = Engine(lambda engine, batch: None)
    engine.state.metrics.update(metrics)
    return engine


def test_the_helpers_are_exported_flat():
    for name in transforms.bundle_config.__all__:
        assert getattr(transforms, name) is getattr(transforms.bundle_config, name)
        assert name in transforms.__all__
        assert getattr(transforms, name).__doc__


def _isbi_folder(root, ids, label_value=255):
    for kind in ("image", "label"):
        (root / kind).mkdir(parents=True, exist_ok=True)
    for index in ids:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "image" / f"{index}.png")
        Image.fromarray(np.full((8, 8), label_value, np.uint8)).save(root / "label" / f"{index}.png")
    return root


def test_checked_folder_datalist_lists_then_checks(tmp_path):
    root = _isbi_folder(tmp_path / "data", [0, 1, 2])
    listing = transforms.folder_datalist(root, layout="isbi", ids=[0, 2])
    assert checked_folder_datalist(root, "isbi", [0, 2], {"label_values": [0, 255]}) == listing
    assert [item["id"] for item in checked_folder_datalist(root, "isbi", "all")] == [0, 1, 2]
    with pytest.raises(DataValidationError):
        checked_folder_datalist(root, "isbi", [0], {"label_values": [0, 1]})


def test_checked_folder_datalist_passes_the_checks_on(tmp_path, monkeypatch):
    calls = {}

    def fake_listing(dataset_dir, layout, ids):
        calls["listing"] = (dataset_dir, layout, ids)
        return [{"image": "a.png", "label": "b.png", "id": 1}]

    def fake_check(datalist, **checks):
        calls["checks"] = checks
        return datalist

    monkeypatch.setattr(transforms.bundle_config, "folder_datalist", fake_listing)
    monkeypatch.setattr(transforms.bundle_config, "validate_datalist", fake_check)
    result = checked_folder_datalist("dir", "phc", [1], {"label_kind": "instances", "allow_rgb_to_gray": True})
    assert result == [{"image": "a.png", "label": "b.png", "id": 1}]
    assert calls == {"listing": ("dir", "phc", [1]), "checks": {"label_kind": "instances", "allow_rgb_to_gray": True}}
    checked_folder_datalist("dir", "phc", None)
    assert calls["checks"] == {}


def test_checked_image_datalist_checks_the_images(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "gray.png")
    assert checked_image_datalist(str(tmp_path), image_channels=1) == [{"image": str(tmp_path / "gray.png")}]
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DataValidationError):
        checked_image_datalist(str(tmp_path / "rgb.png"), image_channels=1)
    assert checked_image_datalist(str(tmp_path / "rgb.png"), image_channels=1, allow_rgb_to_gray=True)


def test_early_stop_score_negates_losses_only():
    engine = _engine_with(train_epoch_loss=0.25, val_mean_dice=torch.tensor(0.75))
    assert early_stop_score("train_epoch_loss")(engine) == -0.25
    assert early_stop_score("val_mean_dice")(engine) == pytest.approx(0.75)
    assert isinstance(early_stop_score("val_mean_dice")(engine), float)


def test_early_stop_engine_picks_the_trainer_for_training_metrics():
    trainer, evaluator = object(), object()
    assert early_stop_engine("train_epoch_loss", trainer, evaluator) is trainer
    assert early_stop_engine("val_mean_dice", trainer, evaluator) is evaluator
    assert early_stop_engine("val_loss", trainer, evaluator) is evaluator


def test_ema_momentum_schedule_warms_up_and_is_capped_by_the_decay():
    engine = Engine(lambda engine, batch: None)
    schedule = ema_momentum_schedule(0.999)
    momenta = {}
    for iteration in (1, 91, 10**6):
        engine.state.iteration = iteration
        schedule(engine)
        momenta[iteration] = engine.state.ema_momentum
    assert momenta[1] == pytest.approx(0.9) and momenta[91] == pytest.approx(0.09)
    assert momenta[10**6] == pytest.approx(0.001)
    engine.state.iteration = 1
    ema_momentum_schedule("0.999", warmup=False)(engine)
    assert engine.state.ema_momentum == pytest.approx(0.001)


def test_attach_ema_schedules_the_momentum_before_each_update():
    model = torch.nn.Linear(1, 1)
    trainer = Engine(lambda engine, batch: None)
    assert attach_ema(None, trainer, ema_momentum_schedule(0.5)) is False
    assert not trainer.has_event_handler(ema_momentum_schedule, Events.ITERATION_COMPLETED)
    ema = EMAHandler(model, momentum=0.5)
    seen = []
    schedule = ema_momentum_schedule(0.5)

    def recording(engine):
        schedule(engine)
        seen.append(engine.state.ema_momentum)

    assert attach_ema(ema, trainer, recording) is True
    assert trainer.has_event_handler(recording, Events.ITERATION_COMPLETED)
    trainer.run([0, 1], max_epochs=1)
    assert seen == [pytest.approx(0.9), pytest.approx(9 / 11)]
    assert trainer.state.ema_momentum == pytest.approx(9 / 11)


def test_training_checkpoint_adds_the_ema_weights_when_there_is_an_ema():
    model = torch.nn.Linear(1, 1)
    assert training_checkpoint(model, "opt", "trainer") == {"model": model, "optimizer": "opt", "trainer": "trainer"}
    ema = EMAHandler(model)
    saved = training_checkpoint(model, "opt", "trainer", ema)
    assert list(saved) == ["model", "optimizer", "trainer", "ema_model"] and saved["ema_model"] is ema.ema_model


def test_chain_transforms_flattens_one_level_and_skips_none():
    assert chain_transforms("a", ["b", "c"], None, ("d",), [], "e") == ["a", "b", "c", "d", "e"]
    assert chain_transforms() == []


def test_read_bundle_metadata_reads_the_file_or_gives_an_empty_dict(tmp_path):
    assert read_bundle_metadata(tmp_path / "missing.json") == {}
    (tmp_path / "metadata.json").write_text('{"name": "x", "version": "0.1.0"}')
    assert read_bundle_metadata(str(tmp_path / "metadata.json")) == {"name": "x", "version": "0.1.0"}
