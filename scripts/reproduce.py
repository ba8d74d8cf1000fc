"""Reproduce a paper's comparison with a bundle: train and evaluate its variants under one equal budget.

    python scripts/reproduce.py unet_em_segmentation widths --out_dir outputs/reproduce/widths
    python scripts/reproduce.py unet_em_segmentation widths --epochs 2 --overrides '{"num_workers": 0}'
    python scripts/reproduce.py unet_em_segmentation widths --minutes 30    # equal wall time instead
    python scripts/reproduce.py unet_em_segmentation widths --resume True   # skip the finished variants

A reproduction is described by a JSON file, ``bundles/<bundle>/configs/reproduce/<name>.json``::

    {
      "title": "U-Net (2015): width and padding",
      "configs": ["train.json"],                 # training configs, merged in order (default)
      "split": {"train_ids": [0, 1], "val_ids": [20, 21]},
      "budget": {"epochs": 10},                  # and/or {"minutes": 30}: the same for every variant
      "metrics": ["val_mean_dice", "val_rand_error"],   # columns, as named in the bundle's metrics.csv
      "metric_labels": {"val_mean_dice": "Dice"},       # optional column titles
      "paper": {"U-Net": {"val_rand_error": 0.0382}},   # the paper's numbers, shown side by side
      "notes": "The paper's values come from the challenge's test set.",   # optional, under the table
      "tables": [                                # optional: several tables from one run (default: one table)
        {"title": "Table 1", "variants": ["U-Net", "Otsu threshold"]},
        {"title": "Table 2", "variants": ["U-Net", "U-Net, same padding"], "paper": {"U-Net": {"dice": 0.9}}}
      ],
      "variants": [
        {"name": "U-Net", "overrides": {"features": [64, 128, 256, 512, 1024]}},
        {"name": "U-Net, same padding", "overrides": {"padding": "same"}, "configs": []},
        {"name": "Otsu threshold", "training_free": "otsu"}
      ]
    }

Each trained variant is run through ``python -m monai.bundle`` (``scripts/bundle_runner.py``) three times:
``training`` with its own ``ckpt_dir`` / ``log_dir``, then ``evaluate.json`` on the validation ids (its
``metrics.csv`` gives the table), then ``inference.json`` on the validation images (masks for the overlay
grid). A variant's ``overrides`` apply to every stage where their parent id exists (``network_def#x`` is
skipped for a config without ``network_def``); ``configs`` are extra training config files. Training-free
variants (``TRAINING_FREE``, e.g. an Otsu threshold) segment the bundle's own preprocessed validation images
in this process and are scored with the same metric definitions (``transforms.metrics``).

Outputs in ``out_dir``: ``results.md`` (the table and the command reproducing it), ``results.json``,
``metrics_bar.png``, ``training_curves.png``, ``overlay_grid.png``, and ``variants/<name>/`` with each
variant's checkpoints, TensorBoard logs, evaluation, masks and full bundle log (``bundle.log``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fire
import numpy as np
from monai.bundle import ConfigParser
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bundle_runner import REPO_ROOT, bundle_command, bundle_dir, bundle_env, output_tail  # noqa: E402
from score_predictions import prediction_path, segmentation_scores  # noqa: E402
from visualize import overlay, to_display_gray  # noqa: E402

from transforms import common_input_root  # noqa: E402

logger = logging.getLogger("reproduce")

SPEC_FOLDER = Path("configs") / "reproduce"
DONE_MARKER = "done.json"
#: metric names of the bundles (``metrics.csv``) and the function of ``segmentation_scores`` that computes them
PYTHON_METRICS = {
    "val_class_mean_dice": "mean_dice",
    "val_mean_dice": "dice",
    "val_mean_iou": "iou",
    "val_pixel_error": "pixel_error",
    "val_rand_error": "rand_error",
    "dice": "dice",
    "mean_dice": "mean_dice",
    "iou": "iou",
    "pixel_error": "pixel_error",
    "rand_error": "rand_error",
    "val_accuracy": "accuracy",
    "val_sensitivity": "sensitivity",
    "val_specificity": "specificity",
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
}
LOWER_IS_BETTER_WORDS = ("error", "loss", "hausdorff", "distance", "hd95", "asd")
# MONAI's StatsHandler: "Epoch: 3/50, Iter: 7/20 -- train_loss: 0.6931"
ITERATION_LOG = re.compile(r"Epoch: (\d+)/(\d+), Iter: (\d+)/(\d+) -- (.*)")
# MONAI's StatsHandler on an evaluator: "Epoch[3] Metrics -- val_mean_dice: 0.8123 val_mean_iou: ..."
EPOCH_METRICS_LOG = re.compile(r"Epoch\[(\d+)\] Metrics -- (.*)")
NAME_VALUE = re.compile(r"([\w./-]+): (-?[\d.]+(?:[eE][-+]?\d+)?|nan|inf)")


# ---------------------------------------------------------------------------------------------------------------
# training-free baselines


def _as_gray(image: np.ndarray) -> np.ndarray:
    """2D float view of a channel-first ``[C, H, W]`` or plain ``[H, W]`` image (channels averaged)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image.mean(axis=0)
    if image.ndim != 2:
        raise ValueError(f"training-free baselines segment 2D images, got shape {image.shape}.")
    return image


