"""The project's main job, end to end on real data: train the U-Net (2015) bundle, segment held-out
images, and write masks, overlay pictures and a metrics table.

    python scripts/demo.py                 # short CPU schedule, results in outputs/demo
    python scripts/demo.py --epochs 50 --features "[64,128,256,512,1024]"   # the paper's width

Every step goes through ``python -m monai.bundle`` exactly as the bundle's docs/README.md shows; the steps are
:func:`medseg_tools.demo.main`.
"""

import fire

from medseg_tools.demo import main

if __name__ == "__main__":
    fire.Fire(main)
