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
