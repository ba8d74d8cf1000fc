"""The lock files of ``scripts/lock.sh``: complete for ``pyproject.toml``, inside its ranges, and what runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from medseg_tools import lock as check_lock
from medseg_tools.monailabel import MONAILABEL_VERSION
from medseg_tools.zoo import FLAKE8_ZOO_PLUGINS

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK = REPO_ROOT / "requirements-lock.txt"
MONAILABEL_LOCK = REPO_ROOT / "requirements-monailabel-lock.txt"
PYPROJECT = REPO_ROOT / "pyproject.toml"


def test_lock_covers_pyproject_within_its_ranges():
    assert check_lock.pyproject_problems(LOCK, PYPROJECT) == []


def _write_pyproject(path: Path, dependencies: list[str], extras: dict[str, list[str]]) -> Path:
    # a JSON array of plain strings is a TOML array
    extra_lines = "\n".join(f"{name} = {json.dumps(deps)}" for name, deps in extras.items())
    path.write_text(
        f"[project]\nname = 'x'\nversion = '0'\ndependencies = {json.dumps(dependencies)}\n"
        f"[project.optional-dependencies]\n{extra_lines}\n"
    )
    return path


def test_a_package_missing_from_the_lock_fails(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("numpy==2.1.0\n    # via x\nscipy==1.14.0\n")
    pyproject = _write_pyproject(tmp_path / "pyproject.toml", ["numpy>=1.24"], {"test": ["scipy>=1.10", "pytest>=7"]})
    problems = check_lock.pyproject_problems(lock, pyproject)
    assert len(problems) == 1 and "pytest" in problems[0] and "extra 'test'" in problems[0]


def test_a_locked_version_outside_the_range_fails(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("numpy==1.23.5\nscipy==1.14.0\n")
    pyproject = _write_pyproject(tmp_path / "pyproject.toml", ["numpy>=1.24", "SciPy<2"], {})
    problems = check_lock.pyproject_problems(lock, pyproject)
    assert len(problems) == 1 and "numpy==1.23.5" in problems[0]


def test_markers_that_do_not_apply_are_skipped(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("numpy==2.1.0\n")
    pyproject = _write_pyproject(tmp_path / "pyproject.toml", ["numpy>=1.24", "pywin32>=300; sys_platform == 'win32'"], {})
    assert check_lock.pyproject_problems(lock, pyproject) == []


def test_read_lock_refuses_a_range(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("numpy>=1.24\n")
    with pytest.raises(ValueError, match=r"lock.txt:1: not an exact pin"):
        check_lock.read_lock(lock)


def test_differences_name_each_package_and_accept_local_builds():
    locked = {"torch": "2.13.0+cpu", "torchvision": "0.28.0", "numpy": "2.1.0"}
    installed = {"torch": "2.13.0", "torchvision": "0.28.0+cpu", "numpy": "2.1.0", "extra-pkg": "1.0"}
    assert check_lock.differences(locked, installed) == [
        "extra-pkg==1.0 (not in the lock)",
        "torch==2.13.0 (lock: 2.13.0+cpu)",
    ]
    assert check_lock.canonical_name("PyYAML") == check_lock.canonical_name("pyyaml")
    assert check_lock.canonical_name("pytorch_ignite") == "pytorch-ignite"


def test_lock_files_say_how_they_are_made():
    for lock in (LOCK, MONAILABEL_LOCK):
        assert "bash scripts/lock.sh" in "".join(lock.read_text().splitlines(keepends=True)[:3])


def test_both_locks_pin_the_same_cpu_torch():
    locked, monailabel_locked = check_lock.read_lock(LOCK), check_lock.read_lock(MONAILABEL_LOCK)
    assert locked["torch"].endswith("+cpu") and locked["torch"] == monailabel_locked["torch"]
    pin = next(line for line in (REPO_ROOT / "constraints-cpu.txt").read_text().splitlines() if line.startswith("torch"))
    assert locked["torch"].split("+")[0] == pin.split("==")[1]


def test_monailabel_lock_has_what_monailabel_needs():
    locked = check_lock.read_lock(MONAILABEL_LOCK)
    assert locked["monailabel"] == MONAILABEL_VERSION
    assert int(locked["pydicom"].split(".")[0]) < 3 and int(locked["pynetdicom"].split(".")[0]) < 3
    assert locked["numpy"].startswith("1.")
    assert locked["monai"] == check_lock.read_lock(LOCK)["monai"], "the bundles run on one MONAI version"


def test_the_zoo_style_toolchain_is_locked():
    locked = check_lock.read_lock(LOCK)
    for tool in ("flake8", "black", "isort", *FLAKE8_ZOO_PLUGINS):
        assert tool in locked, tool


@pytest.mark.skipif(os.environ.get("MEDSEG_UNLOCKED") == "1", reason="the canary runs the newest releases")
def test_this_environment_is_as_locked():
    """What the suite runs on is the lock: `scripts/setup_env.sh` refuses anything else, and so does this test."""
    assert check_lock.differences(check_lock.read_lock(LOCK), check_lock.installed_versions()) == []


def test_command_line_reports_and_exit_codes(tmp_path):
    script = REPO_ROOT / "scripts" / "check_lock.py"
    run = [sys.executable, str(script)]
    pyproject = subprocess.run([*run, "pyproject", str(LOCK)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert pyproject.returncode == 0, pyproject.stdout + pyproject.stderr
    stale = tmp_path / "stale.txt"
    stale.write_text("numpy==0.0.1\n")
    installed = subprocess.run([*run, "installed", str(stale)], capture_output=True, text=True)
    assert installed.returncode == 1 and "numpy==" in installed.stderr and "lock: 0.0.1" in installed.stderr
    diff = subprocess.run([*run, "diff", str(stale)], capture_output=True, text=True)
    assert diff.returncode == 0 and "lock: 0.0.1" in diff.stdout
    assert subprocess.run([*run, "bogus"], capture_output=True, text=True).returncode == 2
