"""Bundle configs rewritten for a Model Zoo package: references to the repository's packages (``custom_networks``,
``transforms``) pointed at the vendored ``scripts`` package; config overrides; the error of packaging and checks."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg_tools.paths import BUNDLES_DIR

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
#: a distribution of this repository, which a package must not need
PROJECT_DISTRIBUTION = "medseg-bundles"

_PROJECT_PACKAGES = "|".join(VENDORED_PACKAGES)
#: a reference to a repository package in a config string (not ``monai.transforms.X``, ``@base_transforms``)
_PROJECT_REFERENCE = re.compile(rf"(?<![\w.@#/])({_PROJECT_PACKAGES})(?=\.[A-Za-z_])")
_PROJECT_IMPORT = re.compile(rf"^\$\s*(?:import|from)\s+({_PROJECT_PACKAGES})\b")
_SCRIPTS_REFERENCE = re.compile(rf"@{SCRIPTS_ID}((?:\.[A-Za-z_]\w*)+)")


class PackageError(ValueError):
    """A bundle that cannot be packaged, or a package that fails a check; the message names the bundle, the file
    and each problem."""


def _problems_error(bundle: str, problems: Sequence[str]) -> PackageError:
    listed = "\n".join(f"  - {problem}" for problem in problems)
    return PackageError(f"bundle {bundle!r} failed {len(problems)} check(s):\n{listed}")


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