def otsu_threshold(image: np.ndarray) -> np.ndarray:
    """Foreground = pixels brighter than Otsu's threshold (Otsu 1979: maximal between-class variance)."""
    from skimage.filters import threshold_otsu

    gray = _as_gray(image)
    if float(gray.max()) == float(gray.min()):
        return np.zeros(gray.shape, dtype=bool)
    return gray > threshold_otsu(gray)


def otsu_threshold_dark(image: np.ndarray) -> np.ndarray:
    """Foreground = pixels darker than Otsu's threshold (for dark objects on a bright background)."""
    gray = _as_gray(image)
    if float(gray.max()) == float(gray.min()):
        return np.zeros(gray.shape, dtype=bool)
    return ~otsu_threshold(gray)


#: name -> fn(image [C, H, W] or [H, W], preprocessed as in the bundle's validation) -> binary mask [H, W]
TRAINING_FREE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "otsu": otsu_threshold,
    "otsu_dark": otsu_threshold_dark,
}


# ---------------------------------------------------------------------------------------------------------------
# the reproduction spec


@dataclass
class Variant:
    """One row of the table: a bundle run with ``overrides`` (and extra config files) or a training-free method.

    ``configs`` are merged after the spec's training configs; they change the model or its training, not the
    data (the validation images are listed once, from the spec's configs). ``inference_overrides`` apply to the
    inference run only.
    """

    name: str
    overrides: dict = field(default_factory=dict)
    configs: list = field(default_factory=list)
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
    tables: list = field(default_factory=list)
    loss_tag: str = "train_loss"
    trainer_id: str = "train#trainer"
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
    spec.budget = check_budget(spec.budget, source)
    check_paper_values(spec.paper, source)
    spec.tables = [check_table(table, {v.name for v in variants}, source) for table in spec.tables]
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
    return " or ".join(parts) + " per variant, whichever ends first" if len(parts) > 1 else (
        f"{parts[0]} per variant" if parts else "the bundle's own number of epochs per variant"
    )


# ---------------------------------------------------------------------------------------------------------------
# bundle configs and runs


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


# ---------------------------------------------------------------------------------------------------------------
# validation images and training-free variants


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def validation_samples(parser: ConfigParser, datalist_id: str, preprocessing_id: str) -> list[dict]:
    """The validation items with the bundle's own preprocessing: ``{"id", "image_path", "input_root", "image",
    "truth"}``.

    ``image`` is channel-first as the network sees it, ``truth`` the binary foreground [H, W] the bundle
    scores against (label > 0, or its argmax for a one-hot label). ``image_path`` is absolute (the bundle runs
    in another working directory) and ``input_root`` the common folder of all of them, below which inference.json
    keeps the inputs' sub-folders (``set29/raw_mask.png``): see :func:`mask_path`.
    """
    datalist = parser.get_parsed_content(datalist_id)
    preprocessing = parser.get_parsed_content(preprocessing_id)
    samples = []
    for index, item in enumerate(datalist):
        data = preprocessing(dict(item))
        label = _to_numpy(data["label"])
        truth = label[0] > 0 if label.shape[0] == 1 else label.argmax(axis=0) > 0
        samples.append(
            {"id": item.get("id", index), "image_path": os.path.abspath(item["image"]),
             "image": _to_numpy(data["image"]), "truth": truth}
        )
    if not samples:
        raise ValueError(f"the validation split ({datalist_id}) is empty.")
    input_root = common_input_root([sample["image_path"] for sample in samples])
    return [{**sample, "input_root": input_root} for sample in samples]


