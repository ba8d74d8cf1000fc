"""The datasets of the bundles, in one place: folder, layout, validation checks, description, bundles that use them,
and where the local copies live (``$MEDSEG_DATA``, else ``../shared/data`` beside the checkout).

Bundle configs take their data folder from here (``"data_root": "$transforms.data_root(@bundle_root)"``), the tools
(``scripts/prepare_data.py``, ``scripts/monailabel_app.py``) and the tests take the dataset facts from
:data:`DATASETS` and :data:`BUNDLE_DATASETS`, so that adding a dataset or pointing a bundle at another one is one
edit here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

__all__ = [
    "DATA_ENV_VAR",
    "DatasetSpec",
    "DATASETS",
    "DATASET_ALIASES",
    "BUNDLE_DATASETS",
    "dataset_spec",
    "bundle_dataset",
    "data_root",
    "dataset_dir",
]

#: environment variable of the folder that holds the local dataset copies
DATA_ENV_VAR = "MEDSEG_DATA"
# Inside a Model Zoo package the package is vendored as ``scripts.transforms`` and the data folder default is the
# bundle's own ``data/`` (there is no checkout around it); in the repository it is ``../shared/data``.
_VENDORED = __name__.split(".")[0] != "transforms"
# transforms/data/datasets.py -> the repository root (only meaningful when not vendored)
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DatasetSpec:
    """What the bundles know about one dataset.

    Args:
        name: registry key, also the folder name under :func:`data_root`.
        layout: :data:`transforms.LAYOUTS` key of its image/label folder layout.
        checks: keyword arguments of :func:`transforms.validate_datalist` / :func:`transforms.check_datalist`
            (``image_channels``, ``label_values``, ``label_kind``, ``label_channels``).
        description: one line for messages.
        bundles: bundles whose default configs train and evaluate on it.
        aliases: short names accepted by :func:`dataset_spec` (the tools' command lines use them).
    """

    name: str
    layout: str
    checks: Mapping = field(default_factory=dict)
    description: str = ""
    bundles: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def folder(self) -> str:
        """Folder name under :func:`data_root`."""
        return self.name


_SPECS = (
    DatasetSpec(
        name="isbi2012_em",
        layout="isbi",
        checks={"image_channels": 1, "label_values": (0, 255), "label_kind": "binary"},
        description="ISBI 2012 EM segmentation challenge training set (30 slices 512x512)",
        bundles=("unet_em_segmentation",),
        aliases=("isbi",),
    ),
    DatasetSpec(
        name="phc_usiigaci",
        layout="phc",
        checks={"image_channels": 1, "label_kind": "instances"},
        description="Usiigaci phase-contrast cells, 50 annotated 16-bit frames with instance ids",
        bundles=("attention_resunet_cell_segmentation",),
        aliases=("phc",),
    ),
    DatasetSpec(
        name="monuseg2018",
        layout="monuseg",
        checks={"image_channels": 3, "label_channels": [1, 2, 3, 4], "label_kind": "binary"},
        description="MoNuSeg 2018 H&E tiles 1000x1000 RGB with nucleus masks (30 training images)",
        bundles=("mcsa_unet_nuclei_segmentation",),
        aliases=("monuseg",),
    ),
    DatasetSpec(
        name="covid_medseg",
        layout="covid",
        checks={"image_channels": 1, "label_values": (0, 255), "label_kind": "binary"},
        description="MedSeg COVID-19 CT slices of the Inf-Net split (50 training slices, 8-bit)",
        bundles=("lgnet_covid_ct_segmentation",),
        aliases=("covid",),
    ),
)

#: dataset name -> :class:`DatasetSpec` (read-only)
DATASETS: Mapping[str, DatasetSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
#: short name -> dataset name
DATASET_ALIASES: Mapping[str, str] = MappingProxyType({alias: spec.name for spec in _SPECS for alias in spec.aliases})
#: bundle name -> name of the dataset its default configs list
BUNDLE_DATASETS: Mapping[str, str] = MappingProxyType({bundle: spec.name for spec in _SPECS for bundle in spec.bundles})


def dataset_spec(name: str) -> DatasetSpec:
    """The :data:`DATASETS` entry of a dataset name or alias (``isbi`` = ``isbi2012_em``, ``phc`` = ``phc_usiigaci``).

    Raises:
        ValueError: unknown name; the message lists the known names and aliases.
    """
    key = DATASET_ALIASES.get(name, name)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)} (aliases {dict(DATASET_ALIASES)}).")
    return DATASETS[key]


def bundle_dataset(bundle_name: str) -> DatasetSpec:
    """The dataset that the default configs of bundle ``bundle_name`` list.

    Raises:
        ValueError: a bundle without a registered dataset.
    """
    if bundle_name not in BUNDLE_DATASETS:
        raise ValueError(f"no dataset registered for bundle {bundle_name!r}; known: {sorted(BUNDLE_DATASETS)}.")
    return DATASETS[BUNDLE_DATASETS[bundle_name]]


def data_root(bundle_root: str | os.PathLike | None = None) -> Path:
    """Folder of the local dataset copies.

    ``$MEDSEG_DATA`` when set; otherwise, for a bundle of the repository (``bundle_root`` is
    ``bundles/<name>``), ``<bundle_root>/../../../shared/data``, i.e. ``shared/data`` beside the checkout; for a
    packaged (Model Zoo) bundle, whose code is vendored as ``scripts.transforms``, ``<bundle_root>/data``; for code
    outside a bundle (``bundle_root`` None), the repository's ``../shared/data``.
    """
    if os.environ.get(DATA_ENV_VAR):
        root = Path(os.environ[DATA_ENV_VAR])
    elif bundle_root is None:
        root = _REPO_ROOT.parent / "shared" / "data"
    elif _VENDORED:
        root = Path(bundle_root) / "data"
    else:
        root = Path(bundle_root, "..", "..", "..", "shared", "data")
    return root.expanduser().resolve()


def dataset_dir(name: str, bundle_root: str | os.PathLike | None = None) -> Path:
    """Folder of the local copy of dataset ``name`` (a name or an alias) under :func:`data_root`."""
    return data_root(bundle_root) / dataset_spec(name).folder
