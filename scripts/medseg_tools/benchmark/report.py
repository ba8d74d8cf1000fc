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
        f"{settings['features']}, {settings.get('precision', 'fp32')}, {env['threads']} threads, torch {env['torch']}, {settings['repeats']} interleaved "
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


def _precision_report(results: dict[str, Any]) -> str:
    env, settings = results["environment"], results["settings"]
    lines = [
        f"Precision benchmark: fp32 vs bf16 autocast ({env['bf16_units'] or 'no bf16 units: emulated'}), "
        f"{env['threads']} thread(s), torch {env['torch']}, medians of {settings['repeats']} interleaved runs after "
        f"{settings['warmup']} warm-up" + (", small sizes" if settings["small"] else ""),
        "",
        "Dense 3x3 convolution peak, timed with each network's rows:",
    ]
    peak_rows = [
        [
            group["network"],
            f"{group['width']} {'-'.join(str(f) for f in (group['features'][0], group['features'][-1]))}",
            f"{group['peak']['fp32']['gflops_at_median']:.1f}",
            f"{group['peak']['bf16']['gflops_at_median']:.1f}",
            f"{group['peak']['fp32']['median_s'] / group['peak']['bf16']['median_s']:.2f}x",
        ]
        for group in results["groups"]
    ]
    lines.append(format_table(peak_rows, ["network", "width", "fp32 GFLOP/s", "bf16 GFLOP/s", "bf16/fp32"]))
    header = ["network", "width", "case", "work", "GFLOP", "fp32 ms", "bf16 ms", "fp32 GFLOP/s", "bf16 GFLOP/s"]
    header += ["bf16/fp32", "target", "verdict"]
    rows = []
    for group in results["groups"]:
        for row in group["rows"]:
            rows.append(
                [
                    row["network"],
                    row["width"],
                    row["case"],
                    row["work"],
                    f"{row['fp32']['gflop']:.1f}",
                    f"{row['fp32']['median_s'] * 1e3:.0f}",
                    f"{row['bf16']['median_s'] * 1e3:.0f}",
                    f"{row['fp32']['gflops_at_median']:.0f} ({100 * row['fp32_fraction_of_peak']:.0f}%)",
                    f"{row['bf16']['gflops_at_median']:.0f} ({100 * row['bf16_fraction_of_peak']:.0f}%)",
                    f"{row['ratio']:.2f}x",
                    "-" if row["target"] is None else f">= {row['target']}x",
                    "-" if row["passed"] is None else ("PASS" if row["passed"] else "FAIL"),
                ]
            )
    lines += ["", "GFLOP/s in brackets: % of the peak of the same precision.", format_table(rows, header), ""]
    for group in results["groups"]:
        agreement, compiled = group["agreement"], group["torch_compile"]
        line = (
            f"{group['network']} ({group['width']}): bf16 vs fp32 inference output max |diff| "
            f"{agreement['max_abs_diff']:.3g} (max |fp32| {agreement['max_abs_reference']:.3g}), decision differs on "
            f"{100 * agreement['decision_disagreement']:.3f}% of pixels"
        )
        if compiled and "compile_s" in compiled:
            line += (
                f"; torch.compile bf16: {compiled['speedup_vs_eager_bf16']:.2f}x eager bf16, compiled in about "
                f"{compiled['compile_s']:.0f} s"
            )
        elif compiled:
            line += f"; torch.compile failed: {compiled['error']}"
        lines.append(line)
    verdict = results["passed"]
    lines.append("")
    lines.append(f"overall: {'no targets at these widths' if verdict is None else 'PASS' if verdict else 'FAIL'}")
    return "\n".join(lines)