def score_mask(mask: np.ndarray, truth: np.ndarray, metrics: Sequence[str]) -> dict[str, float]:
    """The table's metrics of one binary mask, with the bundles' definitions; NaN for a metric not known here."""
    scores = segmentation_scores(mask, truth)
    return {name: scores[PYTHON_METRICS[name]] if name in PYTHON_METRICS else float("nan") for name in metrics}


def mask_path(predictions: Path, sample: Mapping) -> Path:
    """Mask file of a validation sample where inference.json writes it: ``NAME_mask.png`` in the image's
    sub-folder below the common input folder (phase-contrast images are all called ``setN/raw.tif``)."""
    return prediction_path(predictions, sample["image_path"], sample["input_root"], "mask")


def write_mask(path: Path, mask: np.ndarray) -> None:
    """Saves a [H, W] mask indexed as MONAI's readers index it, as a 0/255 PNG the right way up."""
    from monai.data import PILWriter

    writer = PILWriter(output_dtype=np.uint8, scale=None)
    writer.set_data_array(np.asarray(mask, dtype=np.uint8) * 255, channel_dim=None)
    writer.write(str(path))


def read_mask(path: Path) -> np.ndarray:
    """Binary mask of a bundle's ``NAME_mask.png``, indexed like the bundle's (PIL) reader indexes the labels."""
    from monai.transforms import LoadImage

    if not path.is_file():
        raise FileNotFoundError(f"expected the mask {path}; did the inference run?")
    mask = np.asarray(LoadImage(reader="PILReader", image_only=True)(str(path)))
    return (mask[..., 0] if mask.ndim == 3 else mask) > 0


def display_view(array: np.ndarray) -> np.ndarray:
    """The picture as stored in its file: MONAI's PIL/ITK readers index 2D images (x, y), i.e. transposed."""
    return np.swapaxes(np.asarray(array), 0, 1)


# ---------------------------------------------------------------------------------------------------------------
# reports


def _format(value: float | None, bold: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:.4f}"
    return f"**{text}**" if bold else text


def results_markdown(spec: ReproductionSpec, results: Mapping) -> str:
    """The tables (one, or the spec's ``tables``): one row per variant (and per paper-only entry), metric
    columns with the paper's values."""
    lines = [
        f"# {spec.title}",
        "",
        "Reproduce with:",
        "",
        "```bash",
        results["command"],
        "```",
        "",
        f"Bundle `{results['bundle']}`, spec `{results['spec']}`, seed {results['seed']}; "
        f"budget: {describe_budget(results['budget'])}.",
        f"Split: training ids {results['split'].get('train_ids', 'as in the bundle')}, "
        f"{results['n_validation']} validation image(s) {results['validation_ids']}. "
        "Metrics are means over the validation images; best in bold.",
        "",
    ]
    rows_by_name = {row["name"]: row for row in results["variants"]}
    if spec.tables:
        for table in spec.tables:
            rows = [rows_by_name[name] for name in table["variants"] if name in rows_by_name]
            lines += [f"## {table['title']}", ""]
            lines += table_lines(spec, rows, table["paper"] or spec.paper) + [""]
    else:
        lines += table_lines(spec, results["variants"], spec.paper) + [""]
    if spec.notes:
        lines += [spec.notes, ""]
    lines += ["Figures: `metrics_bar.png`, `training_curves.png`, `overlay_grid.png`.", ""]
    return "\n".join(lines)


