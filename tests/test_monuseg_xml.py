"""MoNuSeg XML polygons -> instance and binary masks (scripts/prepare_data.py convert_monuseg_xml)."""

import contextlib
import io
import logging
import logging.handlers
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import medseg_tools.data as prepare_data
from medseg_tools.data.monuseg import convert_monuseg_xml, rasterize_monuseg_xml, read_monuseg_polygons
from tests.conftest import require_dataset
from transforms import DataValidationError

XML_HEADER = '<Annotations MicronsPerPixel="0.252700"><Annotation Id="1"><Regions>'
XML_FOOTER = "</Regions></Annotation></Annotations>"


def region_xml(region_id, vertices) -> str:
    points = "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in vertices)
    return f'<Region Id="{region_id}"><Attributes/><Vertices>{points}</Vertices></Region>'


def write_xml(path: Path, *regions: str) -> Path:
    path.write_text(XML_HEADER + "".join(regions) + XML_FOOTER)
    return path


def region_vertex_counts(xml_path: Path) -> list[int]:
    """Vertex count of each Region, read with a plain text scan (independent of the code under test, and much
    faster than a second XML parse of the 4 MB official files)."""
    text = xml_path.read_text()
    return [chunk.count("<Vertex ") for chunk in re.split(r"<Region ", text)[1:]]


@pytest.fixture(scope="module")
def monuseg_dir() -> Path:
    return require_dataset("monuseg2018")


@pytest.fixture(scope="module")
def converted(monuseg_dir, tmp_path_factory) -> tuple[Path, str, list[str]]:
    """The CLI run once on the official annotations: (output folder, printed summary, logged warnings)."""
    out = tmp_path_factory.mktemp("monuseg") / "converted"
    handler = logging.handlers.BufferingHandler(capacity=1000)
    logging.getLogger("prepare_data").addHandler(handler)
    try:
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert prepare_data.main(["convert_monuseg_xml", str(monuseg_dir / "annotations"), str(out)]) == 0
    finally:
        logging.getLogger("prepare_data").removeHandler(handler)
    return out, stdout.getvalue(), [record.getMessage() for record in handler.buffer]


def test_rasterisation_convention_on_a_tiny_file(tmp_path):
    # rectangle X 2..5 (columns), Y 1..3 (rows); a second region overlapping its right edge is drawn later
    xml = write_xml(
        tmp_path / "tile.xml",
        region_xml(11, [(2, 1), (5, 1), (5, 3), (2, 3)]),
        region_xml(12, [(5, 2), (7, 2), (7, 4), (5, 4)]),
    )
    instances = rasterize_monuseg_xml(xml, shape=(6, 9))
    assert instances.shape == (6, 9) and instances.dtype == np.int32
    expected = np.zeros((6, 9), dtype=np.int32)
    expected[1:4, 2:6] = 1  # the outline's pixels are inside, as in the challenge masks
    expected[2:5, 5:8] = 2  # the later region overwrites the shared pixels
    np.testing.assert_array_equal(instances, expected)
    polygons = read_monuseg_polygons(xml)
    assert len(polygons) == 2 and polygons[0].shape == (4, 2)
    np.testing.assert_array_equal(polygons[0][1], [5.0, 1.0])  # (x, y)
    # vertices slightly outside the image (annotators overshoot the tile edge) are clipped
    edge = write_xml(tmp_path / "edge.xml", region_xml(1, [(-2.5, -2.5), (3, -2.5), (3, 3), (-2.5, 3)]))
    assert np.count_nonzero(rasterize_monuseg_xml(edge, shape=(6, 9))) == 16  # rows 0-3, columns 0-3


def test_converter_matches_provided_masks(monuseg_dir, converted):
    out, summary, warnings = converted
    print(summary)
    assert "converted 13 MoNuSeg annotation files" in summary
    assert len(list((out / "instances").glob("*.png"))) == 13 and len(list((out / "binary").glob("*.png"))) == 13
    total_different, total_nuclei = 0, 0
    for xml in sorted((monuseg_dir / "annotations").glob("*.xml")):
        instances = np.array(Image.open(out / "instances" / f"{xml.stem}.png"))
        binary = np.array(Image.open(out / "binary" / f"{xml.stem}.png"))
        assert instances.dtype == np.uint16 and instances.shape == (1000, 1000)  # the tile size, from images/
        np.testing.assert_array_equal(binary, np.where(instances > 0, 255, 0))
        provided = np.array(Image.open(monuseg_dir / "masks" / f"{xml.stem}.png"))[..., 0] > 0
        nuclei = instances > 0
        dice = 2 * np.count_nonzero(nuclei & provided) / (np.count_nonzero(nuclei) + np.count_nonzero(provided))
        different = np.count_nonzero(nuclei != provided)
        print(f"{xml.stem}: binary Dice {dice:.6f}, {different} pixels differ")
        assert dice >= 0.9999
        total_different += different
        total_nuclei += np.count_nonzero(provided)

        # one instance per region of 3 or more vertices, ids 1..N in file order, none fully covered
        usable = sum(count >= 3 for count in region_vertex_counts(xml))
        np.testing.assert_array_equal(np.unique(instances), np.arange(usable + 1))
    print(f"13 tiles: {total_different} of {total_nuclei} nucleus pixels differ")
    assert total_different <= 30
    # the two zero-area clicks of the official files are skipped with a warning naming file and region
    assert any("TCGA-50-5931-01Z-00-DX1.xml: region 180 has 2 vertices" in message for message in warnings)
    assert any("TCGA-E2-A1B5-01Z-00-DX1.xml: region 460 has 2 vertices" in message for message in warnings)


