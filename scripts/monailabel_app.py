"""Serve the bundles of ``bundles/`` with MONAI Label's ``monaibundle`` app: environment, app folder, studies, server.

Usage (``python scripts/monailabel_app.py COMMAND ...``, a `fire <https://github.com/google/python-fire>`_ CLI)::

    python scripts/monailabel_app.py start                                  # all bundles, demo studies, port 8000
    python scripts/monailabel_app.py start --bundles lgnet_covid_ct_segmentation --studies /data/ct --port 8001 \\
        --weights '{"lgnet_covid_ct_segmentation": "runs/lgnet/models/model.pt"}' --defaults '{"features": [...]}'
    python scripts/monailabel_app.py setup                                  # only build .venv-monailabel
    python scripts/monailabel_app.py assemble runs/monailabel/app --bundles all
    python scripts/monailabel_app.py studies runs/monailabel/studies --bundles unet_em_segmentation

``start`` builds what is missing and runs ``monailabel start_server`` on ``127.0.0.1`` in the foreground (Ctrl-C
stops it); 3D Slicer's or OHIF's MONAI Label plugin, or plain HTTP (``/info/``, ``/infer/<bundle>``,
``/train/<bundle>``), then use it. How each piece is made, and why:

- **Environment** (:func:`setup_environment`, default ``.venv-monailabel/``, or ``$MEDSEG_MONAILABEL_VENV``):
  monailabel 0.8.5 needs numpy 1.26 (its ``numpymaxflow`` and ``pydicom-seg`` pin numpy < 2) and breaks with
  pydicom 3, so it cannot share this project's environment. It is installed at the exact versions of
  ``requirements-monailabel-lock.txt`` (``scripts/lock.sh``: ``monailabel==0.8.5`` with ``pydicom<3`` and
  ``pynetdicom<3``, the CPU build of torch, so that pip never pulls the CUDA wheels); monai is the version this
  project targets (1.6.1), and the bundles' code runs unchanged on numpy 1.26. With ``MEDSEG_UNLOCKED=1`` (the
  canary of ``scripts/run_tests.sh --unlocked``) it gets the newest releases those pins allow instead.
  The torchvision on the package index is the CUDA build: with the CPU torch its C++ operators do not load, and
  torchvision 0.28 then fails on import (``operator torchvision::nms does not exist``: its ``_meta_registrations``
  registers fake kernels for ``nms``/``qnms`` without checking that the operators exist). MONAI Label imports
  ``torchvision.utils`` at start-up, and never calls those operators for these bundles, so when (and only when)
  the import fails that way the environment gets a small import hook (:data:`TORCHVISION_HOOK_SOURCE`) that
  declares the two operator schemas, without kernels, before torchvision registers its fake kernels. With a
  package index that has the matching CPU torchvision (``--torch_index_url https://download.pytorch.org/whl/cpu``)
  the import works and no hook is installed.
- **App folder** (:func:`assemble_app`): a copy of the ``monaibundle`` sample app shipped in the monailabel wheel
  (``<venv>/monailabel/sample-apps/monaibundle``) whose ``model/`` folder holds the bundles as self-contained Model
  Zoo packages (``scripts/package_bundle.py``, static checks only): each package carries this repository's code
  as its own ``scripts`` package. MONAI Label puts a bundle's folder first on ``sys.path`` and unloads ``scripts``
  before it parses that bundle's configs (``monailabel/tasks/infer/bundle.py``, ``tasks/train/bundle.py``), so
  every bundle imports its own copy, nothing of this repository has to be on the server's ``PYTHONPATH``, and the
  folder can be copied to another machine. MONAI Label ignores a bundle without ``models/model.pt``: without
  ``--weights`` each bundle gets seeded, untrained weights (enough to check the plumbing, not to segment).
  The packages' ``metadata.json`` gets the label map MONAI Label reads (:func:`monailabel_metadata`).
- **Studies** (:func:`demo_studies`): real images of ``$MEDSEG_DATA`` (default ``../shared/data``) in MONAI Label's
  local datastore layout (images at the top, final labels in ``labels/final/``), cropped small; the LG-Net bundle
  also gets a real CT volume (a DICOM series read by ``transforms.CTVolumeReader``, written as NIfTI), which
  MONAI Label sends whole to the 2D network: the bundle's ``inference.json`` segments it slice by slice.
- **Server** (:class:`MonaiLabelServer`): ``python -m monailabel.main start_server`` with the environment's python
  (the ``monailabel`` shell launcher would prepend the folder two levels above itself to ``PYTHONPATH``, which for
  ``.venv-monailabel`` is this repository, whose ``scripts/`` folder would shadow the packages' ``scripts``),
  ``--conf models <bundles>``, ``--conf zoo_source github`` (bundles are taken from ``model/`` without asking the
  Model Zoo, which needs internet) and ``--conf sam2 false`` (the SAM2 models would be downloaded).

What MONAI Label takes from a bundle (checked in monailabel 0.8.5's source): ``configs/inference.json`` alone (no
merged configs), and of it ``network_def``, ``preprocessing``, ``inferer`` and ``postprocessing`` (``LoadImaged``
replaced by its own loader, ``SaveImaged`` dropped); the first input and output of ``network_data_format`` (the
output's ``channel_def`` gives the label names); for training ``configs/train.json`` run with ``run`` and the
overrides ``train#trainer#max_epochs``, ``train#dataset#data``, ``validate#dataset#data``, ``train#handlers`` and
``device`` (a string such as ``"cpu"``).
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SCRIPTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS_DIR.parent
# the untrained weights are built from the repository's configs (custom_networks); package_bundle sits beside this file
for _path in (REPO_ROOT, SCRIPTS_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import check_lock  # noqa: E402
import package_bundle  # noqa: E402
from prepare_data import data_root  # noqa: E402

logger = logging.getLogger("monailabel_app")

MONAILABEL_VERSION = "0.8.5"
DEFAULT_VENV = REPO_ROOT / os.environ.get("MEDSEG_MONAILABEL_VENV", ".venv-monailabel")
DEFAULT_WORK_DIR = REPO_ROOT / "runs" / "monailabel"
CPU_CONSTRAINTS = REPO_ROOT / "constraints-cpu.txt"
#: exact versions of the environment (scripts/lock.sh)
MONAILABEL_LOCK = REPO_ROOT / "requirements-monailabel-lock.txt"
#: pins MONAI Label 0.8.5 needs beyond its own metadata (it breaks with pydicom 3); scripts/lock.sh locks them
MONAILABEL_PINS = ("pydicom<3", "pynetdicom<3")
#: marks an app folder made by :func:`assemble_app` (only such a folder is replaced)
APP_MARKER = ".medseg_monailabel_app"
DEFAULT_HOST = "127.0.0.1"
#: the real dataset each bundle's demo studies come from
BUNDLE_DATASETS = {
    "unet_em_segmentation": "isbi2012_em",
    "attention_resunet_cell_segmentation": "phc_usiigaci",
    "mcsa_unet_nuclei_segmentation": "monuseg2018",
    "lgnet_covid_ct_segmentation": "covid_medseg",
}
#: the real CT series the LG-Net bundle's demo studies get as a NIfTI volume (relative to the data folder)
CT_SERIES = Path("volumes") / "ct_3slice_dicom" / "ct-3slice"
#: import hook written into the environment when torchvision's operators cannot load (see the module docstring)
TORCHVISION_HOOK_MODULE = "medseg_torchvision_ops"
TORCHVISION_HOOK_SOURCE = '''"""Declares torchvision's nms/qnms operator schemas when its C++ operators did not load.

