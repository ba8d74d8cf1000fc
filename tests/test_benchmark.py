"""scripts/benchmark.py: FLOP counts, the naive baseline (network and fixed-tile loop), interleaved timing, a
tiny end-to-end run of the ``unet2015`` subcommand through its command line, and small runs of the ``precision``
benchmark (fp32 against bf16 autocast) on the bundles' real images."""

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from custom_networks.unet2015 import UNet2015, is_valid_tile_size
from medseg_tools import benchmark
from medseg_tools.benchmark.cases import unet2015 as unet2015_case
from tests.conftest import require_dataset
from transforms.inferers import OverlapTileInferer

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "benchmark.py"
TINY_FEATURES = (2, 4, 8)  # depth 2: border 20, valid tiles 44, 48, 52, ...


def test_convolution_flops_match_hand_counts():
    conv = nn.Conv2d(3, 5, kernel_size=3)
    # output 8x10 per image, 2 images, 3*9 multiply-accumulates per output element, 2 FLOPs each
    forward = 2 * (2 * 5 * 8 * 10) * (3 * 9)
    assert benchmark.convolution_flops(conv, (2, 3, 10, 12)) == forward
    # backward of a first layer: only the weight gradient (the input needs none), as many FLOPs as the forward
    assert benchmark.convolution_flops(conv, (2, 3, 10, 12), backward=True) == 2 * forward
    up = nn.ConvTranspose2d(4, 6, kernel_size=2, stride=2)
    # every input element feeds 6 channels x 2x2 taps
    assert benchmark.convolution_flops(up, (1, 4, 5, 5)) == 2 * (4 * 5 * 5) * 6 * 4
    assert not any(p.is_meta for p in conv.parameters())  # counted on the meta device, module untouched


def test_dense_conv_peak_case_counts_its_work():
    case = benchmark.dense_conv_peak_case(channels=4, size=6, calls=2)
    assert case.flops == 2 * 4 * 4 * 9 * 6 * 6 * 2
    case.run()
    with pytest.raises(ValueError, match="channels"):
        benchmark.dense_conv_peak_case(channels=0)
    bf16 = benchmark.dense_conv_peak_case(channels=4, size=6, calls=2, precision="bf16")
    assert bf16.flops == case.flops and "bf16" in bf16.name and "bf16" not in case.name
    bf16.run()
    with pytest.raises(ValueError, match="precision"):
        benchmark.dense_conv_peak_case(precision="fp16")


def test_naive_unet_with_copied_weights_equals_unet2015():
    torch.manual_seed(0)
    net = UNet2015(features=TINY_FEATURES).eval()
    naive = benchmark.copy_unet2015_weights(net, benchmark.NaiveUNet(1, 2, TINY_FEATURES)).eval()
    tile = torch.rand(2, 1, 68, 68)
    with torch.no_grad():
        expected = net(tile)
        got = naive(tile)
    assert got.shape == expected.shape == (2, 2, 28, 28)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    assert len(naive.conv_layers()) == 2 * 3 + 3 * 2 + 1  # 3 double convs down, 2 steps up (+deconv), 1x1 conv
    with pytest.raises(ValueError, match="convolutions"):
        benchmark.copy_unet2015_weights(UNet2015(features=(2, 4)), benchmark.NaiveUNet(1, 2, TINY_FEATURES))
    with pytest.raises(ValueError, match="differs"):
        benchmark.copy_unet2015_weights(UNet2015(features=(2, 4, 16)), benchmark.NaiveUNet(1, 2, TINY_FEATURES))


