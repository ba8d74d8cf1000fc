"""Get, convert and check the datasets the bundles train on.

Usage (``python scripts/prepare_data.py COMMAND ...``, a `fire <https://github.com/google/python-fire>`_ CLI)::

    python scripts/prepare_data.py data_dir isbi2012_em                 # where the local copy is
    python scripts/prepare_data.py fetch isbi2012_em data/isbi2012_em   # link the local copy, else download
    python scripts/prepare_data.py link phc_usiigaci data/phc --copy    # copy instead of symlink
    python scripts/prepare_data.py download isbi2012_em data/isbi2012_em
    python scripts/prepare_data.py convert_isbi train-volume.tif train-labels.tif data/isbi2012_em
    python scripts/prepare_data.py convert_usiigaci Usiigaci-master data/phc_usiigaci
    python scripts/prepare_data.py validate data/isbi2012_em --layout isbi

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
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from transforms.datalist import (  # noqa: E402
    DataValidationError,
    check_datalist,
    folder_datalist,
    get_layout,
)

logger = logging.getLogger("prepare_data")

DATA_ENV_VAR = "MEDSEG_DATA"
DOWNLOAD_TIMEOUT_S = 60
CHUNK_BYTES = 1 << 20

ZHIXUHAO_UNET_COMMIT = "b45af4d458437d8281cc218a07fd4380818ece4a"
USIIGACI_COMMIT = "9501d80c747cf82870dd596818fcf5c28c94d733"


class DownloadError(RuntimeError):
    """A dataset could not be downloaded from any of its sources; the message says what to do instead."""


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: its URL and, when known, the git blob id of its content in a pinned commit."""

    url: str
    git_blob_sha1: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """How a dataset is laid out, checked and obtained.

    Args:
        folder: folder name under ``$MEDSEG_DATA``.
        layout: :data:`transforms.datalist.LAYOUTS` key.
        checks: keyword arguments of :func:`transforms.datalist.validate_datalist` for this dataset.
        downloader: ``downloader(dest, work_dir)`` fills the folder ``dest``, keeping downloads in ``work_dir``;
            None when no download is implemented.
        description: one line for messages.
    """

    folder: str
    layout: str
    checks: dict = field(default_factory=dict)
    downloader: Callable[[Path, Path], None] | None = None
    description: str = ""


# ----------------------------------------------------------------------------------------------------------
# Local copies


def data_root() -> Path:
    """Folder of the local dataset copies: ``$MEDSEG_DATA``, else ``<repo>/../shared/data``."""
    return Path(os.environ.get(DATA_ENV_VAR, REPO_ROOT.parent / "shared" / "data")).expanduser().resolve()


def dataset_info(dataset: str) -> DatasetInfo:
    """The :data:`DATASETS` entry of a name or alias (``isbi`` = ``isbi2012_em``, ``phc`` = ``phc_usiigaci``)."""
    name = ALIASES.get(dataset, dataset)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)} (aliases {ALIASES}).")
    return DATASETS[name]


def data_dir(dataset: str, must_exist: bool = True) -> Path:
    """Path of the local copy of ``dataset`` (a name, an alias, or any folder name) under :func:`data_root`.

    Raises:
        FileNotFoundError: ``must_exist`` and the folder is missing; the message says how to fix it.
    """
    name = ALIASES.get(dataset, dataset)
    folder = DATASETS[name].folder if name in DATASETS else dataset
    path = data_root() / folder
    if must_exist and not path.is_dir():
        raise FileNotFoundError(
            f"no local copy of {dataset!r} at {path}. Set {DATA_ENV_VAR} to the folder that holds {folder}/ "
            f"({DATA_ENV_VAR}={os.environ.get(DATA_ENV_VAR, '<unset>, default <repo>/../shared/data')}), "
            f"or run `python scripts/prepare_data.py fetch {dataset} DEST`."
        )
    return path


