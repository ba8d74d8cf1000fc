"""A bundle packaged for the Model Zoo (``package``) and a package checked (``check``): the orchestration."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg_tools.bundles import bundle_names
from medseg_tools.cli import printable
from medseg_tools.paths import BUNDLES_DIR
from medseg_tools.zoo.checks import (
    check_configs,
    check_large_files,
    check_layout,
    check_metadata,
    check_references,
    check_vendored_code,
)
from medseg_tools.zoo.configs import (
    EXCLUDED_CONFIG_DIRS,
    PROJECT_DISTRIBUTION,
    SCRIPTS_PACKAGE,
    PackageError,
    _problems_error,
    _set_config_value,
    load_overrides,
    rewrite_config,
)
from medseg_tools.zoo.large_files import large_files_yml, md5, read_large_files, shipped_weights
from medseg_tools.zoo.probes import probe_properties, probe_torchscript
from medseg_tools.zoo.readme import data_license_text, zoo_readme
from medseg_tools.zoo.shipping import ship
from medseg_tools.zoo.style import check_code_style
from medseg_tools.zoo.vendoring import vendor_code
from medseg_tools.zoo.workflows import torchscript_check, verify_net_in_out_check, workflow_properties_check

logger = logging.getLogger("package_bundle")


def _bundle_source(bundle: str) -> Path:
    source = Path(bundle)
    if not (source / "configs").is_dir():
        source = BUNDLES_DIR / bundle
    if not (source / "configs" / "metadata.json").is_file():
        raise PackageError(f"no bundle {bundle!r} in {BUNDLES_DIR}; bundles: {bundle_names()}")
    return source.resolve()


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
            goes into ``large_files.yml``. Default: the weights the bundle ships (its ``large_files.yml``), with
            their URL; ``""`` packages no weights.
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
    if weights is None:
        shipped = shipped_weights(source)
        weights = shipped.get("models/model.pt", "")
        if weights and not weights_url:
            listed = {entry["path"]: entry for entry in read_large_files(source / "large_files.yml")}
            weights_url = listed["models/model.pt"].get("url", "")
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
        large_files[0]["hash_val"] = md5(target / "models" / "model.pt")
    (target / "large_files.yml").write_text(large_files_yml(large_files))

    workflow_overrides = load_overrides(overrides, name)
    if export_torchscript:
        problems = torchscript_check(target, workflow_overrides, export_to=target / "models" / "model.ts")
        if problems:
            raise _problems_error(name, problems)
        # beside model.pt at the same place, when its URL names the file; else to be filled in
        ts_url = weights_url[: -len("model.pt")] + "model.ts" if weights_url.endswith("/model.pt") else ""
        model_ts = {"path": "models/model.ts", "url": ts_url, "hash_type": "md5"}
        model_ts["hash_val"] = md5(target / "models" / "model.ts")
        (target / "large_files.yml").write_text(large_files_yml([*large_files, model_ts]))
    check(target, workflow_overrides, workflows=workflows, torchscript=not export_torchscript)
    _zip_package(target, zip_path)
    logger.info("packaged %s: %s and %s", name, target, zip_path)
    return str(zip_path)


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


COMMANDS = {
    "package": printable(package),
    "check": printable(check),
    "ship": printable(ship),
    # run by `check` in fresh processes (``python -m medseg_tools.zoo probe_...``)
    "probe_properties": probe_properties,
    "probe_torchscript": probe_torchscript,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI (``scripts/package_bundle.py``); a failed check or packaging problem prints one clear message and
    gives exit status 1."""
    import fire

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        fire.Fire(COMMANDS, command=list(argv) if argv is not None else None, name="package_bundle.py")
    except PackageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
