"""Put trained weights into a bundle of the repository as its shipped model: ``models/...model.pt`` (a plain
fp32 ``state_dict``), ``large_files.yml`` (md5 and URL) and ``eval_metrics`` of ``metadata.json``.

    python scripts/package_bundle.py ship unet_em_segmentation \\
        --weights outputs/release/variants/release_recipe/models/model.pt \\
        --metrics_csv outputs/release/variants/release_recipe/eval/metrics.csv
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from medseg_tools.reproduce.bundles import read_metrics_csv
from medseg_tools.runner import bundle_dir
from medseg_tools.zoo.configs import PackageError
from medseg_tools.zoo.large_files import MAX_TOTAL_BYTES, read_large_files, write_shipped_large_files


def plain_state_dict(weights: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The network weights of a ``model.pt`` (a state_dict, or a checkpoint dict with ``model``) in fp32 on the CPU."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PackageError(f"{weights}: not a state_dict of tensors (nor a checkpoint with a 'model' entry).")
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def ship(
    bundle: str,
    weights: str | os.PathLike,
    folder: str = "models",
    metrics_csv: str | os.PathLike | None = None,
    metrics: Sequence[str] | None = None,
    prefix: str = "",
) -> str:
    """Copies ``weights`` to ``bundles/<bundle>/<folder>/model.pt`` and records it.

    Args:
        bundle: a bundle of ``bundles/``.
        weights: the trained ``model.pt`` (best checkpoint of a run).
        folder: where it goes in the bundle (``models``, or e.g. ``models/phc_cells`` for a second model).
        metrics_csv: the ``metrics.csv`` of ``evaluate.json`` for these weights; its ``val_<name>`` values become
            ``eval_metrics[<prefix><name>]`` of ``metadata.json`` (rounded to 4 digits).
        metrics: the names to record (default: all of the file's).
        prefix: prefix of the recorded names for a second model of the bundle, ending in ``/`` (e.g. ``phc_cells/``);
            the model's earlier figures are replaced, the other model's kept.

    Returns:
        the new ``large_files.yml``.
    """
    if prefix and not prefix.endswith("/"):
        raise PackageError(f"prefix {prefix!r} must end with '/' (e.g. 'phc_cells/').")
    root = bundle_dir(bundle)
    target = root / folder / "model.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    torch.save(plain_state_dict(weights), tmp)
    os.replace(tmp, target)
    listed = []
    if (root / "large_files.yml").is_file():
        listed = [entry["path"] for entry in read_large_files(root / "large_files.yml")]
    relative = target.relative_to(root).as_posix()
    paths = sorted({*listed, relative})
    metadata_path = root / "configs" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    text = write_shipped_large_files(root, paths, str(metadata["version"]))
    if metrics_csv is not None:
        values = read_metrics_csv(Path(metrics_csv))
        chosen = metrics or [name[len("val_") :] for name in values if name.startswith("val_")]
        # the figures of this model replace its earlier ones; a second model's (``phc_cells/...``) stay
        recorded = {
            name: value
            for name, value in metadata.get("eval_metrics", {}).items()
            if not (name.startswith(prefix) if prefix else "/" not in name)
        }
        for name in chosen:
            if f"val_{name}" not in values:
                raise PackageError(f"{metrics_csv} has no val_{name}; it has {sorted(values)}.")
            recorded[f"{prefix}{name}"] = round(values[f"val_{name}"], 4)
        metadata["eval_metrics"] = recorded
        metadata_path.write_text(json.dumps(metadata, indent=4) + "\n")
    total = sum(p.stat().st_size for p in root.parent.glob("*/models/**/model.pt"))
    if total > MAX_TOTAL_BYTES:
        raise PackageError(f"the bundles now ship {total / 2**20:.1f} MiB of weights, over the 30 MiB limit.")
    return text
