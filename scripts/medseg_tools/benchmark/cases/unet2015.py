"""The ``unet2015`` benchmark: ``OverlapTileInferer`` + ``UNet2015`` against :class:`NaiveUNet` on fixed tiles
(inference of one image and one training step), and the achieved GFLOP/s against the dense-convolution peak, in fp32
or under bf16 autocast (``precision``)."""

from __future__ import annotations

import copy
import functools
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from medseg_tools.benchmark.cases.unet2015_baseline import (
    PAPER_FEATURES,
    NaiveUNet,
    copy_unet2015_weights,
    fixed_tile_inference,
)
from medseg_tools.benchmark.harness import (
    TimedCase,
    _environment,
    _relative_difference,
    _spatial_pair,
    configure_threads,
    convolution_flops,
    dense_conv_peak_case,
    register_benchmark,
    summarize_seconds,
    time_interleaved,
    write_results,
)
from medseg_tools.benchmark.report import _unet2015_report

from custom_networks.unet2015 import UNet2015, is_valid_tile_size, unet2015_output_size
from transforms.inferers import OverlapTileInferer, Precision

SPEEDUP_TARGET = 2.5  # overlap-tile inference of a 512x512 image vs. fixed 572 tiles
PEAK_FRACTION_TARGET = 0.8  # achieved inference GFLOP/s vs. the dense-convolution GFLOP/s of the same run
PRECISIONS = {"fp32": Precision("cpu", None), "bf16": Precision("cpu", torch.bfloat16)}
# ours vs the baseline on the grid-aligned tile: the same arithmetic, other kernels; bf16 rounds every layer's output
# to 8 significant bits, so the two drift apart by far more than fp32's rounding
AGREEMENT_TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2}


