"""Reproduce a paper's comparison with a bundle: train and evaluate its variants under one equal budget.

    python scripts/reproduce.py unet_em_segmentation widths --out_dir outputs/reproduce/widths
    python scripts/reproduce.py unet_em_segmentation widths --epochs 2 --overrides '{"num_workers": 0}'
    python scripts/reproduce.py unet_em_segmentation widths --minutes 30    # equal wall time instead
    python scripts/reproduce.py unet_em_segmentation widths --resume True   # skip the finished variants

A reproduction is described by a JSON file, ``bundles/<bundle>/configs/reproduce/<name>.json``::

    {
      "title": "U-Net (2015): width and padding",
      "configs": ["train.json"],                 # training configs, merged in order (default)
      "split": {"train_ids": [0, 1], "val_ids": [20, 21]},
      "budget": {"epochs": 10},                  # and/or {"minutes": 30}: the same for every variant
      "metrics": ["val_mean_dice", "val_rand_error"],   # columns, as named in the bundle's metrics.csv
      "metric_labels": {"val_mean_dice": "Dice"},       # optional column titles
      "paper": {"U-Net": {"val_rand_error": 0.0382}},   # the paper's numbers, shown side by side
      "notes": "The paper's values come from the challenge's test set.",   # optional, under the table
      "reference_variant": "plain baseline",     # optional: time-to-metric table against this variant
      "score_from": "predictions",               # optional: score every variant's saved masks here (one
                                                 # definition for all) instead of reading evaluate.json
      "cost": true,                              # optional: parameters, GFLOPs and CPU s of one image
      "tables": [                                # optional: several tables from one run (default: one table)
        {"title": "Table 1", "variants": ["U-Net", "Otsu threshold"]},
        {"title": "Table 2", "variants": ["U-Net", "U-Net, same padding"], "paper": {"U-Net": {"dice": 0.9}}}
      ],
      "variants": [
        {"name": "U-Net", "overrides": {"features": [64, 128, 256, 512, 1024]}},
        {"name": "U-Net, same padding", "overrides": {"padding": "same"}, "configs": []},
        {"name": "MultiResUNet", "configs": ["family.json"], "inference_configs": ["family.json"],
         "overrides": {"network_family": "multiresunet"}},
        {"name": "Otsu threshold", "training_free": "otsu"}
      ]
    }

Each trained variant is run through ``python -m monai.bundle`` (:mod:`medseg_tools.runner`) three times:
``training`` with its own ``ckpt_dir`` / ``log_dir``, then ``evaluate.json`` on the validation ids (its
``metrics.csv`` gives the table), then ``inference.json`` on the validation images (masks for the overlay
grid). A variant's ``overrides`` apply to every stage where their parent id exists (``network_def#x`` is
skipped for a config without ``network_def``); ``configs`` are extra training config files,
``inference_configs`` extra inference config files. Training-free
variants (``TRAINING_FREE``, e.g. an Otsu threshold) segment the bundle's own preprocessed validation images
in this process and are scored with the same metric definitions (``transforms.metrics``).

Outputs in ``out_dir``: ``results.md`` (the table and the command reproducing it), ``results.json``,
``metrics_bar.png``, ``training_curves.png``, ``time_to_metric.png`` (validation key metric against minutes of
training), ``overlay_grid.png``, ``metric_against_cost.png`` (with ``cost``), and ``variants/<name>/`` with each
variant's checkpoints, TensorBoard logs, evaluation, masks and full bundle log (``bundle.log``).
"""

from medseg_tools.reproduce.baselines import TRAINING_FREE, otsu_threshold, otsu_threshold_dark
from medseg_tools.reproduce.bundles import (  # noqa: F401 (_plain: JSON-able overrides, the bundle tests use it)
    BundleRunError,
    _plain,
    applicable_overrides,
    load_parser,
    read_metric_over_time,
    read_metrics_csv,
    read_training_curves,
    run_logged,
)
from medseg_tools.reproduce.report import (
    overlay_rows,
    plot_metrics_bar,
    plot_overlay_grid,
    plot_time_to_metric,
    plot_training_curves,
    results_markdown,
    table_lines,
    time_to_metric_lines,
    time_to_reach,
)
from medseg_tools.reproduce.run import (
    DONE_MARKER,
    check_overrides,
    reproduce,
    reproduction_command,
    run_trained_variant,
    run_training_free_variant,
    training_overrides,
)
from medseg_tools.reproduce.samples import (
    PYTHON_METRICS,
    display_view,
    mask_path,
    read_mask,
    score_mask,
    validation_samples,
    write_mask,
)
from medseg_tools.reproduce.spec import (
    SPEC_FOLDER,
    ReproductionSpec,
    Variant,
    check_budget,
    describe_budget,
    load_spec,
    parse_spec,
    spec_path,
)

__all__ = [
    "TRAINING_FREE",
    "otsu_threshold",
    "otsu_threshold_dark",
    "BundleRunError",
    "applicable_overrides",
    "load_parser",
    "read_metric_over_time",
    "read_metrics_csv",
    "read_training_curves",
    "run_logged",
    "overlay_rows",
    "plot_metrics_bar",
    "plot_overlay_grid",
    "plot_time_to_metric",
    "plot_training_curves",
    "results_markdown",
    "table_lines",
    "time_to_metric_lines",
    "time_to_reach",
    "DONE_MARKER",
    "check_overrides",
    "reproduce",
    "reproduction_command",
    "run_trained_variant",
    "run_training_free_variant",
    "training_overrides",
    "PYTHON_METRICS",
    "display_view",
    "mask_path",
    "read_mask",
    "score_mask",
    "validation_samples",
    "write_mask",
    "SPEC_FOLDER",
    "ReproductionSpec",
    "Variant",
    "check_budget",
    "describe_budget",
    "load_spec",
    "parse_spec",
    "spec_path",
]
