"""scripts/reproduce.py: variants of the U-Net bundle under one budget, the table, the figures and resuming;
and transforms.StopAfterSeconds, the wall-time budget it attaches to the trainer."""

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from PIL import Image

from medseg_tools import reproduce
from medseg_tools.runner import bundle_command
from transforms.handlers import StopAfterSeconds

BUNDLE = "unet_em_segmentation"
METRICS = ["val_mean_dice", "val_mean_iou", "val_pixel_error", "val_rand_error"]
TINY = [4, 8, 16, 32, 64]


def tiny_spec(**changes) -> dict:
    spec = {
        "title": "tiny U-Net comparison",
        "split": {"train_ids": [0], "val_ids": [20]},
        "budget": {"epochs": 1},
        "metrics": METRICS,
        "metric_labels": {"val_mean_dice": "Dice", "val_rand_error": "Rand error"},
        "paper": {"valid": {"val_rand_error": 0.0382}, "U-Net, challenge test set": {"val_pixel_error": 0.0611}},
        "variants": [
            # valid convolutions need a tile of 16k + 4 px, same padding a multiple of 16
            {"name": "valid", "overrides": {"features": TINY, "padding": "valid", "train_output_size": 100}},
            {"name": "same", "overrides": {"features": TINY, "padding": "same", "train_output_size": 96}},
            {"name": "Otsu", "training_free": "otsu"},
        ],
    }
    spec.update(changes)
    return spec


def table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, isbi_dir):
    folder = tmp_path_factory.mktemp("reproduce")
    spec_file = folder / "tiny.json"
    spec_file.write_text(json.dumps(tiny_spec()))
    out = folder / "out"
    overrides = {"dataset_dir": str(isbi_dir), "num_workers": 0}
    results = reproduce.reproduce(BUNDLE, str(spec_file), out_dir=str(out), seed=7, overrides=overrides)
    return {"out": out, "spec_file": spec_file, "results": results, "overrides": overrides}


@pytest.mark.slow
def test_table_has_a_row_per_variant_metric_columns_and_paper_values(reproduced):
    markdown = (reproduced["out"] / "results.md").read_text()
    header, _, *rows = table_rows(markdown)
    assert header == ["variant", "Dice ↑", "val_mean_iou ↑", "val_pixel_error ↓", "val_pixel_error (paper)",
                      "Rand error ↓", "Rand error (paper)", "train min", "epochs"]
    by_name = {row[0]: row for row in rows}
    assert set(by_name) == {"valid", "same", "Otsu", "U-Net, challenge test set (paper)"}
    assert by_name["valid"][header.index("Rand error (paper)")] == "0.0382"
    assert by_name["U-Net, challenge test set (paper)"][header.index("val_pixel_error (paper)")] == "0.0611"
    assert by_name["valid"][header.index("epochs")] == "1" and by_name["Otsu"][header.index("epochs")] == "–"
    for name in ("valid", "same", "Otsu"):
        for column in ("Dice ↑", "val_mean_iou ↑", "val_pixel_error ↓", "Rand error ↓"):
            assert 0.0 <= float(by_name[name][header.index(column)].strip("*")) <= 1.0
    # the exact command line that rebuilds this table is at the top
    command = reproduced["results"]["command"]
    assert command in markdown
    assert command.startswith(f"python scripts/reproduce.py {BUNDLE} {reproduced['spec_file']}")
    assert "--seed 7" in command and "--overrides" in command


@pytest.mark.slow
def test_results_json_records_metrics_budget_and_time(reproduced):
    results = json.loads((reproduced["out"] / "results.json").read_text())
    assert results == json.loads(json.dumps(reproduced["results"], default=str))
    assert results["budget"] == {"epochs": 1} and results["seed"] == 7 and results["validation_ids"] == [20]
    records = {record["name"]: record for record in results["variants"]}
    assert list(records) == ["valid", "same", "Otsu"]
    for name in ("valid", "same"):
        assert records[name]["epochs_run"] == 1 and records[name]["train_minutes"] > 0
        assert len(records[name]["curves"]["loss"]) == 1 and records[name]["curves"]["metric"][0][0] == 1
        assert Path(records[name]["log"]).is_file()
    assert records["Otsu"]["training_free"] == "otsu" and records["Otsu"]["train_minutes"] == 0.0
    # the same padding variant really ran with other settings than the valid one
    assert records["valid"]["metrics"] != records["same"]["metrics"]


