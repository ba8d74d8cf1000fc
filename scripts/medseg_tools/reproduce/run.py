"""The reproduction: every variant of a spec trained (or segmented training-free), evaluated and recorded, under one
equal budget, then the table and the figures."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from medseg_tools.paths import in_repo
from medseg_tools.reproduce.baselines import TRAINING_FREE
from medseg_tools.reproduce.bundles import (
    _parent_exists,
    _plain,
    applicable_overrides,
    load_parser,
    read_metric_over_time,
    read_metrics_csv,
    read_training_curves,
    run_logged,
)
from medseg_tools.reproduce.report import (
    overlay_rows,
    plot_metric_against_cost,
    plot_metrics_bar,
    plot_overlay_grid,
    plot_time_to_metric,
    plot_training_curves,
    results_markdown,
)
from medseg_tools.reproduce.cost import network_cost
from medseg_tools.reproduce.samples import mask_path, read_mask, score_mask, validation_samples, write_mask
from medseg_tools.reproduce.spec import ReproductionSpec, Variant, check_budget, load_spec
from medseg_tools.runner import bundle_command
from monai.bundle import ConfigParser
from tqdm.auto import tqdm

logger = logging.getLogger("reproduce")

DONE_MARKER = "done.json"


def reproduction_command(
    bundle: str, spec: str, out_dir: Path, seed: int, epochs, minutes, variants, overrides, n_overlay: int
) -> str:
    command = ["python", "scripts/reproduce.py", str(bundle), str(spec), "--out_dir", str(out_dir), "--seed", str(seed)]
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    if minutes is not None:
        command += ["--minutes", str(minutes)]
    if variants:
        command += ["--variants", json.dumps(list(variants))]
    if overrides:
        command += ["--overrides", json.dumps(_plain(overrides))]
    if n_overlay != 3:
        command += ["--n_overlay", str(n_overlay)]
    return shlex.join(command)


# Variant fields added after results were recorded: they enter the fingerprint only when set, so that the finished
# variants of earlier runs still resume.
LATER_VARIANT_FIELDS = ("inference_configs",)


def _variant_settings(variant: Variant) -> dict:
    settings = asdict(variant)
    return {k: v for k, v in settings.items() if k not in LATER_VARIANT_FIELDS or v}


def _fingerprint(payload: Mapping) -> str:
    return hashlib.sha256(json.dumps(_plain(payload), sort_keys=True, default=str).encode()).hexdigest()[:16]


def training_overrides(
    spec: ReproductionSpec,
    variant: Variant,
    workdir: Path,
    seed: int,
    budget: Mapping,
    common: Mapping,
    resume: bool,
    parser: ConfigParser,
) -> dict:
    """Overrides of a variant's training run: its folders, the split, the seed and the budget."""
    overrides = {
        **common,
        **spec.split,
        "seed": seed,
        "ckpt_dir": workdir / "models",
        "output_dir": workdir / "train_eval",
        "log_dir": workdir / "runs",
        "resume": bool(resume),
        **variant.overrides,
    }
    if "epochs" in budget:
        overrides["epochs"] = budget["epochs"]
    if "minutes" in budget and "train_minutes" in parser:
        # the recipe has its own clock (StopAfterSeconds at "wall_time_stopper", which its schedule may follow)
        overrides["train_minutes"] = float(budget["minutes"])
    elif "minutes" in budget:
        if spec.trainer_id not in parser:
            raise ValueError(f"a wall-time budget needs the trainer at id {spec.trainer_id!r} (set 'trainer_id').")
        initialize = list(parser["initialize"]) if "initialize" in parser else []
        overrides["wall_time_stopper"] = {
            "_target_": "transforms.StopAfterSeconds",
            "seconds": float(budget["minutes"]) * 60.0,
            "elapsed_path": str(workdir / "models" / "elapsed_seconds.json"),
        }
        overrides["initialize"] = initialize + [f"$@wall_time_stopper.attach(@{spec.trainer_id})"]
    return overrides


def check_overrides(parser: ConfigParser, variant: Variant, overrides: Mapping) -> None:
    """Raises ``ValueError`` for overrides whose parent id is not in the training config (e.g. a typo)."""
    stray = [key for key in overrides if not _parent_exists(parser, key)]
    if stray:
        raise ValueError(
            f"variant {variant.name!r}: override(s) {stray} name ids whose parent is not in the "
            "bundle's training config."
        )


