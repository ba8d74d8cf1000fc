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
import xml.etree.ElementTree as ElementTree
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

# MoNuSeg tiles are 1000x1000; annotators' polygons overshoot the tile edge by up to ~3 px, so a vertex further
# out than this is an error in the file (wrong image, wrong units), not a nucleus cut by the edge.
MONUSEG_TILE_SHAPE = (1000, 1000)
MONUSEG_OUTSIDE_TOLERANCE_PX = 10.0
MONUSEG_IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


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


def _is_number_pair(pair: tuple[str | None, str | None]) -> bool:
    try:
        float(pair[0]), float(pair[1])  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _read_monuseg_regions(xml_path: Path, skip_degenerate: bool) -> list[tuple[str, np.ndarray]]:
    """``(region id, (N, 2) x/y vertices)`` of every usable region of an ImageScope XML file, in file order."""
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as error:
        raise DataValidationError(f"{xml_path}: not a parsable XML file ({error}).") from error
    regions = list(root.iter("Region"))
    if not regions:
        raise DataValidationError(
            f"{xml_path}: no Annotation/Regions/Region element; not a MoNuSeg (Aperio ImageScope) annotation file."
        )
    polygons = []
    for position, region in enumerate(regions, start=1):
        region_id = region.get("Id", f"#{position}")
        coordinates = [(vertex.get("X"), vertex.get("Y")) for vertex in region.iter("Vertex")]
        # numpy would read a missing attribute (None) as NaN, so missing ones are looked for first
        invalid = next((pair for pair in coordinates if None in pair), None)
        if invalid is None:
            try:  # one numpy conversion per region: the official files hold ~100,000 vertices each
                vertices = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
            except ValueError:
                invalid = next(pair for pair in coordinates if not _is_number_pair(pair))
        if invalid is not None:
            raise DataValidationError(
                f"{xml_path}: region {region_id} has a vertex with non-numeric or missing coordinates "
                f"X={invalid[0]!r} Y={invalid[1]!r}."
            )
        if not np.isfinite(vertices).all():
            x, y = vertices[~np.isfinite(vertices).all(axis=1)][0]
            raise DataValidationError(f"{xml_path}: region {region_id} has a non-finite vertex X={x} Y={y}.")
        if len(vertices) < 3:
            message = f"{xml_path}: region {region_id} has {len(vertices)} vertices, a polygon needs at least 3"
            if not skip_degenerate:
                raise DataValidationError(message + ".")
            logger.warning("%s; skipped (it encloses no area)", message)
            continue
        polygons.append((region_id, vertices))
    if not polygons:
        raise DataValidationError(
            f"{xml_path}: none of its {len(regions)} regions is a polygon of 3 or more vertices."
        )
    return polygons


def read_monuseg_polygons(xml_path: str | os.PathLike, skip_degenerate: bool = True) -> list[np.ndarray]:
    """Nucleus polygons of a MoNuSeg (Aperio ImageScope) XML file.

    The file holds ``Annotations/Annotation/Regions/Region/Vertices/Vertex`` elements with ``X`` (column) and
    ``Y`` (row) pixel coordinates, one ``Region`` per nucleus.

    Args:
        xml_path: the annotation file.
        skip_degenerate: skip regions of fewer than 3 vertices with a warning naming the file and region. The
            official annotations hold a few such zero-area clicks (``TCGA-50-5931-01Z-00-DX1`` region 180,
            ``TCGA-E2-A1B5-01Z-00-DX1`` region 460: two vertices 0.2-0.3 px apart), so failing on them would
            refuse the official data; ``False`` raises instead.

    Returns:
        One ``(N, 2)`` float64 array of ``(x, y)`` vertices per region, in file order.

    Raises:
        FileNotFoundError: no such file.
        DataValidationError (a ValueError): naming the file (and the region id): unparsable XML, no region, a
            vertex with missing, non-numeric or non-finite coordinates, a region of fewer than 3 vertices when
            ``skip_degenerate`` is False, or no usable region at all.
    """
    xml_path = Path(xml_path)
    if not xml_path.is_file():
        raise FileNotFoundError(f"MoNuSeg annotation file not found: {xml_path}")
    return [vertices for _, vertices in _read_monuseg_regions(xml_path, skip_degenerate)]


