"""scripts/prepare_data.py: conversion round trips, local copies, offline download errors, validate CLI."""

import io
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import medseg_tools.data as prepare_data
import numpy as np
import pytest
import tifffile
from medseg_tools.data import registry
from PIL import Image

from transforms import DataValidationError, folder_datalist, read_image_array

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "prepare_data.py"


def isbi_stacks(isbi_dir: Path, tmp_path: Path, ids=(0, 1, 2)) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Multi-page train-volume.tif / train-labels.tif built from real ISBI PNGs, as the challenge ships them."""
    images = np.stack([np.array(Image.open(isbi_dir / "image" / f"{i}.png")) for i in ids])
    labels = np.stack([np.array(Image.open(isbi_dir / "label" / f"{i}.png")) for i in ids])
    volume, label_stack = tmp_path / "train-volume.tif", tmp_path / "train-labels.tif"
    # minisblack: one gray page per slice, as in the challenge files (not a 3-sample RGB image).
    tifffile.imwrite(volume, images, photometric="minisblack")
    tifffile.imwrite(label_stack, labels, photometric="minisblack")
    return volume, label_stack, images, labels


class FakeResponses:
    """Stands in for urllib.request.urlopen: serves bytes by URL, raises URLError for anything else."""

    def __init__(self, payloads: dict[str, bytes]):
        self.payloads = payloads
        self.requested: list[str] = []

    def __call__(self, request, timeout=None):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        self.requested.append(url)
        if url not in self.payloads:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution (test: offline)")
        return io.BytesIO(self.payloads[url])


@pytest.fixture
def offline(monkeypatch) -> FakeResponses:
    fake = FakeResponses({})
    monkeypatch.setattr(urllib.request, "urlopen", fake)
    return fake


# ---------------------------------------------------------------------------------------------- conversion


def test_convert_isbi_round_trip(isbi_dir, tmp_path):
    volume, labels_tif, images, labels = isbi_stacks(isbi_dir, tmp_path)
    dest = prepare_data.convert_isbi(volume, labels_tif, tmp_path / "converted")
    assert sorted(p.name for p in (dest / "image").iterdir()) == ["0.png", "1.png", "2.png"]
    for index in range(3):
        for folder, stack in (("image", images), ("label", labels)):
            path = dest / folder / f"{index}.png"
            assert Image.open(path).mode == "L"
            np.testing.assert_array_equal(read_image_array(path), stack[index])
            assert path.read_bytes() != b""
    # The converted folder is a valid ISBI dataset, identical to the PNGs it came from.
    assert prepare_data.validate(dest, layout="isbi").startswith(str(dest))
    converted = folder_datalist(dest, "isbi")
    assert [item["id"] for item in converted] == [0, 1, 2]


def test_convert_isbi_rejects_mismatched_stacks(isbi_dir, tmp_path):
    volume, _, _, labels = isbi_stacks(isbi_dir, tmp_path)
    tifffile.imwrite(tmp_path / "two-labels.tif", labels[:2], photometric="minisblack")
    with pytest.raises(DataValidationError) as error:
        prepare_data.convert_isbi(volume, tmp_path / "two-labels.tif", tmp_path / "out")
    assert "two-labels.tif" in str(error.value) and "3 pages" in str(error.value)
    tifffile.imwrite(tmp_path / "single.tif", labels[0], photometric="minisblack")
    with pytest.raises(DataValidationError, match="single.tif is not a multi-page"):
        prepare_data.convert_isbi(volume, tmp_path / "single.tif", tmp_path / "out")


def test_convert_usiigaci_keeps_set_numbers(phc_dir, tmp_path):
    archive_root = tmp_path / "Usiigaci-master" / "Mask R-CNN"
    for split, number, source in (("train", 1, 1), ("val", 46, 2)):
        folder = archive_root / split / f"set{number}"
        folder.mkdir(parents=True)
        (folder / "raw.tif").symlink_to(phc_dir / f"set{source}" / "raw.tif")
        (folder / "instances_ids.png").symlink_to(phc_dir / f"set{source}" / "instances_ids.png")
        (folder / "labeled.png").write_bytes(b"colour map, not copied")
    (archive_root / "train" / "set9").mkdir()
    (archive_root / "train" / "set9" / "raw.tif").symlink_to(phc_dir / "set1" / "raw.tif")  # no ids: skipped
    dest = prepare_data.convert_usiigaci(tmp_path / "Usiigaci-master", tmp_path / "phc")
    assert sorted(p.name for p in dest.iterdir()) == ["set1", "set46"]
    assert sorted(p.name for p in (dest / "set46").iterdir()) == ["instances_ids.png", "raw.tif"]
    assert (dest / "set46" / "raw.tif").read_bytes() == (phc_dir / "set2" / "raw.tif").read_bytes()
    assert not (dest / "set46" / "raw.tif").is_symlink()
    prepare_data.validate(dest, layout="phc")
    with pytest.raises(DataValidationError, match="no Usiigaci set"):
        prepare_data.convert_usiigaci(tmp_path / "phc", tmp_path / "again")


# ---------------------------------------------------------------------------------------------- local copies


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "shared_data"
    (root / "isbi2012_em" / "image").mkdir(parents=True)
    (root / "isbi2012_em" / "image" / "0.png").write_bytes(b"x")
    monkeypatch.setenv("MEDSEG_DATA", str(root))
    return root


def test_data_dir_reads_medseg_data(data_root, monkeypatch):
    assert prepare_data.data_dir("isbi2012_em") == data_root / "isbi2012_em"
    assert prepare_data.data_dir("isbi") == data_root / "isbi2012_em"
    with pytest.raises(FileNotFoundError) as error:
        prepare_data.data_dir("phc")
    assert "MEDSEG_DATA" in str(error.value) and str(data_root / "phc_usiigaci") in str(error.value)
    monkeypatch.delenv("MEDSEG_DATA")
    assert prepare_data.data_root() == (REPO_ROOT.parent / "shared" / "data").resolve()


def test_link_or_copy(data_root, tmp_path):
    linked = prepare_data.link_or_copy("isbi", tmp_path / "work" / "isbi2012_em")
    assert linked.is_symlink() and linked.resolve() == data_root / "isbi2012_em"
    assert (linked / "image" / "0.png").read_bytes() == b"x"
    assert prepare_data.link_or_copy("isbi", linked) == linked  # idempotent
    copied = prepare_data.link_or_copy("isbi", tmp_path / "copy", copy=True)
    assert not copied.is_symlink() and (copied / "image" / "0.png").read_bytes() == b"x"
    with pytest.raises(FileExistsError, match="already exists"):
        prepare_data.link_or_copy("isbi", copied)
    other = prepare_data.link_or_copy("anything", tmp_path / "other", source=data_root / "isbi2012_em")
    assert other.resolve() == data_root / "isbi2012_em"


def test_fetch_prefers_local_copy_else_downloads(data_root, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(registry, "download", lambda dataset, dest: calls.append((dataset, dest)) or Path(dest))
    assert prepare_data.fetch("isbi", tmp_path / "a").is_symlink() and calls == []
    prepare_data.fetch("phc", tmp_path / "b")
    assert calls == [("phc", tmp_path / "b")]


# ---------------------------------------------------------------------------------------------- download


def test_download_fails_clearly_offline(offline, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_DATA", str(tmp_path / "nowhere"))
    dest = tmp_path / "downloads" / "isbi2012_em"
    with pytest.raises(prepare_data.DownloadError) as error:
        prepare_data.download("isbi2012_em", dest)
    message = str(error.value)
    assert "MEDSEG_DATA" in message and str(tmp_path / "nowhere") in message
    assert "https://github.com/zhixuhao/unet/raw/" in message and "brainiac2.mit.edu" in message
    assert offline.requested[0].endswith("/data/membrane/train-volume.tif")
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # nothing half-written left behind
    with pytest.raises(prepare_data.DownloadError, match="oist/Usiigaci/archive"):
        prepare_data.download("phc", tmp_path / "phc")
    with pytest.raises(prepare_data.DownloadError, match="no download implemented"):
        prepare_data.download("covid_medseg", tmp_path / "covid")
    assert prepare_data.main(["download", "isbi", str(dest)]) == 1


def test_git_blob_sha1_matches_git(tmp_path):
    (tmp_path / "hello").write_bytes(b"hello\n")
    assert prepare_data.git_blob_sha1(tmp_path / "hello") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_download_isbi_refuses_wrong_content_then_uses_next_source(isbi_dir, tmp_path, monkeypatch):
    volume, labels_tif, images, _ = isbi_stacks(isbi_dir, tmp_path)
    github, challenge = prepare_data.ISBI_SOURCES
    payloads = {remote.url: path.read_bytes() for remote, path in zip(challenge[1], (volume, labels_tif))}
    # The GitHub copies serve other bytes than the pinned commit's blobs: they must be refused.
    payloads.update({remote.url: path.read_bytes() for remote, path in zip(github[1], (volume, labels_tif))})
    fake = FakeResponses(payloads)
    monkeypatch.setattr(urllib.request, "urlopen", fake)
    dest = prepare_data.download("isbi", tmp_path / "data" / "isbi2012_em")
    assert fake.requested[0].startswith("https://github.com/zhixuhao/unet/raw/")
    assert fake.requested[-1].startswith("http://brainiac2.mit.edu/")
    np.testing.assert_array_equal(read_image_array(dest / "image" / "2.png"), images[2])
    assert sorted(p.name for p in dest.parent.iterdir()) == ["isbi2012_em"]


def test_download_usiigaci_extracts_only_annotated_sets(phc_dir, tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        top = f"Usiigaci-{prepare_data.USIIGACI_COMMIT}"
        archive.write(phc_dir / "set3" / "raw.tif", f"{top}/Mask R-CNN/train/set3/raw.tif")
        archive.write(phc_dir / "set3" / "instances_ids.png", f"{top}/Mask R-CNN/train/set3/instances_ids.png")
        archive.writestr(f"{top}/Mask R-CNN/train/set3/labeled.png", b"not needed")
        archive.writestr(f"{top}/README.md", b"# Usiigaci")
    url = prepare_data.USIIGACI_SOURCES[0][1][0].url
    monkeypatch.setattr(urllib.request, "urlopen", FakeResponses({url: buffer.getvalue()}))
    dest = prepare_data.download("phc_usiigaci", tmp_path / "phc_usiigaci")
    assert [p.relative_to(dest).as_posix() for p in sorted(dest.rglob("*")) if p.is_file()] == [
        "set3/instances_ids.png",
        "set3/raw.tif",
    ]


# ---------------------------------------------------------------------------------------------- validate CLI


def test_validate_cli_exit_codes(isbi_dir, tmp_path, capsys):
    assert prepare_data.main(["validate", str(isbi_dir), "--layout", "isbi"]) == 0
    assert "24 item(s)" in capsys.readouterr().out
    bad = tmp_path / "bad"
    for folder in ("image", "label"):
        (bad / folder).mkdir(parents=True)
        (bad / folder / "0.png").write_bytes((isbi_dir / folder / "0.png").read_bytes())
    label = np.array(Image.open(isbi_dir / "label" / "0.png"))
    label[0, 0] = 128
    Image.fromarray(label).save(bad / "label" / "0.png")
    assert prepare_data.main(["validate", str(bad), "--layout", "isbi"]) == 1
    error = capsys.readouterr().err
    assert str(bad / "label" / "0.png") in error and "[128]" in error
    no_value_checks = ["--label_values=None", "--label_kind=None"]
    assert prepare_data.main(["validate", str(bad), "--layout", "isbi", *no_value_checks]) == 0


def test_validate_cli_subprocess_exit_code(tmp_path):
    (tmp_path / "image").mkdir()
    (tmp_path / "image" / "0.png").write_bytes(b"\x89PNG garbage")
    (tmp_path / "label").mkdir()
    (tmp_path / "label" / "0.png").write_bytes(b"\x89PNG garbage")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "validate", str(tmp_path), "--layout=isbi"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ""},
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "cannot read image file" in result.stderr and str(tmp_path / "image" / "0.png") in result.stderr
