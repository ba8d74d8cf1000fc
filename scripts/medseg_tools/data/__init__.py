"""Get, convert and check the datasets the bundles train on.

The command line is ``scripts/prepare_data.py`` (its docstring lists the commands).

Local copies are looked up in ``$MEDSEG_DATA`` (default: ``<repo>/../shared/data``), one folder per
dataset (``isbi2012_em``, ``phc_usiigaci``, ...). Every command that takes a ``dest`` writes the
dataset folder itself there (``dest/image/0.png``, ``dest/set1/raw.tif``).

Download sources (both MIT licensed, see the repositories' LICENSE files):

* ``isbi2012_em``: the ISBI 2012 EM segmentation challenge training stacks ``train-volume.tif`` and
  ``train-labels.tif`` (30 slices, 512x512, labels 255 = cell, 0 = membrane). They are taken from the
  zhixuhao/unet repository (``data/membrane``, pinned to commit b45af4d), which redistributes the
  challenge files, with the challenge site (``brainiac2.mit.edu/isbi_challenge``, registration
  required, often offline) as a second source. The GitHub copies are checked against their git blob ids
  in that commit's tree, so a corrupt or changed download is refused.
* ``phc_usiigaci``: the oist/Usiigaci repository archive (pinned to commit 9501d80), whose
  ``Mask R-CNN/train/set1..45`` and ``Mask R-CNN/val/set46..50`` folders hold ``raw.tif`` (16-bit phase
  contrast) and ``instances_ids.png`` (8-bit instance ids); the set numbers are kept.

MoNuSeg 2018 (CC BY-NC-SA 4.0, download by hand from the challenge site) ships instance polygons as Aperio
ImageScope XML; ``convert_monuseg_xml`` rasterises them to instance and binary masks (see
:func:`rasterize_monuseg_xml` for the convention, which reproduces the challenge's binary masks).

Modules: :mod:`~medseg_tools.data.registry` (the datasets, ``$MEDSEG_DATA``, local copies, downloads, validation),
:mod:`~medseg_tools.data.sources` (pinned download sources), :mod:`~medseg_tools.data.convert` (ISBI, Usiigaci),
:mod:`~medseg_tools.data.monuseg` (MoNuSeg XML), :mod:`~medseg_tools.data.cli` (the command line).
"""

from medseg_tools.data.cli import COMMANDS, main
from medseg_tools.data.convert import convert_isbi, convert_usiigaci
from medseg_tools.data.monuseg import (
    MONUSEG_IMAGE_SUFFIXES,
    MONUSEG_OUTSIDE_TOLERANCE_PX,
    MONUSEG_TILE_SHAPE,
    convert_monuseg_xml,
    rasterize_monuseg_xml,
    read_monuseg_polygons,
)
from medseg_tools.data.registry import (
    ALIASES,
    DATA_ENV_VAR,
    DATASETS,
    DOWNLOADERS,
    data_dir,
    data_root,
    dataset_info,
    download,
    fetch,
    link_or_copy,
    validate,
)
from medseg_tools.data.sources import (
    ISBI_SOURCES,
    USIIGACI_COMMIT,
    USIIGACI_SOURCES,
    ZHIXUHAO_UNET_COMMIT,
    DownloadError,
    RemoteFile,
    download_file,
    git_blob_sha1,
)

__all__ = [
    "COMMANDS",
    "main",
    "convert_isbi",
    "convert_usiigaci",
    "MONUSEG_IMAGE_SUFFIXES",
    "MONUSEG_OUTSIDE_TOLERANCE_PX",
    "MONUSEG_TILE_SHAPE",
    "convert_monuseg_xml",
    "rasterize_monuseg_xml",
    "read_monuseg_polygons",
    "ALIASES",
    "DATA_ENV_VAR",
    "DATASETS",
    "DOWNLOADERS",
    "data_dir",
    "data_root",
    "dataset_info",
    "download",
    "fetch",
    "link_or_copy",
    "validate",
    "ISBI_SOURCES",
    "USIIGACI_COMMIT",
    "USIIGACI_SOURCES",
    "ZHIXUHAO_UNET_COMMIT",
    "DownloadError",
    "RemoteFile",
    "download_file",
    "git_blob_sha1",
]
