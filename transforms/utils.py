"""Helpers shared by the whole package: the data error type and its messages, natural sorting, option checks,
numpy conversion of metric inputs."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
from monai.config import NdarrayOrTensor

__all__ = [
    "check_choice",
    "DataValidationError",
    "natural_sort_key",
    "as_python",
    "format_values",
    "problems_error",
    "as_numpy",
    "pair_as_numpy",
]


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """``value`` when it is one of ``choices``, else a ValueError naming the argument ``name``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
    return value


# Lines of problems quoted in one error message; the rest are counted, the full list is on the exception.
MAX_REPORTED_PROBLEMS = 20
MAX_REPORTED_VALUES = 12


class DataValidationError(ValueError):
    """A dataset problem found before training: the message names the offending file(s) and the problem.

    Args:
        message: human-readable description.
        problems: one line per problem when several files were checked at once (``message`` quotes the
            first :data:`MAX_REPORTED_PROBLEMS` of them).
    """

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        problems = list(problems) if problems is not None else [message]
        # both arguments in ``args``, so that the error survives pickling (e.g. from a data loader worker)
        super().__init__(message, problems)
        self.problems = problems

    def __str__(self) -> str:
        return str(self.args[0])


def natural_sort_key(value: object) -> tuple:
    """Sort key that orders embedded integers numerically: ``"2" < "10"``, ``"set2" < "set10"``."""
    parts = re.split(r"(\d+)", str(value))
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in parts if part != "")


def as_python(value: object) -> object:
    """A numpy scalar as a plain ``int`` (integral values) or ``float``, for messages; other values unchanged."""
    if isinstance(value, (np.integer, np.floating, float)):
        return int(value) if float(value).is_integer() else float(value)
    return value


def format_values(values: Sequence | np.ndarray) -> str:
    """``[a, b, ...]`` with at most MAX_REPORTED_VALUES entries, numpy scalars shown as plain numbers."""
    shown = ", ".join(str(as_python(value)) for value in values[:MAX_REPORTED_VALUES])
    return f"[{shown}, ... ({len(values)} in all)]" if len(values) > MAX_REPORTED_VALUES else f"[{shown}]"


def problems_error(problems: list[str], headline: str) -> DataValidationError:
    """One :class:`DataValidationError` for a list of problems: the first ``MAX_REPORTED_PROBLEMS`` quoted
    under ``headline``, the rest counted; the full list is ``error.problems``."""
    if len(problems) == 1:
        return DataValidationError(problems[0], problems)
    shown = problems[:MAX_REPORTED_PROBLEMS]
    lines = [f"{headline}:"] + [f"  - {problem}" for problem in shown]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more (see error.problems)")
    return DataValidationError("\n".join(lines), problems)


def as_numpy(data: NdarrayOrTensor, name: str) -> np.ndarray:
    """``data`` (numpy or torch, any device) as a numpy array; ``name`` is used in error messages."""
    array = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); a metric needs at least one pixel.")
    return array


def pair_as_numpy(pred: NdarrayOrTensor, target: NdarrayOrTensor) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and target as numpy arrays of the same shape (a ValueError otherwise)."""
    pred_array, target_array = as_numpy(pred, "pred"), as_numpy(target, "target")
    if pred_array.shape != target_array.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred_array.shape} and {target_array.shape}.")
    return pred_array, target_array
