"""Reproduce a paper's comparison with a bundle: train and evaluate its variants under one equal budget.

    python scripts/reproduce.py unet_em_segmentation widths --out_dir outputs/reproduce/widths
    python scripts/reproduce.py unet_em_segmentation widths --epochs 2 --overrides '{"num_workers": 0}'
    python scripts/reproduce.py unet_em_segmentation widths --minutes 30    # equal wall time instead
    python scripts/reproduce.py unet_em_segmentation widths --resume True   # skip the finished variants

The spec format, the runs and the outputs are described in :mod:`medseg_tools.reproduce`.
"""

import fire

from medseg_tools.reproduce.cli import main

if __name__ == "__main__":
    fire.Fire(main)
