"""The benchmarks, one module per group; each registers its subcommands when imported."""
