"""Shared test fixtures: where the real data lives, and small helpers."""

import importlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Events
from medseg_tools import reproduce
from monai.bundle import ConfigParser
from monai.handlers import from_engine

# one definition of where the real data lives ($MEDSEG_DATA, else ../shared/data): the one users run
from transforms import data_root

REPO_ROOT = Path(__file__).resolve().parents[1]


def saved_epoch(checkpoint: Path) -> int:
    """Epochs completed in a trainer checkpoint (ignite stores iterations and the epoch length)."""
    trainer = torch.load(checkpoint, weights_only=True)["trainer"]
    return trainer["iteration"] // trainer["epoch_length"]


def require_dataset(name: str) -> Path:
    """Path of a real dataset; fails under CI (``CI=true``) when it is missing, skips elsewhere."""
    path = data_root() / name
    if not path.is_dir():
        message = f"real dataset {name!r} not found at {path} (set MEDSEG_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_module(name: str, reason: str = ""):
    """Imports an optional package of the ``test`` extra; fails under CI (``CI=true``) when it is missing, skips
    elsewhere (like :func:`require_dataset`: CI installs the extra, so a missing package there is a broken setup)."""
    if os.environ.get("CI", "").lower() != "true":
        return pytest.importorskip(name, reason=reason or None)
    try:
        return importlib.import_module(name)
    except ImportError as error:
        pytest.fail(f"{name} is not installed ({reason or 'pip install -e .[test]'}): {error}")


@pytest.fixture(scope="session")
def isbi_dir() -> Path:
    return require_dataset("isbi2012_em")


@pytest.fixture(scope="session")
def phc_dir() -> Path:
    return require_dataset("phc_usiigaci")


@dataclass
class TrainingRun:
    """What :func:`train_in_process` saw of one bundle training.

    Attributes:
        parser: the bundle's parsed config; its objects (network, evaluator, ...) are the trained ones.
        epoch_losses: the training loss of every iteration, one list per epoch.
        metrics: the evaluator's metrics after the last validation.
        precision: the ``precision`` the config selected.
        network_dtypes: the dtypes of the network's outputs during training (bf16 under CPU autocast).
        seconds: wall time of the training (validation included).
    """

    parser: ConfigParser
    epoch_losses: list[list[float]]
    metrics: dict[str, float]
    precision: Any
    network_dtypes: set[torch.dtype]
    seconds: float

    @property
    def key_metric(self) -> str:
        return next(iter(self.parser["validate#key_metric"]))


def train_in_process(bundle: str, workdir: Path, overrides: Mapping[str, Any]) -> TrainingRun:
    """Trains ``bundle`` through its ``train.json`` in this process, as ``monai.bundle run`` does (``initialize``
    then the trainer's ``run``), recording each iteration's loss, the metrics of the last validation and the dtype
    the network computed in. In-process rather than through ``monai.bundle run`` so the losses and the network
    outputs can be hooked without changing the bundle, and the trained objects stay inspectable."""
    settings = {
        "ckpt_dir": workdir / "models",
        "output_dir": workdir / "eval",
        "log_dir": workdir / "runs",
        "resume": False,  # a fresh run: no checkpoint_last.pt or best-metric record of another test counts
        **overrides,
    }
    parser = reproduce.load_parser(bundle, ["train.json"], settings)
    parser.get_parsed_content("initialize")  # seeds, builds the trainer, attaches the savers (and EMA) in order
    trainer = parser.get_parsed_content("train#trainer")
    evaluator = parser.get_parsed_content("validate#evaluator")
    epoch_losses: list[list[float]] = []
    metrics: dict[str, float] = {}
    dtypes: set[torch.dtype] = set()

    def new_epoch(engine):
        epoch_losses.append([])

    def record_loss(engine):
        epoch_losses[-1].append(float(from_engine(["loss"], first=True)(engine.state.output)))

    def record_metrics(engine):
        metrics.update({name: float(value) for name, value in engine.state.metrics.items()})

    def record_dtype(module, inputs, output):
        if module.training:  # the training forward passes, not validation's (eval mode)
            dtypes.add(output.dtype)

    # removed after the training: tests run the evaluator again (e.g. on other predictions), which must not count
    handlers = [
        (trainer, Events.EPOCH_STARTED, new_epoch),
        (trainer, Events.ITERATION_COMPLETED, record_loss),
        (evaluator, Events.EPOCH_COMPLETED, record_metrics),
    ]
    for engine, event, handler in handlers:
        engine.add_event_handler(event, handler)
    hook = parser.get_parsed_content("network").register_forward_hook(record_dtype)
    started = time.perf_counter()
    try:
        trainer.run()
    finally:
        hook.remove()
        for engine, event, handler in handlers:
            engine.remove_event_handler(handler, event)
    seconds = time.perf_counter() - started
    return TrainingRun(parser, epoch_losses, metrics, parser.get_parsed_content("precision"), dtypes, seconds)