Written by medseg-bundles' scripts/monailabel_app.py: torchvision 0.28 registers fake kernels for them
unconditionally, which fails with the CUDA torchvision wheel on a CPU torch. The operators stay unavailable;
the rest of torchvision works.
"""

import sys

_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


class DeclareMissingTorchvisionOps:
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision._meta_registrations":
            import torch
            import torchvision.extension

            if not torchvision.extension._has_ops():
                for name in ("nms", "qnms"):
                    try:
                        torch.library.define(f"torchvision::{name}", _SCHEMA)
                    except RuntimeError:  # already declared
                        pass
        return None  # the regular finders import the module


sys.meta_path.insert(0, DeclareMissingTorchvisionOps())
'''
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


class MonaiLabelServerError(RuntimeError):
    """The MONAI Label server did not start or a request failed; the message holds the server log's tail."""


# --------------------------------------------------------------------------------------------------- environment


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
    """Writes :data:`TORCHVISION_HOOK_SOURCE` into the environment's site-packages with a ``.pth`` file that
    installs it at start-up (it imports nothing until torchvision is imported). Returns the module's path."""
    site_packages = _site_packages(Path(python))
    module = site_packages / f"{TORCHVISION_HOOK_MODULE}.py"
    module.write_text(TORCHVISION_HOOK_SOURCE)
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
    version = check_lock.read_lock(MONAILABEL_LOCK).get(check_lock.canonical_name(name))
    if version is None:
        raise MonaiLabelSetupError(f"{MONAILABEL_LOCK} does not pin {name}: regenerate it with `bash scripts/lock.sh`.")
    return f"{name}=={version}"


