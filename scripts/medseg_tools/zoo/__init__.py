"""Bundles of ``bundles/`` as self-contained MONAI Model Zoo packages, and the checks of such a package
(``scripts/package_bundle.py`` is the command line; its docstring describes the package and the checks).

One job per module: :mod:`.configs` (configs rewritten to the vendored code, overrides), :mod:`.readme` (the zoo
README and the data licence), :mod:`.vendoring` (the code copied and formatted), :mod:`.large_files`,
:mod:`.checks` (static checks), :mod:`.style` (the zoo's code style), :mod:`.workflows` and :mod:`.probes` (workflow
checks in fresh processes) and :mod:`.packaging` (``package``, ``check`` and the CLI). The names below are the API.
"""

from medseg_tools.bundles import bundle_names
from medseg_tools.zoo.checks import (
    REQUIRED_FILES,
    SCHEMA_PATH,
    ZOO_INFERENCE_IDS,
    ZOO_TRAIN_IDS,
    check_configs,
    check_large_files,
    check_layout,
    check_metadata,
    check_references,
    check_vendored_code,
)
from medseg_tools.zoo.configs import (
    SCRIPTS_EXPRESSION,
    SCRIPTS_PACKAGE,
    VENDORED_PACKAGES,
    PackageError,
    load_overrides,
    project_references,
    rewrite_config,
    scripts_references,
)
from medseg_tools.zoo.large_files import large_files_yml, read_large_files
from medseg_tools.zoo.packaging import COMMANDS, check, main, package
from medseg_tools.zoo.readme import README_SECTIONS, data_license_text, package_docs_text, zoo_readme
from medseg_tools.zoo.shipping import plain_state_dict, ship
from medseg_tools.zoo.style import FLAKE8_ZOO_PLUGINS, check_code_style
from medseg_tools.zoo.vendoring import vendor_code
from medseg_tools.zoo.workflows import torchscript_check, verify_net_in_out_check, workflow_properties_check

__all__ = [
    "COMMANDS",
    "FLAKE8_ZOO_PLUGINS",
    "README_SECTIONS",
    "REQUIRED_FILES",
    "SCHEMA_PATH",
    "SCRIPTS_EXPRESSION",
    "SCRIPTS_PACKAGE",
    "VENDORED_PACKAGES",
    "ZOO_INFERENCE_IDS",
    "ZOO_TRAIN_IDS",
    "PackageError",
    "bundle_names",
    "check",
    "check_code_style",
    "check_configs",
    "check_large_files",
    "check_layout",
    "check_metadata",
    "check_references",
    "check_vendored_code",
    "data_license_text",
    "large_files_yml",
    "load_overrides",
    "main",
    "package",
    "package_docs_text",
    "project_references",
    "read_large_files",
    "rewrite_config",
    "scripts_references",
    "ship",
    "plain_state_dict",
    "torchscript_check",
    "vendor_code",
    "verify_net_in_out_check",
    "workflow_properties_check",
    "zoo_readme",
]