def table_lines(spec: ReproductionSpec, rows: Sequence[Mapping], paper: Mapping) -> list[str]:
    """A markdown table of ``rows`` with ``paper``'s values beside each metric they give."""
    paper_metrics = {m for values in paper.values() for m in values}
    best = {}
    for metric in spec.metrics:
        values = [r["metrics"].get(metric) for r in rows]
        values = [v for v in values if v is not None and not math.isnan(v)]
        if len(values) > 1:
            best[metric] = min(values) if spec.is_lower_better(metric) else max(values)
    header = ["variant"]
    for metric in spec.metrics:
        arrow = "↓" if spec.is_lower_better(metric) else "↑"
        header.append(f"{spec.label(metric)} {arrow}")
        if metric in paper_metrics:
            header.append(f"{spec.label(metric)} (paper)")
    header += ["train min", "epochs"]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for row in rows:
        cells = [row["name"]]
        for metric in spec.metrics:
            value = row["metrics"].get(metric)
            cells.append(_format(value, bold=metric in best and value == best[metric]))
            if metric in paper_metrics:
                cells.append(_format(paper.get(row["name"], {}).get(metric)))
        minutes = row.get("train_minutes")
        cells.append("–" if row["training_free"] else f"{minutes:.1f}")
        cells.append("–" if row["training_free"] else str(row.get("epochs_run", "–")))
        lines.append("| " + " | ".join(cells) + " |")
    names = {row["name"] for row in rows}
    for name, values in paper.items():
        if name in names:
            continue
        cells = [f"{name} (paper)"]
        for metric in spec.metrics:
            cells.append("–")
            if metric in paper_metrics:
                cells.append(_format(values.get(metric)))
        lines.append("| " + " | ".join(cells + ["–", "–"]) + " |")
    return lines


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics_bar(spec: ReproductionSpec, results: Mapping, path: Path) -> None:
    """One panel per metric; a bar per variant, the paper's value as a hatched bar beside it."""
    plt = _pyplot()
    rows = results["variants"]
    colours = plt.get_cmap("tab10")
    figure, axes = plt.subplots(1, len(spec.metrics), figsize=(3.2 * len(spec.metrics) + 1, 4), squeeze=False)
    for axis, metric in zip(axes[0], spec.metrics):
        positions, labels = [], []
        for index, row in enumerate(rows):
            value = row["metrics"].get(metric, float("nan"))
            axis.bar(index, 0 if math.isnan(value) else value, width=0.4, color=colours(index % 10),
                     label=row["name"])
            paper_value = spec.paper.get(row["name"], {}).get(metric)
            if paper_value is not None:
                axis.bar(index + 0.4, paper_value, width=0.4, color=colours(index % 10), alpha=0.45, hatch="//",
                         edgecolor="black")
            positions.append(index + 0.2)
            labels.append(row["name"])
        names = {row["name"] for row in rows}
        for name, values in spec.paper.items():
            if name not in names and values.get(metric) is not None:
                positions.append(len(positions) + 0.2)
                axis.bar(positions[-1], values[metric], width=0.4, color="0.6", hatch="//", edgecolor="black")
                labels.append(f"{name} (paper)")
        axis.set_xticks(positions)
        axis.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        arrow = "lower is better" if spec.is_lower_better(metric) else "higher is better"
        axis.set_title(f"{spec.label(metric)} ({arrow})", fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    if spec.paper:
        figure.text(0.01, 0.01, "hatched: the paper's value", fontsize=8)
    figure.suptitle(spec.title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_training_curves(spec: ReproductionSpec, results: Mapping, path: Path) -> None:
    """Training loss and validation key metric per epoch of every trained variant."""
    plt = _pyplot()
    key_metric = spec.key_metric or spec.metrics[0]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 4))
    colours = plt.get_cmap("tab10")
    for index, row in enumerate(results["variants"]):
        curves = row.get("curves") or {}
        for axis, key in ((loss_axis, "loss"), (metric_axis, "metric")):
            points = curves.get(key) or []
            if points:
                epochs, values = zip(*points)
                axis.plot(epochs, values, marker="o", markersize=3, color=colours(index % 10), label=row["name"])
    loss_axis.set(xlabel="epoch", ylabel=f"mean {spec.loss_tag}", title="training loss")
    metric_axis.set(xlabel="epoch", ylabel=spec.label(key_metric), title=f"validation {spec.label(key_metric)}")
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def overlay_rows(n_samples: int, n_rows: int, seed: int) -> list[int]:
    """Indices of the validation images shown in the overlay grid: all, or ``n_rows`` drawn with ``seed``."""
    if n_rows < 1:
        raise ValueError(f"the overlay grid needs at least one row, got n_overlay={n_rows}.")
    if n_samples <= n_rows:
        return list(range(n_samples))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n_samples, size=n_rows, replace=False))


