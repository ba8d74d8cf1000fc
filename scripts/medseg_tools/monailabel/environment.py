"""The virtual environment MONAI Label runs in: built at the locked versions, probed, and repaired with the
torchvision import hook (:mod:`medseg_tools.monailabel.torchvision_hook`) when its operators cannot load."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg_tools import lock
from medseg_tools.paths import REPO_ROOT, SCRIPTS_DIR

logger = logging.getLogger("monailabel_app")

MONAILABEL_VERSION = "0.8.5"
DEFAULT_VENV = REPO_ROOT / os.environ.get("MEDSEG_MONAILABEL_VENV", ".venv-monailabel")
#: where the app folder and the demo studies go by default
DEFAULT_WORK_DIR = REPO_ROOT / "runs" / "monailabel"
CPU_CONSTRAINTS = REPO_ROOT / "constraints-cpu.txt"
#: exact versions of the environment (scripts/lock.sh)
MONAILABEL_LOCK = REPO_ROOT / "requirements-monailabel-lock.txt"
#: pins MONAI Label 0.8.5 needs beyond its own metadata (it breaks with pydicom 3); scripts/lock.sh locks them
MONAILABEL_PINS = ("pydicom<3", "pynetdicom<3")
#: import hook written into the environment when torchvision's operators cannot load (see the module docstring)
TORCHVISION_HOOK_MODULE = "medseg_torchvision_ops"
#: the hook's source, a module of this package copied into the environment's site-packages
TORCHVISION_HOOK_FILE = Path(__file__).resolve().parent / "torchvision_hook.py"
# what a working environment reports: versions, and torchvision importable (MONAI Label needs it)
_PROBE = """
import json, sys
report = {}
for name in ("monailabel", "monai", "torch", "numpy", "pydicom"):
    try:
        module = __import__(name)
        report[name] = getattr(module, "__version__", "?")
    except Exception as error:  # noqa: BLE001 - reported back as text
        report[name] = None
        report[name + "_error"] = f"{type(error).__name__}: {error}"
try:
    import torchvision.utils  # noqa: F401
    report["torchvision"] = True
except Exception as error:  # noqa: BLE001
    report["torchvision"] = False
    report["torchvision_error"] = f"{type(error).__name__}: {error}"
print(json.dumps(report))
"""


class MonaiLabelSetupError(RuntimeError):
    """The MONAI Label environment could not be built; the message holds the failing command and pip's output."""


def venv_python(venv: str | os.PathLike = DEFAULT_VENV) -> Path:
    """The python executable of a virtual environment folder."""
    venv = Path(venv)
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(command: Sequence[str], what: str, timeout: float | None = None) -> str:
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise MonaiLabelSetupError(f"{what} failed (exit status {result.returncode}): {' '.join(command)}\n{output}")
    return result.stdout


def probe_environment(python: str | os.PathLike) -> dict[str, Any]:
    """Versions of monailabel, monai, torch, numpy and pydicom in the environment of ``python``, and whether
    torchvision imports (``"torchvision": True``); ``*_error`` keys hold the import errors."""
    return json.loads(_run([str(python), "-c", _PROBE], "probing the MONAI Label environment").strip().splitlines()[-1])


def environment_problems(report: Mapping[str, Any]) -> list[str]:
    """What keeps the probed environment (:func:`probe_environment`) from serving the bundles; empty when it can."""
    problems = []
    if report.get("monailabel") != MONAILABEL_VERSION:
        problems.append(f"monailabel is {report.get('monailabel')}, expected {MONAILABEL_VERSION}")
    for name in ("monai", "torch", "numpy", "pydicom"):
        if report.get(name) is None:
            problems.append(f"{name} does not import: {report.get(name + '_error')}")
    pydicom = str(report.get("pydicom") or "")
    if pydicom.split(".")[0].isdigit() and int(pydicom.split(".")[0]) >= 3:
        problems.append(f"pydicom is {pydicom}: MONAI Label {MONAILABEL_VERSION} needs pydicom < 3")
    if not report.get("torchvision"):
        problems.append(f"torchvision does not import: {report.get('torchvision_error')}")
    return problems


def _site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(_run([str(python), "-c", code], "locating site-packages").strip())


def install_torchvision_hook(python: str | os.PathLike) -> Path:
    """Copies the hook module :data:`TORCHVISION_HOOK_FILE` into the environment's site-packages (as
    :data:`TORCHVISION_HOOK_MODULE`) with a ``.pth`` file that installs it at start-up (it imports nothing until
    torchvision is imported). Returns the module's path."""
    site_packages = _site_packages(Path(python))
    module = site_packages / f"{TORCHVISION_HOOK_MODULE}.py"
    shutil.copyfile(TORCHVISION_HOOK_FILE, module)
    (site_packages / f"{TORCHVISION_HOOK_MODULE}.pth").write_text(f"import {TORCHVISION_HOOK_MODULE}\n")
    return module


