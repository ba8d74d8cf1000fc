"""The README a newcomer reads: its Python example runs, it stays short, and its links (and docs/'s) resolve."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT, data_root, require_dataset

README = REPO_ROOT / "README.md"
DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))
MAX_README_LINES = 150

FENCED_BLOCK = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target); the target ends at whitespace (an optional "title") or the closing parenthesis
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def python_blocks(markdown: str) -> list[str]:
    """The code of every ```python block."""
    return re.findall(r"^```python\n(.*?)^```", markdown, re.DOTALL | re.MULTILINE)


def relative_links(markdown: str) -> list[str]:
    """Link targets outside code that are paths in the repository (no scheme, not only an #anchor)."""
    text = INLINE_CODE.sub("", FENCED_BLOCK.sub("", markdown))
    targets = [match.group(1) for match in MARKDOWN_LINK.finditer(text)]
    return [target for target in targets if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^#", target)]


def broken_links(path: Path) -> list[str]:
    """The relative links of a markdown file whose file (the part before any #anchor) does not exist."""
    broken = []
    for target in relative_links(path.read_text()):
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        if not resolved.exists():
            broken.append(f"{path.relative_to(REPO_ROOT)}: {target} -> {resolved} does not exist")
    return broken


def test_readme_python_example_runs(tmp_path):
    """Runs the README's Python example as written, in a fresh process, on the real ISBI image it names.

    It runs in a copy of the bundle's configs and shipped weights (so that a locally trained ``models/model.pt``
    cannot change what it does) with this checkout's packages on ``PYTHONPATH`` and ``MEDSEG_DATA`` set to the data
    root the tests use; the mask must be the shipped model's: far from "cell everywhere".
    """
    require_dataset("isbi2012_em")
    blocks = python_blocks(README.read_text())
    assert len(blocks) == 1, f"README.md should have one ```python block, found {len(blocks)}"
    bundle = Path("bundles") / "unet_em_segmentation"
    shutil.copytree(REPO_ROOT / bundle / "configs", tmp_path / bundle / "configs")
    (tmp_path / bundle / "models").mkdir()
    shutil.copy(REPO_ROOT / bundle / "models" / "model.pt", tmp_path / bundle / "models" / "model.pt")
    env = {
        **os.environ,
        "MEDSEG_DATA": str(data_root()),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", blocks[0]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"README example failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    mask = np.asarray(Image.open(tmp_path / "outputs" / "readme" / "20_mask.png"))
    assert mask.shape == (512, 512) and set(np.unique(mask)) <= {0, 255}
    truth = np.asarray(Image.open(data_root() / "isbi2012_em" / "label" / "20.png")) > 127
    assert np.mean((mask > 0) == truth) > 0.85, "far from the shipped model's mask (cell everywhere scores about 0.79)"
    probability = np.asarray(Image.open(tmp_path / "outputs" / "readme" / "20_prob.png"))
    assert probability.shape == (512, 512) and probability.dtype == np.uint16


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move details to docs/"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(path: Path):
    assert broken_links(path) == []


def test_every_docs_page_is_linked_from_the_readme():
    assert DOCS, "docs/ has no pages"
    linked = {(REPO_ROOT / target.split("#", 1)[0]).resolve() for target in relative_links(README.read_text())}
    assert [str(page.relative_to(REPO_ROOT)) for page in DOCS if page.resolve() not in linked] == []


def test_link_check_finds_broken_links(tmp_path, monkeypatch):
    """The checker itself: a missing file is reported; anchors, URLs and links inside code are not."""
    monkeypatch.setattr(sys.modules[__name__], "REPO_ROOT", tmp_path)
    (tmp_path / "present.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](present.md#part) [anchor](#here) [web](https://example.org/x.md) `[code](gone.md)`\n"
        "```text\n[block](gone.md)\n```\n[missing](gone.md) ![image](img/none.png)\n"
    )
    assert [line.split(":")[1].split(" ->")[0].strip() for line in broken_links(page)] == [
        "gone.md",
        "img/none.png",
    ]