def plot_overlay_grid(results: Mapping, samples: Sequence[Mapping], rows: Sequence[int], path: Path) -> None:
    """Rows = validation images; columns = image, ground truth, each variant's mask over the image.

    Variant masks are coloured against the ground truth: green agreement, red false positive, blue missed.
    """
    plt = _pyplot()
    variants = results["variants"]
    columns = 2 + len(variants)
    figure, axes = plt.subplots(len(rows), columns, figsize=(2.4 * columns, 2.5 * len(rows) + 0.4), squeeze=False)
    for r, index in enumerate(rows):
        sample = samples[index]
        image = sample["image"][0] if sample["image"].ndim == 3 else sample["image"]
        truth = sample["truth"]
        cells = [(to_display_gray(image), "image"), (overlay(image, truth), "ground truth")]
        for variant in variants:
            mask = read_mask(mask_path(Path(variant["predictions"]), sample))
            dice = segmentation_scores(mask, truth)["dice"]
            cells.append((overlay(image, mask, truth), f"{variant['name']}\nDice {dice:.3f}"))
        cells = [(display_view(picture), title) for picture, title in cells]
        for c, (picture, title) in enumerate(cells):
            axis = axes[r][c]
            axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_title(title if r == 0 or c >= 2 else "", fontsize=8)
        axes[r][0].set_ylabel(f"id {sample['id']}", fontsize=8)
    figure.suptitle("masks over validation images: green agreement, red false positive, blue missed", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------------------------
# the reproduction


def reproduction_command(bundle: str, spec: str, out_dir: Path, seed: int, epochs, minutes, variants, overrides,
                         n_overlay: int) -> str:
    command = ["python", "scripts/reproduce.py", str(bundle), str(spec), "--out_dir", str(out_dir),
               "--seed", str(seed)]
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


def _fingerprint(payload: Mapping) -> str:
    return hashlib.sha256(json.dumps(_plain(payload), sort_keys=True, default=str).encode()).hexdigest()[:16]


def training_overrides(spec: ReproductionSpec, variant: Variant, workdir: Path, seed: int, budget: Mapping,
                       common: Mapping, resume: bool, parser: ConfigParser) -> dict:
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
    if "minutes" in budget:
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
        raise ValueError(f"variant {variant.name!r}: override(s) {stray} name ids whose parent is not in the "
                         "bundle's training config.")


def run_trained_variant(bundle: str, spec: ReproductionSpec, variant: Variant, workdir: Path, seed: int,
                        budget: Mapping, common: Mapping, resume: bool, input_images: Sequence[str]) -> dict:
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

    infer_parser = load_parser(bundle, spec.inference_configs)
    infer_overrides = applicable_overrides(infer_parser, {**common, **variant.overrides, **variant.inference_overrides})
    if "seed" in infer_parser:
        infer_overrides["seed"] = seed
    infer_overrides.update({
        spec.image_id: list(input_images),
        spec.checkpoint_id: workdir / "models" / "model.pt",
        "output_dir": workdir / "predictions",
    })
    run_logged(bundle_command(bundle, spec.inference_configs, None, infer_overrides), log,
               f"{variant.name}: segment", False)

    key_metric = spec.key_metric or spec.metrics[0]
    curves = read_training_curves(workdir / "runs", log, spec.loss_tag, key_metric)
    missing = [m for m in spec.metrics if m not in metrics]
    if missing:
        logger.warning("variant %s: metrics.csv has no %s (it has %s)", variant.name, missing, sorted(metrics))
    return {
        "metrics": {m: metrics.get(m, float("nan")) for m in spec.metrics},
        "train_minutes": seconds / 60.0,
        "epochs_run": max([e for e, _ in curves["loss"]], default=0),
        "curves": curves,
    }


def run_training_free_variant(spec: ReproductionSpec, variant: Variant, workdir: Path,
                              samples: Sequence[Mapping]) -> dict:
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
    budget = check_budget({"epochs": epochs, "minutes": minutes}, "--epochs/--minutes") if (
        epochs is not None or minutes is not None) else loaded.budget
    chosen = loaded.variants
    if variants:
        unknown = sorted(set(variants) - {v.name for v in loaded.variants})
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; the spec has {[v.name for v in loaded.variants]}.")
        chosen = [v for v in loaded.variants if v.name in set(variants)]
    out = Path(out_dir) if Path(out_dir).is_absolute() else REPO_ROOT / out_dir
    out.mkdir(parents=True, exist_ok=True)
    np.random.seed(seed)
    command = reproduction_command(bundle, spec, Path(out_dir), seed, epochs, minutes, variants, overrides,
                                   n_overlay)

    eval_parser = load_parser(bundle, [*loaded.configs, *loaded.evaluate_configs], {**common, **loaded.split})
    samples = validation_samples(eval_parser, loaded.datalist_id, loaded.preprocessing_id)
    input_images = [sample["image_path"] for sample in samples]

    records = []
    progress = tqdm(chosen, desc="variants", unit="variant", position=0)
    for variant in progress:
        progress.set_postfix_str(variant.name)
        workdir = out / "variants" / variant.slug
        marker = workdir / DONE_MARKER
        fingerprint = _fingerprint({
            "variant": asdict(variant), "budget": budget, "split": loaded.split, "seed": seed, "common": common,
            "configs": loaded.configs, "metrics": loaded.metrics,
        })
        if resume and marker.is_file():
            record = json.loads(marker.read_text())
            if record.get("fingerprint") != fingerprint:
                raise ValueError(f"variant {variant.name!r} in {workdir} was run with other settings; "
                                 "run without --resume (or with another --out_dir) to start afresh.")
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
            outcome = run_trained_variant(bundle, loaded, variant, workdir, seed, budget, common, resume,
                                          input_images)
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
    plot_overlay_grid(results, samples, overlay_rows(len(samples), n_overlay, seed), out / "overlay_grid.png")
    logger.info("results in %s", out / "results.md")
    return results


def main(
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
) -> str:
    """Trains and evaluates the variants of a reproduction spec; prints the table, returns ``results.md``'s path.

    Args:
        bundle: bundle name in ``bundles/`` (e.g. ``unet_em_segmentation``) or its path.
        spec: spec name in ``bundles/<bundle>/configs/reproduce/`` (e.g. ``widths``) or a JSON file path.
        out_dir: folder of the results (relative paths are taken from the repository root).
        seed: passed to every bundle run and used for any sampling here.
        resume: keep finished variants and continue an interrupted one; False starts every variant afresh.
        epochs: replaces the spec's budget with this many epochs per variant.
        minutes: replaces the spec's budget with this wall time per variant (with --epochs: whichever first).
        variants: names of the variants to run, e.g. '["U-Net 1/4 width, valid padding"]' (default all).
        overrides: bundle overrides for every run, e.g. '{"dataset_dir": "/data/isbi", "num_workers": 0}'.
        n_overlay: rows (validation images) of the overlay grid.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    reproduce(bundle, spec, out_dir, seed, resume, epochs, minutes, variants, overrides, n_overlay)
    table = (Path(out_dir) if Path(out_dir).is_absolute() else REPO_ROOT / out_dir) / "results.md"
    print(table.read_text())
    return str(table)


if __name__ == "__main__":
    fire.Fire(main)
