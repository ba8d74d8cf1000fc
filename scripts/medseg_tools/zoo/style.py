"""The Model Zoo's code style (flake8 with its plugins, black, isort) on a package's vendored ``scripts``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from medseg_tools.zoo.configs import SCRIPTS_PACKAGE

logger = logging.getLogger("package_bundle")

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
