"""Speed benchmarks of the project's networks against the usual way of running them, side by side in one process.

    python scripts/benchmark.py list                                   # registered benchmarks
    python scripts/benchmark.py unet2015                               # the paper's widths, a 512x512 image
    python scripts/benchmark.py unet2015 --features "[16,32,64,128,256]" --repeats 3 --torch_compile False
    python scripts/benchmark.py unet2015 --threads 2 --json_out outputs/benchmark_unet2015.json
    python scripts/benchmark.py lgnet_memory                           # peak RSS of an LG-Net training step
    python scripts/benchmark.py precision --threads 1                  # fp32 vs bf16 autocast, every bundle's network
    python scripts/benchmark.py precision --small                      # the same in seconds (tiny widths and sizes)
    python scripts/benchmark.py unet2015 --precision bf16              # overlap-tile case against the bf16 peak

The benchmarks live in :mod:`medseg_tools.benchmark` (its docstring says what each compares and how it is timed).
"""

from medseg_tools.benchmark.cli import main

if __name__ == "__main__":
    main()
