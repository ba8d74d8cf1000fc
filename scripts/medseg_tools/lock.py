"""Checks an environment or ``pyproject.toml`` against a lock file of ``scripts/lock.sh``.

Usage::

    python scripts/check_lock.py installed requirements-lock.txt   # exit 1 if an installed package is not as locked
    python scripts/check_lock.py diff requirements-lock.txt        # lists what differs from the lock (the canary)
    python scripts/check_lock.py pyproject requirements-lock.txt   # exit 1 if the lock misses or breaks a range

``installed`` and ``diff`` use the standard library only, so they run in any environment (the MONAI Label one
included); ``pyproject`` needs ``packaging``.

Standard library only (``pyproject`` imports ``packaging`` when it runs): ``scripts/check_lock.py`` imports this
module from the ``scripts/`` folder in environments where the project is not installed.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

#: the distribution of this repository (installed editable, never locked)
PROJECT = "medseg-bundles"


def canonical_name(name: str) -> str:
    """PEP 503 normalised name: ``PyYAML`` and ``pyyaml``, ``pytorch_ignite`` and ``pytorch-ignite`` agree."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path) -> dict[str, str]:
    """``{canonical name: version}`` of the ``name==version`` lines of a lock file (comments and options ignored)."""
    locked = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        if "==" not in line:
            raise ValueError(f"{path}:{number}: not an exact pin (name==version): {line!r}")
        name, version = (part.strip() for part in line.split("==", 1))
        locked[canonical_name(name)] = version
    if not locked:
        raise ValueError(f"{path}: no pinned package found")
    return locked


def installed_versions() -> dict[str, str]:
    """``{canonical name: version}`` of the distributions of the running interpreter, this project left out."""
    versions = {canonical_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    versions.pop(PROJECT, None)
    return versions


def _same_build(locked: str, installed: str) -> bool:
    """A lock pin without a local label (``torchvision==0.28.0``) is met by its local builds (``0.28.0+cpu``), as
    pip's ``==`` is."""
    return "+" not in locked and installed.split("+", 1)[0] == locked


def differences(locked: dict[str, str], installed: dict[str, str]) -> list[str]:
    """Installed packages that the lock lacks or pins at another version, one ``name: installed (lock: ...)`` each."""
    lines = []
    for name, version in sorted(installed.items()):
        if name not in locked:
            lines.append(f"{name}=={version} (not in the lock)")
        elif locked[name] != version and not _same_build(locked[name], version):
            lines.append(f"{name}=={version} (lock: {locked[name]})")
    return lines


def pyproject_problems(lock: str | Path, pyproject: str | Path = "pyproject.toml") -> list[str]:
    """Packages that ``pyproject.toml``'s dependencies or any extra name and the lock misses, or pins at a version
    outside pyproject's range (markers that do not apply to Python 3.11 on Linux are skipped)."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads(Path(pyproject).read_text())["project"]
    groups = {"dependencies": project.get("dependencies", [])}
    groups.update({f"extra {name!r}": deps for name, deps in project.get("optional-dependencies", {}).items()})
    locked = read_lock(lock)
    environment = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux"}
    problems = []
    for group, requirements in groups.items():
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            name = canonical_name(requirement.name)
            if name == PROJECT:
                continue
            if name not in locked:
                problems.append(f"{group}: {text!r} is not in {lock} (run scripts/lock.sh)")
            elif not requirement.specifier.contains(locked[name], prereleases=True):
                problems.append(f"{group}: {text!r} but {lock} pins {name}=={locked[name]}")
    return problems


def main(argv: list[str]) -> int:
    """The command line of ``scripts/check_lock.py`` (``argv`` without the program); its exit status."""
    if len(argv) != 2 or argv[0] not in ("installed", "diff", "pyproject"):
        print(__doc__, file=sys.stderr)
        return 2
    command, lock = argv
    if command == "pyproject":
        problems = pyproject_problems(lock)
        print("\n".join(problems) or f"{lock} covers pyproject.toml within its ranges")
        return 1 if problems else 0
    lines = differences(read_lock(lock), installed_versions())
    if command == "diff":
        print("\n".join(lines) or f"every installed package is as in {lock}")
        return 0
    if lines:
        print(f"{sys.executable}: installed packages not as in {lock} (run scripts/lock.sh):", file=sys.stderr)
        print("  " + "\n  ".join(lines), file=sys.stderr)
        return 1
    return 0
