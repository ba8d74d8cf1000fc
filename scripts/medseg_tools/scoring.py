"""Score saved predictions of a bundle against a labelled folder, and draw overlays.

    python scripts/score_predictions.py PREDICTIONS_DIR DATASET_DIR --layout isbi --ids "[20,21,22,23]"

Reads ``NAME_mask.png`` (and ``NAME_prob.png`` when present) written by a bundle's ``inference.json``,
writes ``metrics.csv`` / ``metrics.md`` (Dice, IoU, pixel error, Rand error per image and their mean) and
overlay PNGs. With probability maps it also reports the ISBI 2012 challenge's protocol: the best mean
score over probability thresholds, since a class-weighted loss shifts the calibrated 0.5 threshold.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from medseg_tools.visualize import save_overlay

from transforms import InstancesToForegroundWithBorders, common_input_root, folder_datalist, read_image_array
from transforms.metrics import confusion_scores, dice_score, iou_score, pixel_error, rand_error

METRICS = ("dice", "iou", "pixel_error", "rand_error")
LOWER_IS_BETTER = {"pixel_error", "rand_error"}
THRESHOLDS = tuple(np.round(np.arange(0.1, 0.95, 0.1), 2))


def segmentation_scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice and IoU of the foreground, Dice averaged over background and foreground, pixel error,
    foreground-restricted Rand error, and the foreground's pixel accuracy, sensitivity and specificity (an empty
    denominator gives 1, as the bundles' ``ConfusionScore``) of one binary mask."""
    prediction, truth = np.asarray(prediction) > 0, np.asarray(truth) > 0
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and label {truth.shape} differ in size.")
    batch_pred, batch_true = prediction[None, None], truth[None, None]
    cell_dice = float(dice_score(batch_pred, batch_true)[0, 0])
    background_dice = float(dice_score(~batch_pred, ~batch_true)[0, 0])
    confusion = confusion_scores(batch_pred, batch_true, ("accuracy", "sensitivity", "specificity"))
    return {
        "dice": cell_dice,
        "mean_dice": (cell_dice + background_dice) / 2,  # the U-Net bundle's val_class_mean_dice
        "iou": float(iou_score(batch_pred, batch_true)[0, 0]),
        "pixel_error": pixel_error(prediction, truth),
        "rand_error": rand_error(prediction, truth),
        **{name: float(value[0, 0]) for name, value in confusion.items()},
    }


def skimage_rand_error(prediction: np.ndarray, truth: np.ndarray) -> float:
    """scikit-image's ``adapted_rand_error`` on the 4-connected components of two binary cell masks, true
    background (membrane) ignored: the definition of the issue tracker's held-out checks. It differs from
    :func:`transforms.metrics.rand_error` (the ISBI 2012 challenge's, after Arganda-Carreras et al. 2015) in one
    place: pixels predicted as membrane inside true cells form ONE segment here (a merge of all the cells they lie
    in), where the challenge's code counts each as its own segment (a split). On whole ISBI images, where such
    pixels lie in many cells, this definition gives the larger error (see the U-Net bundle's docs).
    """
    from scipy import ndimage
    from skimage.metrics import adapted_rand_error

    four_connected = ndimage.generate_binary_structure(2, 1)
    true_cells = ndimage.label(np.asarray(truth) > 0, structure=four_connected)[0]
    predicted_cells = ndimage.label(np.asarray(prediction) > 0, structure=four_connected)[0]
    return float(adapted_rand_error(true_cells, predicted_cells, ignore_labels=(0,))[0])


def prediction_path(prediction_dir: Path, image: str, input_root: str, suffix: str) -> Path:
    """Where inference.json saved the output of ``image``: below ``prediction_dir`` in the image's sub-folder
    relative to the common input folder (inputs sharing a name, like Usiigaci's ``setN/raw.tif``), or flat."""
    relative = Path(os.path.relpath(image, input_root))
    name = f"{relative.stem}_{suffix}.png"
    candidates = [prediction_dir / relative.parent / name, prediction_dir / Path(image).parent.name / name]
    candidates.append(prediction_dir / name)
    return next((path for path in candidates if path.is_file()), candidates[0])


