"""The datasets: where their local copies are (``$MEDSEG_DATA``), how they are laid out, checked and obtained."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from medseg_tools.data.convert import convert_isbi, convert_usiigaci
from medseg_tools.data.sources import (
    ISBI_SOURCES,
    USIIGACI_MEMBER,
    USIIGACI_SOURCES,
    DownloadError,
    RemoteFile,
    download_file,
)

from transforms import DATA_ENV_VAR
from transforms import DATASET_ALIASES as ALIASES
from transforms import DATASETS, DatasetSpec, check_datalist
from transforms import data_root as _data_root
from transforms import dataset_spec, folder_datalist, get_layout

logger = logging.getLogger("prepare_data")

# ----------------------------------------------------------------------------------------------------------
# Local copies


def data_root() -> Path:
    """Folder of the local dataset copies: ``$MEDSEG_DATA``, else ``<repo>/../shared/data`` (the registry's rule)."""
    return _data_root()


def dataset_info(dataset: str) -> DatasetSpec:
    """The registry's entry of a name or alias (``isbi`` = ``isbi2012_em``, ``phc`` = ``phc_usiigaci``)."""
    return dataset_spec(dataset)


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
    downloader = DOWNLOADERS.get(info.name) if info is not None else None
    if downloader is None:
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
        downloader(staging / "dataset", staging / "downloads")
        check_datalist(folder_datalist(staging / "dataset", info.layout), **info.checks)
        (staging / "dataset").rename(dest_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("%s downloaded to %s", dataset, dest_path)
    return dest_path


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
        checks: overrides of :func:`transforms.validate_datalist` arguments, e.g.
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


# The datasets themselves (folder, layout, checks, description) are the registry's, ``transforms.DATASETS``; this
# adds how to obtain them. MoNuSeg 2018 and the MedSeg COVID slices are distributed through Google Drive links behind
# the challenge / paper pages (https://monuseg.grand-challenge.org/Data/, https://github.com/DengPingFan/Inf-Net),
# which need a browser: no download is implemented for them; `fetch` links a local copy.
#: dataset name -> ``downloader(dest, work_dir)``, which fills the folder ``dest`` keeping downloads in ``work_dir``
DOWNLOADERS: dict[str, Callable[[Path, Path], None]] = {
    "isbi2012_em": _download_isbi,
    "phc_usiigaci": _download_usiigaci,
}
