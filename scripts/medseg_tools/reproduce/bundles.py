"""The bundles' side of a reproduction: their merged configs, logged runs and what the runs leave (metrics.csv,
TensorBoard and log curves)."""

from __future__ import annotations

import csv
import logging
import os
import re
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from medseg_tools.paths import REPO_ROOT
from medseg_tools.runner import bundle_dir, bundle_env, output_tail
from monai.bundle import ConfigParser
from tqdm.auto import tqdm

logger = logging.getLogger("reproduce")

# MONAI's StatsHandler: "Epoch: 3/50, Iter: 7/20 -- train_loss: 0.6931"
ITERATION_LOG = re.compile(r"Epoch: (\d+)/(\d+), Iter: (\d+)/(\d+) -- (.*)")
# MONAI's StatsHandler on an evaluator: "Epoch[3] Metrics -- val_mean_dice: 0.8123 val_mean_iou: ..."
EPOCH_METRICS_LOG = re.compile(r"Epoch\[(\d+)\] Metrics -- (.*)")
NAME_VALUE = re.compile(r"([\w./-]+): (-?[\d.]+(?:[eE][-+]?\d+)?|nan|inf)")


def _plain(value: Any) -> Any:
    """JSON-able copy of an override value (paths as strings)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_parser(
    bundle: str | os.PathLike, configs: Sequence[str], overrides: Mapping[str, Any] | None = None
) -> ConfigParser:
    """MONAI ``ConfigParser`` of the merged ``configs`` as ``python -m monai.bundle run`` builds it."""
    root = bundle_dir(bundle)
    files = [root / "configs" / name for name in configs]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"bundle {root.name} has no config file(s) {missing}.")
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser["bundle_root"] = str(root)
    for key, value in (overrides or {}).items():
        parser[key] = _plain(value)
    return parser


def _parent_exists(parser: ConfigParser, key: str) -> bool:
    parent = key.replace("::", "#").rpartition("#")[0]
    return not parent or parent in parser


def applicable_overrides(parser: ConfigParser, overrides: Mapping[str, Any]) -> dict:
    """The overrides whose parent id exists in the config of ``parser`` (a top-level id always applies)."""
    return {key: value for key, value in overrides.items() if _parent_exists(parser, key)}


class BundleRunError(subprocess.CalledProcessError):
    """A failed bundle run; its message ends with the tail of the run's log."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.output}"


def run_logged(command: Sequence[str], log_path: Path, description: str = "", show_progress: bool = True) -> float:
    """Runs a bundle command with its output appended to ``log_path``; returns its wall time in seconds.

    The console only shows a progress bar over the training iterations (from MONAI's StatsHandler lines).
    Raises ``CalledProcessError`` with the log's tail when the command fails.
    """
    # unbuffered: the progress bar follows the training live
    env = bundle_env({"PYTHONUNBUFFERED": "1"})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    bar = None
    with open(log_path, "a") as log:
        log.write(f"\n$ {shlex.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
            list(command), cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            for line in process.stdout:
                log.write(line)
                match = ITERATION_LOG.search(line) if show_progress else None
                if match:
                    epoch, epochs, iteration, per_epoch = map(int, match.groups()[:4])
                    if bar is None:
                        bar = tqdm(total=epochs * per_epoch, desc=description, unit="it", leave=False, position=1)
                    bar.total = epochs * per_epoch
                    bar.update((epoch - 1) * per_epoch + iteration - bar.n)
            process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if bar is not None:
                bar.close()
    seconds = time.monotonic() - started
    if process.returncode != 0:
        tail = output_tail(log_path.read_text(), max_chars=None, max_lines=25)
        raise BundleRunError(process.returncode, list(command), output=f"{description} failed; log {log_path}:\n{tail}")
    return seconds


def read_metrics_csv(path: Path) -> dict[str, float]:
    """``name,value`` lines of MONAI's ``MetricsSaver`` summary file."""
    if not path.is_file():
        raise FileNotFoundError(f"the evaluation wrote no {path}.")
    values = {}
    for row in csv.reader(path.read_text().splitlines()):
        if len(row) >= 2:
            try:
                values[row[0].strip()] = float(row[1])
            except ValueError:
                continue
    return values


def _scalar_series(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    """``(step, value)`` of a TensorBoard scalar over every event file in ``log_dir`` (later files win)."""
    if not log_dir.is_dir():
        return []
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    by_step: dict[int, float] = {}
    for events in sorted(log_dir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if tag in accumulator.Tags().get("scalars", []):
            by_step.update({int(e.step): float(e.value) for e in accumulator.Scalars(tag)})
    return sorted(by_step.items())


def read_metric_over_time(log_dir: Path, tag: str) -> list[tuple[float, float]]:
    """``(seconds, value)`` of a TensorBoard scalar, the seconds counted from the run's first event (the first
    training step); a run resumed after a pause counts the pause too."""
    if not log_dir.is_dir():
        return []
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    start, points = None, {}
    for events in sorted(log_dir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for name in accumulator.Tags().get("scalars", []):
            scalars = accumulator.Scalars(name)
            if scalars:
                first = min(e.wall_time for e in scalars)
                start = first if start is None else min(start, first)
            if name == tag:
                points.update({int(e.step): (e.wall_time, float(e.value)) for e in scalars})
    if start is None:
        return []
    return [(wall - start, value) for _, (wall, value) in sorted(points.items())]


def read_training_curves(log_dir: Path, stats_log: Path, loss_tag: str, metric: str) -> dict[str, list]:
    """Per-epoch mean training loss and validation ``metric`` of one run.

    The loss comes from MONAI's StatsHandler lines in the bundle's log (they name the epoch of every
    iteration); the validation metric from the TensorBoard events in ``log_dir`` (step = epoch), else from the
    log's ``Epoch[e] Metrics`` lines.
    """
    losses: dict[int, list[float]] = {}
    logged_metric: dict[int, float] = {}
    text = stats_log.read_text() if stats_log.is_file() else ""
    for line in text.splitlines():
        match = ITERATION_LOG.search(line)
        if match:
            values = dict(NAME_VALUE.findall(match.group(5)))
            if loss_tag in values:
                losses.setdefault(int(match.group(1)), []).append(float(values[loss_tag]))
            continue
        match = EPOCH_METRICS_LOG.search(line)
        if match:
            values = dict(NAME_VALUE.findall(match.group(2)))
            if metric in values:
                logged_metric[int(match.group(1))] = float(values[metric])
    metric_series = _scalar_series(log_dir, metric) or sorted(logged_metric.items())
    return {
        "loss": [(epoch, float(np.mean(values))) for epoch, values in sorted(losses.items())],
        "metric": [(int(epoch), float(value)) for epoch, value in metric_series],
    }
