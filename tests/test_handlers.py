"""Atomic checkpoint writes and resume-from-nothing behaviour of transforms.handlers."""

import json

import pytest
import torch
from ignite.engine import Engine, Events

from transforms.handlers import AtomicCheckpointSaver, ResumeFromCheckpoint, atomic_torch_save


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"value": torch.tensor(1.0)}, path)

    def crash_midway(obj, stream):
        stream.write(b"partial bytes")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"value": torch.tensor(2.0)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["value"].item() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"], "no temporary file may be left behind"


def _evaluator_with_metrics(values):
    engine = Engine(lambda engine, batch: None)
    engine.state.key_metric_name = "dice"

    def set_metric(engine):
        engine.state.metrics["dice"] = values[engine.state.epoch - 1]

    engine.add_event_handler(Events.EPOCH_COMPLETED, set_metric)  # before the saver, like MONAI's evaluator
    return engine


def test_key_metric_saver_keeps_best_across_restarts(tmp_path):
    net = torch.nn.Linear(2, 1)
    saver = AtomicCheckpointSaver(tmp_path, {"model": net}, filename="model.pt", key_metric=True)
    evaluator = _evaluator_with_metrics([0.5, 0.7, 0.6])
    saver.attach(evaluator)
    evaluator.run([0], max_epochs=3)
    record = json.loads((tmp_path / "model.pt.json").read_text())
    assert record == {"metric_name": "dice", "metric": 0.7, "epoch": 2}
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(state) == {"weight", "bias"}, "the best model is a plain state_dict (model zoo convention)"

    restarted = AtomicCheckpointSaver(tmp_path, {"model": net}, filename="model.pt", key_metric=True)
    assert restarted.best_metric == 0.7
    worse = _evaluator_with_metrics([0.65])
    restarted.attach(worse)
    worse.run([0], max_epochs=1)
    assert json.loads((tmp_path / "model.pt.json").read_text())["metric"] == 0.7


def test_lower_is_better_and_nan_never_saved(tmp_path):
    net = torch.nn.Linear(2, 1)
    saver = AtomicCheckpointSaver(tmp_path, {"model": net}, "err.pt", key_metric=True, greater_is_better=False)
    evaluator = _evaluator_with_metrics([float("nan"), 0.3, 0.4, 0.2])
    saver.attach(evaluator)
    evaluator.run([0], max_epochs=4)
    assert json.loads((tmp_path / "err.pt.json").read_text())["epoch"] == 4


def test_resume_without_checkpoint_starts_fresh_and_with_one_continues(tmp_path):
    net = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    trainer = Engine(lambda engine, batch: None)
    objects = {"model": net, "optimizer": optimizer, "trainer": trainer}
    ResumeFromCheckpoint(tmp_path / "last.pt", objects).attach(trainer)
    AtomicCheckpointSaver(tmp_path, objects, filename="last.pt").attach(trainer)
    trainer.run([0, 1], max_epochs=2)
    assert (tmp_path / "last.pt").is_file()

    second = Engine(lambda engine, batch: None)
    epochs_run = []
    second.add_event_handler(Events.EPOCH_STARTED, lambda engine: epochs_run.append(engine.state.epoch))
    ResumeFromCheckpoint(tmp_path / "last.pt", {**objects, "trainer": second}).attach(second)
    second.run([0, 1], max_epochs=3)
    assert epochs_run == [3]


def test_saver_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="save_dict"):
        AtomicCheckpointSaver(tmp_path, {})
    with pytest.raises(ValueError, match="save_interval"):
        AtomicCheckpointSaver(tmp_path, {"m": torch.nn.Linear(1, 1)}, save_interval=0)


def test_fresh_run_ignores_previous_best(tmp_path):
    net = torch.nn.Linear(2, 1)
    (tmp_path / "model.pt.json").write_text(json.dumps({"metric_name": "dice", "metric": 0.99, "epoch": 7}))
    saver = AtomicCheckpointSaver(tmp_path, {"model": net}, "model.pt", key_metric=True, keep_previous_best=False)
    evaluator = _evaluator_with_metrics([0.5])
    saver.attach(evaluator)
    evaluator.run([0], max_epochs=1)
    assert json.loads((tmp_path / "model.pt.json").read_text())["metric"] == 0.5