def link_or_copy(
    dataset: str, dest: str | os.PathLike, source: str | os.PathLike | None = None, copy: bool = False
) -> Path:
    """Make ``dest`` a symlink to (or, with ``copy``, a copy of) the local copy of ``dataset``.

    Args:
        dataset: dataset name or alias; its local copy is :func:`data_dir` unless ``source`` is given.
        dest: path the dataset folder will have (its parent is created).
        source: folder to use instead of the ``$MEDSEG_DATA`` copy.
        copy: copy the files instead of symlinking (e.g. for a container without the shared folder).

    Returns:
        ``dest``. An existing ``dest`` that already links to the same source is kept.

    Raises:
        FileNotFoundError: no local copy; FileExistsError: ``dest`` exists and is something else.
    """
    source_path = Path(source).expanduser().resolve() if source is not None else data_dir(dataset)
    if not source_path.is_dir():
        raise FileNotFoundError(f"source folder {source_path} for {dataset!r} does not exist.")
    dest_path = Path(dest).expanduser().absolute()
    if dest_path.is_symlink() or dest_path.exists():
        if dest_path.resolve() == source_path:
            logger.info("%s already points to %s", dest_path, source_path)
            return dest_path
        raise FileExistsError(f"{dest_path} already exists and is not a link to {source_path}; remove it first.")
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copytree(source_path, dest_path)
        logger.info("copied %s to %s", source_path, dest_path)
    else:
        dest_path.symlink_to(source_path, target_is_directory=True)
        logger.info("linked %s -> %s", dest_path, source_path)
    return dest_path


def fetch(dataset: str, dest: str | os.PathLike, copy: bool = False) -> Path:
    """Put ``dataset`` at ``dest``: the local ``$MEDSEG_DATA`` copy when there is one, else download and convert it."""
    local = data_dir(dataset, must_exist=False)
    if local.is_dir():
        return link_or_copy(dataset, dest, source=local, copy=copy)
    logger.info("no local copy of %s at %s: downloading", dataset, local)
    return download(dataset, dest)


# ----------------------------------------------------------------------------------------------------------
# Download


