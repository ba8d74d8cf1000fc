"""Package a bundle of ``bundles/`` as a self-contained MONAI Model Zoo bundle, and check such a package.

Usage (``python scripts/package_bundle.py COMMAND ...``, a `fire <https://github.com/google/python-fire>`_ CLI)::

    python scripts/package_bundle.py package unet_em_segmentation --overrides tests/bundle_smoke_overrides.json
    python scripts/package_bundle.py package all --workflows False          # every bundle, static checks only
    python scripts/package_bundle.py package unet_em_segmentation --weights runs/model.pt \\
        --defaults '{"features": [16, 32, 64, 128, 256]}' --export_torchscript True --weights_url https://...
    python scripts/package_bundle.py check dist/unet_em_segmentation --overrides tests/bundle_smoke_overrides.json

``package`` writes ``OUT_DIR/<bundle>/`` and ``OUT_DIR/<bundle>_v<version>.zip`` (default ``OUT_DIR``: ``dist``):

- ``scripts/``: the repository's ``custom_networks`` and ``transforms`` packages, copied whole (the bundles' docs
  swap ``network_def`` for any class of ``custom_networks``, and each package's ``__init__`` re-exports all of it)
  and formatted with black and isort; the repository's copies are not changed.
- ``configs/``: the bundle's configs with every reference to the repository's packages rewritten to the
  vendored copy: ``_target_`` paths become ``scripts.custom_networks.X`` / ``scripts.transforms.X``, expressions
  use ``@bundle_scripts.transforms.X``, where the config item ``bundle_scripts`` puts the bundle folder on
  ``sys.path`` and imports ``scripts``. Every ``initialize`` list starts with ``$@bundle_scripts``, so the
  bundle runs from any working directory given ``--bundle_root`` (a plain ``$import scripts`` is evaluated
  before anything else, when only the working directory is on ``sys.path``). ``data_root`` falls back to
  ``<bundle_root>/data`` instead of the repository's ``../shared/data``. ``configs/reproduce/`` (specs of
  the repository's ``scripts/reproduce.py``) is left out.
- ``docs/README.md`` in the Model Zoo's sections, ``docs/data_license.txt``, ``LICENSE``, ``large_files.yml``
  and ``models/model.pt`` (``--weights``), ``models/model.ts`` (``--export_torchscript``).

The checks (``check``; ``package`` runs them before writing the zip) fail with exit status 1 and one message
per problem naming the bundle, the file and the problem:

- static: required files, the ids the Model Zoo expects in ``train.json`` / ``inference.json``, metadata
  against the local copy of the zoo's schema, version in the changelog, no reference left to the repository's
  packages, no path leaving the bundle folder, every ``scripts.*`` path of the configs exists in the vendored
  code, the vendored code imports no project package and its module-level imports are in the metadata's
  packages, ``large_files.yml`` entries and hashes, and the zoo's code style (flake8, black, isort, 120
  columns);
- workflows (``--workflows False`` skips them): ``ConfigWorkflow.check_properties()`` of the train and
  inference workflows (this builds the datasets: the data must be there, ``--overrides`` can point at it and
  shrink the run), ``python -m monai.bundle verify_net_in_out``, and ``ckpt_export`` to TorchScript compared
  numerically with the eager network on a random input of the metadata's input shape (with ``models/model.pt``
  when present, else seeded random weights).
"""

from __future__ import annotations

import ast
import atexit
import copy
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is needed: the static checks run without it
    import torch

logger = logging.getLogger("package_bundle")

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLES_DIR = REPO_ROOT / "bundles"
SCHEMA_PATH = REPO_ROOT / "scripts" / "schemas" / "meta_schema_20240725.json"
#: the environment variable of the data folder, as in ``scripts/prepare_data.py`` and the bundles' ``data_root``
DATA_ENV_VAR = "MEDSEG_DATA"

#: the repository's packages the configs use, vendored into the package's ``scripts`` package
VENDORED_PACKAGES = ("custom_networks", "transforms")
SCRIPTS_PACKAGE = "scripts"
#: config id of the imported ``scripts`` package; expressions reach the vendored code through it
SCRIPTS_ID = "bundle_scripts"
# no "import" in the expression: MONAI parses any config string containing it as Python, which "@id" is not
SCRIPTS_EXPRESSION = "$sys.path.insert(0, os.path.abspath(@bundle_root)) or load_package('scripts')"
SCRIPTS_IMPORTS = ("$import os", "$import sys", "$from importlib import import_module as load_package")
SCRIPTS_INITIALIZE = f"$@{SCRIPTS_ID}"
#: the repository's data fallback (``../shared/data`` beside the checkout) and the package's (``<bundle>/data``)
REPO_DATA_ROOT = "os.path.join(@bundle_root, '..', '..', '..', 'shared', 'data')"
PACKAGE_DATA_ROOT = "os.path.join(@bundle_root, 'data')"
#: config folders of repository tools, not of the bundle
EXCLUDED_CONFIG_DIRS = ("reproduce",)

REQUIRED_FILES = (
    "configs/metadata.json",
    "configs/inference.json",
    "configs/train.json",
    "configs/logging.conf",
    "docs/README.md",
    "docs/data_license.txt",
    "LICENSE",
    "large_files.yml",
    f"{SCRIPTS_PACKAGE}/__init__.py",
)
ZOO_TRAIN_IDS = (
    "bundle_root",
    "dataset_dir",
    "ckpt_dir",
    "output_dir",
    "device",
    "epochs",
    "val_interval",
    "network_def",
    "network",
    "preprocessing",
    "postprocessing",
    "inferer",
    "train#trainer",
    "validate#evaluator",
    "initialize",
    "run",
    "training",
)
ZOO_INFERENCE_IDS = (
    "bundle_root",
    "device",
    "network_def",
    "network",
    "preprocessing",
    "postprocessing",
    "inferer",
    "evaluator",
    "initialize",
    "run",
)
#: sections of the Model Zoo's bundle README, in order
README_SECTIONS = (
    "Model Overview",
    "Data",
    "Training configuration",
    "Input",
    "Output",
    "Performance",
    "MONAI Bundle Commands",
    "References",
    "License",
)
#: the zoo section each section of the repository's bundle READMEs goes to (lower-case heading); others stay
#: their own sections, after "MONAI Bundle Commands"
README_SECTION_OF = {
    "model overview": "Model Overview",
    "data": "Data",
    "training": "Training configuration",
    "other networks and the ablation": "Training configuration",
    "ema": "Training configuration",
    "metrics": "Performance",
    "results": "Performance",
    "reproduction": "Performance",
    "evaluation": "MONAI Bundle Commands",
    "inference": "MONAI Bundle Commands",
    "references": "References",
    "license": "License",
}
#: the Model Zoo's code style (model-zoo ``setup.cfg``): flake8 codes, ignores, 120 columns; black; isort. The
#: zoo's CI (``code-format-check.yml``) installs its ``requirements-dev.txt``, which leaves flake8, its plugins,
#: black and isort unpinned: it checks with the newest releases of the day. This project locks the same tools
#: (requirements-lock.txt, ``scripts/lock.sh``) and finds new releases with ``scripts/run_tests.sh --unlocked``.
FLAKE8_ARGS = (
    "--isolated",
    "--select",
    "B,C,E,F,N,P,T4,W,B9",
    "--max-line-length",
    "120",
    "--ignore",
    "E203,E501,E741,W503,W504,C408,N812,B023",
    "--per-file-ignores",
    "__init__.py:F401,__main__.py:F401",
)
#: the flake8 plugins of the zoo's ``requirements-dev.txt`` (flake8-executable's EXE codes fall under "E")
FLAKE8_ZOO_PLUGINS = ("flake8-bugbear", "flake8-comprehensions", "flake8-executable", "pep8-naming")
# explicit excludes / skips: the tools' defaults skip any path with a "dist" or "build" folder, where packages go
BLACK_ARGS = ("--line-length", "120", "--exclude", "/__pycache__/")
ISORT_ARGS = ("--profile", "black", "--line-length", "120", "--skip", "__pycache__", "--settings-path", SCRIPTS_PACKAGE)
#: import name -> distribution name, where they differ
DISTRIBUTION_OF_MODULE = {"skimage": "scikit-image", "ignite": "pytorch-ignite", "PIL": "pillow", "yaml": "pyyaml"}
#: distributions every bundle has (the metadata gives their versions in ``*_version`` fields)
BASE_DISTRIBUTIONS = ("torch", "numpy", "monai")
#: a distribution of this repository, which a package must not need
PROJECT_DISTRIBUTION = "medseg-bundles"

