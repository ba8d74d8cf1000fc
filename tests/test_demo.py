"""The README's main job (scripts/demo.py): the shipped model's masks, overlays and metrics table, and the
training path on a tiny schedule."""

import numpy as np
from PIL import Image

from medseg_tools import demo


def _check_outputs(tmp_path, stems):
    for stem in stems:
        mask = np.asarray(Image.open(tmp_path / "predictions" / f"{stem}_mask.png"))
        assert mask.shape == (512, 512) and set(np.unique(mask)) <= {0, 255}
        overlay = np.asarray(Image.open(tmp_path / "overlays" / f"{stem}_overlay.png"))
        assert overlay.shape == (512, 512, 3)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0] == "image,dice,iou,pixel_error,rand_error" and len(rows) == len(stems) + 2
    return {name: float(value) for name, value in zip(rows[0].split(","), rows[-1].split(",")) if name != "image"}


def test_demo_segments_with_the_shipped_model(tmp_path, isbi_dir):
    table_path = demo.main(workdir=str(tmp_path), test_ids=(20, 21))
    table = open(table_path).read()
    assert "| 20 |" in table and "| 21 |" in table and "**mean**" in table and "shipped model" in table
    mean = _check_outputs(tmp_path, ("20", "21"))
    # far from the trivial "cell everywhere" mask (Dice 0.87, pixel error 0.23 on these images)
    assert mean["dice"] > 0.92 and mean["pixel_error"] < 0.12


def test_demo_trains_first_with_epochs(tmp_path, isbi_dir):
    table_path = demo.main(workdir=str(tmp_path), epochs=1, features=(4, 8, 16, 32, 64), train_ids=(0, 1), test_ids=(20,))
    assert "release recipe, 1 epochs" in open(table_path).read()
    assert (tmp_path / "models" / "model.pt").is_file()
    _check_outputs(tmp_path, ("20",))
