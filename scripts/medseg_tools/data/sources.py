"""The datasets' download sources, pinned to commits, and checked downloads (git blob ids of those commits)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

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
