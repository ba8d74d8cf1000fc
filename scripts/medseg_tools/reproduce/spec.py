"""The reproduction spec (``bundles/<bundle>/configs/reproduce/<name>.json``): its variants, tables and budget."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from medseg_tools.reproduce.baselines import TRAINING_FREE
from medseg_tools.runner import bundle_dir

LOWER_IS_BETTER_WORDS = ("error", "loss", "hausdorff", "distance", "hd95", "asd")
SPEC_FOLDER = Path("configs") / "reproduce"
# "evaluate": the table's metrics are those evaluate.json writes; "predictions": every variant's saved masks are
# scored here with one definition (medseg_tools.scoring), so bundles and networks are compared alike
SCORE_SOURCES = ("evaluate", "predictions")


@dataclass
class Variant:
    """One row of the table: a bundle run with ``overrides`` (and extra config files) or a training-free method.

    ``configs`` are merged after the spec's training configs; they change the model or its training, not the
    data (the validation images are listed once, from the spec's configs). ``inference_configs`` are merged after
    the spec's inference configs (e.g. ``family.json``, which swaps the network in both), and
    ``inference_overrides`` apply to the inference run only.
    """

    name: str
    overrides: dict = field(default_factory=dict)
    configs: list = field(default_factory=list)
    inference_configs: list = field(default_factory=list)
    inference_overrides: dict = field(default_factory=dict)
    training_free: str | None = None

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_") or "variant"


@dataclass
class ReproductionSpec:
    """A table to reproduce: the variants, their common split and budget, the metrics and the paper's values."""

    title: str
    variants: list
    metrics: list
    split: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)
    configs: list = field(default_factory=lambda: ["train.json"])
    evaluate_configs: list = field(default_factory=lambda: ["evaluate.json"])
    inference_configs: list = field(default_factory=lambda: ["inference.json"])
    metric_labels: dict = field(default_factory=dict)
    lower_is_better: list | None = None
    paper: dict = field(default_factory=dict)
    notes: str = ""
    key_metric: str | None = None
    reference_variant: str | None = None
    tables: list = field(default_factory=list)
    loss_tag: str = "train_loss"
    trainer_id: str = "train#trainer"
    score_from: str = "evaluate"
    cost: bool = False
    datalist_id: str = "validate#datalist"
    preprocessing_id: str = "validate#preprocessing"
    image_id: str = "input_images"
    checkpoint_id: str = "ckpt_path"
    source: str = ""

    def label(self, metric: str) -> str:
        return self.metric_labels.get(metric, metric)

    def is_lower_better(self, metric: str) -> bool:
        if self.lower_is_better is not None:
            return metric in self.lower_is_better
        return any(word in metric.lower() for word in LOWER_IS_BETTER_WORDS)


SPEC_KEYS = {f for f in ReproductionSpec.__dataclass_fields__ if f != "source"}
VARIANT_KEYS = set(Variant.__dataclass_fields__)


def spec_path(bundle: str | os.PathLike, spec: str | os.PathLike) -> Path:
    """The spec file: a path, or a name in ``bundles/<bundle>/configs/reproduce/`` (``.json`` optional)."""
    path = Path(spec)
    if path.is_file():
        return path.resolve()
    folder = bundle_dir(bundle) / SPEC_FOLDER
    for candidate in (folder / str(spec), folder / f"{spec}.json"):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    raise FileNotFoundError(f"no reproduction spec {str(spec)!r} for bundle {bundle!r}; known: {known}")


