"""What the command-line tools (python-fire) share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def printable(function: Callable[..., Any]) -> Callable[..., Any]:
    """A fire command that returns strings and nothing else: fire would browse a returned object as a command
    group."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        return result if isinstance(result, str) or result is None else str(result)

    wrapper.__doc__, wrapper.__name__ = function.__doc__, function.__name__
    return wrapper
