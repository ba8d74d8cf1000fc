"""The command line of ``scripts/reproduce.py``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from medseg_tools.paths import in_repo
from medseg_tools.reproduce.run import reproduce


def main(
    bundle: str,
    spec: str,
    out_dir: str = "outputs/reproduce",
    seed: int = 0,
    resume: bool = False,
    epochs: int | None = None,
    minutes: float | None = None,
    variants: Sequence[str] | str | None = None,
    overrides: Mapping[str, Any] | str | None = None,
    n_overlay: int = 3,
) -> str:
    """Trains and evaluates the variants of a reproduction spec; prints the table, returns ``results.md``'s path.

    Args:
        bundle: bundle name in ``bundles/`` (e.g. ``unet_em_segmentation``) or its path.
        spec: spec name in ``bundles/<bundle>/configs/reproduce/`` (e.g. ``widths``) or a JSON file path.
        out_dir: folder of the results (relative paths are taken from the repository root).
        seed: passed to every bundle run and used for any sampling here.
        resume: keep finished variants and continue an interrupted one; False starts every variant afresh.
        epochs: replaces the spec's budget with this many epochs per variant.
        minutes: replaces the spec's budget with this wall time per variant (with --epochs: whichever first).
        variants: names of the variants to run, e.g. '["U-Net 1/4 width, valid padding"]' (default all).
        overrides: bundle overrides for every run, e.g. '{"dataset_dir": "/data/isbi", "num_workers": 0}'.
        n_overlay: rows (validation images) of the overlay grid.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    reproduce(bundle, spec, out_dir, seed, resume, epochs, minutes, variants, overrides, n_overlay)
    table = in_repo(out_dir) / "results.md"
    print(table.read_text())
    return str(table)
