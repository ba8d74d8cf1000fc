"""The command line of ``scripts/monailabel_app.py``: ``setup``, ``assemble``, ``studies`` and ``start``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg_tools.bundles import bundle_names
from medseg_tools.cli import printable
from medseg_tools.monailabel.app import assemble_app
from medseg_tools.monailabel.environment import (
    DEFAULT_VENV,
    DEFAULT_WORK_DIR,
    MonaiLabelSetupError,
    setup_environment,
)
from medseg_tools.monailabel.server import DEFAULT_HOST, MonaiLabelServerError, server_command
from medseg_tools.monailabel.studies import demo_studies
from medseg_tools.zoo.configs import PackageError


def start(
    bundles: str | Sequence[str] = "all",
    studies: str | os.PathLike | None = None,
    app_dir: str | os.PathLike = DEFAULT_WORK_DIR / "app",
    port: int = 8000,
    host: str = DEFAULT_HOST,
    venv: str | os.PathLike = DEFAULT_VENV,
    weights: str | os.PathLike | Mapping[str, Any] | None = None,
    defaults: str | os.PathLike | Mapping[str, Any] | None = None,
    torch_index_url: str | None = None,
) -> None:
    """Builds the environment and the app (:func:`setup_environment`, :func:`assemble_app`) and runs MONAI Label in
    the foreground until Ctrl-C.

    Args:
        bundles: ``"all"``, a comma-separated string or a list of bundle names.
        studies: the studies folder; default: demo studies of real images (:func:`demo_studies`) in
            ``runs/monailabel/studies/<bundles or all>`` (with labels only for a single bundle).
        app_dir: the app folder (rebuilt).
        port: the server's port.
        host: the address to bind; the default keeps the server on this machine.
        venv: the MONAI Label environment.
        weights: trained weights, see :func:`assemble_app` (default: untrained).
        defaults: config values for the packages, see :func:`assemble_app`.
        torch_index_url: see :func:`setup_environment`.
    """
    names = bundle_names(bundles)
    python = setup_environment(venv, torch_index_url=torch_index_url)
    app = assemble_app(app_dir, names, venv, weights, defaults)
    # one demo studies folder per choice of bundles: another choice's images (and labels) would be served too
    selection = "all" if sorted(names) == bundle_names() else "_".join(names)
    studies_dir = (
        Path(studies).resolve() if studies else Path(demo_studies(DEFAULT_WORK_DIR / "studies" / selection, names))
    )
    if not studies_dir.is_dir():
        raise ValueError(f"studies folder {studies_dir} does not exist.")
    command = server_command(python, app, studies_dir, names, host, port)
    print(f"MONAI Label on http://{host}:{port} (models: {', '.join(names)}; studies: {studies_dir}); Ctrl-C stops it")
    subprocess.run(command, check=False)


COMMANDS = {
    "setup": printable(setup_environment),
    "assemble": printable(assemble_app),
    "studies": printable(demo_studies),
    "start": start,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; a setup, packaging or input problem prints one clear message and gives exit status 1."""
    import fire

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        fire.Fire(COMMANDS, command=list(argv) if argv is not None else None, name="monailabel_app.py")
    except (
        MonaiLabelSetupError,
        MonaiLabelServerError,
        PackageError,
        ValueError,
        FileNotFoundError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