def _lock_differences(executable: Path) -> str:
    """What the environment of ``executable`` installs otherwise than :data:`MONAILABEL_LOCK` (empty: as locked)."""
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


# ------------------------------------------------------------------------------------------------------ app folder


def bundle_names(bundles: str | Sequence[str] = "all") -> list[str]:
    """Bundle names from ``"all"``, a comma-separated string or a list; unknown names raise ``ValueError``."""
    known = package_bundle.bundle_names()
    if isinstance(bundles, str):
        names = known if bundles == "all" else [name.strip() for name in bundles.split(",") if name.strip()]
    else:
        names = [str(name) for name in bundles]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(f"unknown bundle(s) {unknown or names!r}; bundles: {known} (or 'all').")
    return names


def monailabel_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle metadata with the label map MONAI Label reads.

    MONAI Label names the labels of a bundle's masks after the ``channel_def`` of the first output of
    ``network_data_format``, reading each ``{index: name}`` as "mask value ``index`` is ``name``" and skipping
    ``"background"``. That fits softmax outputs (channel ``k`` is class ``k``), not a single sigmoid channel: its
    ``{"0": "cell"}`` would name mask value 0 ``"cell"``, while the thresholded mask has ``cell`` at 1. For such an
    output the channel_def becomes the post-processed one (``post_processed_outputs``' first output when the
    metadata has it), else ``{"0": "background", "1": <name>}``. Other metadata is returned unchanged (a copy).

    Raises:
        ValueError: metadata without an output in ``network_data_format``.
    """
    adapted = copy.deepcopy(dict(metadata))
    outputs = adapted.get("network_data_format", {}).get("outputs") or {}
    if not outputs:
        raise ValueError("metadata has no network_data_format outputs: MONAI Label needs the first one's channel_def.")
    first = next(iter(outputs.values()))
    channel_def = first.get("channel_def", {})
    if int(first.get("num_channels", len(channel_def))) != 1 or len(channel_def) != 1:
        return adapted
    post_processed = adapted.get("network_data_format", {}).get("post_processed_outputs") or {}
    if post_processed:
        first["channel_def"] = dict(next(iter(post_processed.values()))["channel_def"])
    else:
        first["channel_def"] = {"0": "background", "1": next(iter(channel_def.values()))}
    return adapted


def label_map(metadata: Mapping[str, Any]) -> dict[str, int]:
    """``{label name (lower case): mask value}`` as MONAI Label reads it from (adapted) metadata, no background."""
    first = next(iter(metadata["network_data_format"]["outputs"].values()))
    return {name.lower(): int(index) for index, name in first["channel_def"].items() if name.lower() != "background"}


def _config_values(bundle: str, values: Mapping[str, Any]) -> dict[str, Any]:
    config = json.loads((package_bundle.BUNDLES_DIR / bundle / "configs" / "inference.json").read_text())
    return {key: value for key, value in values.items() if key in config}


def write_untrained_weights(
    bundle: str, path: str | os.PathLike, defaults: Mapping[str, Any] | None = None, seed: int = 0
) -> Path:
    """Seeded initial weights of a bundle's ``network_def`` (``inference.json`` with ``defaults``) as ``model.pt``."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(package_bundle.BUNDLES_DIR / bundle / "configs" / "inference.json"))
    parser.update(_config_values(bundle, defaults or {}))
    torch.manual_seed(seed)
    network = parser.get_parsed_content("network_def")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return path


