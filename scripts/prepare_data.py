"""Get, convert and check the datasets the bundles train on.

Usage (``python scripts/prepare_data.py COMMAND ...``, a `fire <https://github.com/google/python-fire>`_ CLI)::

    python scripts/prepare_data.py data_dir isbi2012_em                 # where the local copy is
    python scripts/prepare_data.py fetch isbi2012_em data/isbi2012_em   # link the local copy, else download
    python scripts/prepare_data.py link phc_usiigaci data/phc --copy    # copy instead of symlink
    python scripts/prepare_data.py download isbi2012_em data/isbi2012_em
    python scripts/prepare_data.py convert_isbi train-volume.tif train-labels.tif data/isbi2012_em
    python scripts/prepare_data.py convert_usiigaci Usiigaci-master data/phc_usiigaci
    python scripts/prepare_data.py convert_monuseg_xml monuseg2018/annotations data/monuseg_instances
    python scripts/prepare_data.py validate data/isbi2012_em --layout isbi

Local copies are looked up in ``$MEDSEG_DATA`` (default: ``<repo>/../shared/data``), one folder per
dataset (``isbi2012_em``, ``phc_usiigaci``, ...). Every command that takes a ``dest`` writes the
dataset folder itself there (``dest/image/0.png``, ``dest/set1/raw.tif``).

The datasets, their sources and conversions live in :mod:`medseg_tools.data`.
"""

import sys

from medseg_tools.data.cli import main

if __name__ == "__main__":
    sys.exit(main())