@pytest.mark.slow
def test_bundle_metrics_equal_scores_of_saved_masks(reproduced, isbi_dir):
    """metrics.csv of evaluate.json and the masks of inference.json describe the same segmentation, so the
    overlay grid shows what the table scores (and the masks are read in the labels' orientation)."""
    out, results = reproduced["out"], reproduced["results"]
    spec = reproduce.load_spec(BUNDLE, reproduced["spec_file"])
    parser = reproduce.load_parser(BUNDLE, ["train.json", "evaluate.json"], {**spec.split, "dataset_dir": isbi_dir})
    (sample,) = reproduce.validation_samples(parser, spec.datalist_id, spec.preprocessing_id)
    for record in results["variants"]:
        mask = reproduce.read_mask(Path(record["predictions"]) / "20_mask.png")
        scores = reproduce.score_mask(mask, sample["truth"], METRICS)
        for metric in METRICS:
            assert scores[metric] == pytest.approx(record["metrics"][metric], abs=1e-6), (record["name"], metric)
    # Otsu: the mask is the image above its Otsu threshold, as written to disk
    from skimage.filters import threshold_otsu

    image = sample["image"][0]
    expected = image > threshold_otsu(image)
    np.testing.assert_array_equal(reproduce.read_mask(out / "variants" / "otsu" / "predictions" / "20_mask.png"),
                                  expected)
    stored = np.asarray(Image.open(out / "variants" / "otsu" / "predictions" / "20_mask.png")) > 0
    np.testing.assert_array_equal(stored, expected.T)  # files are the right way up, MONAI indexes (x, y)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["metrics_bar.png", "training_curves.png", "overlay_grid.png"])
def test_figures_are_real_pictures(reproduced, name):
    picture = np.asarray(Image.open(reproduced["out"] / name).convert("RGB"))
    assert picture.shape[0] >= 250 and picture.shape[1] >= 600
    colours = np.unique(picture.reshape(-1, 3), axis=0)
    assert len(colours) > 20 and picture.std() > 10


@pytest.mark.slow
def test_overlay_grid_has_a_column_per_variant(reproduced):
    picture = np.asarray(Image.open(reproduced["out"] / "overlay_grid.png").convert("RGB"))
    # image, ground truth and three variants of 2.4 in at 100 dpi
    assert picture.shape[1] == int(2.4 * 5 * 100)


@pytest.mark.slow
def test_resume_skips_finished_variants(reproduced):
    out = reproduced["out"]
    logs = {p: p.stat().st_mtime_ns for p in out.glob("variants/*/bundle.log")}
    started = time.monotonic()
    again = reproduce.reproduce(BUNDLE, str(reproduced["spec_file"]), out_dir=str(out), seed=7, resume=True,
                                overrides=reproduced["overrides"])
    assert time.monotonic() - started < 60
    assert [record["skipped"] for record in again["variants"]] == [True, True, True]
    assert [r["metrics"] for r in again["variants"]] == [r["metrics"] for r in reproduced["results"]["variants"]]
    assert {p: p.stat().st_mtime_ns for p in out.glob("variants/*/bundle.log")} == logs, "no bundle ran again"
    with pytest.raises(ValueError, match="other settings"):
        reproduce.reproduce(BUNDLE, str(reproduced["spec_file"]), out_dir=str(out), seed=8, resume=True,
                            overrides=reproduced["overrides"], variants=["Otsu"])


