"""Serve the bundles of ``bundles/`` with MONAI Label's ``monaibundle`` app: environment, app folder, studies, server.

Usage (``python scripts/monailabel_app.py COMMAND ...``, a `fire <https://github.com/google/python-fire>`_ CLI)::

    python scripts/monailabel_app.py start                                  # all bundles, demo studies, port 8000
    python scripts/monailabel_app.py start --bundles lgnet_covid_ct_segmentation --studies /data/ct --port 8001 \\
        --weights '{"lgnet_covid_ct_segmentation": "runs/lgnet/models/model.pt"}' --defaults '{"features": [...]}'
    python scripts/monailabel_app.py setup                                  # only build .venv-monailabel
    python scripts/monailabel_app.py assemble runs/monailabel/app --bundles all
    python scripts/monailabel_app.py studies runs/monailabel/studies --bundles unet_em_segmentation

``start`` builds what is missing and runs ``monailabel start_server`` on ``127.0.0.1`` in the foreground (Ctrl-C
stops it); 3D Slicer's or OHIF's MONAI Label plugin, or plain HTTP (``/info/``, ``/infer/<bundle>``,
``/train/<bundle>``), then use it. How each piece is made, and why:

- **Environment** (:func:`setup_environment`, default ``.venv-monailabel/``, or ``$MEDSEG_MONAILABEL_VENV``):
  monailabel 0.8.5 needs numpy 1.26 (its ``numpymaxflow`` and ``pydicom-seg`` pin numpy < 2) and breaks with
  pydicom 3, so it cannot share this project's environment. It is installed at the exact versions of
  ``requirements-monailabel-lock.txt`` (``scripts/lock.sh``: ``monailabel==0.8.5`` with ``pydicom<3`` and
  ``pynetdicom<3``, the CPU build of torch, so that pip never pulls the CUDA wheels); monai is the version this
  project targets (1.6.1), and the bundles' code runs unchanged on numpy 1.26. With ``MEDSEG_UNLOCKED=1`` (the
  canary of ``scripts/run_tests.sh --unlocked``) it gets the newest releases those pins allow instead.
  The torchvision on the package index is the CUDA build: with the CPU torch its C++ operators do not load, and
  torchvision 0.28 then fails on import (``operator torchvision::nms does not exist``: its ``_meta_registrations``
  registers fake kernels for ``nms``/``qnms`` without checking that the operators exist). MONAI Label imports
  ``torchvision.utils`` at start-up, and never calls those operators for these bundles, so when (and only when)
  the import fails that way the environment gets a small import hook (the module
  ``medseg_tools/monailabel/torchvision_hook.py``, copied into its site-packages) that declares the two operator
  schemas, without kernels, before torchvision registers its fake kernels. With a
  package index that has the matching CPU torchvision (``--torch_index_url https://download.pytorch.org/whl/cpu``)
  the import works and no hook is installed.
- **App folder** (:func:`assemble_app`): a copy of the ``monaibundle`` sample app shipped in the monailabel wheel
  (``<venv>/monailabel/sample-apps/monaibundle``) whose ``model/`` folder holds the bundles as self-contained Model
  Zoo packages (``scripts/package_bundle.py``, static checks only): each package carries this repository's code
  as its own ``scripts`` package. MONAI Label puts a bundle's folder first on ``sys.path`` and unloads ``scripts``
  before it parses that bundle's configs (``monailabel/tasks/infer/bundle.py``, ``tasks/train/bundle.py``), so
  every bundle imports its own copy, nothing of this repository has to be on the server's ``PYTHONPATH``, and the
  folder can be copied to another machine. MONAI Label ignores a bundle without ``models/model.pt``: without
  ``--weights`` each bundle serves the weights it ships (``bundles/<b>/large_files.yml``); with ``--defaults`` that
  change the network and no ``--weights``, seeded untrained ones (enough to check the plumbing, not to segment).
  The packages' ``metadata.json`` gets the label map MONAI Label reads (:func:`monailabel_metadata`).
- **Studies** (:func:`demo_studies`): real images of ``$MEDSEG_DATA`` (default ``../shared/data``) in MONAI Label's
  local datastore layout (images at the top, final labels in ``labels/final/``), cropped small; the LG-Net bundle
  also gets a real CT volume (a DICOM series read by ``transforms.CTVolumeReader``, written as NIfTI), which
  MONAI Label sends whole to the 2D network: the bundle's ``inference.json`` segments it slice by slice.
- **Server** (:class:`MonaiLabelServer`): ``python -m monailabel.main start_server`` with the environment's python
  (the ``monailabel`` shell launcher would prepend the folder two levels above itself to ``PYTHONPATH``, which for
  ``.venv-monailabel`` is this repository, whose ``scripts/`` folder would shadow the packages' ``scripts``),
  ``--conf models <bundles>``, ``--conf zoo_source github`` (bundles are taken from ``model/`` without asking the
  Model Zoo, which needs internet) and ``--conf sam2 false`` (the SAM2 models would be downloaded).

What MONAI Label takes from a bundle (checked in monailabel 0.8.5's source): ``configs/inference.json`` alone (no
merged configs), and of it ``network_def``, ``preprocessing``, ``inferer`` and ``postprocessing`` (``LoadImaged``
replaced by its own loader, ``SaveImaged`` dropped); the first input and output of ``network_data_format`` (the
output's ``channel_def`` gives the label names); for training ``configs/train.json`` run with ``run`` and the
overrides ``train#trainer#max_epochs``, ``train#dataset#data``, ``validate#dataset#data``, ``train#handlers`` and
``device`` (a string such as ``"cpu"``).

The code is the ``medseg_tools.monailabel`` package (installed with the project); this file is its command line.
"""

import sys

from medseg_tools.monailabel.cli import main

if __name__ == "__main__":
    sys.exit(main())