def _weights_of(weights: str | os.PathLike | Mapping[str, Any] | None, names: Sequence[str]) -> dict[str, Path]:
    if weights is None or weights == "":
        return {}
    if isinstance(weights, Mapping):
        table = dict(weights)
    elif str(weights).lstrip().startswith("{"):
        table = json.loads(str(weights))
    elif str(weights).endswith(".json") and Path(weights).is_file():
        table = json.loads(Path(weights).read_text())
    elif len(names) == 1:
        table = {names[0]: weights}
    else:
        raise ValueError(f"weights {weights!r}: with several bundles give a JSON object {{bundle: model.pt path}}.")
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise ValueError(f"weights for {unknown}, which are not among the chosen bundles {list(names)}.")
    paths = {name: Path(path).expanduser().resolve() for name, path in table.items()}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise ValueError(f"weights file(s) {missing} do not exist.")
    return paths


def assemble_app(
    app_dir: str | os.PathLike = DEFAULT_WORK_DIR / "app",
    bundles: str | Sequence[str] = "all",
    venv: str | os.PathLike = DEFAULT_VENV,
    weights: str | os.PathLike | Mapping[str, Any] | None = None,
    defaults: str | os.PathLike | Mapping[str, Any] | None = None,
) -> str:
    """Writes a ``monaibundle`` app folder whose ``model/`` holds the chosen bundles as Model Zoo packages.

    Args:
        app_dir: the app folder; replaced when it was made by this function, refused when it holds anything else.
        bundles: ``"all"``, a comma-separated string or a list of bundle names.
        venv: the MONAI Label environment (:func:`setup_environment`), whose wheel data holds the sample app.
        weights: trained ``model.pt`` per bundle, ``{bundle: path}`` (a JSON object or file; a plain path when one
            bundle is chosen). Bundles without get seeded untrained weights.
        defaults: ``{id: value}`` written into the packaged configs, e.g. the ``features`` the weights were trained
            with (JSON object or file; one keyed by bundle names works too, like ``tests/bundle_smoke_overrides.json``).

    Returns:
        The app folder's path.

    Raises:
        ValueError: unknown bundles, missing weight files, or an ``app_dir`` that this function did not make.
        FileNotFoundError: the environment lacks the ``monaibundle`` sample app.
        package_bundle.PackageError: a bundle that fails the package checks.
    """
    names = bundle_names(bundles)
    weight_files = _weights_of(weights, names)
    sample_app = Path(venv).resolve() / "monailabel" / "sample-apps" / "monaibundle"
    if not (sample_app / "main.py").is_file():
        raise FileNotFoundError(f"no monaibundle sample app at {sample_app}: build the environment first (setup).")
    app = Path(app_dir).resolve()
    if app.exists():
        if not (app / APP_MARKER).is_file():
            raise ValueError(f"app_dir {app} exists and was not made by monailabel_app.py: choose another folder.")
        shutil.rmtree(app)
    shutil.copytree(sample_app, app, ignore=shutil.ignore_patterns("model", "logs", "__pycache__"))
    (app / APP_MARKER).write_text(f"bundles: {', '.join(names)}\n")
    (app / "model").mkdir()
    with tempfile.TemporaryDirectory(prefix="monailabel_app_") as work:
        for name in names:
            bundle_defaults = package_bundle.load_overrides(defaults, name)
            bundle_weights = weight_files.get(name)
            if bundle_weights is None:
                logger.warning("%s: no --weights, serving seeded untrained weights", name)
                bundle_weights = write_untrained_weights(name, Path(work) / name / "model.pt", bundle_defaults)
            package_bundle.package(
                name, out_dir=Path(work) / "packages", weights=bundle_weights, defaults=defaults, workflows=False
            )
            shutil.move(str(Path(work) / "packages" / name), str(app / "model" / name))
            metadata_path = app / "model" / name / "configs" / "metadata.json"
            metadata = monailabel_metadata(json.loads(metadata_path.read_text()))
            metadata_path.write_text(json.dumps(metadata, indent=4) + "\n")
    logger.info("MONAI Label app with %s: %s", names, app)
    return str(app)


