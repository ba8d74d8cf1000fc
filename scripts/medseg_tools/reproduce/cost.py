"""What a variant's network costs: parameters, GFLOPs and CPU seconds for one validation image (the survey table's
cost columns, next to its metrics)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from medseg_tools.reproduce.bundles import applicable_overrides, load_parser
from torch.utils.flop_counter import FlopCounterMode

from transforms import select_precision


def forward_flops(network: torch.nn.Module, x: torch.Tensor) -> float:
    """Floating-point operations of one forward pass (PyTorch's counter: 2 per multiply-add of convolutions and
    matrix products; element-wise operations are not counted)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(x)
    return float(counter.get_total_flops())


def network_cost(
    bundle: str,
    configs: Sequence[str],
    overrides: Mapping[str, Any],
    image: np.ndarray,
    repeats: int = 3,
) -> dict[str, float]:
    """Parameters, GFLOPs and CPU seconds of the network of ``configs`` (with ``overrides``) on one whole image.

    The network is built as the bundle's inference builds it (``network_def``) with random weights (the cost does
    not depend on them) and run on ``image`` (channel-first, preprocessed) in the precision the bundle picks on
    this CPU (``amp``), without test-time augmentation; the time is the median of ``repeats`` runs after one
    warm-up run, with the threads this process has.

    Returns:
        ``{"parameters": count, "gflops": per image, "cpu_seconds": per image}``.
    """
    parser = load_parser(bundle, configs)
    for key, value in applicable_overrides(parser, overrides).items():
        parser[key] = value
    network = parser.get_parsed_content("network_def").eval()
    amp = parser.get_parsed_content("amp") if "amp" in parser else False
    precision = select_precision("cpu", amp, log=False)
    x = torch.as_tensor(np.asarray(image), dtype=torch.float32)[None]
    flops = forward_flops(network, x)
    times = []
    with torch.no_grad(), precision.autocast():
        for index in range(repeats + 1):
            start = time.perf_counter()
            network(x)
            if index:
                times.append(time.perf_counter() - start)
    return {
        "parameters": float(sum(p.numel() for p in network.parameters())),
        "gflops": flops / 1e9,
        "cpu_seconds": statistics.median(times),
    }
