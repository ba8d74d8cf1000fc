"""The repository's packages copied into a package's ``scripts`` and formatted in the zoo's style."""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from pathlib import Path

from medseg_tools.paths import REPO_ROOT
from medseg_tools.zoo.configs import SCRIPTS_ID, VENDORED_PACKAGES, PackageError
from medseg_tools.zoo.style import _run_style_tool


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
