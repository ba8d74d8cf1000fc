"""Experiment tracking through MONAI's bundle option: ``python -m monai.bundle run ... --tracking mlflow``.

MONAI appends ``MLFlowHandler`` to the handlers of the engines it finds by id (``train#trainer`` /
``train#handlers``, ``validate#evaluator`` / ``validate#handlers``; see ``monai.bundle.utils.DEFAULT_MLFLOW_SETTINGS``).
Its default store is SQLite (MLflow 3.13+ refuses plain ``file://`` folders), which needs ``sqlalchemy`` and
``alembic`` besides ``mlflow-skinny``.
"""

import json
import math
from pathlib import Path

import pytest
from medseg_tools.runner import run_bundle
from monai.bundle import ConfigWorkflow
from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS
from monai.handlers import MLFlowHandler
from monai.utils import path_to_sqlite_uri

from tests.conftest import REPO_ROOT, require_dataset, require_module

mlflow = require_module("mlflow")
require_module("sqlalchemy", reason="MLflow's SQLite store (MONAI's default tracking backend) needs sqlalchemy")
require_module("alembic", reason="MLflow's SQLite store (MONAI's default tracking backend) needs alembic")
from mlflow.tracking import MlflowClient  # noqa: E402

BUNDLES = sorted(p.name for p in (REPO_ROOT / "bundles").iterdir() if (p / "configs" / "train.json").is_file())
SMOKE_OVERRIDES = json.loads((REPO_ROOT / "tests" / "bundle_smoke_overrides.json").read_text())
# the engines MONAI's tracking option looks for in a training config: {"id": engine id, "handlers": their list's id}
TRACKED_ENGINES = {kind: DEFAULT_MLFLOW_SETTINGS["handlers_id"][kind] for kind in ("trainer", "validator")}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_tracking_option_adds_mlflow_handlers_to_every_training_config(bundle, tmp_path):
    """``tracking="mlflow"`` finds the trainer and the validator of ``train.json`` and appends a working
    ``MLFlowHandler`` to each one's handler list (no training run: the handlers are only built)."""
    root = REPO_ROOT / "bundles" / bundle
    workflow = ConfigWorkflow(
        config_file=str(root / "configs" / "train.json"),
        meta_file=str(root / "configs" / "metadata.json"),
        workflow_type="train",
        bundle_root=str(root),
        output_dir=str(tmp_path),
        save_execute_config=str(tmp_path / "executed.json"),
        tracking="mlflow",
    )
    parser = workflow.parser
    for kind, ids in TRACKED_ENGINES.items():
        engine_id, handlers_id = ids["id"], ids["handlers"]
        assert engine_id in parser, f"{bundle}: train.json lacks {engine_id!r}, --tracking mlflow skips the {kind}"
        handlers = parser[handlers_id]
        assert isinstance(handlers, list), f"{bundle}: {handlers_id!r} must be a list for MONAI to append to it"
        assert handlers[-1]["_target_"] == "MLFlowHandler"
        handler = parser.get_parsed_content(f"{handlers_id}#{len(handlers) - 1}")
        assert isinstance(handler, MLFlowHandler)
        # the default store: SQLite beside the outputs, run artifacts in <output_dir>/mlruns
        assert handler.client.tracking_uri == path_to_sqlite_uri(tmp_path / "mlruns.db")
        assert handler.artifact_location == (tmp_path / "mlruns").as_uri()
    # the executed config, logged as the run's artifact, is the bundle's training config
    executed = json.loads((tmp_path / "executed.json").read_text())
    assert executed["network_def"] == json.loads((root / "configs" / "train.json").read_text())["network_def"]


def test_one_epoch_of_training_is_tracked(tmp_path):
    """A full CLI run (1 epoch, small network, 2 training and 1 validation image) writes one finished MLflow run with
    the training loss per iteration, every validation metric, the trainer's parameters and the executed config."""
    bundle = "unet_em_segmentation"
    require_dataset("isbi2012_em")
    tracking_uri = path_to_sqlite_uri(tmp_path / "tracking" / "mlflow.db")
    settings = {
        **SMOKE_OVERRIDES[bundle],
        "epochs": 1,
        "ckpt_dir": tmp_path / "models",
        "output_dir": tmp_path / "eval",
        "log_dir": tmp_path / "runs",
        "tracking": "mlflow",
        "tracking_uri": tracking_uri,
        "experiment_name": "smoke_experiment",
        "run_name": "one_epoch",
        # an --output_dir given as a path breaks MONAI's default name of this file (it joins an expression to it)
        "save_execute_config": tmp_path / "eval" / "executed_train.json",
    }
    (tmp_path / "tracking").mkdir()
    run_bundle(bundle, ["train.json"], overrides=settings, capture=True, timeout=600)

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("smoke_experiment")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "one_epoch" and run.info.status == "FINISHED"
    assert run.data.tags["mlflow.runName"] == "one_epoch"
    assert run.data.params["max_epochs"] == "1"
    iterations = int(run.data.params["epoch_length"])
    assert iterations >= 1

    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [point.step for point in losses] == list(range(1, iterations + 1))
    assert all(math.isfinite(point.value) and point.value > 0 for point in losses)
    validate = json.loads((REPO_ROOT / "bundles" / bundle / "configs" / "train.json").read_text())["validate"]
    for name in [*validate["key_metric"], *validate["additional_metrics"]]:
        (point,) = client.get_metric_history(run.info.run_id, name)
        assert point.step == 1 and 0.0 <= point.value <= 1.0, (name, point)

    (artifact,) = client.list_artifacts(run.info.run_id)
    assert artifact.path == "executed_train.json"
    local = client.download_artifacts(run.info.run_id, artifact.path, str(tmp_path))
    executed = json.loads(Path(local).read_text())
    assert executed["features"] == SMOKE_OVERRIDES[bundle]["features"] and executed["tracking_uri"] == tracking_uri