@pytest.mark.slow
def test_wall_time_budget_stops_training_after_the_first_epoch(tmp_path, isbi_dir):
    spec = reproduce.parse_spec(
        tiny_spec(budget={"epochs": 4, "minutes": 1e-4}, split={"train_ids": [0, 1], "val_ids": [20]})
    )
    variant = spec.variants[0]
    parser = reproduce.load_parser(BUNDLE, spec.configs)
    overrides = reproduce.training_overrides(spec, variant, tmp_path, 0, spec.budget,
                                             {"dataset_dir": isbi_dir, "num_workers": 0}, False, parser)
    # the bundle's recipe has its own clock: the budget sets it, the initialize steps stay the bundle's
    assert overrides["train_minutes"] == pytest.approx(1e-4) and "initialize" not in overrides
    command = bundle_command(BUNDLE, spec.configs, "training", overrides)
    reproduce.run_logged(command, tmp_path / "bundle.log", show_progress=False)
    log = (tmp_path / "bundle.log").read_text()
    assert "wall-time budget of 0 s spent at epoch 1" in log
    assert "Epoch: 2/4" not in log
    trainer = torch.load(tmp_path / "models" / "checkpoint_last.pt", weights_only=True)["trainer"]
    assert trainer["iteration"] == 1
    assert (tmp_path / "models" / "model.pt").is_file(), "the cut epoch is still validated and saved"
    assert json.loads((tmp_path / "models" / "elapsed_seconds.json").read_text())["epoch"] == 1


# --- fast checks without bundle runs ----------------------------------------------------------------------


def test_wall_time_budget_of_a_config_without_its_own_clock_attaches_a_stopper(tmp_path):
    from monai.bundle import ConfigParser

    spec = reproduce.parse_spec(tiny_spec(budget={"minutes": 2}))
    parser = ConfigParser({"initialize": ["$print('bundle step')"], "train": {"trainer": {}}})
    overrides = reproduce.training_overrides(spec, spec.variants[0], tmp_path, 0, spec.budget, {}, False, parser)
    assert overrides["wall_time_stopper"]["seconds"] == 120.0
    assert overrides["initialize"] == ["$print('bundle step')", "$@wall_time_stopper.attach(@train#trainer)"]


def test_time_to_metric_table_and_figure(tmp_path):
    spec = reproduce.parse_spec(
        tiny_spec(key_metric="val_mean_dice", reference_variant="same", metrics=["val_mean_dice"])
    )
    results = {
        "variants": [
            {"name": "valid", "training_free": None, "time_curve": [(60.0, 0.5), (120.0, 0.8), (180.0, 0.9)]},
            {"name": "same", "training_free": None, "time_curve": [(60.0, 0.4), (240.0, 0.8)]},
            {"name": "Otsu", "training_free": "otsu"},
        ]
    }
    assert reproduce.time_to_reach([(1.0, 0.2), (2.0, 0.6)], 0.5, lower_is_better=False) == 2.0
    assert reproduce.time_to_reach([(1.0, 0.2)], 0.5, lower_is_better=False) is None
    assert reproduce.time_to_reach([(1.0, 0.3), (2.0, 0.1)], 0.2, lower_is_better=True) == 2.0
    rows = table_rows("\n".join(reproduce.time_to_metric_lines(spec, results, "same")))
    # the reference's best (0.8) is reached after 2.0 min by "valid", 4.0 min by "same": 2x
    assert rows[2] == ["valid", "0.9000", "2.0", "2.00x"] and rows[3] == ["same", "0.8000", "4.0", "1.00x"]
    reproduce.plot_time_to_metric(spec, results, tmp_path / "time.png")
    assert Image.open(tmp_path / "time.png").size[0] > 100
    with pytest.raises(ValueError, match="reference_variant"):
        reproduce.parse_spec(tiny_spec(reference_variant="nope"))


def test_widths_spec_of_the_unet_bundle_is_valid():
    spec = reproduce.load_spec(BUNDLE, "widths")
    assert spec.budget == {"epochs": 10} and spec.split["val_ids"] == [20, 21, 22, 23]
    assert {v.training_free for v in spec.variants} == {None, "otsu"}
    parser = reproduce.load_parser(BUNDLE, spec.configs)
    for variant in spec.variants:
        reproduce.check_overrides(parser, variant, variant.overrides)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"budget": {"epochs": 0}}, "epochs must be an integer >= 1"),
        ({"budget": {"minutes": -1}}, "minutes must be a number > 0"),
        ({"budget": {"hours": 1}}, "unknown budget keys"),
        ({"variants": [{"name": "a", "training_free": "magic"}]}, "training-free method 'magic'"),
        ({"variants": [{"name": "A b"}, {"name": "a-b"}]}, "must differ"),
        ({"variants": [{"name": "a", "override": {}}]}, "unknown keys \\['override'\\]"),
        ({"metrics": []}, "'metrics' is missing"),
        ({"tittle": "x"}, "unknown keys \\['tittle'\\]"),
    ],
)
def test_bad_spec_is_refused_naming_the_problem(change, message):
    with pytest.raises(ValueError, match=message):
        reproduce.parse_spec(tiny_spec(**change))


