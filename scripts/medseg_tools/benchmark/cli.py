"""The command line of ``scripts/benchmark.py``: one subcommand per registered benchmark, plus ``list``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import fire
from medseg_tools.benchmark import BENCHMARKS, list_benchmarks


def main() -> None:
    """Fire entry point: one subcommand per registered benchmark, plus ``list``."""

    def printed_only(function: Callable[..., dict]) -> Callable[..., None]:
        # The benchmark prints its own table (and writes --json_out); Fire would also dump the returned dict.
        @functools.wraps(function)
        def command(*args: Any, **kwargs: Any) -> None:
            function(*args, **kwargs)

        return command

    commands: dict[str, Callable[..., Any]] = {name: printed_only(f) for name, f in BENCHMARKS.items()}
    commands["list"] = list_benchmarks
    fire.Fire(commands)