def git_blob_sha1(path: str | os.PathLike) -> str:
    """Git's object id of a file's content (``git hash-object``): sha1 of ``b"blob <size>\\0" + content``."""
    path = Path(path)
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(remote: RemoteFile, dest: str | os.PathLike, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Stream ``remote.url`` to ``dest`` (written under a temporary name, renamed when complete and verified)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    try:
        request = urllib.request.Request(remote.url, headers={"User-Agent": "medseg-bundles-prepare-data"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(partial, "wb") as stream:
            shutil.copyfileobj(response, stream, CHUNK_BYTES)
        if remote.git_blob_sha1 is not None:
            found = git_blob_sha1(partial)
            if found != remote.git_blob_sha1:
                raise DownloadError(
                    f"{remote.url} gave content with git blob id {found}, expected {remote.git_blob_sha1} "
                    "(corrupt or changed download)"
                )
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


def _download_sources(
    dataset: str,
    sources: Sequence[tuple[str, Sequence[RemoteFile]]],
    dest: Path,
    work_dir: Path,
    finish: Callable[[list[Path], Path], None],
) -> None:
    """Try each source (a named list of files) in turn; ``finish(files, dest)`` converts the first complete one."""
    failures = []
    for name, remotes in sources:
        try:
            files = [download_file(remote, work_dir / name / Path(remote.url).name) for remote in remotes]
        except (OSError, DownloadError) as error:  # URLError, HTTPError and timeouts are OSErrors
            failures.append(f"  - {name}: {remotes[0].url}: {type(error).__name__}: {error}")
            logger.warning("download of %s from %s failed: %s", dataset, name, error)
            continue
        finish(files, dest)
        return
    raise DownloadError(
        f"could not download {dataset!r}; tried:\n" + "\n".join(failures) + "\n"
        f"No internet access? Put a copy of the dataset folder in ${DATA_ENV_VAR}/{dataset_info(dataset).folder} "
        f"(now {data_root()}) and run `python scripts/prepare_data.py fetch {dataset} DEST`, "
        "or download the files by hand and convert them (convert_isbi / convert_usiigaci)."
    )


def _download_isbi(dest: Path, work_dir: Path) -> None:
    def finish(files: list[Path], target: Path) -> None:
        convert_isbi(files[0], files[1], target)

    _download_sources("isbi2012_em", ISBI_SOURCES, dest, work_dir, finish)


def _download_usiigaci(dest: Path, work_dir: Path) -> None:
    def finish(files: list[Path], target: Path) -> None:
        extract_dir = work_dir / "extracted"
        with zipfile.ZipFile(files[0]) as archive:
            # Only the annotated sets: the archive also holds demos, example data and network weights.
            wanted = [name for name in archive.namelist() if USIIGACI_MEMBER.search(name)]
            archive.extractall(extract_dir, members=wanted)
        convert_usiigaci(extract_dir, target)

    _download_sources("phc_usiigaci", USIIGACI_SOURCES, dest, work_dir, finish)


def download(dataset: str, dest: str | os.PathLike) -> Path:
    """Download ``dataset`` from its official source and convert it to its layout in the folder ``dest``.

    Nothing is left at ``dest`` when the download fails (files are assembled in a sibling temporary
    folder and moved into place at the end), and the result is validated before it is moved.

    Raises:
        DownloadError: every source failed (e.g. no internet); the message lists the URLs tried and how to
            use a local copy (``$MEDSEG_DATA``) instead.
        FileExistsError: ``dest`` already exists.
    """
    info = DATASETS.get(ALIASES.get(dataset, dataset))
    if info is None or info.downloader is None:
        raise DownloadError(
            f"no download implemented for {dataset!r} (available: {sorted(DATASETS)}); put a copy of the dataset "
            f"folder in ${DATA_ENV_VAR} (now {data_root()}) and use `fetch`."
        )
    dest_path = Path(dest).expanduser().absolute()
    if dest_path.exists():
        raise FileExistsError(f"{dest_path} already exists; remove it or choose another destination.")
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s: %s", dataset, info.description)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest_path.name}-", dir=dest_path.parent))
    try:
        info.downloader(staging / "dataset", staging / "downloads")
        check_datalist(folder_datalist(staging / "dataset", info.layout), **info.checks)
        (staging / "dataset").rename(dest_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("%s downloaded to %s", dataset, dest_path)
    return dest_path


# ----------------------------------------------------------------------------------------------------------
# Conversion


def _save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)


def _read_stack(path: str | os.PathLike) -> np.ndarray:
    """Pages of a multi-page gray TIFF as a (pages, H, W) array."""
    import tifffile

    if not Path(path).is_file():
        raise DataValidationError(f"file not found: {path}")
    try:
        stack = tifffile.imread(path)
    except Exception as error:
        raise DataValidationError(f"cannot read TIFF stack {path}: {type(error).__name__}: {error}") from error
    if stack.ndim != 3:
        raise DataValidationError(f"{path} is not a multi-page gray stack: array shape {stack.shape}.")
    return stack


def convert_isbi(volume_tif: str | os.PathLike, labels_tif: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Split the ISBI 2012 multi-page stacks into ``dest/image/N.png`` and ``dest/label/N.png`` (N from 0).

    Args:
        volume_tif: ``train-volume.tif`` (N x 512 x 512, 8-bit EM slices).
        labels_tif: ``train-labels.tif`` (same shape, 255 = cell interior, 0 = membrane).
        dest: dataset folder to write (created; existing PNGs of the same names are overwritten).

    Raises:
        DataValidationError: a stack is unreadable, not a 3D gray stack, or the two stacks differ in shape.
    """
    volume, labels = _read_stack(volume_tif), _read_stack(labels_tif)
    if volume.shape != labels.shape:
        raise DataValidationError(
            f"{volume_tif} has {volume.shape[0]} pages of {volume.shape[1:]} but {labels_tif} has "
            f"{labels.shape[0]} pages of {labels.shape[1:]}."
        )
    dest = Path(dest)
    for index, (image, label) in enumerate(zip(volume, labels)):
        _save_png(image, dest / "image" / f"{index}.png")
        _save_png(label, dest / "label" / f"{index}.png")
    logger.info("wrote %d image/label pairs to %s", len(volume), dest)
    return dest


def convert_usiigaci(source_dir: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy the Usiigaci annotated sets to ``dest/setN/raw.tif`` and ``dest/setN/instances_ids.png``.

    Args:
        source_dir: an extracted oist/Usiigaci archive or clone (searched for
            ``Mask R-CNN/{train,val}/setN/``); set numbers are unique across train and val and kept.
        dest: dataset folder to write.

    Raises:
        DataValidationError: no complete set (raw.tif + instances_ids.png) under ``source_dir``.
    """
    source_dir = Path(source_dir)
    sets = {}
    for raw in source_dir.rglob("raw.tif"):
        match = USIIGACI_MEMBER.search(raw.relative_to(source_dir).as_posix())
        ids_png = raw.with_name("instances_ids.png")
        if match and ids_png.is_file():
            sets[int(match.group("set"))] = (raw, ids_png)
    if not sets:
        raise DataValidationError(
            f"no Usiigaci set (Mask R-CNN/train|val/setN/raw.tif + instances_ids.png) under {source_dir}."
        )
    dest = Path(dest)
    for number, (raw, ids_png) in sorted(sets.items()):
        (dest / f"set{number}").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(raw, dest / f"set{number}" / "raw.tif")
        shutil.copyfile(ids_png, dest / f"set{number}" / "instances_ids.png")
    logger.info("copied %d Usiigaci sets to %s", len(sets), dest)
    return dest


# ----------------------------------------------------------------------------------------------------------
# Validation


def validate(
    dataset_dir: str | os.PathLike, layout: str = "isbi", ids: Sequence[int | str] | None = None, **checks
) -> str:
    """Check a dataset folder and return (and print) a summary: item count, sizes, channels, label values.

    Args:
        dataset_dir: dataset folder.
        layout: layout name (``isbi``, ``phc``, ...); also selects the default checks of the matching
            dataset in :data:`DATASETS` (e.g. labels in {0, 255} for ISBI, instance ids for phc).
        ids: only these ids.
        checks: overrides of :func:`transforms.datalist.validate_datalist` arguments, e.g.
            ``--label_kind=None`` or ``--image_channels=3``.

    Raises:
        DataValidationError: with every problem found (the CLI prints it and exits with status 1).
    """
    get_layout(layout)
    defaults = next((info.checks for info in DATASETS.values() if info.layout == layout), {})
    datalist = folder_datalist(dataset_dir, layout, ids=ids)
    summary = check_datalist(datalist, **{**defaults, **checks})
    text = f"{Path(dataset_dir)} (layout {layout!r}): OK, {summary}"
    print(text)
    return text


# ----------------------------------------------------------------------------------------------------------
# Registry of datasets and sources

ISBI_SOURCES: list[tuple[str, list[RemoteFile]]] = [
    (
        "github-zhixuhao-unet",
        [
            RemoteFile(
                f"https://github.com/zhixuhao/unet/raw/{ZHIXUHAO_UNET_COMMIT}/data/membrane/train-volume.tif",
                git_blob_sha1="358e48bed4f747c20da43251eb7138727d98cec3",
            ),
            RemoteFile(
                f"https://github.com/zhixuhao/unet/raw/{ZHIXUHAO_UNET_COMMIT}/data/membrane/train-labels.tif",
                git_blob_sha1="74ab9858c0be80842c94c41c6fb980aab49e9558",
            ),
        ],
    ),
    (
        "isbi-challenge-site",
        [
            RemoteFile("http://brainiac2.mit.edu/isbi_challenge/sites/default/files/train-volume.tif"),
            RemoteFile("http://brainiac2.mit.edu/isbi_challenge/sites/default/files/train-labels.tif"),
        ],
    ),
]
USIIGACI_SOURCES: list[tuple[str, list[RemoteFile]]] = [
    ("github-oist-usiigaci", [RemoteFile(f"https://github.com/oist/Usiigaci/archive/{USIIGACI_COMMIT}.zip")]),
]
USIIGACI_MEMBER = re.compile(r"(?:^|/)Mask R-CNN/(?:train|val)/set(?P<set>\d+)/(?:raw\.tif|instances_ids\.png)$")

DATASETS: dict[str, DatasetInfo] = {
    "isbi2012_em": DatasetInfo(
        folder="isbi2012_em",
        layout="isbi",
        checks={"image_channels": 1, "label_values": (0, 255), "label_kind": "binary"},
        downloader=_download_isbi,
        description="ISBI 2012 EM segmentation challenge training set (30 slices 512x512)",
    ),
    "phc_usiigaci": DatasetInfo(
        folder="phc_usiigaci",
        layout="phc",
        checks={"image_channels": 1, "label_kind": "instances"},
        downloader=_download_usiigaci,
        description="Usiigaci phase-contrast cells, 50 annotated 16-bit frames with instance ids",
    ),
}
ALIASES = {"isbi": "isbi2012_em", "phc": "phc_usiigaci"}


# ----------------------------------------------------------------------------------------------------------
# CLI


def _printable(function: Callable) -> Callable:
    """Return paths as strings and nothing else: fire would browse a returned object as a command group."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        result = function(*args, **kwargs)
        return str(result) if isinstance(result, Path) else None

    return wrapper


COMMANDS = {
    "data_dir": _printable(data_dir),
    "fetch": _printable(fetch),
    "link": _printable(link_or_copy),
    "download": _printable(download),
    "convert_isbi": _printable(convert_isbi),
    "convert_usiigaci": _printable(convert_usiigaci),
    "validate": _printable(validate),  # prints its own summary
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; data and download problems are printed as one clear message with exit status 1."""
    import fire

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        fire.Fire(COMMANDS, command=list(argv) if argv is not None else None, name="prepare_data.py")
    except (DataValidationError, DownloadError, FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