def test_unknown_spec_name_lists_known_ones():
    with pytest.raises(FileNotFoundError, match="widths"):
        reproduce.spec_path(BUNDLE, "no_such_table")


def test_overrides_apply_only_where_their_parent_exists():
    inference = reproduce.load_parser(BUNDLE, ["inference.json"])
    overrides = {"features": TINY, "network_def#dropout": 0.1, "train#handlers": [], "validate#x": 1}
    assert reproduce.applicable_overrides(inference, overrides) == {"features": TINY, "network_def#dropout": 0.1}
    training = reproduce.load_parser(BUNDLE, ["train.json"])
    variant = reproduce.Variant("v", {"trian#handlers": []})
    with pytest.raises(ValueError, match="trian#handlers"):
        reproduce.check_overrides(training, variant, variant.overrides)


def test_mask_path_follows_the_inference_sub_folders_of_same_named_inputs(tmp_path):
    """inference.json keeps the inputs' sub-folders below their common folder (transforms.common_input_root), so
    the masks of Usiigaci's setN/raw.tif frames do not overwrite each other; reproduce reads and writes there."""
    images = [str(tmp_path / "data" / name / "raw.tif") for name in ("set29", "set30")]
    root = str(tmp_path / "data")
    paths = [reproduce.mask_path(tmp_path / "pred", {"image_path": image, "input_root": root}) for image in images]
    assert paths == [tmp_path / "pred" / "set29" / "raw_mask.png", tmp_path / "pred" / "set30" / "raw_mask.png"]
    alone = {"image_path": images[0], "input_root": str(Path(images[0]).parent)}
    assert reproduce.mask_path(tmp_path / "pred", alone) == tmp_path / "pred" / "raw_mask.png"


def test_otsu_separates_a_bimodal_image():
    rng = np.random.default_rng(0)
    truth = np.zeros((32, 40), bool)
    truth[8:20, 5:30] = True
    image = np.where(truth, 0.8, 0.2) + rng.normal(0, 0.05, truth.shape)
    np.testing.assert_array_equal(reproduce.otsu_threshold(image[None]), truth)
    np.testing.assert_array_equal(reproduce.otsu_threshold_dark(image), ~truth)
    assert not reproduce.otsu_threshold(np.ones((4, 4))).any()
    with pytest.raises(ValueError, match="2D"):
        reproduce.otsu_threshold(np.ones((2, 3, 4, 5)))


def test_overlay_rows_are_drawn_with_the_seed():
    assert reproduce.overlay_rows(2, 3, seed=0) == [0, 1]
    first = reproduce.overlay_rows(50, 3, seed=1)
    assert first == reproduce.overlay_rows(50, 3, seed=1) and len(set(first)) == 3 and first == sorted(first)
    assert any(reproduce.overlay_rows(50, 3, seed=s) != first for s in range(2, 6))
    with pytest.raises(ValueError, match="n_overlay"):
        reproduce.overlay_rows(5, 0, seed=0)


def test_training_curves_average_the_loss_per_epoch(tmp_path):
    log = tmp_path / "bundle.log"
    log.write_text(
        "2026 - INFO - Epoch: 1/2, Iter: 1/2 -- train_loss: 1.0000 \n"
        "2026 - INFO - Epoch: 1/2, Iter: 2/2 -- train_loss: 0.5000 \n"
        "2026 - INFO - Epoch[1] Metrics -- val_mean_dice: 0.3000 val_rand_error: 0.9000 \n"
        "2026 - INFO - Epoch: 2/2, Iter: 1/2 -- train_loss: 0.2500 \n"
        "2026 - INFO - Epoch: 2/2, Iter: 2/2 -- train_loss: 0.2500 \n"
        "2026 - INFO - Epoch[2] Metrics -- val_mean_dice: 0.5000 val_rand_error: 0.7000 \n"
    )
    curves = reproduce.read_training_curves(tmp_path / "no_runs", log, "train_loss", "val_mean_dice")
    assert curves == {"loss": [(1, 0.75), (2, 0.25)], "metric": [(1, 0.3), (2, 0.5)]}


