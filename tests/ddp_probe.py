"""What each process of a ``torchrun`` bundle training saw and did, written to files for the test to compare.

Imported by the bundle itself (through a ``train#extra_initialize`` override, see :func:`probe_override`), so it
runs inside the ``monai.bundle run`` processes and must not need pytest. Per rank it writes ``rank<N>.json`` (the
batches: file names, a digest of the input tensor, the local loss) and ``rank<N>.pt`` (the network's parameters
before training, after the first optimizer step and at the end).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.handlers import from_engine

__all__ = ["attach", "probe_override", "read_ranks"]


def _weights(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters: batch-norm statistics are buffers that each rank updates from its own batch
    after DDP broadcast rank 0's, so they may differ between ranks by design."""
    module = network.module if isinstance(network, torch.nn.parallel.DistributedDataParallel) else network
    return {name: value.detach().cpu().clone() for name, value in module.named_parameters()}


def _batch_record(engine: Engine) -> dict[str, Any]:
    # MONAI's trainer has decollated the batch into one dict per sample by ITERATION_COMPLETED
    batch = engine.state.batch
    images = [item["image"] for item in batch] if isinstance(batch, list) else [batch["image"]]
    digest = hashlib.sha1()
    names: list[str] = []
    for image in images:
        digest.update(image.detach().cpu().contiguous().numpy().tobytes())
        found = getattr(image, "meta", {}).get("filename_or_obj", [])
        names += [found] if isinstance(found, str) else [str(name) for name in found]
    loss = float(from_engine(["loss"], first=True)(engine.state.output))
    # the parent folder too: the phase-contrast frames are all called setN/raw.tif
    files = sorted({"/".join(Path(name).parts[-2:]) for name in names})
    return {"iteration": engine.state.iteration, "files": files, "digest": digest.hexdigest(), "loss": loss}


def attach(trainer: Engine, network: torch.nn.Module, out_dir: str) -> None:
    """Records every training batch of this rank and the weights around the first optimizer step."""
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = {"initial": _weights(network)}
    batches: list[dict[str, Any]] = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine: Engine) -> None:
        batches.append(_batch_record(engine))
        if engine.state.iteration == 1:  # the trainer's update has run: DDP averaged the gradients of both ranks
            weights["after_first_step"] = _weights(network)

    @trainer.on(Events.COMPLETED)
    def _write(engine: Engine) -> None:
        weights["final"] = _weights(network)
        torch.save(weights, out / f"rank{rank}.pt")
        (out / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "batches": batches}))


def probe_override(train_config: dict, out_dir: Path) -> list:
    """``train#extra_initialize`` of ``train_config`` (a bundle's train.json) with a call of :func:`attach`
    appended, so the bundle's own extra steps (the MCSA bundle's EMA) still run.

    The call is a ``_target_`` component rather than a ``$`` expression: MONAI parses any expression that contains
    the word "import" as Python before substituting its ``@`` references, which fails."""
    call = {"_target_": "tests.ddp_probe.attach", "trainer": "@train#trainer", "network": "@network"}
    return [*train_config["train"].get("extra_initialize", []), {**call, "out_dir": str(out_dir)}]


def read_ranks(out_dir: Path, world_size: int) -> list[tuple[dict, dict]]:
    """``(batches record, weights)`` of every rank, in rank order."""
    return [
        (json.loads((out_dir / f"rank{rank}.json").read_text()), torch.load(out_dir / f"rank{rank}.pt"))
        for rank in range(world_size)
    ]