_PROJECT_PACKAGES = "|".join(VENDORED_PACKAGES)
#: a reference to a repository package in a config string (not ``monai.transforms.X``, ``@base_transforms``)
_PROJECT_REFERENCE = re.compile(rf"(?<![\w.@#/])({_PROJECT_PACKAGES})(?=\.[A-Za-z_])")
_PROJECT_IMPORT = re.compile(rf"^\$\s*(?:import|from)\s+({_PROJECT_PACKAGES})\b")
_SCRIPTS_REFERENCE = re.compile(rf"@{SCRIPTS_ID}((?:\.[A-Za-z_]\w*)+)")
#: the same references in prose and shell commands of the docs (``transforms/elastic.py`` too)
_DOCS_REFERENCE = re.compile(rf"(?<![\w.@#/$-])({_PROJECT_PACKAGES})(?=[./][A-Za-z_])")
_DATASET_NAME = re.compile(r"os\.path\.join\(@data_root, '([^']+)'\)")
_PROBE_MARKER = "PACKAGE_BUNDLE_PROBE "


class PackageError(ValueError):
    """A bundle that cannot be packaged, or a package that fails a check; the message names the bundle, the file
    and each problem."""


def _problems_error(bundle: str, problems: Sequence[str]) -> PackageError:
    listed = "\n".join(f"  - {problem}" for problem in problems)
    return PackageError(f"bundle {bundle!r} failed {len(problems)} check(s):\n{listed}")


# --------------------------------------------------------------------------------------------------- configs