def test_markdown_marks_the_best_value_by_metric_direction():
    spec = reproduce.parse_spec(tiny_spec(paper={}, notes="Scored on one image."))
    rows = [
        {"name": "valid", "training_free": None, "metrics": dict(zip(METRICS, (0.8, 0.7, 0.2, 0.3))),
         "train_minutes": 1.26, "epochs_run": 3},
        {"name": "Otsu", "training_free": "otsu", "metrics": dict(zip(METRICS, (0.6, 0.5, 0.1, math.nan))),
         "train_minutes": 0.0, "epochs_run": 0},
    ]
    results = {"variants": rows, "command": "python scripts/reproduce.py x y", "bundle": BUNDLE, "spec": "s",
               "seed": 0, "budget": {"minutes": 30}, "split": {"train_ids": [0]}, "n_validation": 1,
               "validation_ids": [20]}
    markdown = reproduce.results_markdown(spec, results)
    _, _, valid, otsu = table_rows(markdown)
    # one Rand error is not a ranking: nothing in bold there
    assert valid == ["valid", "**0.8000**", "**0.7000**", "0.2000", "0.3000", "1.3", "3"]
    assert otsu == ["Otsu", "0.6000", "0.5000", "**0.1000**", "–", "–", "–"]
    assert "30 min of wall time per variant" in markdown and "Scored on one image." in markdown


def test_tables_split_the_rows_and_may_replace_the_paper_values():
    tables = [
        {"title": "Baselines", "variants": ["Otsu", "valid"]},
        {"title": "Ablation", "variants": ["valid", "same"], "paper": {"valid": {"val_mean_dice": 0.9}}},
    ]
    spec = reproduce.parse_spec(tiny_spec(tables=tables))
    metrics = dict(zip(METRICS, (0.8, 0.7, 0.2, 0.3)))
    rows = [{"name": name, "training_free": None, "metrics": metrics, "train_minutes": 1.0, "epochs_run": 2}
            for name in ("valid", "same", "Otsu")]
    results = {"variants": rows, "command": "c", "bundle": BUNDLE, "spec": "s", "seed": 0, "budget": {"epochs": 2},
               "split": {"train_ids": [0]}, "n_validation": 1, "validation_ids": [20]}
    markdown = reproduce.results_markdown(spec, results)
    first, second = markdown.split("## Baselines")[1].split("## Ablation")
    assert [row[0] for row in table_rows(first)[2:]] == ["Otsu", "valid", "U-Net, challenge test set (paper)"]
    ablation = table_rows(second)
    assert [row[0] for row in ablation[2:]] == ["valid", "same"]
    # the table's own paper values replace the spec's: a Dice (paper) column, no Rand error (paper) column
    assert "Dice (paper)" in ablation[0] and "Rand error (paper)" not in ablation[0]
    assert ablation[2][ablation[0].index("Dice (paper)")] == "0.9000"


@pytest.mark.parametrize(
    "table, message",
    [({"title": "T", "variants": ["nope"]}, "unknown variants"), ({"variants": ["valid"]}, "needs a 'title'"),
     ({"title": "T", "variants": ["valid"], "rows": 1}, "unknown keys")],
)
def test_bad_tables_are_refused(table, message):
    with pytest.raises(ValueError, match=message):
        reproduce.parse_spec(tiny_spec(tables=[table]))


def test_command_line_overrides_replace_the_spec_split(tmp_path, monkeypatch):
    spec_file = tmp_path / "otsu.json"
    spec_file.write_text(json.dumps(tiny_spec(variants=[{"name": "Otsu", "training_free": "otsu"}])))
    results = reproduce.reproduce(BUNDLE, str(spec_file), out_dir=str(tmp_path / "out"),
                                  overrides={"val_ids": [21, 22]})
    assert results["split"]["val_ids"] == [21, 22] and results["validation_ids"] == [21, 22]


# --- StopAfterSeconds ---------------------------------------------------------------------------------------


def _slow_trainer(step_seconds: float) -> Engine:
    return Engine(lambda engine, batch: time.sleep(step_seconds))


