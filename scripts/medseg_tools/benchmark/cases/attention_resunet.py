"""The ``attention_resunet`` benchmark: the Attention Res-UNet bundle's networks and their baselines against MONAI's
``AttentionUnet`` of the same widths (sliding-window inference of one frame, one training step)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from medseg_tools.benchmark.harness import (
    TimedCase,
    _environment,
    _spatial_pair,
    configure_threads,
    convolution_flops,
    register_benchmark,
    summarize_seconds,
    time_interleaved,
    write_results,
)
from medseg_tools.benchmark.report import _attention_resunet_report

ATTENTION_FEATURES = (16, 32, 64, 128, 256)  # a quarter of the paper's widths: minutes, not hours, on a CPU


def phase_contrast_networks(features: Sequence[int] = ATTENTION_FEATURES, with_baselines: bool = True) -> dict:
    """The networks of the Attention Res-UNet paper's Table 1 at one width, plus MONAI's ``AttentionUnet`` with the
    same channels per level (the reference), all binary 2D: name -> module.

    Widths follow ``features`` (5 levels): VGG-style networks (FCN-8s, SegNet) repeat the 4th width at the 5th level
    as VGG does, FCN-8s gets ``4 x features[-1]`` fully-connected channels (4096 for the paper's 1024).
    """
    from monai.networks.nets import AttentionUnet, BasicUNet

    import custom_networks

    features = [int(f) for f in features]
    if len(features) != 5:
        raise ValueError(f"features must give the 5 levels' widths, got {features}.")
    networks: dict[str, nn.Module] = {
        "AttentionResUNet (ours)": custom_networks.AttentionResUNet(2, 1, 1, features=features, dropout=0.2),
        "MONAI AttentionUnet": AttentionUnet(2, 1, 1, channels=features, strides=[2] * 4, dropout=0.2),
    }
    if with_baselines:
        vgg = features[:4] + [features[3]]
        networks.update(
            {
                "FCN8s": custom_networks.FCN8s(2, 1, 1, features=vgg, fc_channels=4 * features[-1]),
                "MONAI BasicUNet": BasicUNet(2, 1, 1, features=(*features, features[0])),
                "SegNet": custom_networks.SegNet(2, 1, 1, features=vgg),
                "R2UNet": custom_networks.R2UNet(2, 1, 1, features=features),
            }
        )
    return networks


class _WindowCounter(nn.Module):
    """Counts the windows a sliding-window inferer feeds to ``network`` (to turn per-window FLOPs into totals)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.windows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.windows += x.shape[0]
        return self.network(x)


@register_benchmark("attention_resunet")
def attention_resunet(
    frame_size: Sequence[int] | int = (1022, 1024),
    features: Sequence[int] = ATTENTION_FEATURES,
    roi_size: int = 256,
    sw_batch_size: int = 4,
    overlap: float = 0.25,
    train_batch_size: int = 4,
    repeats: int = 3,
    warmup: int = 1,
    threads: int | None = None,
    with_baselines: bool = True,
    skip_training: bool = False,
    seed: int = 0,
    json_out: str | None = None,
    quiet: bool = False,
) -> dict:
    """Inference time of one phase-contrast frame and training-step time of the Attention Res-UNet bundle's
    networks, side by side with MONAI's ``AttentionUnet`` of the same widths in one run.

    Inference is the bundle's: ``SlidingWindowInferer`` (``roi_size`` windows, ``overlap``, Gaussian blending,
    ``sw_batch_size``) over a ``frame_size`` frame (Usiigaci's 1022x1024), channels-last, ``inference_mode``.
    A training step is forward + binary cross-entropy + backward + Adam on ``train_batch_size`` ``roi_size``
    patches. The networks compute different amounts of work, so speed is compared at equal FLOPs: achieved
    convolution GFLOP/s of each network divided by MONAI ``AttentionUnet``'s (the target: >= 1 for ours, i.e. no
    slower than MONAI's at equal FLOPs); plain time ratios are reported too.
    """
    from monai.inferers import SlidingWindowInferer

    threads_used = configure_threads(threads)
    height, width = _spatial_pair(frame_size, "frame_size")
    torch.manual_seed(seed)
    networks = {
        name: net.eval().to(memory_format=torch.channels_last)
        for name, net in phase_contrast_networks(features, with_baselines).items()
    }
    frame = torch.rand((1, 1, height, width)).contiguous(memory_format=torch.channels_last)
    inferer = SlidingWindowInferer(
        roi_size=(roi_size, roi_size), sw_batch_size=sw_batch_size, overlap=overlap, mode="gaussian"
    )
    window_flops = {name: convolution_flops(net, (1, 1, roi_size, roi_size)) for name, net in networks.items()}
    counter = _WindowCounter(next(iter(networks.values())))
    with torch.inference_mode():
        inferer(frame, counter)
    windows = counter.windows

    def inference_run(network: nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                inferer(frame, network)

        return run

    inference_cases = [
        TimedCase(name, inference_run(net), window_flops[name] * windows) for name, net in networks.items()
    ]
    inference_seconds = time_interleaved(inference_cases, repeats, warmup)
    inference = {case.name: summarize_seconds(inference_seconds[case.name], case.flops) for case in inference_cases}

    training: dict[str, Any] = {}
    if not skip_training:
        generator = torch.Generator().manual_seed(seed + 1)
        patches = torch.rand((train_batch_size, 1, roi_size, roi_size), generator=generator)
        patches = patches.contiguous(memory_format=torch.channels_last)
        targets = (torch.rand((train_batch_size, 1, roi_size, roi_size), generator=generator) > 0.5).float()
        training_cases = []
        for name, network in networks.items():
            trained = copy.deepcopy(network).train()
            optimizer = torch.optim.Adam(trained.parameters(), lr=1e-3)

            def setup(optimizer: torch.optim.Optimizer = optimizer) -> None:
                optimizer.zero_grad(set_to_none=True)

            def run(trained: nn.Module = trained, optimizer: torch.optim.Optimizer = optimizer) -> None:
                F.binary_cross_entropy_with_logits(trained(patches), targets).backward()
                optimizer.step()

            flops = convolution_flops(trained, patches.shape, backward=True)
            training_cases.append(TimedCase(name, run, flops, setup))
        training_seconds = time_interleaved(training_cases, repeats, warmup)
        training = {case.name: summarize_seconds(training_seconds[case.name], case.flops) for case in training_cases}

    reference = "MONAI AttentionUnet"
    ours = "AttentionResUNet (ours)"

    def ratios(timings: dict) -> dict:
        return {
            name: {
                "time_ratio_vs_reference": summary["median_s"] / timings[reference]["median_s"],
                "throughput_ratio_vs_reference": summary["gflops_at_median"] / timings[reference]["gflops_at_median"],
            }
            for name, summary in timings.items()
        }

    results: dict[str, Any] = {
        "benchmark": "attention_resunet",
        "environment": _environment(threads_used),
        "settings": {
            "frame_size": [height, width],
            "features": [int(f) for f in features],
            "roi_size": roi_size,
            "sw_batch_size": sw_batch_size,
            "overlap": overlap,
            "windows_per_frame": windows,
            "train_batch_size": train_batch_size,
            "repeats": repeats,
            "warmup": warmup,
            "seed": seed,
        },
        "parameters": {name: sum(p.numel() for p in net.parameters()) for name, net in networks.items()},
        "inference": inference,
        "inference_ratios": ratios(inference),
        "training": training,
        "training_ratios": ratios(training) if training else {},
    }
    targets = {"inference": inference}
    if training:
        targets["training"] = training
    results["targets"] = {
        f"{kind}_throughput_vs_monai_attention_unet": {
            "target": 1.0,
            "value": timings[ours]["gflops_at_median"] / timings[reference]["gflops_at_median"],
            "passed": timings[ours]["gflops_at_median"] >= timings[reference]["gflops_at_median"],
        }
        for kind, timings in targets.items()
    }
    if not quiet:
        print(_attention_resunet_report(results))
    write_results(results, json_out, quiet)
    return results
