"""The ``bundle_inference`` benchmark: a bundle's ``inference.json`` run end to end, as a user runs it
(``python -m monai.bundle run --config_file configs/inference.json --input_images DIR``), with ``--amp False``
(fp32) against the default (bf16 on CPUs with bf16 matrix units), alternating, in one run.

    python scripts/benchmark.py bundle_inference --bundle unet_em_segmentation --images 4 --tta d4

The wall time is the whole command: interpreter start, imports, config parsing, reading, inference and writing the
masks. Without ``--ckpt_path`` (and with no shipped ``models/model.pt``) the network gets a seeded random
initialisation saved to a temporary checkpoint: speed does not depend on the weights.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from medseg_tools.benchmark.harness import register_benchmark, write_results
from medseg_tools.benchmark.report import format_table
from medseg_tools.runner import bundle_dir, run_bundle
from monai.bundle import ConfigParser


def _inference_parser(bundle: Path, overrides: Mapping[str, Any]) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update({"bundle_root": str(bundle), **dict(overrides)})
    return parser


def _input_folder(bundle: Path, overrides: Mapping[str, Any], images: int, folder: Path) -> list[str]:
    """Copies the first ``images`` images that ``inference.json`` would read by default into ``folder``."""
    datalist = _inference_parser(bundle, overrides).get_parsed_content("datalist")[: int(images)]
    if not datalist:
        raise FileNotFoundError(f"{bundle.name}: inference.json's default input_images list no image.")
    folder.mkdir(parents=True, exist_ok=True)
    for item in datalist:
        shutil.copy(item["image"], folder / Path(item["image"]).name)
    return [Path(item["image"]).name for item in datalist]


def _random_checkpoint(bundle: Path, overrides: Mapping[str, Any], path: Path, seed: int = 0) -> Path:
    parser = _inference_parser(bundle, {"device": "$torch.device('cpu')", **dict(overrides)})
    torch.manual_seed(seed)
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    return path


@register_benchmark("bundle_inference")
def bundle_inference(
    bundle: str = "unet_em_segmentation",
    images: int = 4,
    tta: str | None = "d4",
    overrides: Mapping[str, Any] | None = None,
    ckpt_path: str | None = None,
    repeats: int = 2,
    json_out: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Wall time of ``inference.json`` on ``images`` images with ``--amp False`` and with the default ``amp``.

    Args:
        bundle: a bundle name under ``bundles/``.
        images: how many of the default input images to segment.
        tta: ``--tta`` (``none``/``flips``/``d4``) where the bundle's inference.json has it; ``None`` leaves it.
        overrides: further ``inference.json`` overrides (e.g. ``{"features": [16, 32, 64, 128, 256]}``).
        ckpt_path: weights to load (default: the shipped ``models/model.pt`` when ``overrides`` keep the config's
            network, else a seeded random initialisation).
        repeats: runs per precision, alternating fp32 and default.
        json_out: also write the results there.
        quiet: do not print the table.
    """
    root = bundle_dir(bundle)
    overrides = dict(overrides or {})
    if tta is not None:
        overrides["tta"] = tta
    seconds: dict[str, list[float]] = {"fp32": [], "default": []}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        names = _input_folder(root, {k: v for k, v in overrides.items() if k != "tta"}, images, scratch / "images")
        if ckpt_path is None:
            # the shipped weights fit the config's own network only
            shipped = root / "models" / "model.pt"
            changes_network = any(key == "features" or key.startswith("network_def") for key in overrides)
            use_shipped = shipped.is_file() and not changes_network
            ckpt_path = str(shipped if use_shipped else _random_checkpoint(root, overrides, scratch / "r.pt"))
        for _ in range(max(1, int(repeats))):
            for name, amp in (("fp32", False), ("default", True)):
                run_overrides = {
                    **overrides,
                    "input_images": str(scratch / "images"),
                    "ckpt_path": ckpt_path,
                    "output_dir": str(scratch / f"out_{name}"),
                    "amp": amp,
                }
                start = time.perf_counter()
                run_bundle(root, ("inference.json",), overrides=run_overrides, capture=True)
                seconds[name].append(time.perf_counter() - start)
    medians = {name: sorted(s)[len(s) // 2] for name, s in seconds.items()}
    results = {
        "bundle": bundle,
        "images": names,
        "overrides": overrides,
        "seconds": seconds,
        "median_seconds": medians,
        "speedup": medians["fp32"] / medians["default"],
    }
    if not quiet:
        print(f"{bundle}: inference.json on {len(names)} images, {overrides}, median of {repeats}")
        rows = [[n, f"{medians[n]:.1f}", " ".join(f"{s:.1f}" for s in seconds[n])] for n in seconds]
        print(format_table(rows, ["amp", "median s", "runs s"]))
        print(f"fp32 / default: {results['speedup']:.2f}x")
    write_results(results, json_out, quiet=True)
    return results