class _TileRecorder:
    """Wraps a network callable, recording the input shape of every call (to count the FLOPs actually run)."""

    def __init__(self, network: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.network = network
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.network(x)


def _channels_last_caller(network: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    def call(x: torch.Tensor) -> torch.Tensor:
        return network(x.contiguous(memory_format=torch.channels_last))

    return call


def _compile(
    network: nn.Module, probe: torch.Tensor, precision: Precision = PRECISIONS["fp32"]
) -> tuple[Callable[[torch.Tensor], torch.Tensor], float, str]:
    """``torch.compile`` with frozen weights (Inductor folds ReLUs and biases into prepacked oneDNN convolutions);
    falls back to the eager network with a warning when compilation fails. Returns the callable, the compile time
    (first call on ``probe``, under ``precision``'s autocast: the graph is traced in the precision it will run in)
    and the mode used."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # weights are constants at inference: lets Inductor prepack them
    compiled = torch.compile(network)
    start = time.perf_counter()
    try:
        with torch.inference_mode(), precision.autocast():
            compiled(probe)
    except Exception as error:  # a missing C++ compiler or an unsupported backend must not end the benchmark
        warnings.warn(
            f"torch.compile failed ({type(error).__name__}: {error}); timing the eager network instead.", stacklevel=2
        )
        return network, 0.0, "eager (compile failed)"
    return compiled, time.perf_counter() - start, "torch.compile (inductor, freezing)"


@register_benchmark("unet2015")
def unet2015(
    image_size: Sequence[int] | int = 512,
    features: Sequence[int] = PAPER_FEATURES,
    repeats: int = 5,
    warmup: int = 1,
    train_repeats: int | None = None,
    threads: int | None = None,
    channels_last: bool = True,
    torch_compile: bool = True,
    precision: str = "fp32",
    memory_budget_mb: float | None = 2048.0,
    sw_batch_size: int = 1,
    baseline_tile: int = 572,
    peak_channels: int = 256,
    peak_size: int = 128,
    peak_calls: int = 3,
    compare_eager: bool = False,
    skip_training: bool = False,
    seed: int = 0,
    json_out: str | None = None,
    quiet: bool = False,
) -> dict:
    """CPU inference time of one image and training-step time: ``OverlapTileInferer`` + ``UNet2015`` against the
    usual re-implementation (:class:`NaiveUNet` on fixed ``baseline_tile`` tiles, one tile at a time).

    Args:
        image_size: spatial size of the test image (int or pair).
        features: U-Net widths per level (the paper's 64..1024 by default; e.g. ``[16,32,64,128,256]`` for a
            quick run).
        repeats: timed inference rounds (each: peak, ours, baseline).
        warmup: untimed rounds before (the first one compiles).
        train_repeats: timed training rounds (default: ``repeats``).
        threads: intra-op threads (default: PyTorch's choice, one per core).
        channels_last: run ours in channels-last memory format.
        torch_compile: ``torch.compile`` ours for inference (eager fallback if it fails).
        precision: ``"fp32"`` or ``"bf16"``: run ours and the baseline (inference and training; losses in fp32)
            under bf16 autocast, and time the dense-convolution peak in bf16, so that "% of peak" compares with the
            peak of the same precision and the speedup stays implementation against implementation.
        memory_budget_mb: activation budget the inferer picks its tile within (``None``: no limit).
        sw_batch_size: tiles per forward pass of the inferer.
        baseline_tile: fixed input tile of the baseline (572 in the paper).
        peak_channels: channels of the dense reference convolution.
        peak_size: spatial size of the dense reference convolution.
        peak_calls: convolution calls per timed peak sample.
        compare_eager: also time ours without ``torch.compile`` (to document what compiling buys).
        skip_training: leave out the training-step comparison.
        seed: seed of the weights, image and labels.
        json_out: file to write all results to (JSON).
        quiet: do not print the table.

    Returns:
        all settings, timings, FLOP counts, ratios, agreement checks and target verdicts.
    """
    height, width = _spatial_pair(image_size, "image_size")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}.")
    autocast = PRECISIONS[precision]
    features = tuple(int(f) for f in features)
    train_repeats = repeats if train_repeats is None else train_repeats
    threads_used = configure_threads(threads)
    torch.manual_seed(seed)

    net = UNet2015(spatial_dims=2, in_channels=1, out_channels=2, features=features).eval()
    if not net.is_valid_tile_size(baseline_tile):
        raise ValueError(
            f"baseline_tile {baseline_tile} is not a valid tile for features {features}; nearest: "
            f"{net.nearest_valid_tile_size(baseline_tile)}."
        )
    baseline_output = unet2015_output_size(baseline_tile, net.depth)[0]
    if min(height, width) < baseline_output:
        raise ValueError(
            f"image_size {(height, width)} is smaller than the baseline's output tile {baseline_output}; "
            "use a larger image or a smaller baseline_tile."
        )
    naive = copy_unet2015_weights(net, NaiveUNet(1, 2, features)).eval()
    image = torch.rand((1, 1, height, width), generator=torch.Generator().manual_seed(seed))

    # Ours: the tile is chosen once by the inferer's own heuristic (memory estimate on the eager network), then
    # fixed, because the compiled network cannot be run on the meta device to redo that estimate.
    valid_tile = functools.partial(is_valid_tile_size, depth=net.depth, padding=net.padding)
    chooser = OverlapTileInferer(
        sw_batch_size=sw_batch_size, border=net.border, valid_tile_size=valid_tile, memory_budget_mb=memory_budget_mb
    )
    tile = chooser.tile_size((height, width), net, 1)
    inferer = OverlapTileInferer(
        roi_size=tile, sw_batch_size=sw_batch_size, border=net.border, valid_tile_size=valid_tile, memory_budget_mb=None
    )
    fast_net = copy.deepcopy(net)
    if channels_last:
        fast_net = fast_net.to(memory_format=torch.channels_last)
    eager_call = _channels_last_caller(fast_net) if channels_last else fast_net
    probe = torch.zeros((sw_batch_size, 1, *tile))
    if channels_last:
        probe = probe.contiguous(memory_format=torch.channels_last)
    compile_seconds, mode = 0.0, "eager"
    ours_call: Callable[[torch.Tensor], torch.Tensor] = eager_call
    if torch_compile:
        compiled, compile_seconds, mode = _compile(fast_net, probe, autocast)
        ours_call = _channels_last_caller(compiled) if channels_last else compiled
    mode += ", channels-last" if channels_last else ", contiguous"
    mode += ", bf16 autocast" if autocast.dtype is not None else ""

    # One untimed pass of each records the tiles really run (for the FLOP count) and gives the agreement check.
    ours_recorder, baseline_recorder = _TileRecorder(ours_call), _TileRecorder(naive)
    with torch.inference_mode(), autocast.autocast():
        ours_output = inferer(image, ours_recorder)
    with torch.no_grad(), autocast.autocast():
        baseline_output_image, _ = fixed_tile_inference(image, baseline_recorder, baseline_tile, net.border)
    ours_flops = sum(convolution_flops(net, shape) for shape in ours_recorder.shapes)
    baseline_flops = sum(convolution_flops(net, shape) for shape in baseline_recorder.shapes)
    # The baseline's first tile starts on the pooling grid of the whole image, as all of ours do: there the two
    # must agree to rounding. Its shifted last tiles see a different max-pool grid, so elsewhere they may not.
    aligned = (slice(None), slice(None), slice(0, baseline_output), slice(0, baseline_output))
    agreement = {
        "first_baseline_tile": _relative_difference(ours_output[aligned], baseline_output_image[aligned]),
        "whole_image": _relative_difference(ours_output, baseline_output_image),
    }

    def run_ours() -> None:
        with torch.inference_mode(), autocast.autocast():
            inferer(image, ours_call)

    def run_baseline() -> None:
        with torch.no_grad(), autocast.autocast():
            fixed_tile_inference(image, naive, baseline_tile, net.border)

    peak = dense_conv_peak_case(peak_channels, peak_size, peak_calls, precision=precision)
    ours_name = f"ours: OverlapTileInferer + UNet2015 ({mode})"
    baseline_name = f"baseline: NaiveUNet, fixed {baseline_tile} tiles, one at a time"
    baseline_name += ", bf16 autocast" if autocast.dtype is not None else ""
    cases = [peak, TimedCase(ours_name, run_ours, ours_flops), TimedCase(baseline_name, run_baseline, baseline_flops)]
    eager_name = None
    if compare_eager and torch_compile:
        eager_name = "ours without torch.compile (eager)"

        def run_ours_eager() -> None:
            with torch.inference_mode(), autocast.autocast():
                inferer(image, eager_call)

        cases.insert(2, TimedCase(eager_name, run_ours_eager, ours_flops))
    inference_seconds = time_interleaved(cases, repeats, warmup)
    inference = {case.name: summarize_seconds(inference_seconds[case.name], case.flops) for case in cases}

    training: dict[str, Any] = {}
    if not skip_training:
        training = _training_comparison(net, naive, baseline_tile, channels_last, train_repeats, warmup, seed, autocast)

    peak_gflops = inference[peak.name]["gflops_at_median"]
    speedup = inference[baseline_name]["median_s"] / inference[ours_name]["median_s"]
    peak_fraction = inference[ours_name]["gflops_at_median"] / peak_gflops
    tolerance = AGREEMENT_TOLERANCE[precision]
    results: dict[str, Any] = {
        "benchmark": "unet2015",
        "environment": _environment(threads_used),
        "settings": {
            "image_size": [height, width],
            "features": list(features),
            "repeats": repeats,
            "warmup": warmup,
            "train_repeats": train_repeats,
            "channels_last": channels_last,
            "torch_compile": torch_compile,
            "precision": precision,
            "ours_mode": mode,
            "compile_seconds": compile_seconds,
            "memory_budget_mb": memory_budget_mb,
            "sw_batch_size": sw_batch_size,
            "baseline_tile": baseline_tile,
            "border": net.border,
            "seed": seed,
        },
        "tiles": {
            "ours": {
                "tile": list(tile),
                "count": sum(shape[0] for shape in ours_recorder.shapes),
                "calls": ours_recorder.shapes,
            },
            "baseline": {"tile": [baseline_tile] * 2, "count": len(baseline_recorder.shapes)},
        },
        "inference": inference,
        "training": training,
        "agreement": agreement,
        "ratios": {
            "inference_speedup_median": speedup,
            "inference_speedup_min": inference[baseline_name]["min_s"] / inference[ours_name]["min_s"],
            "flop_ratio": baseline_flops / ours_flops,
            "ours_fraction_of_peak_median": peak_fraction,
            "ours_fraction_of_peak_min": inference[ours_name]["gflops_at_min"] / inference[peak.name]["gflops_at_min"],
            "baseline_fraction_of_peak_median": inference[baseline_name]["gflops_at_median"] / peak_gflops,
        },
        "targets": {
            "speedup": {"target": SPEEDUP_TARGET, "value": speedup, "passed": speedup >= SPEEDUP_TARGET},
            "fraction_of_peak": {
                "target": PEAK_FRACTION_TARGET,
                "value": peak_fraction,
                "passed": peak_fraction >= PEAK_FRACTION_TARGET,
            },
            "agreement": {
                "target": tolerance,
                "value": agreement["first_baseline_tile"]["relative"],
                "passed": agreement["first_baseline_tile"]["relative"] <= tolerance,
            },
        },
        "case_names": {"peak": peak.name, "ours": ours_name, "baseline": baseline_name, "ours_eager": eager_name},
    }
    if training:
        results["ratios"]["training_speedup_median"] = training["speedup_median"]
    if not quiet:
        print(_unet2015_report(results))
    write_results(results, json_out, quiet)
    return results


def _training_comparison(
    net: UNet2015,
    naive: NaiveUNet,
    tile: int,
    channels_last: bool,
    repeats: int,
    warmup: int,
    seed: int,
    precision: Precision = PRECISIONS["fp32"],
) -> dict[str, Any]:
    """Forward + backward + SGD step (the paper's momentum 0.99) on one ``tile x tile`` input for both networks,
    the forward under ``precision``'s autocast and the loss in fp32."""
    generator = torch.Generator().manual_seed(seed + 1)
    output = unet2015_output_size(tile, net.depth)[0]
    image = torch.rand((1, 1, tile, tile), generator=generator)
    labels = torch.randint(0, 2, (1, output, output), generator=generator)
    ours = copy.deepcopy(net).train()
    baseline = copy.deepcopy(naive).train()
    ours_image = image
    if channels_last:
        ours = ours.to(memory_format=torch.channels_last)
        ours_image = image.contiguous(memory_format=torch.channels_last)
    flops = convolution_flops(ours, image.shape, backward=True)

    def step_runner(network: nn.Module, x: torch.Tensor) -> tuple[Callable[[], None], Callable[[], None]]:
        optimizer = torch.optim.SGD(network.parameters(), lr=1e-4, momentum=0.99)

        def setup() -> None:
            optimizer.zero_grad(set_to_none=True)

        def run() -> None:
            with precision.autocast():
                logits = network(x)
            loss = F.cross_entropy(logits.float(), labels)
            loss.backward()
            optimizer.step()

        return setup, run

    ours_setup, ours_run = step_runner(ours, ours_image)
    baseline_setup, baseline_run = step_runner(baseline, image)
    suffix = ", bf16 autocast" if precision.dtype is not None else ""
    names = (
        f"train step ours: UNet2015 ({'channels-last' if channels_last else 'contiguous'}{suffix})",
        f"train step baseline: NaiveUNet{suffix}",
    )
    cases = [TimedCase(names[0], ours_run, flops, ours_setup), TimedCase(names[1], baseline_run, flops, baseline_setup)]
    seconds = time_interleaved(cases, repeats, warmup)
    summaries = {case.name: summarize_seconds(seconds[case.name], case.flops) for case in cases}
    return {
        "tile": tile,
        "steps": summaries,
        "case_names": {"ours": names[0], "baseline": names[1]},
        "speedup_median": summaries[names[1]]["median_s"] / summaries[names[0]]["median_s"],
    }
