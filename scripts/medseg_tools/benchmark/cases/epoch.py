"""The ``epoch`` benchmark: one real training epoch of a bundle (its ``train.json``, caching, augmentation, the
training steps and the validation run included) in fp32 and in the precision ``amp`` picks (bf16 on CPUs with bf16
matrix units), side by side, with where the time goes.

    python scripts/benchmark.py epoch --bundle unet_em_segmentation --overrides "{'features': [16,32,64,128,256]}"

Each repeat builds the bundle from its config for each precision in turn (fp32, then automatic), so that load from
other processes hits both alike, and splits the wall time of ``trainer.run()`` (one epoch) by ignite events:

* **loading**: building ``train#dataset`` (reading the images and the deterministic transforms that
  ``CacheDataset`` caches, such as U-Net's weight maps);
* **batches**: waiting for the training data loader (the random augmentation after the cache, collation);
* **steps**: the training iterations (forward, loss, backward, optimiser step);
* **validation**: the evaluator's run, with its own loading, inference and metrics;

and, over all the runs, the seconds spent in each MONAI transform class (``transforms_seconds``), which says whether
augmentation or weight maps bound an epoch.
"""

from __future__ import annotations

import collections
import contextlib
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import monai.transforms.transform as monai_transform
from ignite.engine import Events
from medseg_tools.benchmark.harness import configure_threads, register_benchmark, write_results
from medseg_tools.benchmark.report import format_table
from medseg_tools.runner import bundle_dir
from monai.bundle import ConfigParser
from monai.transforms import Compose, RandomizableTrait

PRECISIONS = {"fp32": False, "auto": True}


@contextlib.contextmanager
def transform_timer(seconds: dict[str, float]) -> Iterator[None]:
    """Adds the seconds of every MONAI transform call (by class name; a random transform's name gets a ``*``) to
    ``seconds`` while active. It wraps MONAI's per-transform call, so nested ``Compose`` calls are not counted
    twice."""
    original = monai_transform._apply_transform

    def timed(transform: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(transform, Compose):
            return original(transform, *args, **kwargs)
        start = time.perf_counter()
        try:
            return original(transform, *args, **kwargs)
        finally:
            name = type(transform).__name__ + ("*" if isinstance(transform, RandomizableTrait) else "")
            seconds[name] += time.perf_counter() - start

    monai_transform._apply_transform = timed
    try:
        yield
    finally:
        monai_transform._apply_transform = original


def _between(engine: Any, start: Events, end: Events, total: dict[str, float], key: str) -> None:
    """Adds the time from each ``start`` to the next ``end`` event of ``engine`` to ``total[key]``."""
    began: list[float] = []
    engine.add_event_handler(start, lambda _: began.append(time.perf_counter()))
    engine.add_event_handler(end, lambda _: total.__setitem__(key, total[key] + time.perf_counter() - began.pop()))


def timed_epoch(bundle: str, amp: bool, overrides: Mapping[str, Any], config_files: Sequence[str] = ()) -> dict:
    """Builds ``bundle``'s training from its configs (``configs/train.json`` then ``config_files``) with ``overrides``,
    runs one epoch and returns its wall time split by stage (see the module docstring), in seconds."""
    root = bundle_dir(bundle)
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / "train.json"), *(str(root / f) for f in config_files)])
    with tempfile.TemporaryDirectory() as scratch:
        parser.update(
            {
                "bundle_root": str(root),
                "ckpt_dir": scratch,
                "log_dir": scratch,
                "output_dir": scratch,
                "resume": False,
                "early_stop_patience": 0,
                "val_interval": 1,
                **dict(overrides),
                "epochs": 1,
                "amp": amp,
            }
        )
        times: dict[str, float] = collections.defaultdict(float)
        start = time.perf_counter()
        parser.get_parsed_content("train#dataset")
        times["loading"] = time.perf_counter() - start
        trainer = parser.get_parsed_content("train#trainer")
        evaluator = parser.get_parsed_content("validate#evaluator")
        precision = parser.get_parsed_content("precision")
        _between(trainer, Events.GET_BATCH_STARTED, Events.GET_BATCH_COMPLETED, times, "batches")
        _between(trainer, Events.ITERATION_STARTED, Events.ITERATION_COMPLETED, times, "steps")
        _between(evaluator, Events.STARTED, Events.COMPLETED, times, "validation")
        start = time.perf_counter()
        trainer.run()
        times["epoch"] = time.perf_counter() - start
        times["other"] = times["epoch"] - times["batches"] - times["steps"] - times["validation"]
        return {"precision": precision.name, "iterations": trainer.state.iteration, **times}


@register_benchmark("epoch")
def epoch(
    bundle: str = "unet_em_segmentation",
    overrides: Mapping[str, Any] | None = None,
    config_files: Sequence[str] = (),
    repeats: int = 2,
    threads: int | None = None,
    json_out: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """One training epoch of ``bundle`` in fp32 (``amp`` false) and with ``amp`` on (bf16 where the CPU has it),
    ``repeats`` times each, alternating; medians per stage and the fp32/automatic ratio of the epoch time.

    Args:
        bundle: a bundle name under ``bundles/``.
        overrides: config overrides (e.g. ``{"features": [16, 32, 64, 128, 256], "train_ids": [0, 1]}``).
        config_files: overlays after ``train.json``, relative to the bundle (e.g. ``["configs/phc_cells.json"]``).
        repeats: epochs per precision.
        threads: torch threads (default: all cores).
        json_out: also write the results there.
        quiet: do not print the table.
    """
    threads = configure_threads(threads)
    runs: dict[str, list[dict]] = {name: [] for name in PRECISIONS}
    transforms_seconds: dict[str, float] = collections.defaultdict(float)
    with transform_timer(transforms_seconds):
        for _ in range(max(1, int(repeats))):
            for name, amp in PRECISIONS.items():
                runs[name].append(timed_epoch(bundle, amp, overrides or {}, config_files))
    stages = ("epoch", "loading", "batches", "steps", "validation", "other")
    medians = {name: {s: sorted(r[s] for r in rs)[len(rs) // 2] for s in stages} for name, rs in runs.items()}
    automatic = runs["auto"][0]["precision"]
    rows = [
        [stage, f"{medians['fp32'][stage]:.2f}", f"{medians['auto'][stage]:.2f}",
         f"{medians['fp32'][stage] / max(medians['auto'][stage], 1e-9):.2f}x"]
        for stage in stages
    ]  # fmt: skip
    results = {
        "bundle": bundle,
        "overrides": dict(overrides or {}),
        "threads": threads,
        "iterations": runs["fp32"][0]["iterations"],
        "automatic_precision": automatic,
        "median_seconds": medians,
        "epoch_speedup": medians["fp32"]["epoch"] / max(medians["auto"]["epoch"], 1e-9),
        "runs": runs,
        "transforms_seconds": dict(sorted(transforms_seconds.items(), key=lambda kv: -kv[1])),
    }
    if not quiet:
        print(f"{bundle}: one epoch ({results['iterations']} iterations), {threads} threads, median of {repeats}")
        print(format_table(rows, ["stage", "fp32 s", f"{automatic} s", "fp32 / " + automatic]))
        top = list(results["transforms_seconds"].items())[:8]
        print(format_table([[k, f"{v:.2f}"] for k, v in top], ["transform (* random)", "seconds, all runs"]))
    write_results(results, json_out, quiet=True)
    return results
