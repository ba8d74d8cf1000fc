"""The benchmarks' machinery: the registry of subcommands, interleaved timing, FLOP counts, the dense-convolution
peak, peak memory of a function in a fresh process, and writing results."""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from transforms.inferers import meta_call, meta_copy_state

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
            output = meta_call(network, state, torch.empty(tuple(input_shape), device="meta"))
            if backward:
                output.sum().backward()
    counts = counter.get_flop_counts().get("Global", {})
    return float(sum(value for op, value in counts.items() if "convolution" in str(op)))


PEAK_PRECISIONS = ("fp32", "bf16")


def dense_conv_peak_case(
    channels: int = 256, size: int = 128, calls: int = 3, name: str = "dense conv peak", precision: str = "fp32"
) -> TimedCase:
    """A large dense 3x3 convolution (``channels -> channels``, ``size x size``, padding 1, channels-last, batch 1)
    whose GFLOP/s is the reference "peak" of this machine and thread setting; one ``run`` is ``calls`` calls.

    ``precision="bf16"`` runs it with bf16 weights and input, the kernel that bf16 autocast runs for every
    convolution (on a CPU with AMX-BF16 several times the fp32 peak), so that networks under autocast are compared
    with the peak of their own precision; the weights are converted once, not per call as autocast would.
    """
    for label, value in (("channels", channels), ("size", size), ("calls", calls)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"peak {label} must be a positive int, got {value!r}.")
    if precision not in PEAK_PRECISIONS:
        raise ValueError(f"peak precision must be one of {PEAK_PRECISIONS}, got {precision!r}.")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1).to(memory_format=torch.channels_last, dtype=dtype)
    image = torch.randn((1, channels, size, size), generator=generator).contiguous(memory_format=torch.channels_last)
    image = image.to(dtype)

    def run() -> None:
        with torch.inference_mode():
            for _ in range(calls):
                conv(image)

    flops = 2.0 * channels * channels * 9 * size * size * calls
    suffix = ", bf16" if precision == "bf16" else ""  # the fp32 name stays what earlier results used
    return TimedCase(f"{name} ({channels}->{channels} ch, {size}x{size}, x{calls}{suffix})", run, flops)


def write_results(results: dict[str, Any], json_out: str | None, quiet: bool = False) -> None:
    """Writes a benchmark's results as JSON to ``json_out`` (nothing when ``None``), creating its folder."""
    if json_out:
        path = Path(json_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
        if not quiet:
            print(f"results written to {path}")


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


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    max_abs = (a.float() - b.float()).abs().max().item()
    scale = max(b.float().abs().max().item(), 1e-12)
    return {"max_abs_diff": max_abs, "max_abs_reference": scale, "relative": max_abs / scale}


def _peak_rss_bytes() -> int:
    """This process's peak resident set size (``ru_maxrss`` is in kB on Linux, in bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


_CHILD_PROGRAM = """
import importlib, importlib.util, json, sys
module_name, module_file, function_name, kwargs_json, result_file = sys.argv[1:6]
if module_name != "__main__":  # an installed module (medseg_tools...): imported once, by name
    module = importlib.import_module(module_name)
else:  # a function of a script run as __main__: its file, by path
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
    ``ru_maxrss`` before returning. ``function`` must be a module-level function of an importable module (the child
    imports it by name; a script run as ``__main__`` is loaded by path), its arguments and result
    JSON-serialisable. A child that fails or is killed (e.g. by the
    kernel's out-of-memory killer) raises ``RuntimeError`` with its exit code and the end of its error output."""
    import subprocess
    import tempfile

    module_name = function.__module__
    module_file = sys.modules[module_name].__file__
    with tempfile.TemporaryDirectory() as folder:
        result_file = Path(folder) / "result.json"
        arguments = [module_name, module_file, function.__name__, json.dumps(kwargs), str(result_file)]
        completed = subprocess.run([sys.executable, "-c", _CHILD_PROGRAM, *arguments], capture_output=True, text=True)
        if completed.returncode != 0 or not result_file.exists():
            tail = "\n".join(completed.stderr.strip().splitlines()[-5:])
            raise RuntimeError(
                f"{function.__name__} failed in its child process (exit code {completed.returncode}"
                f"{', killed: out of memory?' if completed.returncode in (-9, 137) else ''}): {tail}"
            )
        return json.loads(result_file.read_text())
