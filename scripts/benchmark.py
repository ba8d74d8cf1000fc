"""Speed benchmarks of the project's networks against the usual way of running them, side by side in one process.

    python scripts/benchmark.py list                                   # registered benchmarks
    python scripts/benchmark.py unet2015                               # the paper's widths, a 512x512 image
    python scripts/benchmark.py unet2015 --features "[16,32,64,128,256]" --repeats 3 --torch_compile False
    python scripts/benchmark.py unet2015 --threads 2 --json_out outputs/benchmark_unet2015.json
    python scripts/benchmark.py lgnet_memory                           # peak RSS of an LG-Net training step

``unet2015`` compares, on CPU by default:

* inference of one image: ``OverlapTileInferer`` + ``UNet2015`` (one covering tile, chosen by the inferer within
  its memory budget; channels-last, ``torch.compile`` with frozen weights) against the usual re-implementation
  (:class:`NaiveUNet`, contiguous fp32, run tile by tile on fixed 572x572 tiles by :func:`fixed_tile_inference`);
* one training step (forward, backward, SGD step) on one 572x572 tile for both implementations;
* the achieved GFLOP/s (useful convolution FLOPs = 2 x multiply-accumulates of every convolution and transposed
  convolution actually computed, i.e. for all tiles at the sizes used) against a dense 3x3 convolution timed in
  the same run (the "dense-conv peak").

Timings are interleaved (peak, ours, baseline, peak, ours, baseline, ...) after warm-up runs, so that load from
other processes hits all cases alike; medians and the ratio of medians are reported (minima too).

``lgnet_memory`` measures memory instead of speed: the peak resident set size of one LG-Net training step (the
paper's batch 4 x 512x512, its loss, Adam) in a fresh process per configuration, against the 16 GB target.

New benchmarks are functions decorated with :func:`register_benchmark`; they become subcommands and can reuse
:func:`time_interleaved`, :func:`convolution_flops`, :func:`dense_conv_peak_case` and :func:`format_table`.
"""

from __future__ import annotations

import copy
import functools
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fire
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from custom_networks.unet2015 import UNet2015, is_valid_tile_size, unet2015_output_size  # noqa: E402
from transforms.inferers import OverlapTileInferer, meta_copy_state  # noqa: E402

__all__ = [
    "BENCHMARKS",
    "register_benchmark",
    "list_benchmarks",
    "TimedCase",
    "configure_threads",
    "time_interleaved",
    "summarize_seconds",
    "convolution_flops",
    "dense_conv_peak_case",
    "format_table",
    "NaiveUNet",
    "copy_unet2015_weights",
    "fixed_tile_starts",
    "fixed_tile_inference",
    "unet2015",
    "phase_contrast_networks",
    "attention_resunet",
    "peak_rss_of",
    "lgnet_memory",
]

PAPER_FEATURES = (64, 128, 256, 512, 1024)
ATTENTION_FEATURES = (16, 32, 64, 128, 256)  # a quarter of the paper's widths: minutes, not hours, on a CPU
SPEEDUP_TARGET = 2.5  # overlap-tile inference of a 512x512 image vs. fixed 572 tiles
PEAK_FRACTION_TARGET = 0.8  # achieved inference GFLOP/s vs. the dense-convolution GFLOP/s of the same run

BENCHMARKS: dict[str, Callable[..., dict]] = {}


