"""The dataset registry (transforms/data/datasets.py): data folder rule, names and aliases, bundle configs in sync."""

import json
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from transforms import (
    BUNDLE_DATASETS,
    DATASETS,
    LAYOUTS,
    bundle_dataset,
    data_root,
    dataset_dir,
    dataset_spec,
)

BUNDLES = sorted(p for p in (REPO_ROOT / "bundles").iterdir() if (p / "configs").is_dir())


def test_data_root_prefers_medseg_data(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSEG_DATA", str(tmp_path))
    assert data_root() == tmp_path.resolve()
    assert data_root(REPO_ROOT / "bundles" / "unet_em_segmentation") == tmp_path.resolve()
    assert dataset_dir("isbi") == tmp_path.resolve() / "isbi2012_em"


def test_data_root_defaults_beside_the_checkout(monkeypatch):
    monkeypatch.delenv("MEDSEG_DATA", raising=False)
    shared = (REPO_ROOT.parent / "shared" / "data").resolve()
    assert data_root() == shared
    assert data_root(REPO_ROOT / "bundles" / "unet_em_segmentation") == shared
    assert data_root(str(REPO_ROOT / "bundles" / "unet_em_segmentation")) == shared


def test_names_aliases_and_bundles():
    assert dataset_spec("phc") is DATASETS["phc_usiigaci"] and dataset_spec("phc_usiigaci").folder == "phc_usiigaci"
    assert all(spec.layout in LAYOUTS for spec in DATASETS.values())
    assert bundle_dataset("unet_em_segmentation").name == "isbi2012_em"
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        dataset_spec("nope")
    with pytest.raises(ValueError, match="no dataset registered for bundle"):
        bundle_dataset("nope")
    assert set(BUNDLE_DATASETS) == {bundle.name for bundle in BUNDLES}


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_train_config_lists_the_registered_dataset(bundle: Path):
    config = json.loads((bundle / "configs" / "train.json").read_text())
    spec = bundle_dataset(bundle.name)
    assert config["data_root"] == "$transforms.data_root(@bundle_root)"
    assert config["dataset_dir"] == f"$os.path.join(@data_root, '{spec.folder}')"
    assert config["data_layout"] == spec.layout
    assert config["label_kind"] == spec.checks["label_kind"]