def rasterize_monuseg_xml(
    xml_path: str | os.PathLike,
    shape: Sequence[int] = MONUSEG_TILE_SHAPE,
    skip_degenerate: bool = True,
    outside_tolerance: float = MONUSEG_OUTSIDE_TOLERANCE_PX,
) -> np.ndarray:
    """Instance label map of a MoNuSeg XML file: region ``k`` (1-based, in file order) is filled with id ``k``.

    Convention (found by comparing with the challenge's binary masks): ``X`` is the column and ``Y`` the row,
    pixel ``(row, column)`` covers ``[column, column + 1) x [row, row + 1)`` (a vertex lies in pixel
    ``(floor(Y), floor(X))``), the vertices are used unrounded, and the polygon is filled with Pillow's
    ``ImageDraw.polygon``, which fills the interior and the pixels on the outline. On the 13 official tiles
    with both files this reproduces the provided ``masks/*.png`` up to 24 of their 2.84 million nucleus
    pixels (3 of them from the two skipped degenerate regions; binary Dice >= 0.99998 on every tile), whereas
    ``skimage.draw.polygon``, which keeps only pixels whose centre is inside, misses 1 to 91 outline pixels per
    tile with floored vertices, and about 12,000 with the raw ones.

    Where polygons overlap (neighbouring outlines share boundary pixels), the later region overwrites the
    earlier one, as drawing them in file order does. Ids are not renumbered, so id ``k`` always traces back to
    the ``k``-th usable region; an earlier nucleus covered completely by later ones would leave its id absent.

    Args:
        xml_path: the annotation file.
        shape: ``(height, width)`` of the image the polygons belong to.
        skip_degenerate: see :func:`read_monuseg_polygons`.
        outside_tolerance: vertices may lie up to this many pixels outside the image (outlines of nuclei cut by
            the tile edge overshoot by up to ~3 px in the official files); the part outside is clipped.

    Returns:
        int32 ``(height, width)`` instance ids, 0 = background.

    Raises:
        FileNotFoundError: no such file.
        DataValidationError (a ValueError): as :func:`read_monuseg_polygons`, or a vertex further than
            ``outside_tolerance`` outside the image (naming the file, region and vertex).
    """
    from PIL import Image, ImageDraw

    xml_path = Path(xml_path)
    if not xml_path.is_file():
        raise FileNotFoundError(f"MoNuSeg annotation file not found: {xml_path}")
    height, width = (int(size) for size in shape)
    if height < 1 or width < 1:
        raise ValueError(f"shape must be a positive (height, width), got {tuple(shape)}.")
    regions = _read_monuseg_regions(xml_path, skip_degenerate)
    canvas = Image.new("I", (width, height), 0)  # 32-bit integer pixels: ids beyond 255 and 65535 fit
    draw = ImageDraw.Draw(canvas)
    for instance_id, (region_id, vertices) in enumerate(regions, start=1):
        outside = (
            (vertices[:, 0] < -outside_tolerance)
            | (vertices[:, 0] > width + outside_tolerance)
            | (vertices[:, 1] < -outside_tolerance)
            | (vertices[:, 1] > height + outside_tolerance)
        )
        if outside.any():
            x, y = vertices[np.argmax(outside)]
            raise DataValidationError(
                f"{xml_path}: region {region_id} has vertex X={x:g} Y={y:g} more than {outside_tolerance:g} px "
                f"outside the {width}x{height} image (wrong image size, or not pixel coordinates?)."
            )
        draw.polygon(vertices.ravel().tolist(), fill=instance_id)  # flat [x0, y0, x1, y1, ...]
    return np.asarray(canvas, dtype=np.int32)


def _monuseg_image_shape(stem: str, image_dir: Path | None, required: bool) -> tuple[int, int]:
    """``(height, width)`` of the image ``stem`` in ``image_dir`` (header only), else the MoNuSeg tile shape."""
    from PIL import Image

    candidates = [image_dir / f"{stem}{suffix}" for suffix in MONUSEG_IMAGE_SUFFIXES] if image_dir else []
    for candidate in candidates:
        if candidate.is_file():
            with Image.open(candidate) as image:  # lazy: reads the size without decoding the pixels
                width, height = image.size
            return height, width
    if required:
        raise FileNotFoundError(
            f"no image for annotation {stem!r} in {image_dir} (looked for {', '.join(MONUSEG_IMAGE_SUFFIXES)})."
        )
    if image_dir is not None:
        logger.warning("no image for %s in %s: assuming a %dx%d tile", stem, image_dir, *MONUSEG_TILE_SHAPE)
    return MONUSEG_TILE_SHAPE