def _constraints_file(venv: Path) -> Path:
    if not CPU_CONSTRAINTS.is_file():
        raise MonaiLabelSetupError(f"{CPU_CONSTRAINTS} is missing: it pins the CPU build of torch.")
    pins = [
        line.strip() for line in CPU_CONSTRAINTS.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    path = venv / "monailabel-constraints.txt"
    path.write_text("\n".join([*pins, *MONAILABEL_PINS]) + "\n")
    return path


def _locked_pin(name: str) -> str:
    """``name==version`` of :data:`MONAILABEL_LOCK`."""
    if not MONAILABEL_LOCK.is_file():
        raise MonaiLabelSetupError(f"{MONAILABEL_LOCK} is missing: regenerate it with `bash scripts/lock.sh`.")
    version = lock.read_lock(MONAILABEL_LOCK).get(lock.canonical_name(name))
    if version is None:
        raise MonaiLabelSetupError(f"{MONAILABEL_LOCK} does not pin {name}: regenerate it with `bash scripts/lock.sh`.")
    return f"{name}=={version}"


def _lock_differences(executable: Path) -> str:
    """What the environment of ``executable`` installs otherwise than :data:`MONAILABEL_LOCK` (empty: as locked)."""
    # the script, not the module: the project is not installed there (check_lock.py needs the standard library only)
    command = [str(executable), str(SCRIPTS_DIR / "check_lock.py"), "installed", str(MONAILABEL_LOCK)]
    result = subprocess.run(command, capture_output=True, text=True)
    return "" if result.returncode == 0 else (result.stdout + result.stderr).strip()


def setup_environment(
    venv: str | os.PathLike = DEFAULT_VENV,
    python: str | os.PathLike | None = None,
    torch_index_url: str | None = None,
    rebuild: bool = False,
    timeout: float = 3600.0,
    locked: bool | None = None,
) -> str:
    """Builds the virtual environment MONAI Label runs in, unless a working one is there; returns its python.

    Args:
        venv: the environment's folder (created; default ``.venv-monailabel`` in the repository, git-ignored).
        python: the interpreter that creates it (default: the one running this script).
        torch_index_url: package index for torch (and a matching torchvision), e.g. the CPU wheels at
            ``https://download.pytorch.org/whl/cpu``; default: the configured index, torch pinned to the CPU build.
        rebuild: delete and rebuild the environment even when it works.
        timeout: seconds each pip command may take.
        locked: install the exact versions of :data:`MONAILABEL_LOCK` (an environment that differs from it is
            rebuilt); ``False``: the newest releases that :data:`MONAILABEL_PINS` allow (the canary). Default:
            locked unless ``MEDSEG_UNLOCKED=1``.

    Raises:
        MonaiLabelSetupError: a failing command (pip's output included) or an environment that still does not work.
    """
    if locked is None:
        locked = os.environ.get("MEDSEG_UNLOCKED", "0") != "1"
    venv = Path(venv).resolve()
    executable = venv_python(venv)
    if executable.is_file() and locked and not rebuild and _lock_differences(executable):
        logger.info("%s differs from %s: rebuilding it", venv, MONAILABEL_LOCK.name)
        rebuild = True
    if rebuild and venv.exists():
        shutil.rmtree(venv)
    if executable.is_file() and not environment_problems(probe_environment(executable)):
        return str(executable)
    if not executable.is_file():
        logger.info("creating %s (several minutes: torch, monai and monailabel's dependencies)", venv)
        _run([str(python or sys.executable), "-m", "venv", str(venv)], "creating the virtual environment")
    if locked:
        pip = [str(executable), "-m", "pip", "install", "--disable-pip-version-check"]
        _run([*pip, _locked_pin("pip")], "pip install pip (the locked version)", timeout)
        pip += ["-c", str(MONAILABEL_LOCK)]
        torch_pin = _locked_pin("torch")
    else:
        constraints = _constraints_file(venv)
        pip = [str(executable), "-m", "pip", "install", "--disable-pip-version-check", "-c", str(constraints)]
        torch_pin = next(line for line in constraints.read_text().splitlines() if line.startswith("torch"))
    if torch_index_url:
        torchvision = _locked_pin("torchvision") if locked else "torchvision"
        _run([*pip, "--index-url", torch_index_url, torch_pin, torchvision], "pip install torch", timeout)
    else:
        _run([*pip, torch_pin], "pip install torch (first, so that the CPU build is kept)", timeout)
    _run([*pip, f"monailabel=={MONAILABEL_VERSION}"], f"pip install monailabel=={MONAILABEL_VERSION}", timeout)
    differences = _lock_differences(executable) if locked else ""
    if differences:
        raise MonaiLabelSetupError(f"the MONAI Label environment {venv} is not as locked: {differences}")
    report = probe_environment(executable)
    if "torchvision::" in str(report.get("torchvision_error", "")):
        install_torchvision_hook(executable)
        report = probe_environment(executable)
    problems = environment_problems(report)
    if problems:
        raise MonaiLabelSetupError(f"the MONAI Label environment {venv} does not work: " + "; ".join(problems))
    logger.info("MONAI Label environment ready: %s (%s)", venv, report)
    return str(executable)