def run_trained_variant(
    bundle: str,
    spec: ReproductionSpec,
    variant: Variant,
    workdir: Path,
    seed: int,
    budget: Mapping,
    common: Mapping,
    resume: bool,
    samples: Sequence[Mapping],
) -> dict:
    """Trains, evaluates and segments the validation images with one variant; returns its record."""
    log = workdir / "bundle.log"
    train_configs = [*spec.configs, *variant.configs]
    train_parser = load_parser(bundle, train_configs)
    overrides = training_overrides(spec, variant, workdir, seed, budget, common, resume, train_parser)
    check_overrides(train_parser, variant, overrides)
    seconds = run_logged(bundle_command(bundle, train_configs, "training", overrides), log, f"{variant.name}: train")

    eval_configs = [*train_configs, *spec.evaluate_configs]
    eval_parser = load_parser(bundle, eval_configs)
    shared = {**common, **spec.split, "seed": seed, **variant.overrides}
    eval_overrides = applicable_overrides(
        eval_parser, {**shared, "ckpt_dir": workdir / "models", "output_dir": workdir / "eval"}
    )
    run_logged(bundle_command(bundle, eval_configs, None, eval_overrides), log, f"{variant.name}: evaluate", False)
    metrics = read_metrics_csv(workdir / "eval" / "metrics.csv")

    infer_configs = [*spec.inference_configs, *variant.inference_configs]
    infer_parser = load_parser(bundle, infer_configs)
    network_overrides = applicable_overrides(
        infer_parser, {**common, **variant.overrides, **variant.inference_overrides}
    )
    infer_overrides = dict(network_overrides)
    if "seed" in infer_parser:
        infer_overrides["seed"] = seed
    infer_overrides.update(
        {
            spec.image_id: [sample["image_path"] for sample in samples],
            spec.checkpoint_id: workdir / "models" / "model.pt",
            "output_dir": workdir / "predictions",
        }
    )
    run_logged(bundle_command(bundle, infer_configs, None, infer_overrides), log, f"{variant.name}: segment", False)
    if spec.score_from == "predictions":
        per_image = [
            score_mask(read_mask(mask_path(workdir / "predictions", s)), s["truth"], spec.metrics) for s in samples
        ]
        metrics = {m: float(np.mean([scores[m] for scores in per_image])) for m in spec.metrics}

    key_metric = spec.key_metric or spec.metrics[0]
    curves = read_training_curves(workdir / "runs", log, spec.loss_tag, key_metric)
    missing = [m for m in spec.metrics if m not in metrics]
    if missing:
        logger.warning("variant %s: metrics.csv has no %s (it has %s)", variant.name, missing, sorted(metrics))
    record = {
        "metrics": {m: metrics.get(m, float("nan")) for m in spec.metrics},
        "train_minutes": seconds / 60.0,
        "epochs_run": max([e for e, _ in curves["loss"]], default=0),
        "curves": curves,
    }
    if spec.cost:
        record["cost"] = network_cost(bundle, infer_configs, network_overrides, samples[0]["image"])
    return record


def run_training_free_variant(
    spec: ReproductionSpec, variant: Variant, workdir: Path, samples: Sequence[Mapping]
) -> dict:
    """Segments the preprocessed validation images with a :data:`TRAINING_FREE` method and scores them."""
    method = TRAINING_FREE[variant.training_free]
    predictions = workdir / "predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    per_image = []
    for sample in samples:
        mask = np.asarray(method(sample["image"]), dtype=bool)
        if mask.shape != sample["truth"].shape:
            raise ValueError(
                f"{variant.training_free} returned a {mask.shape} mask for a {sample['truth'].shape} image."
            )
        path = mask_path(predictions, sample)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mask(path, mask)
        per_image.append(score_mask(mask, sample["truth"], spec.metrics))
    metrics = {m: float(np.mean([scores[m] for scores in per_image])) for m in spec.metrics}
    return {"metrics": metrics, "train_minutes": 0.0, "epochs_run": 0, "curves": {}}


