"""The command line of ``scripts/reproduce.py``: :func:`~medseg_tools.reproduce.run.reproduce`, printing the table."""

from __future__ import annotations

import functools
import inspect
import logging

from medseg_tools.paths import in_repo
from medseg_tools.reproduce.run import reproduce


@functools.wraps(reproduce)
def main(*args, **kwargs) -> str:
    # wraps() keeps reproduce's signature and docstring, so fire's --help lists its arguments once, from one place
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    call = inspect.signature(reproduce).bind(*args, **kwargs)
    call.apply_defaults()
    reproduce(*call.args, **call.kwargs)
    table = in_repo(call.arguments["out_dir"]) / "results.md"
    print(table.read_text())
    return str(table)