def test_fixed_tiles_cover_the_image_like_the_usual_loop():
    # 512 pixels, 388-pixel outputs: tiles at 0 and 124, the second writing only from 388 on
    assert benchmark.fixed_tile_starts(512, 388) == [(0, 0), (124, 388)]
    assert benchmark.fixed_tile_starts(388, 388) == [(0, 0)]
    assert benchmark.fixed_tile_starts(1000, 388) == [(0, 0), (388, 388), (612, 776)]
    with pytest.raises(ValueError, match="cannot be covered"):
        benchmark.fixed_tile_starts(300, 388)

    def crop_network(tile: torch.Tensor) -> torch.Tensor:
        # loses the 92-pixel border like the paper's U-Net; channel 1 tags the tile by its first context pixel
        core = tile[..., 92:-92, 92:-92]
        return torch.cat([core, tile[..., :1, :1].expand_as(core)], dim=1)

    image = torch.arange(2 * 512 * 500, dtype=torch.float32).reshape(2, 1, 512, 500)
    output, tiles = benchmark.fixed_tile_inference(image, crop_network, tile=572, border=92)
    assert tiles == 2 * 2 * 2
    assert output.shape == (2, 2, 512, 500)
    assert torch.equal(output[:, :1], image)  # mirror padding + cropping + stitching put every pixel back
    # the top-left tile owns [0, 388)^2: its first context pixel is the mirror image of pixel (92, 92)
    assert torch.all(output[0, 1, :388, :388] == image[0, 0, 92, 92])


def test_fixed_tiles_match_overlap_tile_inference_only_on_the_pooling_grid():
    torch.manual_seed(0)
    net = UNet2015(features=TINY_FEATURES).eval()  # depth 2: pooling grid of period 4
    naive = benchmark.copy_unet2015_weights(net, benchmark.NaiveUNet(1, 2, TINY_FEATURES)).eval()
    inferer = OverlapTileInferer(
        border=net.border, valid_tile_size=functools.partial(is_valid_tile_size, depth=2), memory_budget_mb=None
    )
    differences = {}
    for size in (36, 38):  # 28-pixel outputs: the last tile starts at 8 (on the grid) or at 10 (off it)
        image = torch.rand(1, 1, size, size)
        with torch.no_grad():
            fixed, _ = benchmark.fixed_tile_inference(image, naive, tile=68, border=net.border)
            reference = inferer(image, net)
        differences[size] = (fixed - reference).abs()
        assert differences[size][..., :28, :28].max() < 1e-5  # the first tile is on the grid in both cases
    assert differences[36].max() < 1e-5
    assert differences[38].max() > 1e-3  # the usual loop's shifted tile pools on another grid


def test_time_interleaved_runs_cases_alternately():
    calls = []
    cases = [
        benchmark.TimedCase("a", lambda: calls.append("a"), flops=10.0, setup=lambda: calls.append("setup")),
        benchmark.TimedCase("b", lambda: calls.append("b")),
    ]
    seconds = benchmark.time_interleaved(cases, repeats=2, warmup=1)
    assert calls == ["setup", "a", "b"] * 3
    assert {name: len(values) for name, values in seconds.items()} == {"a": 2, "b": 2}
    summary = benchmark.summarize_seconds([2.0, 1.0, 4.0], flops=4e9)
    assert (summary["median_s"], summary["min_s"], summary["gflops_at_median"], summary["gflops_at_min"]) == (
        2.0,
        1.0,
        2.0,
        4.0,
    )
    with pytest.raises(ValueError, match="repeats"):
        benchmark.time_interleaved(cases, repeats=0)
    with pytest.raises(ValueError, match="unique"):
        benchmark.time_interleaved([cases[0], cases[0]], repeats=1)