def register_benchmark(name: str) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Registers a benchmark function as the subcommand ``name``; it returns a JSON-serialisable results dict."""

    def decorate(function: Callable[..., dict]) -> Callable[..., dict]:
        if name in BENCHMARKS:
            raise ValueError(f"a benchmark named {name!r} is already registered.")
        BENCHMARKS[name] = function
        return function

    return decorate


def list_benchmarks() -> list[str]:
    """Names of the registered benchmarks (the subcommands)."""
    return sorted(BENCHMARKS)


# ---------------------------------------------------------------------------------------------------------------
# Shared machinery
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TimedCase:
    """One thing to time.

    Attributes:
        name: row label in the table and key in the results.
        run: callable doing one complete measured unit of work (it must finish its computation before returning).
        flops: useful floating-point operations of one ``run`` (``None`` when not meaningful).
        setup: optional callable run (untimed) before every ``run``, e.g. zeroing gradients.
    """

    name: str
    run: Callable[[], Any]
    flops: float | None = None
    setup: Callable[[], Any] | None = None


def configure_threads(threads: int | None) -> int:
    """Sets the intra-op thread count (``None`` keeps PyTorch's default) and returns the count in use."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int or None, got {threads!r}.")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def time_interleaved(cases: Sequence[TimedCase], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall-clock seconds of every case, ``repeats`` times each, in the order A B C A B C ...

    Interleaving spreads the load of other processes on a shared machine over all cases instead of biasing the one
    that happened to run during a busy spell. ``warmup`` untimed rounds come first (allocator, oneDNN primitive
    caches, ``torch.compile``).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}.")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}.")
    names = [case.name for case in cases]
    if len(set(names)) != len(names):
        raise ValueError(f"case names must be unique, got {names}.")
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        for case in cases:
            if case.setup is not None:
                case.setup()
            start = time.perf_counter()
            case.run()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                seconds[case.name].append(elapsed)
    return seconds


def summarize_seconds(seconds: Sequence[float], flops: float | None = None) -> dict[str, Any]:
    """Median, minimum and all samples of a timing, with GFLOP/s (at the median and at the minimum) when the
    work is known."""
    if not seconds:
        raise ValueError("no timings to summarize.")
    median, fastest = statistics.median(seconds), min(seconds)
    summary: dict[str, Any] = {"median_s": median, "min_s": fastest, "samples_s": list(seconds)}
    if flops is not None:
        summary["gflop"] = flops / 1e9
        summary["gflops_at_median"] = flops / median / 1e9
        summary["gflops_at_min"] = flops / fastest / 1e9
    return summary


def convolution_flops(network: nn.Module, input_shape: Sequence[int], backward: bool = False) -> float:
    """Floating-point operations of the convolutions (transposed ones included) of one pass of ``network``.

    Counted as 2 x multiply-accumulates per output element, for the tensor sizes the network really computes
    (``torch.utils.flop_counter``), by running it on the ``meta`` device: no memory, no arithmetic. Element-wise
    operations, pooling and concatenations are not counted: they are the overhead a fast implementation keeps small.

    Args:
        network: the network (not modified; evaluated in its current train/eval mode).
        input_shape: full input shape ``(N, C, *spatial)``.
        backward: also count the backward pass of a sum loss (gradients w.r.t. inputs of all but the first layer
            and w.r.t. all weights), i.e. a training step without the optimizer.
    """
    state = meta_copy_state(network)
    counter = FlopCounterMode(display=False)
    with counter:
        with torch.set_grad_enabled(backward):
            output = functional_call(network, state, (torch.empty(tuple(input_shape), device="meta"),))
            if backward:
                output.sum().backward()
    counts = counter.get_flop_counts().get("Global", {})
    return float(sum(value for op, value in counts.items() if "convolution" in str(op)))


def dense_conv_peak_case(
    channels: int = 256, size: int = 128, calls: int = 3, name: str = "dense conv peak"
) -> TimedCase:
    """A large dense 3x3 convolution (``channels -> channels``, ``size x size``, padding 1, channels-last, batch 1)
    whose GFLOP/s is the reference "peak" of this machine and thread setting; one ``run`` is ``calls`` calls."""
    for label, value in (("channels", channels), ("size", size), ("calls", calls)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"peak {label} must be a positive int, got {value!r}.")
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1).to(memory_format=torch.channels_last)
    image = torch.randn((1, channels, size, size), generator=generator).contiguous(memory_format=torch.channels_last)

    def run() -> None:
        with torch.inference_mode():
            for _ in range(calls):
                conv(image)

    flops = 2.0 * channels * channels * 9 * size * size * calls
    return TimedCase(f"{name} ({channels}->{channels} ch, {size}x{size}, x{calls})", run, flops)


