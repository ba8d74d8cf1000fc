"""Where the repository's parts are, defined once for every tool."""

from __future__ import annotations

from pathlib import Path

#: the repository's top folder (this file is ``scripts/medseg_tools/paths.py``)
REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO_ROOT / "scripts"
BUNDLES_DIR = REPO_ROOT / "bundles"
