"""The workflow checks of a package, each run in a fresh process (:mod:`medseg_tools.zoo.probes`):
``check_properties`` of the workflows, ``verify_net_in_out`` and the TorchScript export compared with eager."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg_tools.zoo.configs import PackageError

from transforms import DATA_ENV_VAR, data_root

logger = logging.getLogger("package_bundle")

#: the probes print their result as one JSON line after this marker
_PROBE_MARKER = "PACKAGE_BUNDLE_PROBE "


def _probe_env() -> dict[str, str]:
    """Environment of a check subprocess: no PYTHONPATH (a zoo user does not have this repository on it), no
    bytecode written into the package, and the data where the repository's bundles read it (``$MEDSEG_DATA``,
    else ``../shared/data`` beside the checkout: the packaged configs honour ``$MEDSEG_DATA`` too)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault(DATA_ENV_VAR, str(data_root()))
    return env


def _run_probe(package_dir: Path, command: Sequence[str], what: str, cwd: Path | None = None) -> Any:
    """Runs a check in a fresh process; its result is the JSON line after ``_PROBE_MARKER`` (or ``None``)."""
    result = subprocess.run(
        list(command), capture_output=True, text=True, cwd=cwd or package_dir, env=_probe_env(), check=False
    )
    if result.returncode != 0:
        tail = "\n      ".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise PackageError(f"{what} failed (exit status {result.returncode}):\n      {tail}")
    for line in result.stdout.splitlines():
        if line.startswith(_PROBE_MARKER):
            return json.loads(line[len(_PROBE_MARKER) :])
    return None


def _probe_command(name: str, *args: str) -> list[str]:
    """A probe of :mod:`medseg_tools.zoo.probes`, a command of the package CLI (``python -m medseg_tools.zoo``, the
    same as ``scripts/package_bundle.py``), run by the same python (which has the project installed)."""
    return [sys.executable, "-m", "medseg_tools.zoo", name, *args]


def _inference_overrides(package_dir: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides whose top-level id exists in ``inference.json`` (``verify_net_in_out`` sets each one)."""
    config = json.loads((package_dir / "configs" / "inference.json").read_text())
    return {key: value for key, value in overrides.items() if key.split("#")[0] in config}


#: the workflows whose properties are checked, and their configs
WORKFLOW_CONFIGS = (("infer", "inference.json"), ("train", "train.json"))


def workflow_properties_check(package_dir: Path, overrides: Mapping[str, Any]) -> list[str]:
    """``ConfigWorkflow.check_properties()`` of the inference and train workflows, in a fresh process whose
    working directory is not the package (the configs' ``initialize`` must make ``scripts`` importable)."""
    with tempfile.TemporaryDirectory() as work:
        settings = Path(work) / "overrides.json"
        settings.write_text(json.dumps(dict(overrides)))
        try:
            results = _run_probe(
                package_dir,
                _probe_command("probe_properties", str(package_dir), str(settings), work),
                "check_properties of the workflows",
                cwd=Path(work),
            )
        except PackageError as error:
            return [str(error)]
    problems = []
    for workflow_type, config in WORKFLOW_CONFIGS:
        result = results[config]
        if "error" in result:
            problems.append(f"configs/{config}: the {workflow_type} workflow fails:\n      {result['error']}")
        elif result["missing"]:
            problems.append(f"configs/{config}: the {workflow_type} workflow lacks the properties {result['missing']}")
    return problems


def verify_net_in_out_check(package_dir: Path, overrides: Mapping[str, Any]) -> list[str]:
    """``python -m monai.bundle verify_net_in_out network_def`` from the package folder (as the zoo runs it)."""
    with tempfile.TemporaryDirectory() as work:
        args_file = Path(work) / "verify_args.json"
        args = {
            "net_id": "network_def",
            "meta_file": "configs/metadata.json",
            "config_file": "configs/inference.json",
            "bundle_root": str(package_dir),
            **_inference_overrides(package_dir, overrides),
        }
        args_file.write_text(json.dumps(args))
        command = [sys.executable, "-m", "monai.bundle", "verify_net_in_out", "--args_file", str(args_file)]
        try:
            _run_probe(package_dir, command, "configs/inference.json: verify_net_in_out network_def")
        except PackageError as error:
            return [str(error)]
    return []


def torchscript_check(package_dir: Path, overrides: Mapping[str, Any], export_to: Path | None = None) -> list[str]:
    """``ckpt_export`` of ``network_def`` to TorchScript, compared with the eager network on a random input of the
    metadata's input shape; with ``models/model.pt`` when present, else seeded random weights.

    Args:
        package_dir: the package folder.
        overrides: config overrides (those of ``inference.json``'s ids are used).
        export_to: keep the TorchScript model there (e.g. ``models/model.ts``); default: a temporary file.
    """
    with tempfile.TemporaryDirectory() as work:
        settings = Path(work) / "overrides.json"
        settings.write_text(json.dumps(_inference_overrides(package_dir, overrides)))
        target = Path(export_to) if export_to else Path(work) / "model.ts"
        try:
            report = _run_probe(
                package_dir,
                _probe_command("probe_torchscript", str(package_dir), str(settings), str(target), work),
                "configs/inference.json: TorchScript export of network_def",
            )
        except PackageError as error:
            return [str(error)]
    logger.info("TorchScript of %s: %s", package_dir.name, report)
    return []