# --------------------------------------------------------------------------------------------------------- studies


def _crop(array: Any, size: int | None) -> Any:
    return array if not size else array[:size, :size]


def _write_2d_study(studies: Path, name: str, image: Path, label: Path | None, crop: int | None, suffix: str) -> None:
    import numpy as np
    import tifffile
    from PIL import Image

    with Image.open(image) as source:
        pixels = np.asarray(source)
    if suffix == ".tif":
        tifffile.imwrite(studies / f"{name}.tif", _crop(pixels, crop))
    elif crop:
        Image.fromarray(_crop(pixels, crop)).save(studies / f"{name}{suffix}")
    else:
        shutil.copyfile(image, studies / f"{name}{suffix}")
    if label is not None:
        with Image.open(label) as source:
            Image.fromarray(_crop(np.asarray(source), crop)).save(studies / "labels" / "final" / f"{name}.png")


def write_nifti_volume(series: str | os.PathLike, path: str | os.PathLike) -> Path:
    """A CT volume (DICOM series folder or NIfTI file, read with ``transforms.CTVolumeReader``: checked, in HU) as a
    NIfTI file with the volume's affine, the form MONAI Label's local datastore holds volumes in."""
    import nibabel as nib
    import numpy as np

    from transforms.volumes import load_ct_volume

    volume = load_ct_volume(series)
    values = volume[0].numpy()
    dtype = np.int16 if np.array_equal(values, np.round(values)) and np.abs(values).max() < 2**15 else np.float32
    path = Path(path)
    nib.save(nib.Nifti1Image(values.astype(dtype), np.asarray(volume.affine, dtype=np.float64)), str(path))
    return path


def demo_studies(
    studies_dir: str | os.PathLike = DEFAULT_WORK_DIR / "studies",
    bundles: str | Sequence[str] = "all",
    images: int = 2,
    crop: int = 256,
    labels: bool | None = None,
    data: str | os.PathLike | None = None,
) -> str:
    """Writes a MONAI Label studies folder of real images (and labels) for the chosen bundles.

    Per bundle, ``images`` images of its dataset (see :data:`BUNDLE_DATASETS`), named ``<bundle>_<id>``: ISBI EM
    PNGs, phase-contrast 16-bit TIFFs and H&E RGB TIFFs cropped to ``crop`` x ``crop`` pixels (top left), the
    COVID CT JPEG slices whole, and for the LG-Net bundle also ``lgnet_covid_ct_segmentation_ct_volume.nii.gz``,
    the real 3-slice CT series of ``volumes/`` (no label). Labels go to ``labels/final/<name>.png`` in the dataset's
    own values, which the bundles' training configs read: ISBI 0/255, phase-contrast instance ids, MoNuSeg
    gray+alpha masks, COVID 0/255.

    Args:
        studies_dir: the folder (created; existing files of the same names are replaced).
        bundles: ``"all"``, a comma-separated string or a list of bundle names.
        images: images per bundle (at least 1; training needs 2, one for validation).
        crop: side of the crops (0: whole images).
        labels: write the final labels; default: only when one bundle is chosen, because MONAI Label trains a
            model on every labelled image of the studies folder, whatever bundle it was meant for.
        data: the data folder (default ``$MEDSEG_DATA``, else ``../shared/data``).

    Returns:
        The studies folder's path.

    Raises:
        ValueError: unknown bundles, ``images`` < 1 or ``crop`` < 0.
        FileNotFoundError: a dataset missing from the data folder.
    """
    names = bundle_names(bundles)
    if int(images) < 1:
        raise ValueError(f"images must be at least 1, got {images}.")
    if int(crop) < 0:
        raise ValueError(f"crop must be a side in pixels, or 0 for whole images; got {crop}.")
    write_labels = len(names) == 1 if labels is None else bool(labels)
    root = Path(data).expanduser().resolve() if data else data_root()
    studies = Path(studies_dir).resolve()
    (studies / "labels" / "final").mkdir(parents=True, exist_ok=True)
    for name in names:
        dataset = root / BUNDLE_DATASETS[name]
        if not dataset.is_dir():
            raise FileNotFoundError(
                f"dataset {BUNDLE_DATASETS[name]!r} of {name} not found at {dataset} (set MEDSEG_DATA)."
            )
        for image, label, suffix, size in _dataset_items(name, dataset, int(images), crop):
            stem = f"{name}_{image.parent.name if name == 'attention_resunet_cell_segmentation' else image.stem}"
            _write_2d_study(studies, stem, image, label if write_labels else None, size, suffix)
        if name == "lgnet_covid_ct_segmentation":
            series = root / CT_SERIES
            if not series.is_dir():
                raise FileNotFoundError(f"CT series {series} not found (set MEDSEG_DATA).")
            write_nifti_volume(series, studies / f"{name}_ct_volume.nii.gz")
    return str(studies)


