"""The project's main job, end to end on real data: segment ISBI 2012 images with the U-Net (2015) bundle's
shipped weights (or first train the bundle's release recipe), and write masks, overlays and a metrics table.

    python scripts/demo.py                 # shipped model, images 20-23, results in outputs/demo (seconds)
    python scripts/demo.py --epochs 20     # train the release recipe for 20 epochs first, with a progress bar

Every step goes through ``python -m monai.bundle`` exactly as the bundle's docs/README.md shows.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import medseg_tools.data as prepare_data
from medseg_tools.paths import BUNDLES_DIR, REPO_ROOT
from medseg_tools.runner import run_bundle
from medseg_tools.scoring import score_folder, write_report

from transforms import folder_datalist

BUNDLE = "unet_em_segmentation"
logger = logging.getLogger("demo")
PROGRESS_BAR = "$ignite.handlers.ProgressBar(persist=True).attach(@train#trainer)"


def main(
    workdir: str = "outputs/demo",
    epochs: int = 0,
    features: tuple | None = None,
    train_ids: tuple = tuple(range(20)),
    test_ids: tuple = (20, 21, 22, 23),
    train_minutes: float | None = None,
    device: str | None = None,
) -> str:
    """Segment ISBI images with the shipped model (or one trained here first) and score them.

    Args:
        workdir: where the data link, predictions, overlays, metrics (and trained checkpoints) go.
        epochs: 0 (default) segments with the bundle's shipped ``models/model.pt``; N > 0 first trains the
            bundle's release recipe (``train.json``) for N epochs on ``train_ids``, choosing the best epoch on
            ``test_ids``, and segments with those weights.
        features: U-Net widths for training (default: the release recipe's, which the shipped model has).
        train_ids / test_ids: ISBI image numbers for training and for the images segmented and scored. The
            shipped model was trained on images 0-19; 20-23 are its validation images (never trained on).
        train_minutes: wall-time budget of the training (default: the recipe's, 45 min; the epochs stop first).
        device: e.g. "cpu" or "cuda:0"; default picks CUDA when available.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = (REPO_ROOT / workdir).resolve() if not Path(workdir).is_absolute() else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    dataset = prepare_data.fetch("isbi2012_em", work / "data" / "isbi2012_em")
    prepare_data.validate(dataset, layout="isbi")
    common = {"features": list(features)} if features else {}
    if device:
        common["device"] = f"$torch.device('{device}')"

    checkpoint, title = BUNDLES_DIR / BUNDLE / "models" / "model.pt", "U-Net (2015), the bundle's shipped model"
    if epochs > 0:
        started = time.time()
        logger.info("training the release recipe for %d epochs on images %s", epochs, list(train_ids))
        overrides = {
            **common,
            "dataset_dir": dataset,
            "epochs": epochs,
            "train_ids": list(train_ids),
            "val_ids": list(test_ids),
            "ckpt_dir": work / "models",
            "output_dir": work / "eval",
            "log_dir": work / "runs",
            "resume": False,
            "train#extra_initialize": [PROGRESS_BAR],
            # the progress bar replaces the per-iteration log lines
            "train#handlers#2#iteration_log": False,
        }
        if train_minutes is not None:
            overrides["train_minutes"] = train_minutes
        run_bundle(BUNDLE, ["train.json"], target="training", overrides=overrides)
        checkpoint = work / "models" / "model.pt"
        title = f"U-Net (2015), release recipe, {epochs} epochs, trained in {(time.time() - started) / 60:.1f} min"

    held_out = folder_datalist(dataset, layout="isbi", ids=list(test_ids))
    predictions = work / "predictions"
    logger.info("segmenting %d images with %s", len(held_out), checkpoint)
    started = time.time()
    run_bundle(
        BUNDLE,
        ["inference.json"],
        overrides={
            **common,
            "input_images": [item["image"] for item in held_out],
            "ckpt_path": checkpoint,
            "output_dir": predictions,
        },
    )
    seconds = time.time() - started
    scores = score_folder(predictions, dataset, layout="isbi", ids=list(test_ids), overlay_dir=work / "overlays")
    table = write_report(scores, work, f"{title}; {len(held_out)} images segmented in {seconds:.0f} s")
    print(table)
    print(f"masks and probability maps: {predictions}\noverlays: {work / 'overlays'}\nmetrics: {work / 'metrics.md'}")
    return str(work / "metrics.md")
