"""The ``monaibundle`` app folder: the bundles as Model Zoo packages with the label map MONAI Label reads, and
their weights (trained, or seeded untrained ones)."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg_tools.bundles import bundle_names
from medseg_tools.monailabel.environment import DEFAULT_VENV, DEFAULT_WORK_DIR
from medseg_tools.paths import BUNDLES_DIR
from medseg_tools.zoo.configs import load_overrides
from medseg_tools.zoo.large_files import shipped_weights
from medseg_tools.zoo.packaging import package

logger = logging.getLogger("monailabel_app")

#: marks an app folder made by :func:`assemble_app` (only such a folder is replaced)
APP_MARKER = ".medseg_monailabel_app"


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
    config = json.loads((BUNDLES_DIR / bundle / "configs" / "inference.json").read_text())
    return {key: value for key, value in values.items() if key in config}


def write_untrained_weights(
    bundle: str, path: str | os.PathLike, defaults: Mapping[str, Any] | None = None, seed: int = 0
) -> Path:
    """Seeded initial weights of a bundle's ``network_def`` (``inference.json`` with ``defaults``) as ``model.pt``."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / bundle / "configs" / "inference.json"))
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
            bundle is chosen). Bundles without get the weights they ship (``bundles/<b>/large_files.yml``), or
            seeded untrained weights when ``defaults`` change the network or the bundle ships none.
        defaults: ``{id: value}`` written into the packaged configs, e.g. the ``features`` the weights were trained
            with (JSON object or file; one keyed by bundle names works too, like ``tests/bundle_smoke_overrides.json``).

    Returns:
        The app folder's path.

    Raises:
        ValueError: unknown bundles, missing weight files, or an ``app_dir`` that this function did not make.
        FileNotFoundError: the environment lacks the ``monaibundle`` sample app.
        medseg_tools.zoo.PackageError: a bundle that fails the package checks.
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
            bundle_defaults = load_overrides(defaults, name)
            bundle_weights = weight_files.get(name)
            if bundle_weights is None and not bundle_defaults and shipped_weights(BUNDLES_DIR / name):
                bundle_weights = None  # package() takes the weights the bundle ships
                logger.info("%s: serving the shipped weights", name)
            elif bundle_weights is None:
                # other widths (defaults) than the shipped weights', or a bundle that ships none
                logger.warning("%s: no --weights, serving seeded untrained weights", name)
                bundle_weights = write_untrained_weights(name, Path(work) / name / "model.pt", bundle_defaults)
            package(name, out_dir=Path(work) / "packages", weights=bundle_weights, defaults=defaults, workflows=False)
            shutil.move(str(Path(work) / "packages" / name), str(app / "model" / name))
            metadata_path = app / "model" / name / "configs" / "metadata.json"
            metadata = monailabel_metadata(json.loads(metadata_path.read_text()))
            metadata_path.write_text(json.dumps(metadata, indent=4) + "\n")
    logger.info("MONAI Label app with %s: %s", names, app)
    return str(app)
