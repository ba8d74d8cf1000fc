"""Run a bundle of ``bundles/`` through ``python -m monai.bundle``, as a user would, in a subprocess.

Shared by the demo, the reproduction script and the tests so that every bundle run goes through the
same command line (config merging, ``--bundle_root``, metadata and logging files, overrides).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg_tools.paths import BUNDLES_DIR, REPO_ROOT


def bundle_dir(bundle: str | os.PathLike) -> Path:
    """Folder of a bundle given by name (``unet_em_segmentation``) or path."""
    path = Path(bundle)
    if not path.is_dir():
        path = BUNDLES_DIR / str(bundle)
    if not (path / "configs").is_dir():
        known = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs").is_dir())
        raise FileNotFoundError(f"no bundle at {bundle!r}; known bundles: {known}")
    return path.resolve()


def format_override(value: Any) -> str:
    """A value as ``monai.bundle``'s command line (python-fire) parses it back."""
    if isinstance(value, (os.PathLike,)):
        return str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value) if not isinstance(value, (bool, type(None))) else repr(value)


def bundle_command(
    bundle: str | os.PathLike,
    configs: Sequence[str] = ("train.json",),
    target: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    nproc_per_node: int = 1,
) -> list[str]:
    """The ``python -m monai.bundle run`` command line for ``configs`` (merged in order) of ``bundle``.

    With ``nproc_per_node`` > 1 the command starts that many processes through ``torchrun``
    (``python -m torch.distributed.run``), as ``multi_gpu_train.json`` expects.
    """
    if nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be at least 1, got {nproc_per_node}")
    root = bundle_dir(bundle)
    config_files = [str(root / "configs" / name) for name in configs]
    command = [sys.executable]
    if nproc_per_node > 1:
        command += ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc_per_node)]
    command += ["-m", "monai.bundle", "run"]
    if target:
        command.append(target)
    command += [
        "--config_file",
        json.dumps(config_files) if len(config_files) > 1 else config_files[0],
        "--meta_file",
        str(root / "configs" / "metadata.json"),
        "--logging_file",
        str(root / "configs" / "logging.conf"),
        "--bundle_root",
        str(root),
    ]
    for key, value in (overrides or {}).items():
        command += [f"--{key}", format_override(value)]
    return command


def bundle_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of a bundle subprocess: this process's, updated with ``env``, the repository first on PYTHONPATH.

    The project's packages (``custom_networks``, ``transforms``) must import in the subprocess even when the
    project is not pip-installed (e.g. a plain checkout).
    """
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), full_env.get("PYTHONPATH")]))
    return full_env


def output_tail(text: str | None, max_chars: int | None = 4000, max_lines: int | None = None) -> str:
    """The end of a run's output for an error message: its last ``max_lines`` lines, at most ``max_chars``
    characters (``None``: no limit)."""
    text = text or ""
    if max_lines is not None:
        text = "\n".join(text.splitlines()[-max_lines:]) if max_lines > 0 else ""
    return text if max_chars is None else text[-max_chars:]


def run_bundle(
    bundle: str | os.PathLike,
    configs: Sequence[str] = ("train.json",),
    target: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    capture: bool = False,
    nproc_per_node: int = 1,
) -> subprocess.CompletedProcess:
    """Runs the bundle command; raises ``CalledProcessError`` (with the output tail) when it fails."""
    command = bundle_command(bundle, configs, target, overrides, nproc_per_node)
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=bundle_env(env), timeout=timeout, text=True, capture_output=capture, check=False
    )
    if result.returncode != 0:
        tail = output_tail(result.stdout) + output_tail(result.stderr) if capture else ""
        raise subprocess.CalledProcessError(result.returncode, command, output=tail)
    return result