def _dataset_items(bundle: str, dataset: Path, count: int, crop: int) -> list[tuple[Path, Path, str, int | None]]:
    """``(image, label, study suffix, crop)`` of the first ``count`` images of a bundle's dataset."""

    def first(paths: Sequence[Path]) -> list[Path]:
        found = sorted(paths, key=lambda path: _natural_key(path.stem if path.suffix else path.name))
        if len(found) < count:
            raise FileNotFoundError(f"{dataset} has {len(found)} image(s), {count} needed.")
        return found[:count]

    if bundle == "unet_em_segmentation":
        return [
            (path, dataset / "label" / path.name, ".png", crop)
            for path in first(list((dataset / "image").glob("*.png")))
        ]
    if bundle == "attention_resunet_cell_segmentation":
        folders = first([path for path in dataset.glob("set*") if (path / "raw.tif").is_file()])
        return [(folder / "raw.tif", folder / "instances_ids.png", ".tif", crop) for folder in folders]
    if bundle == "mcsa_unet_nuclei_segmentation":
        tiles = first(list((dataset / "images").glob("*.tif")))
        return [(path, dataset / "masks" / f"{path.stem}.png", ".tif", crop) for path in tiles]
    slices = first(list((dataset / "Imgs").glob("*.jpg")))
    return [(path, dataset / "GT" / f"{path.stem}.png", ".jpg", None) for path in slices]


def _natural_key(name: str) -> tuple:
    """Natural order (``set2`` before ``set10``), the order the datasets' ids are listed in."""
    from transforms.datalist import natural_sort_key

    return natural_sort_key(name)


# ---------------------------------------------------------------------------------------------------------- server


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that is free on ``host`` now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def server_command(
    python: str | os.PathLike,
    app_dir: str | os.PathLike,
    studies_dir: str | os.PathLike,
    bundles: Sequence[str],
    host: str = DEFAULT_HOST,
    port: int = 8000,
    conf: Mapping[str, str] | None = None,
) -> list[str]:
    """The ``start_server`` command line (see the module docstring for the ``--conf`` choices)."""
    settings = {"models": ",".join(bundles), "zoo_source": "github", "sam2": "false", "preload": "false"}
    settings.update({str(key): str(value) for key, value in (conf or {}).items()})
    command = [str(python), "-m", "monailabel.main", "start_server", "--app", str(app_dir)]
    command += ["--studies", str(studies_dir), "--host", host, "--port", str(int(port))]
    for key, value in settings.items():
        command += ["--conf", key, value]
    return command


