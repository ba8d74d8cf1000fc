"""The ``lgnet_memory`` benchmark: peak resident memory of one LG-Net training step, in a fresh process each."""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from typing import Any

import torch
from medseg_tools.benchmark.harness import (
    _peak_rss_bytes,
    configure_threads,
    peak_rss_of,
    register_benchmark,
    write_results,
)
from medseg_tools.benchmark.report import format_table

LGNET_MEMORY_TARGET_GIB = 16.0


def lgnet_training_step_memory(
    batch_size: int,
    image_size: int,
    features: Sequence[int],
    gradient_checkpointing: bool,
    attention_size: int | None,
    threads: int | None,
    seed: int,
) -> dict[str, Any]:
    """One forward + backward + Adam step of :class:`custom_networks.LGNet` with the paper's loss
    (:class:`transforms.TverskyFocalLoss`, sigmoid output), measuring this process's RSS after building the
    network and inputs and its peak after the step. Meant to run in its own process (:func:`peak_rss_of`)."""
    from custom_networks.lgnet import LGNet
    from transforms.losses import TverskyFocalLoss

    configure_threads(threads)
    torch.manual_seed(seed)
    network = LGNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        features=tuple(features),
        attention_size=attention_size,
        gradient_checkpointing=gradient_checkpointing,
    ).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    loss_function = TverskyFocalLoss(sigmoid=True)
    image = torch.rand(batch_size, 1, image_size, image_size)
    label = (torch.rand(batch_size, 1, image_size, image_size) > 0.8).float()
    before_step = _peak_rss_bytes()
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_function(network(image), label)
    loss.backward()
    optimizer.step()
    seconds = time.perf_counter() - start
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the LG-Net training step gave a non-finite loss {loss.item()}.")
    return {
        "parameters": sum(p.numel() for p in network.parameters()),
        "peak_rss_before_step_gib": before_step / 2**30,
        "peak_rss_gib": _peak_rss_bytes() / 2**30,
        "step_seconds": seconds,
        "loss": loss.item(),
        "threads": torch.get_num_threads(),
    }


@register_benchmark("lgnet_memory")
def lgnet_memory(
    batch_size: int = 4,
    image_size: int = 512,
    features: Sequence[int] = (64, 128, 256, 512, 1024),
    attention_size: int | None = 64,
    without_checkpointing: bool = False,
    target_gib: float = LGNET_MEMORY_TARGET_GIB,
    threads: int | None = None,
    seed: int = 0,
    json_out: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Peak resident memory of one LG-Net training step (issue target: batch 4 x 512x512 within 16 GB of CPU memory).

    Each configuration runs in a fresh process; its peak RSS includes Python, PyTorch and the weights, i.e. what a
    user's training process needs. The default network (gradient checkpointing on, chunked PCM) is checked against
    ``target_gib``.

    Args:
        batch_size: images per step (paper: 4).
        image_size: side of the square input (paper: 512).
        features: LGNet widths (paper: 64-1024).
        attention_size: LGNet's ``attention_size`` (side up to which the LG-Attention input is pooled).
        without_checkpointing: also measure ``gradient_checkpointing=False`` (at the paper's size that needs about
            25 GB: leave it off on a smaller machine).
        target_gib: the peak RSS target of the default configuration, in GiB.
        threads: intra-op threads of the child processes (default: PyTorch's).
        seed: seed of the weights and the random inputs.
        json_out: also write the results as JSON to this path.
        quiet: do not print the table.
    """
    for name, value in (("batch_size", batch_size), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if target_gib <= 0:
        raise ValueError(f"target_gib must be positive, got {target_gib!r}.")
    configurations = {"gradient checkpointing (default)": True}
    if without_checkpointing:
        configurations["no gradient checkpointing"] = False
    runs = {
        name: peak_rss_of(
            lgnet_training_step_memory,
            batch_size=batch_size,
            image_size=image_size,
            features=list(features),
            gradient_checkpointing=checkpointing,
            attention_size=attention_size,
            threads=threads,
            seed=seed,
        )
        for name, checkpointing in configurations.items()
    }
    default = runs["gradient checkpointing (default)"]
    results = {
        "benchmark": "lgnet_memory",
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "settings": {
            "batch_size": batch_size,
            "image_size": image_size,
            "features": list(features),
            "attention_size": attention_size,
            "loss": "TverskyFocalLoss (0.3 Tversky + 0.7 focal)",
            "optimizer": "Adam",
        },
        "runs": runs,
        "targets": {
            "peak_rss_gib": {
                "target": target_gib,
                "value": default["peak_rss_gib"],
                "passed": default["peak_rss_gib"] < target_gib,
            }
        },
    }
    if not quiet:
        header = ["configuration", "params (M)", "peak RSS before step (GiB)", "peak RSS (GiB)", "step (s)"]
        rows = [
            [
                name,
                f"{run['parameters'] / 1e6:.2f}",
                f"{run['peak_rss_before_step_gib']:.2f}",
                f"{run['peak_rss_gib']:.2f}",
                f"{run['step_seconds']:.1f}",
            ]
            for name, run in runs.items()
        ]
        target = results["targets"]["peak_rss_gib"]
        print(f"LGNet training step, batch {batch_size} x {image_size}x{image_size}, features {list(features)}:")
        print(format_table(rows, header))
        verdict = "PASS" if target["passed"] else "MISS"
        print(f"peak_rss_gib: {target['value']:.2f} (target < {target_gib:.1f}) {verdict}")
    write_results(results, json_out, quiet)
    return results