def test_compile_failure_falls_back_to_the_eager_network(monkeypatch):
    def failing_compile(module):
        def compiled(x):
            raise RuntimeError("no C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "freezing", inductor_config.freezing)  # restored after the test
    net = nn.Conv2d(1, 1, 1)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        runner, seconds, mode = unet2015_case._compile(net, torch.zeros(1, 1, 2, 2))
    assert runner is net and seconds == 0.0 and mode == "eager (compile failed)"


def test_registry_and_bad_settings():
    assert "unet2015" in benchmark.list_benchmarks()
    with pytest.raises(ValueError, match="already registered"):
        benchmark.register_benchmark("unet2015")(lambda: {})
    with pytest.raises(ValueError, match="not a valid tile"):
        benchmark.unet2015(image_size=48, features=TINY_FEATURES, baseline_tile=70, quiet=True)
    with pytest.raises(ValueError, match="smaller than the baseline's output tile"):
        benchmark.unet2015(image_size=20, features=TINY_FEATURES, baseline_tile=68, quiet=True)


def test_cli_tiny_run_reports_tiles_flops_and_verdicts(tmp_path):
    json_out = tmp_path / "results.json"
    command = [
        sys.executable,
        str(SCRIPT),
        "unet2015",
        "--image_size=48",
        "--features=[2,4,8]",
        "--baseline_tile=68",
        "--repeats=2",
        "--warmup=0",
        "--train_repeats=1",
        "--torch_compile=False",
        "--threads=1",
        "--peak_channels=8",
        "--peak_size=16",
        f"--json_out={json_out}",
    ]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    results = json.loads(json_out.read_text())

    # 48 + 2 * 20 = 88 is a valid tile: ours runs one; the baseline's 28-pixel outputs need 2 x 2 tiles of 68
    assert results["tiles"]["ours"] == {"tile": [88, 88], "count": 1, "calls": [[1, 1, 88, 88]]}
    assert results["tiles"]["baseline"] == {"tile": [68, 68], "count": 4}
    net = UNet2015(features=TINY_FEATURES)
    names = results["case_names"]
    ours, baseline = results["inference"][names["ours"]], results["inference"][names["baseline"]]
    assert ours["gflop"] == pytest.approx(benchmark.convolution_flops(net, (1, 1, 88, 88)) / 1e9)
    assert baseline["gflop"] == pytest.approx(4 * benchmark.convolution_flops(net, (1, 1, 68, 68)) / 1e9)
    assert results["ratios"]["flop_ratio"] == pytest.approx(baseline["gflop"] / ours["gflop"])
    assert len(ours["samples_s"]) == len(baseline["samples_s"]) == 2
    assert results["ratios"]["inference_speedup_median"] == pytest.approx(baseline["median_s"] / ours["median_s"])
    assert results["environment"]["threads"] == 1
    assert results["agreement"]["first_baseline_tile"]["relative"] < 1e-4
    assert results["targets"]["agreement"]["passed"]
    steps = results["training"]["steps"]
    assert len(steps) == 2 and all(len(step["samples_s"]) == 1 for step in steps.values())
    # forward + backward on one 68 tile: up to 3x the forward (the first layer needs no input gradient)
    tile_gflop = benchmark.convolution_flops(net, (1, 1, 68, 68)) / 1e9
    assert all(2 * tile_gflop < step["gflop"] < 3 * tile_gflop for step in steps.values())
    for verdict in ("speedup", "fraction of dense-conv peak", "agreement"):
        assert any(line.startswith(("PASS", "FAIL")) and verdict in line for line in completed.stdout.splitlines())
    assert "results written to" in completed.stdout


def test_attention_resunet_benchmark_counts_windows_flops_and_ratios(capsys):
    results = benchmark.attention_resunet(
        frame_size=(40, 48), features=(2, 4, 8, 16, 32), roi_size=32, sw_batch_size=2, overlap=0.25,
        train_batch_size=1, repeats=1, warmup=0, threads=1,
    )
    # a 40 x 48 frame in 32-px windows at 25 % overlap (stride 24): 2 x 2 windows
    assert results["settings"]["windows_per_frame"] == 4
    networks = benchmark.phase_contrast_networks((2, 4, 8, 16, 32))
    assert set(results["inference"]) == set(networks) == {
        "AttentionResUNet (ours)", "MONAI AttentionUnet", "FCN8s", "MONAI BasicUNet", "SegNet", "R2UNet"}
    ours = results["inference"]["AttentionResUNet (ours)"]
    window_flops = benchmark.convolution_flops(networks["AttentionResUNet (ours)"].eval(), (1, 1, 32, 32))
    assert ours["gflop"] == pytest.approx(4 * window_flops / 1e9)
    reference = results["inference_ratios"]["MONAI AttentionUnet"]
    assert reference == {"time_ratio_vs_reference": 1.0, "throughput_ratio_vs_reference": 1.0}
    target = results["targets"]["training_throughput_vs_monai_attention_unet"]
    ours_training = results["training"]["AttentionResUNet (ours)"]["gflops_at_median"]
    assert target["value"] == pytest.approx(ours_training / results["training"]["MONAI AttentionUnet"]["gflops_at_median"])
    assert target["passed"] == (target["value"] >= 1.0) and ours_training > 0
    assert "GFLOP/s / MONAI" in capsys.readouterr().out
    with pytest.raises(ValueError, match="5 levels"):
        benchmark.phase_contrast_networks((2, 4, 8))


def test_lgnet_memory_measures_a_real_training_step_in_a_child_process(tmp_path):
    results = benchmark.lgnet_memory(
        batch_size=1, image_size=32, features=(2, 4, 8, 16, 32), attention_size=8, threads=1,
        json_out=str(tmp_path / "memory.json"), quiet=True,
    )
    run = results["runs"]["gradient checkpointing (default)"]
    # a training process holds at least the Python + PyTorch runtime, and the step can only raise the peak
    assert 0.05 < run["peak_rss_before_step_gib"] <= run["peak_rss_gib"] < 16
    assert run["parameters"] > 0 and run["step_seconds"] > 0 and run["loss"] > 0
    target = results["targets"]["peak_rss_gib"]
    assert target == {"target": 16.0, "value": run["peak_rss_gib"], "passed": True}
    assert json.loads((tmp_path / "memory.json").read_text())["runs"]["gradient checkpointing (default)"] == run


def test_lgnet_memory_reports_a_failing_child_and_bad_arguments():
    failure = r"(?s)lgnet_training_step_memory failed in its child process \(exit code 1\).*ValueError"
    with pytest.raises(RuntimeError, match=failure):
        benchmark.peak_rss_of(
            benchmark.lgnet_training_step_memory, batch_size=1, image_size=32, features=[4],
            gradient_checkpointing=True, attention_size=8, threads=1, seed=0,
        )
    with pytest.raises(ValueError, match="image_size"):
        benchmark.lgnet_memory(image_size=0)
    with pytest.raises(ValueError, match="target_gib"):
        benchmark.lgnet_memory(target_gib=0)


def test_unet2015_benchmark_in_bf16_compares_with_the_bf16_peak():
    tiny = {"image_size": 48, "features": TINY_FEATURES, "baseline_tile": 68, "quiet": True}
    runs = {"repeats": 1, "warmup": 0, "train_repeats": 1, "torch_compile": False, "threads": 1}
    results = benchmark.unet2015(**tiny, **runs, peak_channels=8, peak_size=16, precision="bf16")
    names = results["case_names"]
    assert results["settings"]["precision"] == "bf16"
    assert "bf16" in names["peak"] and "bf16 autocast" in names["ours"] and "bf16 autocast" in names["baseline"]
    peak = results["inference"][names["peak"]]["gflops_at_median"]
    ours = results["inference"][names["ours"]]["gflops_at_median"]
    assert results["ratios"]["ours_fraction_of_peak_median"] == pytest.approx(ours / peak)
    assert results["targets"]["agreement"]["target"] == unet2015_case.AGREEMENT_TOLERANCE["bf16"]
    assert all("bf16 autocast" in name for name in results["training"]["steps"])
    with pytest.raises(ValueError, match="precision"):
        benchmark.unet2015(**tiny, precision="fp16")


def test_precision_benchmark_reports_both_precisions_ratios_and_peaks(tmp_path, capsys):
    for name in ("isbi2012_em", "monuseg2018"):
        require_dataset(name)
    json_out = tmp_path / "precision.json"
    networks = "unet2015,mcsa_unet_nuclei_segmentation"  # names are case-insensitive; bundle names work too
    results = benchmark.precision(networks, small=True, repeats=2, warmup=0, threads=1, json_out=str(json_out))
    assert json.loads(json_out.read_text())["groups"][0]["rows"][0]["ratio"] == results["groups"][0]["rows"][0]["ratio"]
    # every recipe (16-256) is narrower than the paper's width: two groups per network
    assert [(g["network"], g["width"], g["features"]) for g in results["groups"]] == [
        ("UNet2015", "recipe", [2, 4, 8, 16, 32]),
        ("UNet2015", "paper", [8, 16, 32, 64, 128]),
        ("MCSAUNet", "recipe", [2, 4, 8, 16, 32]),
        ("MCSAUNet", "paper", [8, 16, 32, 64, 128]),
    ]
    unet, unet_paper, mcsa, mcsa_paper = results["groups"]
    # the real validation images through the bundles' preprocessing, center-cropped to 64 px
    assert unet["image"] == {"source": "isbi2012_em/20", "shape": [1, 1, 64, 64]}
    assert mcsa["image"] == {"source": "monuseg2018/TCGA-50-5931-01Z-00-DX1", "shape": [1, 3, 64, 64]}
    assert unet["training_batch"] == [1, 1, 64, 64]  # the release recipe pads its convolutions: no context tile
    assert mcsa["training_batch"] == [1, 3, 64, 64]
    for group in results["groups"]:
        peak = group["peak"]
        assert set(peak) == {"fp32", "bf16"}
        assert peak["fp32"]["gflop"] == peak["bf16"]["gflop"] == pytest.approx(2 * 16 * 16 * 9 * 32 * 32 / 1e9)
        assert all(peak[p]["gflops_at_median"] > 0 and len(peak[p]["samples_s"]) == 2 for p in peak)
        assert [row["case"] for row in group["rows"]] == ["train step", "inference"]
        for row in group["rows"]:
            fp32, bf16 = row["fp32"], row["bf16"]
            assert fp32["gflop"] == bf16["gflop"] > 0 and len(fp32["samples_s"]) == len(bf16["samples_s"]) == 2
            assert row["ratio"] == pytest.approx(fp32["median_s"] / bf16["median_s"])
            for p in ("fp32", "bf16"):
                fraction = row[p]["gflops_at_median"] / peak[p]["gflops_at_median"]
                assert row[f"{p}_fraction_of_peak"] == pytest.approx(fraction)
        assert 0 <= group["agreement"]["decision_disagreement"] <= 1
    # FLOPs of what ran: the recipe's network (same padding, batch norm) on the 64-px training crop
    net = UNet2015(features=(2, 4, 8, 16, 32), padding="same", norm="batch")
    assert unet["rows"][0]["fp32"]["gflop"] == pytest.approx(
        benchmark.convolution_flops(net.train(), (1, 1, 64, 64), backward=True) / 1e9
    )
    # targets: UNet2015 at both widths, the others at the recipe's width only
    rows = unet["rows"] + unet_paper["rows"] + mcsa["rows"] + mcsa_paper["rows"]
    assert [row["target"] for row in rows] == [2.5, 2.8, 2.5, 2.8, 1.8, 2.0, None, None]
    assert all(row["passed"] == (row["ratio"] >= row["target"]) for row in rows[:6])
    assert all(row["passed"] is None for row in rows[6:])
    assert results["passed"] == all(row["passed"] for row in rows[:6])
    printed = capsys.readouterr().out
    assert "fp32 GFLOP/s" in printed and "bf16 GFLOP/s" in printed and "bf16/fp32" in printed
    rows_printed = [line for line in printed.splitlines() if line.startswith("MCSAUNet") and "train step" in line]
    verdicts = [line.split()[-1] for line in rows_printed]
    assert verdicts[0] in ("PASS", "FAIL") and verdicts[1] == "-"  # recipe width: a verdict; paper width: none


def test_precision_benchmark_runs_the_bundles_monai_baselines():
    """The plain MONAI baselines (configs/baseline_monai.json) have one width, their own network and loss."""
    require_dataset("isbi2012_em")
    from monai.networks.nets import BasicUNet

    results = benchmark.precision("BasicUNet-ISBI", small=True, repeats=1, warmup=0, threads=1, quiet=True)
    (group,) = results["groups"]
    assert (group["network"], group["width"], group["features"]) == ("BasicUNet-ISBI", "recipe", [2, 4, 8, 16, 32])
    expected = BasicUNet(2, 1, 2, features=(2, 4, 8, 16, 32, 2))
    assert group["parameters"] == sum(p.numel() for p in expected.parameters())
    assert "DiceCELoss" in group["rows"][0]["work"] and [r["target"] for r in group["rows"]] == [1.8, 2.0]


def test_precision_benchmark_rejects_bad_choices():
    with pytest.raises(ValueError, match="unknown network"):
        benchmark.precision(networks="VNet")
    with pytest.raises(ValueError, match="widths"):
        benchmark.precision(networks="UNet2015", widths="half")
    with pytest.raises(ValueError, match="train_batch_size"):
        benchmark.precision(networks="UNet2015", train_batch_size=0)