def score_folder(
    prediction_dir: str | Path,
    dataset_dir: str | Path,
    layout: str = "isbi",
    ids: Sequence | str | None = None,
    overlay_dir: str | Path | None = None,
    sweep_thresholds: bool = True,
    label_kind: str = "auto",
) -> dict:
    """Per-image scores of the masks in ``prediction_dir`` and, with probability maps, a threshold sweep.

    ``label_kind``: ``"binary"`` (nonzero = foreground), ``"instances"`` (instance ids, turned into foreground
    with separation borders exactly as the bundles' training targets) or ``"auto"`` (instances for the phc layout).

    Returns ``{"rows": [...], "mean": {...}, "best_threshold": {metric: (threshold, mean value)} or None}``.
    """
    prediction_dir = Path(prediction_dir)
    datalist = folder_datalist(dataset_dir, layout=layout, ids=ids)
    input_root = common_input_root([item["image"] for item in datalist])
    if label_kind == "auto":
        label_kind = "instances" if layout == "phc" else "binary"
    if label_kind not in ("binary", "instances"):
        raise ValueError(f"label_kind must be 'binary', 'instances' or 'auto', got {label_kind!r}.")
    to_foreground = InstancesToForegroundWithBorders()
    rows, probabilities, truths = [], [], []
    for item in datalist:
        mask_path = prediction_path(prediction_dir, item["image"], input_root, "mask")
        if not mask_path.is_file():
            raise FileNotFoundError(f"no prediction for {item['image']}: expected {mask_path}.")
        prediction = read_image_array(mask_path) > 0
        label = read_image_array(item["label"])
        truth = np.asarray(to_foreground(label[None]))[0] > 0 if label_kind == "instances" else label > 0
        rows.append({"image": Path(item["image"]).parent.name if layout == "phc" else Path(item["image"]).stem})
        scores = segmentation_scores(prediction, truth)
        rows[-1].update({name: scores[name] for name in METRICS})
        if overlay_dir is not None:
            Path(overlay_dir).mkdir(parents=True, exist_ok=True)
            save_overlay(
                Path(overlay_dir) / f"{rows[-1]['image']}_overlay.png",
                read_image_array(item["image"]),
                prediction,
                truth,
            )
        prob_path = prediction_path(prediction_dir, item["image"], input_root, "prob")
        if sweep_thresholds and prob_path.is_file():
            probabilities.append(read_image_array(prob_path).astype(np.float32) / 65535.0)
            truths.append(truth)
    mean = {name: float(np.mean([row[name] for row in rows])) for name in METRICS}
    best = None
    if probabilities and len(probabilities) == len(rows):
        per_threshold = {t: [segmentation_scores(p > t, y) for p, y in zip(probabilities, truths)] for t in THRESHOLDS}
        best = {}
        for name in METRICS:
            by_threshold = {t: float(np.mean([scores[name] for scores in per_threshold[t]])) for t in THRESHOLDS}
            pick = min if name in LOWER_IS_BETTER else max
            threshold = pick(by_threshold, key=by_threshold.get)
            best[name] = (float(threshold), by_threshold[threshold])
    return {"rows": rows, "mean": mean, "best_threshold": best}


def write_report(scores: dict, out_dir: str | Path, title: str) -> str:
    """``metrics.csv`` and ``metrics.md`` in ``out_dir``; returns the markdown."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, mean = scores["rows"], scores["mean"]
    with open(out_dir / "metrics.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["image", *METRICS])
        writer.writeheader()
        writer.writerows(rows + [{"image": "mean", **mean}])
    lines = [f"# {title}", "", "| image | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for row in rows + [{"image": "**mean**", **mean}]:
        lines.append(f"| {row['image']} | " + " | ".join(f"{row[name]:.4f}" for name in METRICS) + " |")
    if scores.get("best_threshold"):
        lines += ["", "Best probability threshold per metric (ISBI 2012 challenge protocol):", ""]
        lines += [
            f"- {name}: {value:.4f} at threshold {threshold:.1f}"
            for name, (threshold, value) in scores["best_threshold"].items()
        ]
    report = "\n".join(lines) + "\n"
    (out_dir / "metrics.md").write_text(report)
    return report


def main(
    prediction_dir: str,
    dataset_dir: str,
    layout: str = "isbi",
    ids=None,
    out_dir: str | None = None,
    title: str = "Scores",
    label_kind: str = "auto",
) -> str:
    out = Path(out_dir) if out_dir else Path(prediction_dir)
    scores = score_folder(prediction_dir, dataset_dir, layout, ids, overlay_dir=out / "overlays", label_kind=label_kind)
    report = write_report(scores, out, title)
    print(report)
    return str(out / "metrics.md")
