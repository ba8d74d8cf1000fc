"""``large_files.yml`` of a Model Zoo package: written, read back, and the md5 of its files."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from medseg_tools.zoo.configs import PackageError


def md5(path: str | os.PathLike) -> str:
    """md5 of a file (``large_files.yml`` hashes; whether training replaced ``models/model.pt``)."""
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def large_files_yml(entries: Sequence[Mapping[str, str]]) -> str:
    """``large_files.yml`` as the Model Zoo writes it: ``path``, ``url``, ``hash_val``, ``hash_type`` per file."""
    lines = ["large_files:"]
    for entry in entries:
        lines.append(f'  - path: "{entry["path"]}"')
        lines += [f'    {key}: "{entry.get(key, "")}"' for key in ("url", "hash_val", "hash_type")]
    return "\n".join(lines) + "\n"


def read_large_files(path: Path) -> list[dict[str, str]]:
    """Entries of a ``large_files.yml`` in the zoo's layout (``large_files:`` then ``- path: ...`` items).

    Raises:
        PackageError: not in that layout.
    """
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines or lines[0].strip() != "large_files:":
        raise PackageError(f"{path.name}: must start with 'large_files:'.")
    entries: list[dict[str, str]] = []
    for line in lines[1:]:
        found = re.match(r"\s*(-\s+)?(\w+):\s*(.*)$", line)
        if not found:
            raise PackageError(f"{path.name}: cannot read the line {line!r}.")
        if found.group(1):
            entries.append({})
        elif not entries:
            raise PackageError(f"{path.name}: {line!r} is not inside a '- path:' entry.")
        entries[-1][found.group(2)] = found.group(3).strip().strip("'\"")
    return entries


#: where a maintainer publishes a bundle's shipped weights (the release assets of the project's repository)
WEIGHTS_URL = "https://github.com/medseg-bundles/medseg-bundles/releases/download/{bundle}-v{version}/{name}"
#: the Model Zoo's limits this repository keeps for the weights it commits
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_TOTAL_BYTES = 30 * 1024 * 1024


def shipped_weights(bundle_root: str | os.PathLike) -> dict[str, Path]:
    """The trained weights a bundle ships, from its ``large_files.yml``: ``{relative path: file}``.

    Raises:
        PackageError: an entry whose file is missing or whose md5 differs from the file's.
    """
    root = Path(bundle_root)
    listing = root / "large_files.yml"
    if not listing.is_file():
        return {}
    files = {}
    for entry in read_large_files(listing):
        path = root / entry["path"]
        if not path.is_file():
            raise PackageError(f"{listing}: {entry['path']} is listed but missing (git lfs or a partial checkout?).")
        if entry.get("hash_val") and md5(path) != entry["hash_val"]:
            raise PackageError(
                f"{listing}: md5 of {entry['path']} is {md5(path)}, the listing says {entry['hash_val']}: the file was "
                "replaced (e.g. by a training run in the bundle's own models/); restore it with git checkout, or "
                "update large_files.yml when the new weights are meant to ship."
            )
        files[entry["path"]] = path
    return files


def write_shipped_large_files(bundle_root: str | os.PathLike, paths: Sequence[str], version: str) -> str:
    """Writes ``large_files.yml`` of the repository's bundle for the weight files ``paths`` (relative to it)."""
    root = Path(bundle_root)
    entries = []
    for relative in paths:
        path = root / relative
        if path.stat().st_size > MAX_FILE_BYTES:
            raise PackageError(
                f"{path}: {path.stat().st_size / 2**20:.1f} MiB, above the 10 MiB limit of a shipped file."
            )
        url = WEIGHTS_URL.format(bundle=root.name, version=version, name=relative.replace("/", "_"))
        entries.append({"path": relative, "url": url, "hash_val": md5(path), "hash_type": "md5"})
    text = large_files_yml(entries)
    (root / "large_files.yml").write_text(text)
    return text
