"""scripts/gpu_check.sh: valid bash, and on a machine without CUDA it stops at once with a clear message."""

import subprocess
import sys

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "gpu_check.sh"


def test_gpu_check_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_gpu_check_names_every_shipped_model_and_the_paper_recipe():
    text = SCRIPT.read_text()
    for needle in (
        "paper.json",
        "attention_resunet_cell_segmentation",
        "lgnet_covid_ct_segmentation",
        "mcsa_unet_nuclei_segmentation",
        "0.99",
    ):
        assert needle in text


def test_gpu_check_without_cuda_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        return  # the real check runs there
    result = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert result.returncode != 0 and "no CUDA device" in result.stderr
