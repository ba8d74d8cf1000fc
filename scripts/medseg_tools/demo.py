"""The project's main job, end to end on real data: train the U-Net (2015) bundle, segment held-out
images, and write masks, overlay pictures and a metrics table.

    python scripts/demo.py                 # short CPU schedule, results in outputs/demo
    python scripts/demo.py --epochs 50 --features "[64,128,256,512,1024]"   # the paper's width

Every step goes through ``python -m monai.bundle`` exactly as the bundle's docs/README.md shows.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import medseg_tools.data as prepare_data
from medseg_tools.paths import REPO_ROOT
from medseg_tools.runner import run_bundle
from medseg_tools.scoring import score_folder, write_report

from transforms import folder_datalist

BUNDLE = "unet_em_segmentation"
logger = logging.getLogger("demo")


def main(
    workdir: str = "outputs/demo",
    epochs: int = 3,
    features: tuple = (16, 32, 64, 128, 256),
    train_ids: tuple = tuple(range(16)),
    val_ids: tuple = (16, 17, 18, 19),
    test_ids: tuple = (20, 21, 22, 23),
    train_output_size: int = 388,
    w0: float = 0.0,
    device: str | None = None,
) -> str:
    """Train for a short schedule, segment the held-out images and score them.

    Args:
        workdir: where data link, checkpoints, predictions, overlays and metrics go.
        epochs: training epochs (each = one pass over the training images).
        features: U-Net widths; the paper's are (64, 128, 256, 512, 1024), the default is 4x narrower
            so that the demo finishes in minutes on a CPU.
        train_ids / val_ids / test_ids: ISBI image numbers for training, for choosing the best checkpoint and
            for the held-out evaluation (never seen by training or checkpoint selection).
        train_output_size: output tile of a training step (input = output + 184 for the valid U-Net).
        w0: border term of the paper's weight map. The demo's default 0 keeps only class balancing: with the
            paper's w0 = 10 the network first predicts membrane everywhere and needs about 6 epochs to leave
            that state (measured, see the bundle's docs/README.md), longer than a demo should take.
        device: e.g. "cpu" or "cuda:0"; default picks CUDA when available.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = (REPO_ROOT / workdir).resolve() if not Path(workdir).is_absolute() else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    dataset = prepare_data.fetch("isbi2012_em", work / "data" / "isbi2012_em")
    prepare_data.validate(dataset, layout="isbi")

    common = {"features": list(features), "dataset_dir": dataset, "ckpt_dir": work / "models"}
    if device:
        common["device"] = f"$torch.device('{device}')"
    started = time.time()
    logger.info("training %d epochs on images %s", epochs, list(train_ids))
    run_bundle(
        BUNDLE,
        ["train.json"],
        target="training",
        overrides={
            **common,
            "epochs": epochs,
            "train_ids": list(train_ids),
            "val_ids": list(val_ids),
            "train_output_size": train_output_size,
            "w0": w0,
            "output_dir": work / "eval",
            "log_dir": work / "runs",
            "resume": False,
        },
    )
    train_seconds = time.time() - started

    held_out = folder_datalist(dataset, layout="isbi", ids=list(test_ids))
    predictions = work / "predictions"
    logger.info("segmenting %d held-out images", len(held_out))
    run_bundle(
        BUNDLE,
        ["inference.json"],
        overrides={
            "features": list(features),
            "input_images": [item["image"] for item in held_out],
            "ckpt_path": work / "models" / "model.pt",
            "output_dir": predictions,
            **({"device": common["device"]} if device else {}),
        },
    )
    scores = score_folder(predictions, dataset, layout="isbi", ids=list(test_ids), overlay_dir=work / "overlays")
    title = (
        f"U-Net (2015), features {list(features)}, w0 {w0}, {epochs} epochs, trained in {train_seconds / 60:.1f} min"
    )
    table = write_report(scores, work, title)
    print(table)
    print(f"masks and probability maps: {predictions}\noverlays: {work / 'overlays'}\nmetrics: {work / 'metrics.md'}")
    return str(work / "metrics.md")
