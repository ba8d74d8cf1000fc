"""Where the repository's parts are, defined once for every tool."""

from __future__ import annotations

import os
from pathlib import Path

#: the repository's top folder (this file is ``scripts/medseg_tools/paths.py``)
REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO_ROOT / "scripts"
BUNDLES_DIR = REPO_ROOT / "bundles"


def in_repo(path: str | os.PathLike) -> Path:
    """``path`` as given when absolute, else taken from the repository root (the tools' output folders)."""
    return Path(path) if Path(path).is_absolute() else REPO_ROOT / path
