"""Package a bundle of ``bundles/`` as a self-contained MONAI Model Zoo bundle, and check such a package.

Usage (``python scripts/package_bundle.py COMMAND ...``, a `fire <https://github.com/google/python-fire>`_ CLI)::

    python scripts/package_bundle.py package unet_em_segmentation --overrides tests/bundle_smoke_overrides.json
    python scripts/package_bundle.py package all --workflows False          # every bundle, static checks only
    python scripts/package_bundle.py package unet_em_segmentation --weights runs/model.pt \\
        --defaults '{"features": [16, 32, 64, 128, 256]}' --export_torchscript True --weights_url https://...
    python scripts/package_bundle.py check dist/unet_em_segmentation --overrides tests/bundle_smoke_overrides.json
    python scripts/package_bundle.py ship unet_em_segmentation --weights runs/model.pt --metrics_csv eval/metrics.csv

``ship`` makes trained weights the bundle's shipped model (``models/model.pt``, ``large_files.yml`` with md5 and
URL, ``eval_metrics`` of ``metadata.json``); ``package`` then includes them by default.

``package`` writes ``OUT_DIR/<bundle>/`` and ``OUT_DIR/<bundle>_v<version>.zip`` (default ``OUT_DIR``: ``dist``):

- ``scripts/``: the repository's ``custom_networks`` and ``transforms`` packages, copied whole (the bundles' docs
  swap ``network_def`` for any class of ``custom_networks``, and each package's ``__init__`` re-exports all of it)
  and formatted with black and isort; the repository's copies are not changed.
- ``configs/``: the bundle's configs with every reference to the repository's packages rewritten to the
  vendored copy: ``_target_`` paths become ``scripts.custom_networks.X`` / ``scripts.transforms.X``, expressions
  use ``@bundle_scripts.transforms.X``, where the config item ``bundle_scripts`` puts the bundle folder on
  ``sys.path`` and imports ``scripts``. Every ``initialize`` list starts with ``$@bundle_scripts``, so the
  bundle runs from any working directory given ``--bundle_root`` (a plain ``$import scripts`` is evaluated
  before anything else, when only the working directory is on ``sys.path``). ``data_root`` falls back to
  ``<bundle_root>/data`` instead of the repository's ``../shared/data``. ``configs/reproduce/`` (specs of
  the repository's ``scripts/reproduce.py``) is left out.
- ``docs/README.md`` in the Model Zoo's sections, ``docs/data_license.txt``, ``LICENSE``, ``large_files.yml``
  and ``models/model.pt`` (``--weights``), ``models/model.ts`` (``--export_torchscript``).

The checks (``check``; ``package`` runs them before writing the zip) fail with exit status 1 and one message
per problem naming the bundle, the file and the problem:

- static: required files, the ids the Model Zoo expects in ``train.json`` / ``inference.json``, metadata
  against the local copy of the zoo's schema, version in the changelog, no reference left to the repository's
  packages, no path leaving the bundle folder, every ``scripts.*`` path of the configs exists in the vendored
  code, the vendored code imports no project package and its module-level imports are in the metadata's
  packages, ``large_files.yml`` entries and hashes, and the zoo's code style (flake8, black, isort, 120
  columns);
- workflows (``--workflows False`` skips them): ``ConfigWorkflow.check_properties()`` of the train and
  inference workflows (this builds the datasets: the data must be there, ``--overrides`` can point at it and
  shrink the run), ``python -m monai.bundle verify_net_in_out``, and ``ckpt_export`` to TorchScript compared
  numerically with the eager network on a random input of the metadata's input shape (with ``models/model.pt``
  when present, else seeded random weights).

The code is the ``medseg_tools.zoo`` package (installed with the project); this file is its command line.
"""

import sys

from medseg_tools.zoo.packaging import main

if __name__ == "__main__":
    sys.exit(main())
