"""Score saved predictions of a bundle against a labelled folder, and draw overlays.

    python scripts/score_predictions.py PREDICTIONS_DIR DATASET_DIR --layout isbi --ids "[20,21,22,23]"

The scoring lives in :mod:`medseg_tools.scoring`.
"""

import fire

from medseg_tools.scoring import main

if __name__ == "__main__":
    fire.Fire(main)
