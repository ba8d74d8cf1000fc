"""The workflow checks' probes, each run in a fresh process: ``python -m medseg_tools.zoo COMMAND ...``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from medseg_tools.zoo.configs import SCRIPTS_PACKAGE
from medseg_tools.zoo.workflows import _PROBE_MARKER, WORKFLOW_CONFIGS


def _import_package_scripts(package_dir: str) -> Any:
    """The package's ``scripts``, imported from the package folder whatever else is on ``sys.path``."""
    import importlib

    sys.path.insert(0, str(Path(package_dir).resolve()))
    sys.modules.pop(SCRIPTS_PACKAGE, None)
    module = importlib.import_module(SCRIPTS_PACKAGE)
    expected = Path(package_dir).resolve() / SCRIPTS_PACKAGE
    if Path(module.__file__).resolve().parent != expected:
        raise ImportError(f"'scripts' imported from {module.__file__}, not from {expected}")
    return module


def probe_properties(package_dir: str, overrides_file: str, work_dir: str) -> None:
    """(In a fresh process, another working directory.) Prints, per workflow config, the properties
    ``check_properties`` misses or the error that stopped it."""
    import traceback

    from monai.bundle import ConfigWorkflow

    root = Path(package_dir).resolve()
    overrides = json.loads(Path(overrides_file).read_text())
    results = {}
    for workflow_type, config in WORKFLOW_CONFIGS:
        outputs = {key: f"{work_dir}/{workflow_type}/{key}" for key in ("ckpt_dir", "output_dir", "log_dir")}
        try:
            workflow = ConfigWorkflow(
                config_file=str(root / "configs" / config),
                meta_file=str(root / "configs" / "metadata.json"),
                logging_file=str(root / "configs" / "logging.conf"),
                workflow_type=workflow_type,
                bundle_root=str(root),
                **{**outputs, **overrides},
            )
            workflow.initialize()
            results[config] = {"missing": workflow.check_properties() or []}
        except Exception:  # reported with its traceback; the other workflow is still checked
            results[config] = {"error": "\n      ".join(traceback.format_exc().strip().splitlines()[-12:])}
    print(_PROBE_MARKER + json.dumps(results))


def probe_torchscript(package_dir: str, overrides_file: str, target: str, work_dir: str) -> None:
    """(In a fresh process.) Exports ``network_def`` with ``ckpt_export`` and compares it with the eager network on
    the metadata's input shape (:mod:`medseg_tools.export`, as ``export_bundle.py`` does); with ``models/model.pt``
    when present, else seeded random weights."""
    from medseg_tools.export import export_torchscript, prepare_bundle

    root = Path(package_dir).resolve()
    _import_package_scripts(package_dir)
    overrides = json.loads(Path(overrides_file).read_text())
    weights = root / "models" / "model.pt"
    prepared = prepare_bundle(
        root,
        Path(work_dir),
        ckpt=weights if weights.is_file() else None,
        key_in_ckpt="",
        defaults=overrides,
        input_shape=None,
        seed=0,
    )
    result = export_torchscript(prepared, Path(target), rtol=1e-4, atol=1e-5)
    input_name = next(iter(prepared.data_format["inputs"]))
    report = {"input": input_name, "shape": list(result.input_shape), "max_abs_difference": result.max_abs_difference}
    print(_PROBE_MARKER + json.dumps(report))