class MonaiLabelServer:
    """A MONAI Label server in its own process group, with the few requests the bundles need.

    Use it as a context manager: ``__enter__`` starts the server and waits until ``/info/`` answers, ``__exit__``
    stops the whole process group (also when the block raises). The server's output goes to ``log_path``; every
    error raised here ends with its tail.

    Args:
        python: the MONAI Label environment's python (:func:`setup_environment`).
        app_dir: the app folder (:func:`assemble_app`).
        studies_dir: the studies folder (:func:`demo_studies` or the user's images).
        bundles: the bundles to serve (their folders must be in ``app_dir/model``).
        host: the address to bind (loopback by default).
        port: the port; ``None`` picks a free one.
        log_path: where the server's output goes (default: ``server.log`` in the app folder).
        conf: further ``--conf key value`` settings.
        start_timeout: seconds to wait for ``/info/``.
    """

    def __init__(
        self,
        python: str | os.PathLike,
        app_dir: str | os.PathLike,
        studies_dir: str | os.PathLike,
        bundles: Sequence[str],
        host: str = DEFAULT_HOST,
        port: int | None = None,
        log_path: str | os.PathLike | None = None,
        conf: Mapping[str, str] | None = None,
        start_timeout: float = 300.0,
    ) -> None:
        missing = [name for name in bundles if not (Path(app_dir) / "model" / name / "configs").is_dir()]
        if missing or not bundles:
            raise ValueError(f"bundles {missing or list(bundles)} are not in {Path(app_dir) / 'model'}.")
        self.host = host
        self.port = int(port) if port else free_port(host)
        self.log_path = Path(log_path) if log_path else Path(app_dir) / "server.log"
        self.command = server_command(python, app_dir, studies_dir, bundles, host, self.port, conf)
        self.start_timeout = float(start_timeout)
        self.process: subprocess.Popen | None = None
        # the server is local: an http_proxy of the environment must not see these requests
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, lines: int = 80) -> str:
        """The last ``lines`` lines of the server's output."""
        if not self.log_path.is_file():
            return "(no server log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_for_log(self, quiet: float = 0.5, timeout: float = 5.0) -> None:
        """Waits until the log has not grown for ``quiet`` seconds: the server logs a request's traceback after
        it has sent the error response."""
        deadline, last_size, last_change = time.monotonic() + timeout, -1, time.monotonic()
        while time.monotonic() < deadline:
            size = self.log_path.stat().st_size if self.log_path.is_file() else 0
            if size != last_size:
                last_size, last_change = size, time.monotonic()
            elif time.monotonic() - last_change >= quiet:
                return
            time.sleep(0.1)

    def _error(self, message: str) -> MonaiLabelServerError:
        self._wait_for_log()
        return MonaiLabelServerError(f"{message}\n--- server log ({self.log_path}), last lines ---\n{self.log_tail()}")

    def start(self) -> MonaiLabelServer:
        """Starts the server and waits until ``/info/`` answers (``start_timeout``)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            # own session: stop() ends the server and every process it started, and nothing else
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._error(f"the MONAI Label server exited with status {self.process.returncode} at start-up")
            try:
                self.info()
                return self
            except (urllib.error.URLError, ConnectionError, MonaiLabelServerError):
                time.sleep(1.0)
        self.stop()
        raise self._error(f"the MONAI Label server did not answer {self.url}/info/ within {self.start_timeout:.0f} s")

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the server's process group: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait(timeout=timeout)

    def __enter__(self) -> MonaiLabelServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float = 600.0,
    ) -> tuple[bytes, str]:
        """One HTTP request; returns ``(body, content type)``. A status other than 2xx raises with the log's tail."""
        url = self.url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = urllib.request.Request(url, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:2000]
            raise self._error(f"{method} {url} answered {error.code}: {detail}") from error

    def info(self) -> dict[str, Any]:
        """``GET /info/``: the app's models (labels, dimension), trainers and datastore."""
        return json.loads(self.request("GET", "/info/", timeout=10.0)[0])

    def datastore(self) -> dict[str, Any]:
        """``GET /datastore/?output=all``: the studies' images and labels as MONAI Label lists them."""
        return json.loads(self.request("GET", "/datastore/", {"output": "all"})[0])

    def infer(self, model: str, image: str, params: Mapping[str, Any] | None = None) -> tuple[bytes, dict[str, Any]]:
        """``POST /infer/<model>?image=<id>&output=all``: ``(label file bytes, result JSON)``.

        ``params`` reach the inference task, e.g. ``{"result_extension": ".png"}`` for the label's file format
        (default: the image's own extension).
        """
        body = urllib.parse.urlencode({"params": json.dumps(dict(params or {}))}).encode()
        content, content_type = self.request(
            "POST", f"/infer/{model}", {"image": image, "output": "all"}, body, "application/x-www-form-urlencoded"
        )
        if not content_type.startswith("multipart/"):
            raise self._error(f"/infer/{model} returned no label file (content type {content_type!r})")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + content
        )
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        if "image" not in parts or "params" not in parts:
            raise self._error(f"/infer/{model} answered the parts {sorted(parts)}, expected params and image")
        return parts["image"].get_payload(decode=True), json.loads(parts["params"].get_payload(decode=True))

    def train(self, model: str, params: Mapping[str, Any] | None = None, timeout: float = 1800.0) -> Any:
        """``POST /train/<model>?run_sync=true``: trains in the server process and returns when done.

        ``params`` override the trainer's options, e.g. ``{"max_epochs": 1, "val_split": 0.5}``.
        """
        body = json.dumps(dict(params or {})).encode()
        query = {"run_sync": "true"}
        content, _ = self.request("POST", f"/train/{model}", query, body, "application/json", timeout=timeout)
        return json.loads(content) if content else None


