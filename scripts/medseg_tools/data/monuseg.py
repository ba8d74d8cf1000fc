"""MoNuSeg 2018 annotations: Aperio ImageScope XML polygons rasterised to instance and binary masks."""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from medseg_tools.data.convert import _save_png

from transforms import DataValidationError

logger = logging.getLogger("prepare_data")

# MoNuSeg tiles are 1000x1000; annotators' polygons overshoot the tile edge by up to ~3 px, so a vertex further
# out than this is an error in the file (wrong image, wrong units), not a nucleus cut by the edge.
MONUSEG_TILE_SHAPE = (1000, 1000)
MONUSEG_OUTSIDE_TOLERANCE_PX = 10.0
MONUSEG_IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


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
        raise DataValidationError(f"{xml_path}: none of its {len(regions)} regions is a polygon of 3 or more vertices.")
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
