"""Speed benchmarks of the project's networks against the usual way of running them, side by side in one process.

    python scripts/benchmark.py list                                   # registered benchmarks
    python scripts/benchmark.py unet2015                               # the paper's widths, a 512x512 image
    python scripts/benchmark.py unet2015 --features "[16,32,64,128,256]" --repeats 3 --torch_compile False
    python scripts/benchmark.py unet2015 --threads 2 --json_out outputs/benchmark_unet2015.json
    python scripts/benchmark.py lgnet_memory                           # peak RSS of an LG-Net training step
    python scripts/benchmark.py precision --threads 1                  # fp32 vs bf16 autocast, every bundle's network
    python scripts/benchmark.py precision --small                      # the same in seconds (tiny widths and sizes)
    python scripts/benchmark.py unet2015 --precision bf16              # overlap-tile case against the bf16 peak

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

``precision`` times every bundle's network in fp32 and under bf16 autocast (the bundles' ``"amp": true`` on a CPU
with AMX-BF16): one training step and the inference of one real validation image through the bundle's inferer, at
the recipe's and the paper's widths, with the GFLOP/s against dense-convolution peaks of both precisions and the
bf16/fp32 speedups against the targets (:mod:`medseg_tools.benchmark.cases.precision`).

New benchmarks are functions decorated with :func:`register_benchmark`; they become subcommands and can reuse
:func:`time_interleaved`, :func:`convolution_flops`, :func:`dense_conv_peak_case` and :func:`format_table`.
"""

# importing the cases registers their benchmarks (the subcommands of scripts/benchmark.py)
from medseg_tools.benchmark.cases.attention_resunet import (
    ATTENTION_FEATURES,
    attention_resunet,
    phase_contrast_networks,
)
from medseg_tools.benchmark.cases.bundle_inference import bundle_inference
from medseg_tools.benchmark.cases.epoch import epoch, timed_epoch, transform_timer
from medseg_tools.benchmark.cases.lgnet_memory import (
    LGNET_MEMORY_TARGET_GIB,
    lgnet_memory,
    lgnet_training_step_memory,
)
from medseg_tools.benchmark.cases.precision import RECIPES, NetworkRecipe, precision
from medseg_tools.benchmark.cases.unet2015 import PAPER_FEATURES, unet2015
from medseg_tools.benchmark.cases.unet2015_baseline import (
    NaiveUNet,
    copy_unet2015_weights,
    fixed_tile_inference,
    fixed_tile_starts,
)
from medseg_tools.benchmark.harness import (
    BENCHMARKS,
    TimedCase,
    configure_threads,
    convolution_flops,
    dense_conv_peak_case,
    list_benchmarks,
    peak_rss_of,
    register_benchmark,
    summarize_seconds,
    time_interleaved,
    write_results,
)
from medseg_tools.benchmark.report import format_table

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
    "lgnet_training_step_memory",
    "precision",
    "NetworkRecipe",
    "RECIPES",
    "write_results",
    "epoch",
    "bundle_inference",
    "timed_epoch",
    "transform_timer",
    "PAPER_FEATURES",
    "ATTENTION_FEATURES",
    "LGNET_MEMORY_TARGET_GIB",
]
