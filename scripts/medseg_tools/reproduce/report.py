"""The results of a reproduction as ``results.md`` tables and figures: metrics bars, training curves, overlay grid."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from medseg_tools.reproduce.samples import display_view, mask_path, read_mask
from medseg_tools.reproduce.spec import ReproductionSpec, describe_budget
from medseg_tools.scoring import segmentation_scores
from medseg_tools.visualize import overlay, to_display_gray


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
    if spec.reference_variant:
        lines += time_to_metric_lines(spec, results, spec.reference_variant)
    figures = ["metrics_bar.png", "training_curves.png", "time_to_metric.png", "overlay_grid.png"]
    if any(row.get("cost") for row in results["variants"]):
        figures.append("metric_against_cost.png")
    lines += ["Figures: " + ", ".join(f"`{name}`" for name in figures) + ".", ""]
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
    with_cost = any("cost" in row for row in rows)
    if with_cost:
        header += ["parameters (M)", "GFLOPs / image", "CPU s / image"]
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
        if with_cost:
            cells += cost_cells(row.get("cost"))
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
        lines.append("| " + " | ".join(cells + ["–", "–"] + (["–"] * 3 if with_cost else [])) + " |")
    return lines


def cost_cells(cost: Mapping | None) -> list[str]:
    """Parameters in millions, GFLOPs and CPU seconds of one image (see ``medseg_tools.reproduce.cost``)."""
    if not cost:
        return ["–"] * 3
    return [f"{cost['parameters'] / 1e6:.2f}", f"{cost['gflops']:.1f}", f"{cost['cpu_seconds']:.3f}"]


def plot_metric_against_cost(spec: ReproductionSpec, results: Mapping, path: Path) -> bool:
    """The key metric of every variant against its GFLOPs per image (marker area: parameters); ``False`` (and no
    file) when no variant has a cost."""
    rows = [row for row in results["variants"] if row.get("cost")]
    if not rows:
        return False
    plt = _pyplot()
    metric = spec.key_metric or spec.metrics[0]
    figure, axis = plt.subplots(figsize=(7, 5))
    for row in rows:
        cost, value = row["cost"], row["metrics"].get(metric, float("nan"))
        axis.scatter(cost["gflops"], value, s=20 + 15 * cost["parameters"] / 1e6, alpha=0.7)
        axis.annotate(row["name"], (cost["gflops"], value), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axis.set_xscale("log")
    axis.set_xlabel("GFLOPs per validation image (log scale)")
    axis.set_ylabel(spec.label(metric))
    axis.set_title(f"{spec.label(metric)} against cost (marker area: parameters)", fontsize=10)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


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
            axis.bar(index, 0 if math.isnan(value) else value, width=0.4, color=colours(index % 10), label=row["name"])
            paper_value = spec.paper.get(row["name"], {}).get(metric)
            if paper_value is not None:
                axis.bar(
                    index + 0.4,
                    paper_value,
                    width=0.4,
                    color=colours(index % 10),
                    alpha=0.45,
                    hatch="//",
                    edgecolor="black",
                )
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


def _save_curves_figure(plt, figure, axes: Sequence, path: Path) -> None:
    """Grid and legend on every axis of a curves figure, then the PNG."""
    for axis in axes:
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
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
    _save_curves_figure(plt, figure, (loss_axis, metric_axis), path)


def time_to_reach(curve: Sequence, target: float, lower_is_better: bool) -> float | None:
    """Seconds at which a ``(seconds, value)`` curve first reaches ``target``; ``None`` if it never does."""
    for seconds, value in curve:
        if (value <= target) if lower_is_better else (value >= target):
            return float(seconds)
    return None


def time_to_metric_lines(spec: ReproductionSpec, results: Mapping, reference: str) -> list[str]:
    """Markdown: for each trained variant, its best validation key metric and the minutes it took to reach the
    best value of the ``reference`` variant (e.g. the plain baseline), with the ratio of the two times."""
    key_metric = spec.key_metric or spec.metrics[0]
    lower = spec.is_lower_better(key_metric)
    curves = {row["name"]: row.get("time_curve") or [] for row in results["variants"] if not row["training_free"]}
    if not curves.get(reference):
        return []
    pick = min if lower else max
    target = pick(value for _, value in curves[reference])
    reference_time = time_to_reach(curves[reference], target, lower)
    lines = [
        f"Time to {spec.label(key_metric)} = {target:.4f} (the best validation value of the {reference}), "
        "minutes of training including validation passes:",
        "",
        f"| variant | best {spec.label(key_metric)} | minutes to {target:.4f} | speed-up against the {reference} |",
        "|---|---|---|---|",
    ]
    for name, curve in curves.items():
        if not curve:
            continue
        reached = time_to_reach(curve, target, lower)
        minutes = "not reached" if reached is None else f"{reached / 60:.1f}"
        ratio = "–" if reached is None or not reached else f"{reference_time / reached:.2f}x"
        lines.append(f"| {name} | {pick(v for _, v in curve):.4f} | {minutes} | {ratio} |")
    return lines + [""]


def plot_time_to_metric(spec: ReproductionSpec, results: Mapping, path: Path) -> None:
    """Validation key metric against minutes of training, one line per trained variant."""
    plt = _pyplot()
    key_metric = spec.key_metric or spec.metrics[0]
    figure, axis = plt.subplots(figsize=(6, 4))
    colours = plt.get_cmap("tab10")
    for index, row in enumerate(results["variants"]):
        curve = row.get("time_curve") or []
        if curve:
            seconds, values = zip(*curve)
            minutes = [s / 60.0 for s in seconds]
            axis.plot(minutes, values, marker="o", markersize=3, color=colours(index % 10), label=row["name"])
    axis.set(xlabel="minutes of training", ylabel=spec.label(key_metric), title=f"validation {spec.label(key_metric)}")
    _save_curves_figure(plt, figure, (axis,), path)


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
