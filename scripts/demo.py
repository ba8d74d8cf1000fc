"""The project's main job, end to end on real data: segment ISBI 2012 images with the U-Net (2015) bundle's
shipped weights (or train its release recipe first), and write masks, overlay pictures and a metrics table.

    python scripts/demo.py                 # the shipped model on images 20-23, results in outputs/demo
    python scripts/demo.py --epochs 20     # train the release recipe for 20 epochs first (progress bar)

Every step goes through ``python -m monai.bundle`` exactly as the bundle's docs/README.md shows; the steps are
:func:`medseg_tools.demo.main`.
"""

import fire

from medseg_tools.demo import main

if __name__ == "__main__":
    fire.Fire(main)