def convert_monuseg_xml(
    xml_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    skip_degenerate: bool = True,
) -> Path:
    """Rasterise every MoNuSeg XML file of ``xml_dir`` to ``out_dir/instances/<stem>.png`` (16-bit instance ids,
    see :func:`rasterize_monuseg_xml`) and ``out_dir/binary/<stem>.png`` (0/255 nuclei), and print a summary.

    Args:
        xml_dir: folder of ``<stem>.xml`` annotation files.
        out_dir: output folder (created; files of the same names are overwritten).
        image_dir: folder of the ``<stem>.tif`` images, whose size sets the mask size (an image missing there is
            an error). Default: the ``images/`` folder beside ``xml_dir`` when it exists (an image missing there
            falls back to 1000x1000 with a warning), else 1000x1000, the MoNuSeg tile size.
        skip_degenerate: see :func:`read_monuseg_polygons`.

    Returns:
        ``out_dir``.

    Raises:
        FileNotFoundError: ``xml_dir``, ``image_dir`` or, with ``image_dir``, an image is missing.
        DataValidationError (a ValueError): no XML file, or a malformed one (the message names it).
    """
    from tqdm import tqdm

    xml_dir, out_dir = Path(xml_dir), Path(out_dir)
    if not xml_dir.is_dir():
        raise FileNotFoundError(f"annotation folder not found: {xml_dir}")
    xml_files = sorted(xml_dir.glob("*.xml"))
    if not xml_files:
        raise DataValidationError(f"no *.xml annotation file in {xml_dir}.")
    image_required = image_dir is not None
    if image_dir is not None:
        images: Path | None = Path(image_dir)
        if not images.is_dir():
            raise FileNotFoundError(f"image folder not found: {images}")
    else:
        neighbour = xml_dir.parent / "images"
        images = neighbour if neighbour.is_dir() else None

    nuclei_counts = []
    for xml_path in tqdm(xml_files, desc="MoNuSeg XML", unit="file"):
        shape = _monuseg_image_shape(xml_path.stem, images, image_required)
        instances = rasterize_monuseg_xml(xml_path, shape, skip_degenerate=skip_degenerate)
        if instances.max() > np.iinfo(np.uint16).max:
            raise DataValidationError(f"{xml_path}: {instances.max()} regions do not fit a 16-bit PNG.")
        _save_png(instances.astype(np.uint16), out_dir / "instances" / f"{xml_path.stem}.png")
        _save_png(np.where(instances > 0, 255, 0).astype(np.uint8), out_dir / "binary" / f"{xml_path.stem}.png")
        nuclei_counts.append(int(np.count_nonzero(np.bincount(instances.ravel())[1:])))
    print(
        f"converted {len(xml_files)} MoNuSeg annotation files to {out_dir}: {sum(nuclei_counts)} nuclei "
        f"({min(nuclei_counts)}-{max(nuclei_counts)} per image); instances/*.png (16-bit ids), binary/*.png (0/255)"
    )
    return out_dir


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
    # The two below are distributed through Google Drive links behind the challenge / paper pages
    # (https://monuseg.grand-challenge.org/Data/, https://github.com/DengPingFan/Inf-Net), which need a browser:
    # no download is implemented; `fetch` links a local copy.
    "monuseg2018": DatasetInfo(
        folder="monuseg2018",
        layout="monuseg",
        checks={"image_channels": 3, "label_channels": [1, 2, 3, 4], "label_kind": "binary"},
        description="MoNuSeg 2018 H&E tiles 1000x1000 RGB with nucleus masks (30 training images)",
    ),
    "covid_medseg": DatasetInfo(
        folder="covid_medseg",
        layout="covid",
        checks={"image_channels": 1, "label_values": (0, 255), "label_kind": "binary"},
        description="MedSeg COVID-19 CT slices of the Inf-Net split (50 training slices, 8-bit)",
    ),
}
ALIASES = {"isbi": "isbi2012_em", "phc": "phc_usiigaci", "monuseg": "monuseg2018", "covid": "covid_medseg"}


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
    "convert_monuseg_xml": _printable(convert_monuseg_xml),
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
