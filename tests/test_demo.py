"""The README's main job (scripts/demo.py) on a tiny schedule: masks, overlays and a metrics table."""

import numpy as np
from PIL import Image

from medseg_tools import demo


def test_demo_writes_masks_overlays_and_metrics(tmp_path, isbi_dir):
    table_path = demo.main(
        workdir=str(tmp_path),
        epochs=1,
        features=(4, 8, 16, 32, 64),
        train_ids=(0, 1),
        val_ids=(2,),
        test_ids=(20, 21),
        train_output_size=100,
    )
    table = open(table_path).read()
    assert "| 20 |" in table and "| 21 |" in table and "**mean**" in table
    for stem in ("20", "21"):
        mask = np.asarray(Image.open(tmp_path / "predictions" / f"{stem}_mask.png"))
        assert mask.shape == (512, 512) and set(np.unique(mask)) <= {0, 255}
        overlay = np.asarray(Image.open(tmp_path / "overlays" / f"{stem}_overlay.png"))
        assert overlay.shape == (512, 512, 3)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0] == "image,dice,iou,pixel_error,rand_error" and len(rows) == 4