def _walk_strings(value: Any, config_id: str = "") -> Iterator[tuple[str, str, str]]:
    """``(id, key, string)`` for every string value of a config (``key``: the last part of the id)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk_strings(item, f"{config_id}#{key}" if config_id else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_strings(item, f"{config_id}#{index}" if config_id else str(index))
    elif isinstance(value, str):
        yield config_id, config_id.rsplit("#", 1)[-1], value


def _is_target_key(key: str) -> bool:
    return key == "_target_" or key.endswith("#_target_")


def _rewrite_string(text: str, key: str, where: str, config_id: str) -> str:
    if _PROJECT_IMPORT.match(text):
        raise PackageError(
            f"{where}: id {config_id!r}: {text!r} imports a repository package outside the config's 'imports' "
            "list; only 'imports' entries can be replaced by the vendored 'scripts' package."
        )
    if text.startswith("$"):
        text = text.replace(REPO_DATA_ROOT, PACKAGE_DATA_ROOT)
        return _PROJECT_REFERENCE.sub(rf"@{SCRIPTS_ID}.\1", text)
    if _is_target_key(key) and re.match(rf"({_PROJECT_PACKAGES})\.", text):
        return f"{SCRIPTS_PACKAGE}.{text}"
    return text


def _rewrite_value(value: Any, key: str, where: str, config_id: str) -> Any:
    if isinstance(value, Mapping):
        return {name: _rewrite_value(item, str(name), where, f"{config_id}#{name}") for name, item in value.items()}
    if isinstance(value, list):
        return [_rewrite_value(item, key, where, f"{config_id}#{index}") for index, item in enumerate(value)]
    if isinstance(value, str):
        return _rewrite_string(value, key, where, config_id)
    return value


def rewrite_config(config: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
    """A bundle config with its references to the repository's packages pointing at the vendored ``scripts``.

    - ``imports``: ``$import custom_networks`` / ``$import transforms[.x]`` are replaced by the imports that
      ``bundle_scripts`` needs;
    - ``_target_`` (also ``a#b#_target_`` keys): ``custom_networks.X`` -> ``scripts.custom_networks.X``;
    - expressions: ``transforms.f(...)`` -> ``@bundle_scripts.transforms.f(...)``; the repository's data
      fallback ``../shared/data`` -> ``<bundle_root>/data``;
    - a config with ``bundle_root`` gets ``bundle_scripts`` after it; every ``initialize`` list starts with
      ``$@bundle_scripts``.

    Keys, ``monai.transforms.X`` and references such as ``@base_transforms`` are left alone.

    Args:
        config: the config, as read from its JSON file (not modified).
        where: names the config in error messages, e.g. ``"unet_em_segmentation: configs/train.json"``.

    Raises:
        PackageError: an import of a repository package outside ``imports``.
    """
    if not isinstance(config, Mapping):
        raise PackageError(f"{where}: a bundle config must be a JSON object, got {type(config).__name__}.")
    rewritten: dict[str, Any] = {}
    for key, value in config.items():
        if key == "imports" and isinstance(value, list):
            kept = [item for item in value if not (isinstance(item, str) and _PROJECT_IMPORT.match(item))]
            needs_scripts = len(kept) < len(value) or "bundle_root" in config
            missing = [item for item in SCRIPTS_IMPORTS if needs_scripts and item not in kept]
            rewritten[key] = kept + missing
        else:
            rewritten[key] = _rewrite_value(copy.deepcopy(value), key, where, key)
        if key == "bundle_root" and SCRIPTS_ID not in config:
            rewritten[SCRIPTS_ID] = SCRIPTS_EXPRESSION
    if isinstance(rewritten.get("initialize"), list) and SCRIPTS_INITIALIZE not in rewritten["initialize"]:
        rewritten["initialize"] = [SCRIPTS_INITIALIZE, *rewritten["initialize"]]
    return rewritten


def project_references(config: Any) -> list[tuple[str, str]]:
    """``(id, value)`` of every config string that still refers to a repository package (``custom_networks``,
    ``transforms``) rather than the vendored ``scripts``."""
    return [
        (config_id, text)
        for config_id, _, text in _walk_strings(config)
        if _PROJECT_REFERENCE.search(text) or _PROJECT_IMPORT.match(text)
    ]


def scripts_references(config: Any) -> list[tuple[str, str]]:
    """``(id, dotted path)`` of every use of the vendored code in a config: ``scripts.*`` targets and
    ``@bundle_scripts.*`` attribute chains of expressions."""
    references = []
    for config_id, key, text in _walk_strings(config):
        if _is_target_key(key) and text.startswith(f"{SCRIPTS_PACKAGE}."):
            references.append((config_id, text))
        for chain in _SCRIPTS_REFERENCE.findall(text):
            references.append((config_id, f"{SCRIPTS_PACKAGE}{chain}"))
    return references


def _set_config_value(config: dict[str, Any], config_id: str, value: Any) -> bool:
    """Sets ``config_id`` (``a#b#0``) where its parent exists; whether it did."""
    *parents, last = config_id.split("#")
    node: Any = config
    for part in parents:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    if isinstance(node, dict) and last in node:
        node[last] = value
        return True
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
        return True
    return False


def load_overrides(overrides: str | os.PathLike | Mapping[str, Any] | None, bundle: str) -> dict[str, Any]:
    """Config overrides ``{id: value}`` from a mapping, a JSON string or a JSON file.

    A mapping keyed by bundle names (like ``tests/bundle_smoke_overrides.json``) gives the entry of ``bundle``.

    Raises:
        PackageError: not a mapping, unreadable JSON, or a file that does not exist.
    """
    if overrides is None or overrides == "":
        return {}
    if isinstance(overrides, (str, os.PathLike)):
        text = str(overrides)
        path = Path(text)
        if not text.lstrip().startswith("{"):
            if not path.is_file():
                raise PackageError(f"overrides: no file {text!r} (expected a JSON object or a JSON file).")
            text = path.read_text()
        try:
            overrides = json.loads(text)
        except json.JSONDecodeError as error:
            raise PackageError(f"overrides: not valid JSON ({error}): {text[:200]!r}") from error
    if not isinstance(overrides, Mapping):
        raise PackageError(f"overrides must be a JSON object {{id: value}}, got {type(overrides).__name__}.")
    if bundle in overrides and isinstance(overrides[bundle], Mapping):
        return dict(overrides[bundle])
    bundle_keyed = overrides and all(isinstance(value, Mapping) for value in overrides.values())
    if bundle_keyed and set(overrides) & {p.name for p in BUNDLES_DIR.iterdir()}:
        return {}  # another bundle's entries only
    return dict(overrides)


# ------------------------------------------------------------------------------------------------------ docs


def _markdown_sections(text: str) -> tuple[str, str, list[tuple[str, str]]]:
    """Title (``# ...``), the text before the first ``## `` heading, and ``(heading, body)`` per ``## `` section;
    ``#`` lines inside code fences are code, not headings."""
    title, preamble, sections = "", [], []
    current: list[str] | None = None
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("# ") and not title and current is None:
            title = line[2:].strip()
            continue
        if not in_code and line.startswith("## "):
            current = []
            sections.append((line[3:].strip(), current))
            continue
        (preamble if current is None else current).append(line)
    return (
        title,
        "\n".join(preamble).strip("\n"),
        [(heading, "\n".join(body).strip("\n")) for heading, body in sections],
    )


def _demote_headings(body: str) -> str:
    """One level deeper for the headings of a section body moved under a zoo section (code fences kept)."""
    lines, in_code = [], False
    for line in body.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        lines.append(f"#{line}" if not in_code and re.match(r"#{3,5} ", line) else line)
    return "\n".join(lines)


def package_docs_text(text: str, bundle: str) -> str:
    """Text of the repository's bundle docs as it reads in the package: the repository's packages named through the
    vendored ``scripts`` (``scripts.transforms.X``, ``scripts/transforms/x.py``), and ``B=bundles/<bundle>``
    (commands run from the repository root) as ``B=.`` (commands run from the bundle folder)."""
    text = text.replace(f"B=bundles/{bundle}", "B=.")

    def vendored(match: re.Match) -> str:
        separator = text[match.end()]
        return f"{SCRIPTS_PACKAGE}{separator}{match.group(1)}"

    return _DOCS_REFERENCE.sub(vendored, text)


def _format_shape(shape: Sequence[Any]) -> str:
    return "x".join(str(size) for size in shape)


def _io_description(name: str, spec: Mapping[str, Any]) -> str:
    channels = spec.get("channel_def", {})
    channel_text = ", ".join(f"{index}: {meaning}" for index, meaning in channels.items())
    parts = [
        f"{spec.get('num_channels', '?')} channel(s) ({channel_text})" if channel_text else "",
        f"{spec.get('type', '')} {spec.get('format', '')}".strip(),
        f"modality {spec['modality']}" if spec.get("modality") else "",
        f"spatial shape {_format_shape(spec.get('spatial_shape', []))}"
        + (" (a patch: the inferer tiles larger images)" if spec.get("is_patch_data") else ""),
        f"{spec.get('dtype', '')}",
        f"value range {spec['value_range']}" if spec.get("value_range") else "",
    ]
    return f"- `{name}`: " + ", ".join(part for part in parts if part) + "."


def _dataset_name(train_config: Mapping[str, Any]) -> str | None:
    found = _DATASET_NAME.search(str(train_config.get("dataset_dir", "")))
    return found.group(1) if found else None


def _commands_text(bundle: str, dataset: str | None, config_names: Sequence[str]) -> str:
    data = f"`$MEDSEG_DATA/{dataset}`, else `data/{dataset}` in this folder" if dataset else "see Data"
    overlays = [name for name in config_names if name not in ("train.json", "inference.json", "metadata.json")]
    lines = [
        f"Run from this folder (`cd {bundle}`), or from any other folder with `--bundle_root /path/to/{bundle}` and",
        "the config files given by their paths. The bundle's own code is the `scripts` package of this folder",
        "(`scripts.custom_networks`, `scripts.transforms`, copied from medseg-bundles): it needs only MONAI and the",
        "packages listed in `configs/metadata.json`, not medseg-bundles. The configs reach it through the",
        "`bundle_scripts` item, which their `initialize` step imports after putting `bundle_root` on `sys.path`.",
        "",
        f"The dataset is read from `dataset_dir` (default {data}): pass `--dataset_dir /path/to/data`",
        "(inference: `--input_images` takes a folder, a glob, a file or a list).",
        "",
        "```bash",
        "# training",
        "python -m monai.bundle run training --config_file configs/train.json --dataset_dir /path/to/data",
        "# several processes (GPUs with NCCL, or CPU processes with gloo)",
        "torchrun --nproc_per_node 2 -m monai.bundle run \\",
        "    --config_file \"['configs/train.json','configs/multi_gpu_train.json']\" --dataset_dir /path/to/data",
        "# evaluation of models/model.pt on the validation split",
        "python -m monai.bundle run --config_file \"['configs/train.json','configs/evaluate.json']\" "
        "--dataset_dir /path/to/data",
        "# inference",
        "python -m monai.bundle run --config_file configs/inference.json \\",
        "    --input_images /path/to/images --output_dir /path/to/predictions",
        "# the same from another folder",
        f"python -m monai.bundle run --config_file /path/to/{bundle}/configs/inference.json \\",
        f"    --bundle_root /path/to/{bundle} --input_images /path/to/images --output_dir /path/to/predictions",
        "# TorchScript export and the network's input/output check (from this folder: these commands build the",
        "# network without the config's initialize step, so `scripts` must be importable from the working directory)",
        "python -m monai.bundle ckpt_export network_def --filepath models/model.ts --ckpt_file models/model.pt \\",
        "    --meta_file configs/metadata.json --config_file configs/inference.json",
        "python -m monai.bundle verify_net_in_out network_def --meta_file configs/metadata.json \\",
        "    --config_file configs/inference.json",
        "```",
    ]
    if overlays:
        listed = ", ".join(f"`configs/{name}`" for name in overlays)
        lines += [
            "",
            f"Other configs of this bundle, merged after `train.json` or used alone as described below: {listed}.",
        ]
    return "\n".join(lines)


def zoo_readme(
    bundle: str, readme: str, metadata: Mapping[str, Any], train_config: Mapping[str, Any], config_names: Sequence[str]
) -> str:
    """The package's ``docs/README.md``: the repository's bundle README in the Model Zoo's sections.

    Every section of the repository README is kept: a section whose heading is a zoo section (``Data``) is its
    body; the others go as ``###`` subsections into the zoo section of ``README_SECTION_OF`` (their own
    subsections one level deeper) or stay their own ``##`` sections after "MONAI Bundle Commands". "Input" and
    "Output" come from the metadata's ``network_data_format``; "MONAI Bundle Commands" starts with the
    package's own commands.

    Raises:
        PackageError: the README lacks a section every package needs (Model overview, Data, References, License).
    """
    title, preamble, sections = _markdown_sections(package_docs_text(readme, bundle))
    found = {README_SECTION_OF.get(heading.lower()) for heading, _ in sections}
    missing = [name for name in ("Model Overview", "Data", "References", "License") if name not in found]
    if missing:
        raise PackageError(f"bundle {bundle!r}: docs/README.md lacks the section(s) {missing}.")
    parts: dict[str, list[str]] = {name: [] for name in README_SECTIONS}
    extra: list[str] = []
    for heading, body in sections:
        section = README_SECTION_OF.get(heading.lower())
        if section is None:
            extra.append(f"## {heading}\n\n{body}")
        elif section.lower() == heading.lower():
            parts[section].insert(0, body)
        else:
            parts[section].append(f"### {heading}\n\n{_demote_headings(body)}")
    data_format = metadata.get("network_data_format", {})
    parts["Input"] = [
        "\n".join(_io_description(name, spec) for name, spec in data_format.get("inputs", {}).items())
        + f"\n\nImage: {metadata.get('image_classes', '')}.\n\nLabels (training): {metadata.get('label_classes', '')}."
    ]
    parts["Output"] = [
        "\n".join(_io_description(name, spec) for name, spec in data_format.get("outputs", {}).items())
        + f"\n\nPrediction: {metadata.get('pred_classes', '')}."
    ]
    parts["MONAI Bundle Commands"].insert(0, _commands_text(bundle, _dataset_name(train_config), config_names))
    version = metadata.get("version", "?")
    note = (
        f"> Model Zoo package of `{bundle}` version {version}, made by `scripts/package_bundle.py` of medseg-bundles "
        f"from `bundles/{bundle}/`. Its code is vendored in `scripts/`; the sections below are the repository's "
        "docs, with `custom_networks` / `transforms` named `scripts.custom_networks` / `scripts.transforms`. "
        "Their commands set `B=.` (this folder; run them from here). `scripts/reproduce.py`, "
        "`scripts/score_predictions.py`, `scripts/prepare_data.py`, `scripts/benchmark.py`, `tests/` and "
        "`pip install -e .` belong to the medseg-bundles repository, not to this package; its reproduction "
        "specs (`configs/reproduce/`) are not packaged."
    )
    text = [f"# {title or metadata.get('name', bundle)}", "", note, ""]
    if preamble:
        text += [preamble, ""]
    for name in README_SECTIONS:
        text += [f"## {name}", "", "\n\n".join(parts[name]).strip() or "-", ""]
        if name == "MONAI Bundle Commands":
            text += [*(f"{section}\n" for section in extra)]
    return "\n".join(text).rstrip() + "\n"


def data_license_text(bundle: str, readme: str, metadata: Mapping[str, Any]) -> str:
    """``docs/data_license.txt``: the data licenses named in the License section of the bundle's README.

    Raises:
        PackageError: no License section, or one that does not name the data's license (``Data: ...``).
    """
    _, _, sections = _markdown_sections(readme)
    license_text = next((body for heading, body in sections if heading.lower() == "license"), None)
    if license_text is None or "Data:" not in license_text:
        raise PackageError(
            f"bundle {bundle!r}: docs/README.md: the License section must name the data's license "
            "('Data: ...'), the package's docs/data_license.txt is made from it."
        )
    data_terms = " ".join(license_text[license_text.index("Data:") :].split())
    return (
        f"Third party data license of the {metadata.get('name', bundle)} bundle\n\n"
        f"{data_terms}\n\n"
        f"Data source: {metadata.get('data_source', 'see docs/README.md')}\n\n"
        "The datasets are not part of this bundle. Their licenses, not the bundle's LICENSE (which covers the\n"
        "configs, the code in scripts/ and the weights), apply to the data: check them before using the data or\n"
        "the models trained on it, in particular for commercial use.\n"
    )


# ---------------------------------------------------------------------------------------------- large files


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def large_files_yml(entries: Sequence[Mapping[str, str]]) -> str:
    """``large_files.yml`` as the Model Zoo writes it: ``path``, ``url``, ``hash_val``, ``hash_type`` per file."""
    lines = ["large_files:"]
    for entry in entries:
        lines.append(f'  - path: "{entry["path"]}"')
        lines += [f'    {key}: "{entry.get(key, "")}"' for key in ("url", "hash_val", "hash_type")]
    return "\n".join(lines) + "\n"


def read_large_files(path: Path) -> list[dict[str, str]]:
    """Entries of a ``large_files.yml`` in the zoo's layout (``large_files:`` then ``- path: ...`` items).

    Raises:
        PackageError: not in that layout.
    """
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines or lines[0].strip() != "large_files:":
        raise PackageError(f"{path.name}: must start with 'large_files:'.")
    entries: list[dict[str, str]] = []
    for line in lines[1:]:
        found = re.match(r"\s*(-\s+)?(\w+):\s*(.*)$", line)
        if not found:
            raise PackageError(f"{path.name}: cannot read the line {line!r}.")
        if found.group(1):
            entries.append({})
        elif not entries:
            raise PackageError(f"{path.name}: {line!r} is not inside a '- path:' entry.")
        entries[-1][found.group(2)] = found.group(3).strip().strip("'\"")
    return entries


# ------------------------------------------------------------------------------------------------ packaging


def bundle_names() -> list[str]:
    """The bundles of ``bundles/``."""
    return sorted(path.name for path in BUNDLES_DIR.iterdir() if (path / "configs" / "metadata.json").is_file())


def _bundle_source(bundle: str) -> Path:
    source = Path(bundle)
    if not (source / "configs").is_dir():
        source = BUNDLES_DIR / bundle
    if not (source / "configs" / "metadata.json").is_file():
        raise PackageError(f"no bundle {bundle!r} in {BUNDLES_DIR}; bundles: {bundle_names()}")
    return source.resolve()


def vendor_code(scripts_dir: Path, bundle: str, version: str) -> None:
    """Copies the repository's packages into ``scripts_dir`` (a package importing them) and formats the copies
    with isort and black; the repository's files are not changed."""
    scripts_dir.mkdir(parents=True)
    for package in VENDORED_PACKAGES:
        shutil.copytree(REPO_ROOT / package, scripts_dir / package, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts_dir / "__init__.py").write_text(
        f'"""Code of the {bundle} bundle (version {version}), copied from medseg-bundles.\n\n'
        "``custom_networks``: the networks; ``transforms``: transforms, losses, inferers, metrics and handlers.\n"
        f"The configs reach them as ``scripts.custom_networks.X`` targets and ``@{SCRIPTS_ID}`` expressions.\n"
        '"""\n\nfrom . import custom_networks, transforms\n\n__all__ = ["custom_networks", "transforms"]\n'
    )
    _format_python(scripts_dir, bundle)


#: formatted copies of the vendored code by the digest of its sources: packaging several bundles formats once
_FORMATTED_CODE: dict[str, Path] = {}


def _sources_digest() -> str:
    digest = hashlib.md5()
    for package in VENDORED_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            digest.update(path.relative_to(REPO_ROOT).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def _format_python(scripts_dir: Path, bundle: str) -> None:
    """isort and black (the zoo's settings) on the vendored packages of ``scripts_dir``."""
    digest = _sources_digest()
    cached = _FORMATTED_CODE.get(digest)
    if cached is not None and cached.is_dir():
        for package in VENDORED_PACKAGES:
            shutil.rmtree(scripts_dir / package)
            shutil.copytree(cached / package, scripts_dir / package)
        return
    for tool in ("isort", "black"):
        result = _run_style_tool(scripts_dir.parent, tool, check=False)
        if result.returncode != 0:
            raise PackageError(
                f"bundle {bundle!r}: formatting scripts/ with {tool} failed (pip install black flake8 isort): "
                f"{(result.stdout + result.stderr)[-2000:]}"
            )
    cache = Path(tempfile.mkdtemp(prefix="package_bundle_code_"))
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    for package in VENDORED_PACKAGES:
        shutil.copytree(scripts_dir / package, cache / package)
    _FORMATTED_CODE[digest] = cache


def _package_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    packaged = copy.deepcopy(dict(metadata))
    required = packaged.get("required_packages_version", {})
    packaged["required_packages_version"] = {
        name: version for name, version in required.items() if name.lower() != PROJECT_DISTRIBUTION
    }
    return packaged


def _write_json(path: Path, content: Any) -> None:
    path.write_text(json.dumps(content, indent=4) + "\n")


def _zip_package(package_dir: Path, zip_path: Path) -> None:
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(package_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, Path(package_dir.name) / path.relative_to(package_dir))


def package(
    bundle: str,
    out_dir: str | os.PathLike = "dist",
    weights: str | os.PathLike | None = None,
    weights_url: str = "",
    defaults: str | Mapping[str, Any] | None = None,
    export_torchscript: bool = False,
    overrides: str | Mapping[str, Any] | None = None,
    workflows: bool = True,
) -> str:
    """Writes the Model Zoo package ``out_dir/<bundle>/`` and, when every check passes, its zip.

    Args:
        bundle: a bundle of ``bundles/`` (name or path), or ``all``.
        out_dir: where the package folder and ``<bundle>_v<version>.zip`` go (replaced if there).
        weights: trained weights (a plain ``state_dict`` of ``network_def``), copied to ``models/model.pt``; its md5
            goes into ``large_files.yml``.
        weights_url: where ``models/model.pt`` (and ``model.ts``) will be downloaded from (``large_files.yml``).
        defaults: ``{id: value}`` written into the packaged configs where the id exists, e.g. the ``features``
            the weights were trained with (JSON object or file; a file keyed by bundle names works too).
        export_torchscript: also export ``models/model.ts`` from the weights (needs ``weights``).
        overrides: ``{id: value}`` for the workflow checks only (data location, small network, few images),
            e.g. ``tests/bundle_smoke_overrides.json``.
        workflows: run the workflow checks (properties, ``verify_net_in_out``, TorchScript) besides the static ones.

    Returns:
        The zip's path (for ``all``: the paths, one per line).

    Raises:
        PackageError: a bundle that cannot be packaged or a failed check (no zip is written then).
    """
    if bundle == "all":
        return "\n".join(
            package(name, out_dir, weights, weights_url, defaults, export_torchscript, overrides, workflows)
            for name in bundle_names()
        )
    source = _bundle_source(bundle)
    name = source.name
    if export_torchscript and not weights:
        raise PackageError(f"bundle {name!r}: --export_torchscript needs --weights (the trained model.pt).")
    if weights and not Path(weights).is_file():
        raise PackageError(f"bundle {name!r}: weights file {weights} does not exist.")
    out = Path(out_dir).resolve()
    target = out / name
    if target == source or BUNDLES_DIR.resolve() in target.parents:
        raise PackageError(f"bundle {name!r}: out_dir {out} would overwrite the repository's bundles.")
    metadata = json.loads((source / "configs" / "metadata.json").read_text())
    version = str(metadata.get("version", ""))
    if not version:
        raise PackageError(f"bundle {name!r}: configs/metadata.json has no 'version'.")
    if target.exists():
        shutil.rmtree(target)
    zip_path = out / f"{name}_v{version}.zip"
    zip_path.unlink(missing_ok=True)
    target.mkdir(parents=True)

    vendor_code(target / SCRIPTS_PACKAGE, name, version)
    default_values = load_overrides(defaults, name)
    unused_defaults = set(default_values)
    configs: dict[str, dict[str, Any]] = {}
    (target / "configs").mkdir()
    for path in sorted((source / "configs").iterdir()):
        if path.is_dir():
            if path.name not in EXCLUDED_CONFIG_DIRS:
                raise PackageError(f"bundle {name!r}: configs/{path.name}/ is not a known folder to package.")
            continue
        if path.suffix != ".json" or path.name == "metadata.json":
            shutil.copy2(path, target / "configs" / path.name)
            continue
        config = rewrite_config(json.loads(path.read_text()), f"bundle {name!r}: configs/{path.name}")
        for config_id, value in default_values.items():
            if _set_config_value(config, config_id, copy.deepcopy(value)):
                unused_defaults.discard(config_id)
        configs[path.name] = config
        _write_json(target / "configs" / path.name, config)
    if unused_defaults:
        raise PackageError(f"bundle {name!r}: defaults {sorted(unused_defaults)} are not ids of any config.")
    _write_json(target / "configs" / "metadata.json", _package_metadata(metadata))

    readme = (source / "docs" / "README.md").read_text()
    (target / "docs").mkdir()
    (target / "docs" / "README.md").write_text(
        zoo_readme(name, readme, metadata, configs.get("train.json", {}), sorted(configs))
    )
    (target / "docs" / "data_license.txt").write_text(data_license_text(name, readme, metadata))
    shutil.copy2(source / "LICENSE", target / "LICENSE")

    large_files = [{"path": "models/model.pt", "url": weights_url, "hash_val": "", "hash_type": "md5"}]
    if weights:
        (target / "models").mkdir()
        shutil.copy2(weights, target / "models" / "model.pt")
        large_files[0]["hash_val"] = _md5(target / "models" / "model.pt")
    (target / "large_files.yml").write_text(large_files_yml(large_files))

    workflow_overrides = load_overrides(overrides, name)
    if export_torchscript:
        problems = torchscript_check(target, workflow_overrides, export_to=target / "models" / "model.ts")
        if problems:
            raise _problems_error(name, problems)
        # beside model.pt at the same place, when its URL names the file; else to be filled in
        ts_url = weights_url[: -len("model.pt")] + "model.ts" if weights_url.endswith("/model.pt") else ""
        model_ts = {"path": "models/model.ts", "url": ts_url, "hash_type": "md5"}
        model_ts["hash_val"] = _md5(target / "models" / "model.ts")
        (target / "large_files.yml").write_text(large_files_yml([*large_files, model_ts]))
    check(target, workflow_overrides, workflows=workflows, torchscript=not export_torchscript)
    _zip_package(target, zip_path)
    logger.info("packaged %s: %s and %s", name, target, zip_path)
    return str(zip_path)


# --------------------------------------------------------------------------------------------- static checks


def _read_json(path: Path, problems: list[str], relative: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        problems.append(f"{relative}: cannot read it as JSON ({error})")
        return None


def _config_files(package_dir: Path) -> list[Path]:
    return sorted(path for path in (package_dir / "configs").glob("*.json") if path.name != "metadata.json")


def check_layout(package_dir: Path) -> list[str]:
    """Required files and the zoo README's sections."""
    problems = [f"{name}: missing" for name in REQUIRED_FILES if not (package_dir / name).is_file()]
    license_file = package_dir / "LICENSE"
    if license_file.is_file() and not license_file.read_text().strip():
        problems.append("LICENSE: empty")
    readme = package_dir / "docs" / "README.md"
    if readme.is_file():
        headings = {line[3:].strip() for line in readme.read_text().splitlines() if line.startswith("## ")}
        missing = [name for name in README_SECTIONS if name not in headings]
        if missing:
            problems.append(f"docs/README.md: lacks the Model Zoo section(s) {missing}")
    return problems


def check_metadata(package_dir: Path, schema_path: Path = SCHEMA_PATH) -> list[str]:
    """Metadata against the zoo's schema (local copy), version in the changelog, no project distribution."""
    import jsonschema

    problems: list[str] = []
    path = package_dir / "configs" / "metadata.json"
    if not path.is_file():
        return problems  # reported by check_layout
    metadata = _read_json(path, problems, "configs/metadata.json")
    if metadata is None:
        return problems
    schema = json.loads(schema_path.read_text())
    for error in sorted(jsonschema.Draft7Validator(schema).iter_errors(metadata), key=lambda e: list(e.path)):
        location = "/".join(str(part) for part in error.path) or "(top level)"
        problems.append(f"configs/metadata.json: {location}: {error.message} (schema {schema_path.name})")
    if not isinstance(metadata, dict):
        return problems
    version, changelog = metadata.get("version"), metadata.get("changelog")
    if version is not None and isinstance(changelog, dict) and version not in changelog:
        problems.append(f"configs/metadata.json: version {version!r} is not in 'changelog'")
    packages = metadata.get("required_packages_version") or {}
    if any(str(name).lower() == PROJECT_DISTRIBUTION for name in packages):
        problems.append(f"configs/metadata.json: required_packages_version lists {PROJECT_DISTRIBUTION}")
    return problems


def check_configs(package_dir: Path) -> list[str]:
    """Zoo ids, no reference to the repository's packages, no path leaving the bundle folder."""
    from monai.bundle import ConfigParser

    problems: list[str] = []
    for path in _config_files(package_dir):
        relative = f"configs/{path.name}"
        config = _read_json(path, problems, relative)
        if config is None:
            continue
        for config_id, text in project_references(config):
            problems.append(
                f"{relative}: id {config_id!r} refers to the repository's packages ({text[:120]!r}); "
                "use the vendored scripts package"
            )
        for config_id, _, text in _walk_strings(config):
            if re.search(r"@bundle_root\s*,\s*'\.\.'", text):
                problems.append(f"{relative}: id {config_id!r} leaves the bundle folder ({text[:120]!r})")
    for name, required in (("train.json", ZOO_TRAIN_IDS), ("inference.json", ZOO_INFERENCE_IDS)):
        path = package_dir / "configs" / name
        if not path.is_file():
            continue
        parser = ConfigParser()
        parser.read_config(str(path))
        missing = [config_id for config_id in required if config_id not in parser]
        if missing:
            problems.append(f"configs/{name}: lacks the id(s) {missing} a Model Zoo bundle has")
    return problems


def _is_stdlib(module: str) -> bool:
    return module in sys.stdlib_module_names or module == "__future__"


def check_vendored_code(package_dir: Path) -> list[str]:
    """The vendored code imports no project package, and its module-level imports are MONAI's, torch's, numpy's
    or of the metadata's ``required_packages_version`` (those a bare import of ``scripts`` needs)."""
    problems: list[str] = []
    metadata_path = package_dir / "configs" / "metadata.json"
    metadata = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
    listed = {str(name).lower().replace("_", "-") for name in (metadata.get("required_packages_version") or {})}
    listed |= set(BASE_DISTRIBUTIONS)
    for path in sorted((package_dir / SCRIPTS_PACKAGE).rglob("*.py")):
        relative = path.relative_to(package_dir).as_posix()
        try:
            tree = ast.parse(path.read_text(), filename=relative)
        except SyntaxError as error:
            problems.append(f"{relative}: not valid Python ({error})")
            continue
        module_level = set(tree.body)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in (*VENDORED_PACKAGES, SCRIPTS_PACKAGE):
                    problems.append(
                        f"{relative}:{node.lineno}: imports {module!r} by absolute name; the vendored code must "
                        "use relative imports"
                    )
                elif node in module_level and not _is_stdlib(top):
                    distribution = DISTRIBUTION_OF_MODULE.get(top, top).lower().replace("_", "-")
                    if distribution not in listed:
                        problems.append(
                            f"{relative}:{node.lineno}: imports {module!r} at module level, but "
                            f"configs/metadata.json does not list {distribution!r} in required_packages_version"
                        )
    return problems


def check_large_files(package_dir: Path) -> list[str]:
    """``large_files.yml`` lists ``models/model.pt`` with the zoo's fields; hashes match the files present."""
    path = package_dir / "large_files.yml"
    if not path.is_file():
        return []
    try:
        entries = read_large_files(path)
    except PackageError as error:
        return [str(error)]
    problems = []
    if "models/model.pt" not in [entry.get("path") for entry in entries]:
        problems.append("large_files.yml: does not list models/model.pt")
    for entry in entries:
        missing = [key for key in ("path", "url", "hash_val", "hash_type") if key not in entry]
        if missing:
            problems.append(f"large_files.yml: entry {entry.get('path', '?')!r} lacks {missing}")
            continue
        if entry["hash_type"] not in ("md5", "sha1", "sha256", "sha512"):
            problems.append(f"large_files.yml: {entry['path']}: unknown hash_type {entry['hash_type']!r}")
        file = package_dir / entry["path"]
        if file.is_file() and entry["hash_val"] and entry["hash_type"] == "md5" and _md5(file) != entry["hash_val"]:
            problems.append(
                f"large_files.yml: {entry['path']}: md5 {_md5(file)} differs from hash_val {entry['hash_val']}"
            )
        if file.is_file() and not entry["hash_val"]:
            problems.append(f"large_files.yml: {entry['path']} exists but has no hash_val")
    return problems


def _tool_output(result: subprocess.CompletedProcess, max_lines: int = 30) -> str:
    lines = (result.stdout + result.stderr).strip().splitlines()
    return "\n      ".join(lines[:max_lines]) + (
        f"\n      ... ({len(lines) - max_lines} more)" if len(lines) > max_lines else ""
    )


def _run_style_tool(package_dir: Path, tool: str, check: bool) -> subprocess.CompletedProcess:
    """flake8 (always a check), black or isort (formatting, or ``check``) on the package's ``scripts``, run from the
    package folder with the zoo's settings given explicitly (no configuration file of the surroundings)."""
    arguments = {
        "flake8": list(FLAKE8_ARGS),
        "black": [*BLACK_ARGS, *(["--check"] if check else ["--quiet"])],
        "isort": [*ISORT_ARGS, *(["--check-only"] if check else ["--quiet"])],
    }[tool]
    command = [sys.executable, "-m", tool, *arguments, SCRIPTS_PACKAGE]
    return subprocess.run(command, capture_output=True, text=True, cwd=package_dir, check=False)


def check_code_style(package_dir: Path) -> list[str]:
    """The zoo's code style on ``scripts/``: flake8 (the zoo's codes and ignores, 120 columns), black and isort."""
    scripts_dir = package_dir / SCRIPTS_PACKAGE
    if not scripts_dir.is_dir():
        return []
    problems = []
    python_files = len(list(scripts_dir.rglob("*.py")))
    for tool in ("flake8", "black", "isort"):
        result = _run_style_tool(package_dir, tool, check=True)
        output = result.stdout + result.stderr
        if "No module named" in result.stderr and result.returncode != 0:
            problems.append(f"scripts/: {tool} is not installed (pip install black flake8 isort)")
        elif result.returncode != 0:
            problems.append(f"scripts/: {tool} fails:\n      {_tool_output(result)}")
        elif tool == "black" and f"{python_files} files would be left unchanged" not in output:
            problems.append(f"scripts/: black did not check all {python_files} Python files: {output.strip()[-300:]}")
        elif tool == "isort" and "Skipped" in output:
            problems.append(f"scripts/: isort skipped files: {output.strip()[-300:]}")
    plugins = subprocess.run([sys.executable, "-m", "flake8", "--version"], capture_output=True, text=True).stdout
    absent = [plugin for plugin in FLAKE8_ZOO_PLUGINS if plugin.replace("flake8-", "") not in plugins]
    if absent and os.environ.get("CI", "").lower() in ("1", "true"):
        problems.append(f"scripts/: flake8 plugins of the Model Zoo's config are not installed: {absent}")
    elif absent:
        logger.warning("flake8 plugins of the Model Zoo's config not installed, their codes not checked: %s", absent)
    return problems


def _probe_env() -> dict[str, str]:
    """Environment of a check subprocess: no PYTHONPATH (a zoo user does not have this repository on it), no
    bytecode written into the package, and the data where the repository's bundles read it (``$MEDSEG_DATA``,
    else ``../shared/data`` beside the checkout: the packaged configs honour ``$MEDSEG_DATA`` too)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault(DATA_ENV_VAR, str(REPO_ROOT.parent / "shared" / "data"))
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
    return [sys.executable, str(Path(__file__).resolve()), name, *args]


def _load_vendored_code(package_dir: Path) -> Any:
    """The package's ``scripts`` imported under a private name, whatever ``scripts`` is on ``sys.path`` (the
    vendored code imports itself relatively, checked by ``check_vendored_code``); remove it with
    ``_unload_vendored_code``."""
    import importlib.util

    name = f"_vendored_scripts_{hashlib.md5(str(package_dir).encode()).hexdigest()[:12]}"
    init = package_dir / SCRIPTS_PACKAGE / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        _unload_vendored_code(name)
        raise
    return module


def _unload_vendored_code(name: str) -> None:
    for module in [module for module in sys.modules if module == name or module.startswith(f"{name}.")]:
        del sys.modules[module]


def _missing_attribute(root: Any, dotted: str) -> str | None:
    """Why ``scripts.a.b.c`` does not resolve from the imported ``scripts`` module ``root`` (``None``: it does)."""
    import importlib

    value, parts = root, dotted.split(".")[1:]
    for index, part in enumerate(parts):
        if not hasattr(value, part):
            try:  # a submodule its package does not import
                value = importlib.import_module(f"{root.__name__}.{'.'.join(parts[: index + 1])}")
                continue
            except ImportError:
                return f"{'.'.join([SCRIPTS_PACKAGE, *parts[:index]])} has no attribute {part!r}"
        value = getattr(value, part)
    return None


def check_references(package_dir: Path) -> list[str]:
    """Every ``scripts.*`` target and ``@bundle_scripts.*`` chain of the configs exists in the vendored code."""
    references = []
    for path in _config_files(package_dir):
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # reported by check_configs
        references += [(f"configs/{path.name}", config_id, dotted) for config_id, dotted in scripts_references(config)]
    if not references or not (package_dir / SCRIPTS_PACKAGE / "__init__.py").is_file():
        return []
    try:
        root = _load_vendored_code(package_dir)
    except Exception as error:  # any error of the vendored code is a problem of the package
        return [f"{SCRIPTS_PACKAGE}/__init__.py: importing the vendored code fails: {type(error).__name__}: {error}"]
    try:
        problems = []
        for file, config_id, dotted in references:
            reason = _missing_attribute(root, dotted)
            if reason:
                problems.append(f"{file}: id {config_id!r}: {dotted} does not exist in the vendored code ({reason})")
        return problems
    finally:
        _unload_vendored_code(root.__name__)


# ------------------------------------------------------------------------------------------- workflow checks


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


def check(
    package_dir: str | os.PathLike,
    overrides: str | Mapping[str, Any] | None = None,
    workflows: bool = True,
    torchscript: bool = True,
) -> str:
    """Runs the checks on a package folder; raises one error listing every problem.

    Args:
        package_dir: a folder written by ``package`` (or any Model Zoo bundle folder with a ``scripts`` package).
        overrides: ``{id: value}`` for the workflow checks (JSON object or file; a file keyed by bundle names, like
            ``tests/bundle_smoke_overrides.json``, gives the bundle's entry).
        workflows: also run the workflow checks (properties, ``verify_net_in_out``, TorchScript).
        torchscript: with ``workflows``, also the TorchScript export and comparison (``package`` skips it when it
            has just exported ``models/model.ts`` with the same comparison).

    Returns:
        A one-line summary.

    Raises:
        PackageError: the package fails a check; the message names the bundle, the file and each problem.
    """
    package_dir = Path(package_dir).resolve()
    bundle = package_dir.name
    if not package_dir.is_dir():
        raise PackageError(f"bundle {bundle!r}: no package folder {package_dir}")
    static_checks: list[Callable[[Path], list[str]]] = [
        check_layout,
        check_metadata,
        check_configs,
        check_vendored_code,
        check_large_files,
        check_code_style,
        check_references,
    ]
    problems = [problem for run_check in static_checks for problem in run_check(package_dir)]
    if problems:
        raise _problems_error(bundle, problems)
    if workflows:
        settings = load_overrides(overrides, bundle)
        workflow_checks = [workflow_properties_check, verify_net_in_out_check]
        workflow_checks += [torchscript_check] if torchscript else []
        for run_check in workflow_checks:
            problems += run_check(package_dir, settings)
        if problems:
            raise _problems_error(bundle, problems)
    done = "static and workflow checks" if workflows else "static checks"
    return f"{bundle}: {done} passed ({package_dir})"


# ------------------------------------------------------------------------ probes (run in a fresh process)


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


# ------------------------------------------------------- exported networks against the eager one (shared)


class ExportMismatchError(ValueError):
    """An exported network whose output is not the eager network's within the tolerance."""


def _metadata_shape(spec: Mapping[str, Any], what: str) -> list[int]:
    shape = spec.get("spatial_shape", [])
    if not all(isinstance(size, int) for size in shape):
        raise ValueError(f"metadata {what} spatial_shape {shape} must be numbers to build an example input.")
    return list(shape)


def _first_spec(data_format: Mapping[str, Any], kind: str) -> tuple[str, Mapping[str, Any]]:
    specs = data_format.get(kind) or {}
    if not specs:
        raise ValueError(f"metadata network_data_format has no {kind}.")
    return next(iter(specs.items()))


def example_input(
    data_format: Mapping[str, Any], input_shape: Sequence[int] | None = None, seed: int = 0
) -> torch.Tensor:
    """A seeded random input of the network: ``(1, num_channels, *spatial_shape)`` of the metadata's first input
    (in its ``dtype``), or ``input_shape`` when given.

    Args:
        data_format: the metadata's ``network_data_format``.
        input_shape: the full shape ``(N, C, *spatial)`` instead of the metadata's.
        seed: seed of the values (uniform in ``[0, 1)``), so that a comparison can be repeated.
    """
    import torch

    _, spec = _first_spec(data_format, "inputs")
    shape = tuple(input_shape) if input_shape else (1, spec["num_channels"], *_metadata_shape(spec, "input"))
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator, dtype=getattr(torch, spec.get("dtype", "float32")))


def expected_output_shape(data_format: Mapping[str, Any], batch_size: int = 1) -> tuple[int, ...]:
    """``(batch_size, num_channels, *spatial_shape)`` of the metadata's first output (for its input shape)."""
    _, spec = _first_spec(data_format, "outputs")
    return (batch_size, spec["num_channels"], *_metadata_shape(spec, "output"))


def compare_with_eager(exported: Any, eager: Any, what: str, rtol: float = 1e-4, atol: float = 1e-5) -> float:
    """The largest absolute difference between an exported network's output and the eager network's; raises when
    some value is outside ``|exported - eager| <= atol + rtol * |eager|`` (``torch.isclose``).

    Args:
        exported: the exported network's output (a tensor or a numpy array, e.g. from onnxruntime).
        eager: the eager network's output, a tensor.
        what: names the export in the error message, e.g. ``"bundle 'x', format onnx"``.
        rtol: relative tolerance.
        atol: absolute tolerance.

    Raises:
        TypeError: an output that is not a tensor.
        ExportMismatchError: different shapes, or values outside the tolerance.
    """
    import torch

    if not isinstance(eager, torch.Tensor):
        raise TypeError(f"{what}: the eager network returns {type(eager).__name__}, the comparison needs a tensor")
    if not isinstance(exported, torch.Tensor):
        exported = torch.as_tensor(exported)
    exported = exported.to(device=eager.device, dtype=eager.dtype)
    if exported.shape != eager.shape:
        raise ExportMismatchError(
            f"{what}: output shape {tuple(exported.shape)} differs from the eager network's {tuple(eager.shape)}"
        )
    difference = (exported - eager).abs()
    max_difference = float(difference.nan_to_num(nan=float("inf")).max()) if difference.numel() else 0.0
    outside = ~torch.isclose(exported, eager, rtol=rtol, atol=atol, equal_nan=True)
    if bool(outside.any()):
        raise ExportMismatchError(
            f"{what}: output differs from the eager network's: max abs difference {max_difference:.3g}, "
            f"{int(outside.sum())} of {outside.numel()} values outside the tolerance (atol {atol:g}, rtol {rtol:g})"
        )
    return max_difference


def probe_torchscript(package_dir: str, overrides_file: str, target: str, work_dir: str) -> None:
    """(In a fresh process.) Exports ``network_def`` with ``ckpt_export`` and compares it with the eager network."""
    import torch
    from monai.bundle import ConfigParser, ckpt_export

    root = Path(package_dir).resolve()
    _import_package_scripts(package_dir)
    overrides = json.loads(Path(overrides_file).read_text())
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser.read_meta(str(root / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(root), **overrides})
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    weights = root / "models" / "model.pt"
    if not weights.is_file():
        weights = Path(work_dir) / "random_model.pt"
        torch.save(network.state_dict(), weights)
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    network.eval()
    ckpt_export(
        net_id="network_def",
        filepath=target,
        ckpt_file=str(weights),
        meta_file=str(root / "configs" / "metadata.json"),
        config_file=str(root / "configs" / "inference.json"),
        bundle_root=str(root),
        **overrides,
    )
    scripted = torch.jit.load(target, map_location="cpu")
    scripted.eval()
    data_format = parser.get("_meta_#network_data_format")
    input_name, _ = _first_spec(data_format, "inputs")
    data = example_input(data_format)
    with torch.no_grad():
        eager, exported = network(data), scripted(data)
    expected = expected_output_shape(data_format)
    if isinstance(eager, torch.Tensor) and tuple(eager.shape) != expected:
        raise ValueError(f"network output shape {tuple(eager.shape)} differs from the metadata's {expected}")
    difference = compare_with_eager(exported, eager, "TorchScript (ckpt_export) of network_def", rtol=1e-4, atol=1e-5)
    report = {"input": input_name, "shape": list(data.shape), "max_abs_difference": difference}
    print(_PROBE_MARKER + json.dumps(report))


def printable(function: Callable[..., Any]) -> Callable[..., Any]:
    """A fire command that returns strings and nothing else: fire would browse a returned object as a command group
    (also used by ``monailabel_app.py``)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        return result if isinstance(result, str) or result is None else str(result)

    wrapper.__doc__, wrapper.__name__ = function.__doc__, function.__name__
    return wrapper


COMMANDS = {
    "package": printable(package),
    "check": printable(check),
    # run by `check` in fresh processes
    "probe_properties": probe_properties,
    "probe_torchscript": probe_torchscript,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; a failed check or packaging problem prints one clear message and gives exit status 1."""
    import fire

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        fire.Fire(COMMANDS, command=list(argv) if argv is not None else None, name="package_bundle.py")
    except PackageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
