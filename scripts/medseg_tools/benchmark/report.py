"""Plain-text tables and the printed reports of the benchmarks (from their JSON-serialisable results)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Plain-text table with columns padded to their widest cell."""
    cells = [[str(h) for h in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


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
            lines += [
                "",
                f"Training step (forward, BCE, backward, Adam) on {settings['train_batch_size']} "
                f"patches of {settings['roi_size']} px:",
            ]
        rows = []
        for name, summary in timings.items():
            ratio = results[f"{kind}_ratios"][name]
            rows.append(
                [
                    name,
                    f"{results['parameters'][name] / 1e6:.2f}",
                    f"{summary['median_s']:.3f}",
                    f"{summary['gflop']:.2f}",
                    f"{summary['gflops_at_median']:.2f}",
                    f"{ratio['time_ratio_vs_reference']:.2f}",
                    f"{ratio['throughput_ratio_vs_reference']:.2f}",
                ]
            )
        lines.append(format_table(rows, header))
    lines.append("")
    for name, target in results["targets"].items():
        verdict = "PASS" if target["passed"] else "MISS"
        lines.append(f"{name}: {target['value']:.2f} (target >= {target['target']:.1f}) {verdict}")
    return "\n".join(lines)