def reproduce(
    bundle: str,
    spec: str,
    out_dir: str = "outputs/reproduce",
    seed: int = 0,
    resume: bool = False,
    epochs: int | None = None,
    minutes: float | None = None,
    variants: Sequence[str] | str | None = None,
    overrides: Mapping[str, Any] | str | None = None,
    n_overlay: int = 3,
) -> dict:
    """Trains and evaluates every variant of a reproduction spec and writes the table and the figures.

    Args:
        bundle: bundle name in ``bundles/`` (e.g. ``unet_em_segmentation``) or its path.
        spec: spec name in ``bundles/<bundle>/configs/reproduce/`` (e.g. ``widths``) or a JSON file path.
        out_dir: folder of the results (relative paths are taken from the repository root).
        seed: passed to every bundle run (``--seed``) and used for any sampling here.
        resume: keep the finished variants (those with ``variants/<name>/done.json``) and continue an
            interrupted one from its last checkpoint; ``False`` starts every variant afresh.
        epochs / minutes: replace the spec's budget (equal for every variant).
        variants: names of the variants to run (default all).
        overrides: bundle overrides for every run, e.g. ``{"dataset_dir": "/data/isbi", "num_workers": 0}``.
        n_overlay: rows (validation images) of the overlay grid.

    Returns:
        the content of ``results.json``.
    """
    if isinstance(overrides, str):
        overrides = json.loads(overrides)
    common = dict(overrides or {})
    if isinstance(variants, str):
        variants = [variants]
    loaded = load_spec(bundle, spec)
    # --overrides win over the spec, so a quick check can shrink the split; results.md shows the one used
    loaded.split = {**loaded.split, **{key: common.pop(key) for key in list(loaded.split) if key in common}}
    budget = (
        check_budget({"epochs": epochs, "minutes": minutes}, "--epochs/--minutes")
        if (epochs is not None or minutes is not None)
        else loaded.budget
    )
    chosen = loaded.variants
    if variants:
        unknown = sorted(set(variants) - {v.name for v in loaded.variants})
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; the spec has {[v.name for v in loaded.variants]}.")
        chosen = [v for v in loaded.variants if v.name in set(variants)]
    out = in_repo(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.random.seed(seed)
    command = reproduction_command(bundle, spec, Path(out_dir), seed, epochs, minutes, variants, overrides, n_overlay)

    eval_parser = load_parser(bundle, [*loaded.configs, *loaded.evaluate_configs], {**common, **loaded.split})
    samples = validation_samples(eval_parser, loaded.datalist_id, loaded.preprocessing_id)

    records = []
    progress = tqdm(chosen, desc="variants", unit="variant", position=0)
    for variant in progress:
        progress.set_postfix_str(variant.name)
        workdir = out / "variants" / variant.slug
        marker = workdir / DONE_MARKER
        fingerprint = _fingerprint(
            {
                "variant": _variant_settings(variant),
                "budget": budget,
                "split": loaded.split,
                "seed": seed,
                "common": common,
                "configs": loaded.configs,
                "metrics": loaded.metrics,
            }
        )
        if resume and marker.is_file():
            record = json.loads(marker.read_text())
            if record.get("fingerprint") != fingerprint:
                raise ValueError(
                    f"variant {variant.name!r} in {workdir} was run with other settings; "
                    "run without --resume (or with another --out_dir) to start afresh."
                )
            logger.info("variant %s: finished earlier, skipped", variant.name)
            records.append({**record, "skipped": True})
            continue
        if not resume and workdir.exists():
            # a fresh run must not inherit the best-metric record or checkpoints of an older one
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        if variant.training_free:
            outcome = run_training_free_variant(loaded, variant, workdir, samples)
        else:
            outcome = run_trained_variant(bundle, loaded, variant, workdir, seed, budget, common, resume, samples)
        record = {
            "name": variant.name,
            "training_free": variant.training_free,
            "overrides": _plain(variant.overrides),
            **outcome,
            "predictions": str(workdir / "predictions"),
            "log": str(workdir / "bundle.log") if not variant.training_free else None,
            "fingerprint": fingerprint,
        }
        (workdir / (DONE_MARKER + ".tmp")).write_text(json.dumps(record, indent=2))
        os.replace(workdir / (DONE_MARKER + ".tmp"), marker)
        records.append({**record, "skipped": False})
    progress.close()
    key_metric = loaded.key_metric or loaded.metrics[0]
    slugs = {variant.name: variant.slug for variant in chosen}
    for record in records:
        if not record["training_free"]:
            # read again each time, so that variants finished by earlier (or parallel) runs get their curve too
            record["time_curve"] = read_metric_over_time(out / "variants" / slugs[record["name"]] / "runs", key_metric)

    results = {
        "title": loaded.title,
        "command": command,
        "bundle": str(bundle),
        "spec": loaded.source,
        "seed": seed,
        "budget": budget,
        "split": _plain(loaded.split),
        "n_validation": len(samples),
        "validation_ids": [_plain(s["id"]) for s in samples],
        "metrics": loaded.metrics,
        "paper": loaded.paper,
        "variants": records,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "results.md").write_text(results_markdown(loaded, results))
    plot_metrics_bar(loaded, results, out / "metrics_bar.png")
    plot_training_curves(loaded, results, out / "training_curves.png")
    plot_time_to_metric(loaded, results, out / "time_to_metric.png")
    plot_overlay_grid(results, samples, overlay_rows(len(samples), n_overlay, seed), out / "overlay_grid.png")
    plot_metric_against_cost(loaded, results, out / "metric_against_cost.png")
    logger.info("results in %s", out / "results.md")
    return results
