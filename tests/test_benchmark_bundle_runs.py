"""The benchmarks that run whole bundles: one training epoch split by stage (``epoch``) and ``inference.json`` end to
end (``bundle_inference``), fp32 against the automatic precision, on real ISBI images at a tiny width."""

import collections

import monai.transforms.transform as monai_transform
import pytest
from monai.transforms import Compose, RandFlip, ScaleIntensity

from medseg_tools import benchmark

TINY = {"features": [4, 8, 16, 32, 64], "train_ids": [0, 1], "val_ids": [20], "num_workers": 0}


def test_transform_timer_counts_each_transform_once_and_restores_monai():
    original = monai_transform._apply_transform
    seconds = collections.defaultdict(float)
    with benchmark.transform_timer(seconds):
        Compose([ScaleIntensity(), Compose([RandFlip(prob=1.0)])])(__import__("torch").rand(1, 4, 4))
    assert set(seconds) == {"ScaleIntensity", "RandFlip*"}  # nested Compose not counted, random ones marked
    assert monai_transform._apply_transform is original


def test_epoch_benchmark_splits_one_real_epoch(isbi_dir):
    results = benchmark.epoch("unet_em_segmentation", overrides=TINY, repeats=1, threads=1, quiet=True)
    assert results["iterations"] == 2
    assert set(results["runs"]) == {"fp32", "auto"} and results["runs"]["fp32"][0]["precision"] == "fp32"
    for stages in results["median_seconds"].values():
        assert stages["epoch"] > 0 and stages["steps"] > 0 and stages["validation"] > 0 and stages["loading"] > 0
        parts = stages["batches"] + stages["steps"] + stages["validation"] + stages["other"]
        assert parts == pytest.approx(stages["epoch"])
    # the weight maps are part of what CacheDataset caches, and they were timed
    assert (
        results["transforms_seconds"]["BorderWeightMapd"] > 0 and "RandPaperElasticd*" in results["transforms_seconds"]
    )


def test_bundle_inference_benchmark_runs_inference_json_both_ways(isbi_dir, tmp_path):
    out = tmp_path / "inference.json"
    results = benchmark.bundle_inference(
        images=1, tta="none", overrides={"features": [4, 8, 16, 32, 64]}, repeats=1, json_out=str(out), quiet=True
    )
    assert len(results["images"]) == 1 and results["speedup"] > 0
    assert set(results["seconds"]) == {"fp32", "default"} and out.is_file()
