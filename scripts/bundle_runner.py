"""Run a bundle of ``bundles/`` through ``python -m monai.bundle``: moved to :mod:`medseg_tools.runner`.

Kept under its old name while ``scripts/export_bundle.py`` (``from bundle_runner import bundle_dir``) still imports
it through ``sys.path``; new code imports :mod:`medseg_tools.runner`.
"""

from medseg_tools.paths import BUNDLES_DIR, REPO_ROOT
from medseg_tools.runner import bundle_command, bundle_dir, bundle_env, format_override, output_tail, run_bundle

__all__ = [
    "BUNDLES_DIR",
    "REPO_ROOT",
    "bundle_command",
    "bundle_dir",
    "bundle_env",
    "format_override",
    "output_tail",
    "run_bundle",
]