def write_results(results: dict[str, Any], json_out: str | None, quiet: bool = False) -> None:
    """Writes a benchmark's results as JSON to ``json_out`` (nothing when ``None``), creating its folder."""
    if json_out:
        path = Path(json_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
        if not quiet:
            print(f"results written to {path}")


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Plain-text table with columns padded to their widest cell."""
    cells = [[str(h) for h in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _spatial_pair(size: Sequence[int] | int, name: str) -> tuple[int, int]:
    values = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {size!r}.")
    return values  # type: ignore[return-value]


def _environment(threads: int) -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "threads": threads,
        "interop_threads": torch.get_num_interop_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }


# ---------------------------------------------------------------------------------------------------------------
# U-Net (2015): the usual re-implementation
# ---------------------------------------------------------------------------------------------------------------


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size=3),
        nn.ReLU(inplace=True),
    )


class NaiveUNet(nn.Module):
    """The 2D U-Net of Ronneberger et al. (2015, Fig. 1) written the way most re-implementations do: plain
    ``nn.Conv2d``/``nn.ConvTranspose2d`` layers, skip maps cropped with explicitly computed slice offsets and joined
    with ``torch.cat``, contiguous (NCHW) fp32 tensors. The benchmark's baseline; layer shapes, concatenation order
    ``[skip, up-sampled]`` and dropout placement are those of :class:`UNet2015`, so weights can be copied over with
    :func:`copy_unet2015_weights`.

    Args:
        in_channels: input channels.
        out_channels: output channels (classes).
        features: channels per resolution level, full resolution first (the paper: 64, ..., 1024).
        dropout: dropout probability after the bottom block.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = PAPER_FEATURES,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        features = tuple(features)
        if len(features) < 2:
            raise ValueError(f"features needs at least 2 entries, got {features!r}.")
        self.depth = len(features) - 1
        self.encoder = nn.ModuleList(
            [_double_conv(in_channels, features[0])]
            + [_double_conv(features[level], features[level + 1]) for level in range(self.depth)]
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.dropout = nn.Dropout(dropout)
        self.up_convs = nn.ModuleList(
            [
                nn.ConvTranspose2d(features[level + 1], features[level], kernel_size=2, stride=2)
                for level in reversed(range(self.depth))
            ]
        )
        self.decoder = nn.ModuleList(
            [_double_conv(2 * features[level], features[level]) for level in reversed(range(self.depth))]
        )
        self.final = nn.Conv2d(features[0], out_channels, kernel_size=1)

    def conv_layers(self) -> list[nn.Module]:
        """The (transposed) convolutions in the order of Fig. 1: contracting path, then per expansive step the
        up-convolution and its two 3x3 convolutions, then the 1x1 output convolution."""
        layers: list[nn.Module] = [m for block in self.encoder for m in block if isinstance(m, nn.Conv2d)]
        for up_conv, block in zip(self.up_convs, self.decoder):
            layers.append(up_conv)
            layers.extend(m for m in block if isinstance(m, nn.Conv2d))
        layers.append(self.final)
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                x = self.pool(x)
            x = block(x)
            if level < self.depth:
                skips.append(x)
        x = self.dropout(x)
        for up_conv, block in zip(self.up_convs, self.decoder):
            x = up_conv(x)
            skip = skips.pop()
            top = (skip.shape[2] - x.shape[2]) // 2
            left = (skip.shape[3] - x.shape[3]) // 2
            skip = skip[:, :, top : top + x.shape[2], left : left + x.shape[3]]
            x = block(torch.cat([skip, x], dim=1))
        return self.final(x)


def copy_unet2015_weights(source: UNet2015, target: NaiveUNet) -> NaiveUNet:
    """Copies the weights of a 2D :class:`UNet2015` into a :class:`NaiveUNet` of the same widths (in place).

    Raises:
        ValueError: when the two networks do not have the same layers.
    """
    source_layers = [m for m in source.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    target_layers = target.conv_layers()
    if len(source_layers) != len(target_layers):
        raise ValueError(f"UNet2015 has {len(source_layers)} convolutions, NaiveUNet {len(target_layers)}.")
    with torch.no_grad():
        for index, (src, dst) in enumerate(zip(source_layers, target_layers)):
            if type(src) is not type(dst) or src.weight.shape != dst.weight.shape:
                raise ValueError(
                    f"convolution {index} differs: {type(src).__name__}{tuple(src.weight.shape)} vs "
                    f"{type(dst).__name__}{tuple(dst.weight.shape)}."
                )
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    return target


def fixed_tile_starts(size: int, output_tile: int) -> list[tuple[int, int]]:
    """Output tiles along one axis for the usual fixed-tile loop: starts ``0, t, 2t, ...`` and a last tile shifted
    back to end at the image edge (so it overlaps its neighbour and is not aligned to the pooling grid).

    Returns:
        ``(start, first_new)`` per tile: where its output begins and from where on it writes (the pixels before
        ``first_new`` were already written by the previous tile).
    """
    if output_tile < 1 or size < output_tile:
        raise ValueError(f"an image axis of {size} pixels cannot be covered by fixed output tiles of {output_tile}.")
    starts = list(range(0, size - output_tile, output_tile)) + [size - output_tile]
    return [(start, max(start, previous + output_tile)) for previous, start in zip([-output_tile] + starts, starts)]


def fixed_tile_inference(
    image: torch.Tensor, network: Callable[[torch.Tensor], torch.Tensor], tile: int, border: int
) -> tuple[torch.Tensor, int]:
    """The usual overlap-tile loop: mirror-pad the image by ``border``, cut fixed ``tile x tile`` inputs, run them
    one at a time, paste each ``tile - 2 border`` output; where the shifted last tiles overlap, the tile run first
    keeps its pixels.

    Args:
        image: ``(B, C, H, W)``; both spatial sizes at least ``tile - 2 * border``.
        network: maps ``(1, C, tile, tile)`` to ``(1, K, tile - 2 border, tile - 2 border)``.
        tile: input tile size.
        border: pixels lost per side by the network.

    Returns:
        ``(B, K, H, W)`` logits and the number of tiles run.
    """
    if image.dim() != 4:
        raise ValueError(f"image must be (B, C, H, W), got shape {tuple(image.shape)}.")
    output_tile = tile - 2 * border
    height, width = image.shape[2:]
    padded = F.pad(image, (border, border, border, border), mode="reflect")
    rows, columns = fixed_tile_starts(height, output_tile), fixed_tile_starts(width, output_tile)
    output: torch.Tensor | None = None
    tiles = 0
    for sample in range(image.shape[0]):
        for top, first_row in rows:
            for left, first_column in columns:
                logits = network(padded[sample : sample + 1, :, top : top + tile, left : left + tile])
                tiles += 1
                if output is None:
                    output = torch.empty((image.shape[0], logits.shape[1], height, width), dtype=logits.dtype)
                output[sample, :, first_row : top + output_tile, first_column : left + output_tile] = logits[
                    0, :, first_row - top :, first_column - left :
                ]
    assert output is not None
    return output, tiles


# ---------------------------------------------------------------------------------------------------------------
# U-Net (2015) benchmark
# ---------------------------------------------------------------------------------------------------------------


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


def _compile(network: nn.Module, probe: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor], float, str]:
    """``torch.compile`` with frozen weights (Inductor folds ReLUs and biases into prepacked oneDNN convolutions);
    falls back to the eager network with a warning when compilation fails. Returns the callable, the compile time
    (first call on ``probe``) and the mode used."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # weights are constants at inference: lets Inductor prepack them
    compiled = torch.compile(network)
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            compiled(probe)
    except Exception as error:  # a missing C++ compiler or an unsupported backend must not end the benchmark
        warnings.warn(f"torch.compile failed ({type(error).__name__}: {error}); timing the eager network instead.")
        return network, 0.0, "eager (compile failed)"
    return compiled, time.perf_counter() - start, "torch.compile (inductor, freezing)"


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    max_abs = (a.float() - b.float()).abs().max().item()
    scale = max(b.float().abs().max().item(), 1e-12)
    return {"max_abs_diff": max_abs, "max_abs_reference": scale, "relative": max_abs / scale}


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
        compiled, compile_seconds, mode = _compile(fast_net, probe)
        ours_call = _channels_last_caller(compiled) if channels_last else compiled
    mode += ", channels-last" if channels_last else ", contiguous"

    # One untimed pass of each records the tiles really run (for the FLOP count) and gives the agreement check.
    ours_recorder, baseline_recorder = _TileRecorder(ours_call), _TileRecorder(naive)
    with torch.inference_mode():
        ours_output = inferer(image, ours_recorder)
    with torch.no_grad():
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
        with torch.inference_mode():
            inferer(image, ours_call)

    def run_baseline() -> None:
        with torch.no_grad():
            fixed_tile_inference(image, naive, baseline_tile, net.border)

    peak = dense_conv_peak_case(peak_channels, peak_size, peak_calls)
    ours_name = f"ours: OverlapTileInferer + UNet2015 ({mode})"
    baseline_name = f"baseline: NaiveUNet, fixed {baseline_tile} tiles, one at a time"
    cases = [peak, TimedCase(ours_name, run_ours, ours_flops), TimedCase(baseline_name, run_baseline, baseline_flops)]
    eager_name = None
    if compare_eager and torch_compile:
        eager_name = "ours without torch.compile (eager)"

        def run_ours_eager() -> None:
            with torch.inference_mode():
                inferer(image, eager_call)

        cases.insert(2, TimedCase(eager_name, run_ours_eager, ours_flops))
    inference_seconds = time_interleaved(cases, repeats, warmup)
    inference = {case.name: summarize_seconds(inference_seconds[case.name], case.flops) for case in cases}

    training: dict[str, Any] = {}
    if not skip_training:
        training = _training_comparison(net, naive, baseline_tile, channels_last, train_repeats, warmup, seed)

    peak_gflops = inference[peak.name]["gflops_at_median"]
    speedup = inference[baseline_name]["median_s"] / inference[ours_name]["median_s"]
    peak_fraction = inference[ours_name]["gflops_at_median"] / peak_gflops
    tolerance = 1e-3
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
    net: UNet2015, naive: NaiveUNet, tile: int, channels_last: bool, repeats: int, warmup: int, seed: int
) -> dict[str, Any]:
    """Forward + backward + SGD step (the paper's momentum 0.99) on one ``tile x tile`` input for both networks."""
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
            loss = F.cross_entropy(network(x), labels)
            loss.backward()
            optimizer.step()

        return setup, run

    ours_setup, ours_run = step_runner(ours, ours_image)
    baseline_setup, baseline_run = step_runner(baseline, image)
    names = (
        f"train step ours: UNet2015 ({'channels-last' if channels_last else 'contiguous'})",
        "train step baseline: NaiveUNet",
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


def _unet2015_report(results: dict[str, Any]) -> str:
    names, settings, tiles = results["case_names"], results["settings"], results["tiles"]
    ours_tile, base_tile = tiles["ours"]["tile"], tiles["baseline"]["tile"]
    describe = {
        names["peak"]: "-",
        names["ours"]: f"{tiles['ours']['count']} x {ours_tile[0]}x{ours_tile[1]}",
        names["baseline"]: f"{tiles['baseline']['count']} x {base_tile[0]}x{base_tile[1]}",
    }
    if names["ours_eager"]:
        describe[names["ours_eager"]] = describe[names["ours"]]
    peak = results["inference"][names["peak"]]["gflops_at_median"]

    def row(name: str, summary: dict, work: str) -> list[str]:
        return [
            name,
            work,
            f"{summary['gflop']:.2f}",
            f"{summary['median_s'] * 1e3:.1f}",
            f"{summary['min_s'] * 1e3:.1f}",
            f"{summary['gflops_at_median']:.1f}",
            f"{100 * summary['gflops_at_median'] / peak:.0f}%",
        ]

    rows = [row(name, summary, describe[name]) for name, summary in results["inference"].items()]
    if results["training"]:
        for name, summary in results["training"]["steps"].items():
            rows.append(row(name, summary, f"1 x {results['training']['tile']}x{results['training']['tile']}"))
    header = ["case", "tiles", "GFLOP", "median ms", "min ms", "GFLOP/s", "of peak"]
    env = results["environment"]
    ratios, targets = results["ratios"], results["targets"]
    agreement = results["agreement"]
    lines = [
        f"UNet2015 benchmark: image {settings['image_size'][0]}x{settings['image_size'][1]}, features "
        f"{settings['features']}, {env['threads']} threads, torch {env['torch']}, {settings['repeats']} interleaved "
        f"repeats after {settings['warmup']} warm-up (compile took {settings['compile_seconds']:.1f} s)",
        format_table(rows, header),
        "",
        f"inference speedup (baseline / ours, medians): {ratios['inference_speedup_median']:.2f}x "
        f"(minima: {ratios['inference_speedup_min']:.2f}x; FLOP ratio {ratios['flop_ratio']:.2f}x)",
        f"ours at {100 * ratios['ours_fraction_of_peak_median']:.0f}% of the dense-conv peak "
        f"({peak:.1f} GFLOP/s; minima: {100 * ratios['ours_fraction_of_peak_min']:.0f}%), baseline at "
        f"{100 * ratios['baseline_fraction_of_peak_median']:.0f}%",
    ]
    if results["training"]:
        lines.append(f"training step speedup (baseline / ours, medians): {results['training']['speedup_median']:.2f}x")
    lines.append(
        "agreement with the baseline: max |diff| "
        f"{agreement['first_baseline_tile']['max_abs_diff']:.2e} on its first (grid-aligned) tile, "
        f"{agreement['whole_image']['max_abs_diff']:.2e} over the whole image (its shifted tiles pool on another "
        "grid); "
        f"max |logit| {agreement['first_baseline_tile']['max_abs_reference']:.2e}"
    )
    for label, key, unit in (
        ("speedup", "speedup", "x"),
        ("fraction of dense-conv peak", "fraction_of_peak", ""),
        ("agreement (relative, <=)", "agreement", ""),
    ):
        target = targets[key]
        comparison = "<=" if key == "agreement" else ">="
        lines.append(
            f"{'PASS' if target['passed'] else 'FAIL'}: {label} {target['value']:.3g}{unit} "
            f"(target {comparison} {target['target']}{unit})"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# attention_resunet: the Attention Res-UNet and its baselines against MONAI's AttentionUnet
# ---------------------------------------------------------------------------------------------------------------


def phase_contrast_networks(features: Sequence[int] = ATTENTION_FEATURES, with_baselines: bool = True) -> dict:
    """The networks of the Attention Res-UNet paper's Table 1 at one width, plus MONAI's ``AttentionUnet`` with the
    same channels per level (the reference), all binary 2D: name -> module.

    Widths follow ``features`` (5 levels): VGG-style networks (FCN-8s, SegNet) repeat the 4th width at the 5th level
    as VGG does, FCN-8s gets ``4 x features[-1]`` fully-connected channels (4096 for the paper's 1024).
    """
    import custom_networks
    from monai.networks.nets import AttentionUnet, BasicUNet

    features = [int(f) for f in features]
    if len(features) != 5:
        raise ValueError(f"features must give the 5 levels' widths, got {features}.")
    networks: dict[str, nn.Module] = {
        "AttentionResUNet (ours)": custom_networks.AttentionResUNet(2, 1, 1, features=features, dropout=0.2),
        "MONAI AttentionUnet": AttentionUnet(2, 1, 1, channels=features, strides=[2] * 4, dropout=0.2),
    }
    if with_baselines:
        vgg = features[:4] + [features[3]]
        networks.update({
            "FCN8s": custom_networks.FCN8s(2, 1, 1, features=vgg, fc_channels=4 * features[-1]),
            "MONAI BasicUNet": BasicUNet(2, 1, 1, features=(*features, features[0])),
            "SegNet": custom_networks.SegNet(2, 1, 1, features=vgg),
            "R2UNet": custom_networks.R2UNet(2, 1, 1, features=features),
        })
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
    networks = {name: net.eval().to(memory_format=torch.channels_last)
                for name, net in phase_contrast_networks(features, with_baselines).items()}
    frame = torch.rand((1, 1, height, width)).contiguous(memory_format=torch.channels_last)
    inferer = SlidingWindowInferer(roi_size=(roi_size, roi_size), sw_batch_size=sw_batch_size, overlap=overlap,
                                   mode="gaussian")
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

    inference_cases = [TimedCase(name, inference_run(net), window_flops[name] * windows)
                       for name, net in networks.items()]
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
            "frame_size": [height, width], "features": [int(f) for f in features], "roi_size": roi_size,
            "sw_batch_size": sw_batch_size, "overlap": overlap, "windows_per_frame": windows,
            "train_batch_size": train_batch_size, "repeats": repeats, "warmup": warmup, "seed": seed,
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


def _attention_resunet_report(results: dict[str, Any]) -> str:
    settings = results["settings"]
    lines = [
        f"Attention Res-UNet networks vs MONAI AttentionUnet, features {settings['features']}, "
        f"{results['environment']['threads']} thread(s), median of {settings['repeats']} interleaved runs",
        "",
        f"Inference of one {settings['frame_size'][0]}x{settings['frame_size'][1]} frame "
        f"({settings['windows_per_frame']} windows of {settings['roi_size']} px, Gaussian sliding window):",
    ]
    header = ["network", "params (M)", "median s", "GFLOP", "GFLOP/s", "time / MONAI", "GFLOP/s / MONAI"]
    for kind in ("inference", "training"):
        timings = results[kind]
        if not timings:
            continue
        if kind == "training":
            lines += ["", f"Training step (forward, BCE, backward, Adam) on {settings['train_batch_size']} "
                          f"patches of {settings['roi_size']} px:"]
        rows = []
        for name, summary in timings.items():
            ratio = results[f"{kind}_ratios"][name]
            rows.append([name, f"{results['parameters'][name] / 1e6:.2f}", f"{summary['median_s']:.3f}",
                         f"{summary['gflop']:.2f}", f"{summary['gflops_at_median']:.2f}",
                         f"{ratio['time_ratio_vs_reference']:.2f}", f"{ratio['throughput_ratio_vs_reference']:.2f}"])
        lines.append(format_table(rows, header))
    lines.append("")
    for name, target in results["targets"].items():
        verdict = "PASS" if target["passed"] else "MISS"
        lines.append(f"{name}: {target['value']:.2f} (target >= {target['target']:.1f}) {verdict}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# lgnet_memory: peak memory of one LG-Net training step
# ---------------------------------------------------------------------------------------------------------------

LGNET_MEMORY_TARGET_GIB = 16.0


def _peak_rss_bytes() -> int:
    """This process's peak resident set size (``ru_maxrss`` is in kB on Linux, in bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


_CHILD_PROGRAM = """
import importlib.util, json, sys
module_file, function_name, kwargs_json, result_file = sys.argv[1:5]
spec = importlib.util.spec_from_file_location("_benchmark_child", module_file)
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
result = getattr(module, function_name)(**json.loads(kwargs_json))
with open(result_file, "w") as file:
    json.dump(result, file)
"""


def peak_rss_of(function: Callable[..., dict], **kwargs: Any) -> dict:
    """Runs ``function(**kwargs)`` in a fresh Python process, so that its peak RSS is its own and not that of
    whatever ran before in this one, and returns the dict it returned; the function measures its own peak with
    ``ru_maxrss`` before returning. ``function`` must be a module-level function of a Python file (the child loads
    that file by path), its arguments and result JSON-serialisable. A child that fails or is killed (e.g. by the
    kernel's out-of-memory killer) raises ``RuntimeError`` with its exit code and the end of its error output."""
    import subprocess
    import tempfile

    module_file = sys.modules[function.__module__].__file__
    with tempfile.TemporaryDirectory() as folder:
        result_file = Path(folder) / "result.json"
        arguments = [module_file, function.__name__, json.dumps(kwargs), str(result_file)]
        completed = subprocess.run([sys.executable, "-c", _CHILD_PROGRAM, *arguments], capture_output=True, text=True)
        if completed.returncode != 0 or not result_file.exists():
            tail = "\n".join(completed.stderr.strip().splitlines()[-5:])
            raise RuntimeError(
                f"{function.__name__} failed in its child process (exit code {completed.returncode}"
                f"{', killed: out of memory?' if completed.returncode in (-9, 137) else ''}): {tail}"
            )
        return json.loads(result_file.read_text())


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
        spatial_dims=2, in_channels=1, out_channels=1, features=tuple(features),
        attention_size=attention_size, gradient_checkpointing=gradient_checkpointing,
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
            lgnet_training_step_memory, batch_size=batch_size, image_size=image_size, features=list(features),
            gradient_checkpointing=checkpointing, attention_size=attention_size, threads=threads, seed=seed,
        )
        for name, checkpointing in configurations.items()
    }
    default = runs["gradient checkpointing (default)"]
    results = {
        "benchmark": "lgnet_memory",
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "settings": {
            "batch_size": batch_size, "image_size": image_size, "features": list(features),
            "attention_size": attention_size, "loss": "TverskyFocalLoss (0.3 Tversky + 0.7 focal)",
            "optimizer": "Adam",
        },
        "runs": runs,
        "targets": {
            "peak_rss_gib": {
                "target": target_gib, "value": default["peak_rss_gib"],
                "passed": default["peak_rss_gib"] < target_gib,
            }
        },
    }
    if not quiet:
        header = ["configuration", "params (M)", "peak RSS before step (GiB)", "peak RSS (GiB)", "step (s)"]
        rows = [[name, f"{run['parameters'] / 1e6:.2f}", f"{run['peak_rss_before_step_gib']:.2f}",
                 f"{run['peak_rss_gib']:.2f}", f"{run['step_seconds']:.1f}"] for name, run in runs.items()]
        target = results["targets"]["peak_rss_gib"]
        print(f"LGNet training step, batch {batch_size} x {image_size}x{image_size}, features {list(features)}:")
        print(format_table(rows, header))
        verdict = "PASS" if target["passed"] else "MISS"
        print(f"peak_rss_gib: {target['value']:.2f} (target < {target_gib:.1f}) {verdict}")
    write_results(results, json_out, quiet)
    return results


def main() -> None:
    """Fire entry point: one subcommand per registered benchmark, plus ``list``."""

    def printed_only(function: Callable[..., dict]) -> Callable[..., None]:
        # The benchmark prints its own table (and writes --json_out); Fire would also dump the returned dict.
        @functools.wraps(function)
        def command(*args: Any, **kwargs: Any) -> None:
            function(*args, **kwargs)

        return command

    commands: dict[str, Callable[..., Any]] = {name: printed_only(f) for name, f in BENCHMARKS.items()}
    commands["list"] = list_benchmarks
    fire.Fire(commands)


if __name__ == "__main__":
    main()