def test_stop_after_seconds_ends_the_epoch_and_runs_its_handlers():
    trainer = _slow_trainer(0.02)
    completed_epochs = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: completed_epochs.append(e.state.iteration))
    StopAfterSeconds(0.05).attach(trainer)
    trainer.run(range(100), max_epochs=5)
    # stopped within the first epoch, after about 3 of its 100 iterations; validation of that epoch still ran
    assert len(completed_epochs) == 1 and 2 <= completed_epochs[0] < 20
    assert trainer.state.epoch == 1


def test_stop_after_seconds_keeps_the_budget_across_restarts(tmp_path):
    record = tmp_path / "elapsed.json"
    first = _slow_trainer(0.01)
    StopAfterSeconds(10.0, elapsed_path=record).attach(first)
    first.run(range(3), max_epochs=2)
    spent = json.loads(record.read_text())
    assert spent["epoch"] == 2 and 0.06 <= spent["elapsed_seconds"] < 10
    # a restart with a budget already spent trains nothing
    record.write_text(json.dumps({"elapsed_seconds": 11.0, "epoch": 2}))
    second = _slow_trainer(0.01)
    StopAfterSeconds(10.0, elapsed_path=record).attach(second)
    second.run(range(3), max_epochs=5)
    assert second.state.iteration == 0
    # an unreadable record counts as nothing spent
    record.write_text("{broken")
    third = _slow_trainer(0.0)
    StopAfterSeconds(10.0, elapsed_path=record).attach(third)
    third.run(range(3), max_epochs=2)
    assert third.state.epoch == 2


@pytest.mark.parametrize("seconds", [0, -1.0, float("nan"), float("inf"), "60"])
def test_stop_after_seconds_refuses_a_bad_budget(seconds):
    with pytest.raises(ValueError, match="finite budget"):
        StopAfterSeconds(seconds)


# --- the survey's families: every mask scored alike, with the network's cost ---------------------------------------


@pytest.mark.slow
def test_survey_spec_scores_saved_masks_and_reports_the_cost(tmp_path, isbi_dir):
    """Two families swapped in by configs/family.json, one epoch each: the table's survey metrics are the scores of
    the saved masks, with parameters, GFLOPs and CPU seconds per image, and the Dice-against-cost figure."""
    survey = json.loads((reproduce.spec_path(BUNDLE, "survey")).read_text())
    keep = {"U-Net (MONAI BasicUNet)", "MultiResUNet"}
    survey.update(
        split={"train_ids": [0], "val_ids": [20]},
        budget={"epochs": 1},
        variants=[v for v in survey["variants"] if v["name"] in keep],
    )
    spec_file = tmp_path / "survey.json"
    spec_file.write_text(json.dumps(survey))
    overrides = {"dataset_dir": str(isbi_dir), "num_workers": 0, "family_width": 4}
    results = reproduce.reproduce(BUNDLE, str(spec_file), out_dir=str(tmp_path / "out"), seed=1, overrides=overrides)
    rows = {row["name"]: row for row in results["variants"]}
    assert set(rows) == keep
    truth = reproduce.read_mask(isbi_dir / "label" / "20.png")  # indexed as the bundle reads it
    for row in rows.values():
        assert row["cost"]["parameters"] > 0 and row["cost"]["gflops"] > 0 and row["cost"]["cpu_seconds"] > 0
        mask = reproduce.read_mask(Path(row["predictions"]) / "20_mask.png")
        assert mask.shape == truth.shape
        expected = reproduce.score_mask(mask, truth, survey["metrics"])
        assert row["metrics"] == pytest.approx(expected, abs=1e-6)
    # the survey's DSC = 2J / (1 + J) holds per image
    dice, jaccard = expected["dice"], expected["iou"]
    assert dice == pytest.approx(2 * jaccard / (1 + jaccard), abs=1e-6)
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "| parameters (M) | GFLOPs / image | CPU s / image |" in markdown
    assert (tmp_path / "out" / "metric_against_cost.png").stat().st_size > 10_000


def test_survey_specs_list_every_family_of_the_registry():
    from custom_networks import FAMILIES

    for bundle in ("unet_em_segmentation", "mcsa_unet_nuclei_segmentation"):
        spec = reproduce.load_spec(bundle, "survey")
        names = {v.overrides.get("network_family") for v in spec.variants if not v.training_free}
        assert names == set(FAMILIES), bundle
        assert spec.score_from == "predictions" and spec.cost
        assert set(spec.metrics) == {"accuracy", "sensitivity", "specificity", "dice", "iou"}