# ------------------------------------------------------------------------------------------------------------ CLI


def md5(path: str | os.PathLike) -> str:
    """md5 of a file (to tell whether training replaced ``models/model.pt``)."""
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def start(
    bundles: str | Sequence[str] = "all",
    studies: str | os.PathLike | None = None,
    app_dir: str | os.PathLike = DEFAULT_WORK_DIR / "app",
    port: int = 8000,
    host: str = DEFAULT_HOST,
    venv: str | os.PathLike = DEFAULT_VENV,
    weights: str | os.PathLike | Mapping[str, Any] | None = None,
    defaults: str | os.PathLike | Mapping[str, Any] | None = None,
    torch_index_url: str | None = None,
) -> None:
    """Builds the environment and the app (:func:`setup_environment`, :func:`assemble_app`) and runs MONAI Label in
    the foreground until Ctrl-C.

    Args:
        bundles: ``"all"``, a comma-separated string or a list of bundle names.
        studies: the studies folder; default: demo studies of real images (:func:`demo_studies`) in
            ``runs/monailabel/studies/<bundles or all>`` (with labels only for a single bundle).
        app_dir: the app folder (rebuilt).
        port: the server's port.
        host: the address to bind; the default keeps the server on this machine.
        venv: the MONAI Label environment.
        weights: trained weights, see :func:`assemble_app` (default: untrained).
        defaults: config values for the packages, see :func:`assemble_app`.
        torch_index_url: see :func:`setup_environment`.
    """
    names = bundle_names(bundles)
    python = setup_environment(venv, torch_index_url=torch_index_url)
    app = assemble_app(app_dir, names, venv, weights, defaults)
    # one demo studies folder per choice of bundles: another choice's images (and labels) would be served too
    selection = "all" if sorted(names) == package_bundle.bundle_names() else "_".join(names)
    studies_dir = (
        Path(studies).resolve() if studies else Path(demo_studies(DEFAULT_WORK_DIR / "studies" / selection, names))
    )
    if not studies_dir.is_dir():
        raise ValueError(f"studies folder {studies_dir} does not exist.")
    command = server_command(python, app, studies_dir, names, host, port)
    print(f"MONAI Label on http://{host}:{port} (models: {', '.join(names)}; studies: {studies_dir}); Ctrl-C stops it")
    subprocess.run(command, check=False)


COMMANDS = {
    "setup": package_bundle.printable(setup_environment),
    "assemble": package_bundle.printable(assemble_app),
    "studies": package_bundle.printable(demo_studies),
    "start": start,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; a setup, packaging or input problem prints one clear message and gives exit status 1."""
    import fire

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        fire.Fire(COMMANDS, command=list(argv) if argv is not None else None, name="monailabel_app.py")
    except (
        MonaiLabelSetupError,
        MonaiLabelServerError,
        package_bundle.PackageError,
        ValueError,
        FileNotFoundError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
