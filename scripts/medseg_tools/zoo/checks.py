"""The static checks of a package: layout, metadata, configs, vendored code and its references, large files."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from medseg_tools.paths import SCRIPTS_DIR
from medseg_tools.zoo.configs import (
    PROJECT_DISTRIBUTION,
    SCRIPTS_PACKAGE,
    VENDORED_PACKAGES,
    PackageError,
    _walk_strings,
    project_references,
    scripts_references,
)
from medseg_tools.zoo.large_files import md5, read_large_files
from medseg_tools.zoo.readme import README_SECTIONS

SCHEMA_PATH = SCRIPTS_DIR / "schemas" / "meta_schema_20240725.json"

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
#: import name -> distribution name, where they differ
DISTRIBUTION_OF_MODULE = {"skimage": "scikit-image", "ignite": "pytorch-ignite", "PIL": "pillow", "yaml": "pyyaml"}
#: distributions every bundle has (the metadata gives their versions in ``*_version`` fields)
BASE_DISTRIBUTIONS = ("torch", "numpy", "monai")


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
        if file.is_file() and entry["hash_val"] and entry["hash_type"] == "md5" and md5(file) != entry["hash_val"]:
            problems.append(
                f"large_files.yml: {entry['path']}: md5 {md5(file)} differs from hash_val {entry['hash_val']}"
            )
        if file.is_file() and not entry["hash_val"]:
            problems.append(f"large_files.yml: {entry['path']} exists but has no hash_val")
    return problems


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
