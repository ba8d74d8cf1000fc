"""The bundles served with MONAI Label's ``monaibundle`` app (``scripts/monailabel_app.py`` is the command line; its
docstring says how each piece is made and why).

One job per module: :mod:`.environment` (the MONAI Label virtual environment; :mod:`.torchvision_hook` is copied
into it, never imported here), :mod:`.app` (the app folder of Model Zoo packages), :mod:`.studies` (studies folders
of real images), :mod:`.server` (the server process and its requests) and :mod:`.cli`. The names below are the API.
"""

from medseg_tools.bundles import bundle_names
from medseg_tools.monailabel.app import (
    APP_MARKER,
    assemble_app,
    label_map,
    monailabel_metadata,
    write_untrained_weights,
)
from medseg_tools.monailabel.cli import COMMANDS, main, start
from medseg_tools.monailabel.environment import (
    DEFAULT_VENV,
    DEFAULT_WORK_DIR,
    MONAILABEL_LOCK,
    MONAILABEL_VERSION,
    MonaiLabelSetupError,
    environment_problems,
    install_torchvision_hook,
    probe_environment,
    setup_environment,
    venv_python,
)
from medseg_tools.monailabel.server import (
    DEFAULT_HOST,
    MonaiLabelServer,
    MonaiLabelServerError,
    free_port,
    server_command,
)
from medseg_tools.monailabel.studies import BUNDLE_DATASETS, CT_SERIES, demo_studies, write_nifti_volume
from medseg_tools.zoo.large_files import md5

__all__ = [
    "APP_MARKER",
    "BUNDLE_DATASETS",
    "COMMANDS",
    "CT_SERIES",
    "DEFAULT_HOST",
    "DEFAULT_VENV",
    "DEFAULT_WORK_DIR",
    "MONAILABEL_LOCK",
    "MONAILABEL_VERSION",
    "MonaiLabelServer",
    "MonaiLabelServerError",
    "MonaiLabelSetupError",
    "assemble_app",
    "bundle_names",
    "demo_studies",
    "environment_problems",
    "free_port",
    "install_torchvision_hook",
    "label_map",
    "main",
    "md5",
    "monailabel_metadata",
    "probe_environment",
    "server_command",
    "setup_environment",
    "start",
    "venv_python",
    "write_nifti_volume",
    "write_untrained_weights",
]