def parse_spec(raw: Mapping, source: str = "<dict>") -> ReproductionSpec:
    """Checks a spec dict (see the module docstring) and returns it as a :class:`ReproductionSpec`."""
    unknown = set(raw) - SPEC_KEYS
    if unknown:
        raise ValueError(f"{source}: unknown keys {sorted(unknown)}; expected some of {sorted(SPEC_KEYS)}.")
    for required in ("title", "variants", "metrics"):
        if not raw.get(required):
            raise ValueError(f"{source}: {required!r} is missing or empty.")
    variants = []
    for index, entry in enumerate(raw["variants"]):
        if not isinstance(entry, Mapping) or not entry.get("name"):
            raise ValueError(f"{source}: variant {index} needs a 'name'.")
        extra = set(entry) - VARIANT_KEYS
        if extra:
            raise ValueError(f"{source}: variant {entry['name']!r} has unknown keys {sorted(extra)}.")
        variant = Variant(**entry)
        if variant.training_free is not None and variant.training_free not in TRAINING_FREE:
            raise ValueError(
                f"{source}: variant {variant.name!r} asks for training-free method {variant.training_free!r}; "
                f"known: {sorted(TRAINING_FREE)}."
            )
        variants.append(variant)
    slugs = [v.slug for v in variants]
    duplicated = sorted({v.name for v in variants if slugs.count(v.slug) > 1})
    if duplicated:
        raise ValueError(f"{source}: variant names must differ (as folder names): {duplicated}.")
    if not isinstance(raw["metrics"], (list, tuple)) or not all(isinstance(m, str) for m in raw["metrics"]):
        raise ValueError(f"{source}: 'metrics' must be a list of metric names, got {raw['metrics']!r}.")
    spec = ReproductionSpec(**{**raw, "variants": variants, "source": source})
    if spec.score_from not in SCORE_SOURCES:
        raise ValueError(f"{source}: score_from must be one of {SCORE_SOURCES}, got {spec.score_from!r}.")
    spec.budget = check_budget(spec.budget, source)
    check_paper_values(spec.paper, source)
    spec.tables = [check_table(table, {v.name for v in variants}, source) for table in spec.tables]
    if spec.reference_variant is not None and spec.reference_variant not in {v.name for v in variants}:
        raise ValueError(f"{source}: reference_variant {spec.reference_variant!r} is not one of the variants.")
    return spec


def check_paper_values(paper: Mapping, source: str) -> None:
    for name, values in paper.items():
        if not isinstance(values, Mapping):
            raise ValueError(f"{source}: paper values of {name!r} must map metric names to numbers.")


def check_table(table: Mapping, variant_names: set, source: str) -> dict:
    """A ``tables`` entry: ``title``, ``variants`` (names of the spec's variants) and optional ``paper`` values
    replacing the spec's for that table (a model scored differently in two of the paper's tables)."""
    if not isinstance(table, Mapping) or not table.get("title") or not table.get("variants"):
        raise ValueError(f"{source}: every entry of 'tables' needs a 'title' and a list of 'variants'.")
    extra = set(table) - {"title", "variants", "paper"}
    if extra:
        raise ValueError(f"{source}: table {table['title']!r} has unknown keys {sorted(extra)}.")
    missing = [name for name in table["variants"] if name not in variant_names]
    if missing:
        raise ValueError(f"{source}: table {table['title']!r} lists unknown variants {missing}.")
    check_paper_values(table.get("paper", {}), source)
    return {"title": table["title"], "variants": list(table["variants"]), "paper": dict(table.get("paper", {}))}


def load_spec(bundle: str | os.PathLike, spec: str | os.PathLike) -> ReproductionSpec:
    path = spec_path(bundle, spec)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    return parse_spec(raw, source=str(path))


def check_budget(budget: Mapping | None, source: str = "budget") -> dict:
    """``{"epochs": int > 0}`` and/or ``{"minutes": float > 0}``; an empty budget keeps the bundle's epochs."""
    budget = dict(budget or {})
    unknown = set(budget) - {"epochs", "minutes"}
    if unknown:
        raise ValueError(f"{source}: unknown budget keys {sorted(unknown)}; use 'epochs' and/or 'minutes'.")
    epochs, minutes = budget.get("epochs"), budget.get("minutes")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"{source}: budget epochs must be an integer >= 1, got {epochs!r}.")
    if minutes is not None and not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"{source}: budget minutes must be a number > 0, got {minutes!r}.")
    return {key: value for key, value in budget.items() if value is not None}


def describe_budget(budget: Mapping) -> str:
    parts = []
    if "epochs" in budget:
        parts.append(f"{budget['epochs']} epoch(s)")
    if "minutes" in budget:
        parts.append(f"{budget['minutes']:g} min of wall time")
    return (
        " or ".join(parts) + " per variant, whichever ends first"
        if len(parts) > 1
        else (f"{parts[0]} per variant" if parts else "the bundle's own number of epochs per variant")
    )
