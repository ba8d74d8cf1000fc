"""The command line of ``scripts/prepare_data.py``."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from medseg_tools.data.convert import convert_isbi, convert_usiigaci
from medseg_tools.data.monuseg import convert_monuseg_xml
from medseg_tools.data.registry import data_dir, download, fetch, link_or_copy, validate
from medseg_tools.data.sources import DownloadError

from transforms import DataValidationError

# ----------------------------------------------------------------------------------------------------------
# CLI


def _printable(function: Callable) -> Callable:
    """Return paths as strings and nothing else: fire would browse a returned object as a command group."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        result = function(*args, **kwargs)
        return str(result) if isinstance(result, Path) else None

    return wrapper


COMMANDS = {
    "data_dir": _printable(data_dir),
    "fetch": _printable(fetch),
    "link": _printable(link_or_copy),
    "download": _printable(download),
    "convert_isbi": _printable(convert_isbi),
    "convert_usiigaci": _printable(convert_usiigaci),
    "convert_monuseg_xml": _printable(convert_monuseg_xml),
    "validate": _printable(validate),  # prints its own summary
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; data and download problems are printed as one clear message with exit status 1."""
    import fire

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        fire.Fire(COMMANDS, command=list(argv) if argv is not None else None, name="prepare_data.py")
    except (DataValidationError, DownloadError, FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