def test_degenerate_region_in_official_file_can_be_an_error(monuseg_dir):
    xml = monuseg_dir / "annotations" / "TCGA-50-5931-01Z-00-DX1.xml"
    assert len(read_monuseg_polygons(xml)) == len(region_vertex_counts(xml)) - 1
    with pytest.raises(DataValidationError, match=r"TCGA-50-5931-01Z-00-DX1\.xml: region 180 has 2 vertices"):
        read_monuseg_polygons(xml, skip_degenerate=False)


@pytest.mark.parametrize(
    "content, message",
    [
        (XML_HEADER + region_xml(1, [(1, 1), (4, 1), (4, 4)]), "not a parsable XML file"),
        ("<Annotations><Annotation Id='1'><Regions/></Annotation></Annotations>", "no Annotation/Regions/Region"),
        (XML_HEADER + region_xml(3, [(1, 1), ("abc", 1), (4, 4)]) + XML_FOOTER, "region 3 has a vertex with non-"),
        (XML_HEADER + region_xml(4, [(1, 1), (4, "nan"), (4, 4)]) + XML_FOOTER, "region 4 has a non-finite vertex"),
        (
            XML_HEADER + '<Region Id="5"><Vertices><Vertex X="1"/></Vertices></Region>' + XML_FOOTER,
            "region 5 has a vertex with non-numeric or missing coordinates",
        ),
        (XML_HEADER + region_xml(6, [(1, 1), (2, 2)]) + XML_FOOTER, "none of its 1 regions is a polygon"),
        (XML_HEADER + region_xml(7, [(1, 1), (5000, 1), (4, 4)]) + XML_FOOTER, "region 7 has vertex X=5000"),
    ],
)
def test_malformed_xml_names_the_file(tmp_path, content, message):
    xml = tmp_path / "TCGA-broken.xml"
    xml.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        rasterize_monuseg_xml(xml, shape=(1000, 1000))
    assert str(xml) in str(error.value)


def test_degenerate_region_strict_mode_and_missing_file(tmp_path):
    xml = write_xml(tmp_path / "a.xml", region_xml(1, [(1, 1), (6, 1), (6, 6)]), region_xml(9, [(3, 3)]))
    assert rasterize_monuseg_xml(xml, shape=(10, 10)).max() == 1
    with pytest.raises(ValueError, match=r"a\.xml: region 9 has 1 vertices"):
        rasterize_monuseg_xml(xml, shape=(10, 10), skip_degenerate=False)
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        read_monuseg_polygons(tmp_path / "missing.xml")


def test_cli_writes_instances_and_binary(tmp_path, capsys):
    xml_dir, image_dir = tmp_path / "annotations", tmp_path / "images"
    xml_dir.mkdir()
    image_dir.mkdir()
    squares = [region_xml(k, [(4 * k, 2), (4 * k + 2, 2), (4 * k + 2, 4), (4 * k, 4)]) for k in range(1, 301)]
    write_xml(xml_dir / "many.xml", *squares)  # 300 nuclei: ids above 255 need the 16-bit PNG
    write_xml(xml_dir / "small.xml", region_xml(1, [(1, 1), (3, 1), (3, 3)]))
    Image.new("RGB", (1210, 8)).save(image_dir / "many.tif")  # the image sets the mask size: 8 rows, 1210 columns
    Image.new("RGB", (5, 7)).save(image_dir / "small.png")
    out = tmp_path / "converted"

    assert prepare_data.main(["convert_monuseg_xml", str(xml_dir), str(out)]) == 0  # images/ beside annotations/
    assert "converted 2 MoNuSeg annotation files" in capsys.readouterr().out
    many = np.array(Image.open(out / "instances" / "many.png"))
    assert many.shape == (8, 1210) and many.dtype == np.uint16
    np.testing.assert_array_equal(np.unique(many), np.arange(301))
    assert many[3, 4 * 300 + 1] == 300
    binary = np.array(Image.open(out / "binary" / "many.png"))
    assert binary.dtype == np.uint8 and set(np.unique(binary)) == {0, 255}
    np.testing.assert_array_equal(binary == 255, many > 0)
    assert np.array(Image.open(out / "instances" / "small.png")).shape == (7, 5)
    # the function itself, with an explicit image folder, writes the same files and returns the folder
    again = tmp_path / "again"
    assert convert_monuseg_xml(xml_dir, again, image_dir=image_dir) == again
    np.testing.assert_array_equal(np.array(Image.open(again / "instances" / "many.png")), many)

    # an explicit image folder without the image is an error; so is a malformed file, named in the message
    (tmp_path / "other_images").mkdir()
    other_images = ["--image_dir", str(tmp_path / "other_images")]
    assert prepare_data.main(["convert_monuseg_xml", str(xml_dir), str(out), *other_images]) == 1
    assert "no image for annotation 'many'" in capsys.readouterr().err
    (xml_dir / "zz_broken.xml").write_text("<Annotations>")
    assert prepare_data.main(["convert_monuseg_xml", str(xml_dir), str(out)]) == 1
    assert "zz_broken.xml: not a parsable XML file" in capsys.readouterr().err
