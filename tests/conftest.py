"""Shared test fixtures: where the real data lives, and small helpers."""

import importlib
import os
from pathlib import Path

import pytest
import torch

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
