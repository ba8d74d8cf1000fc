#!/usr/bin/env bash
# Regenerates the two lock files with `uv pip compile` (uv is in the `dev` extra):
#   requirements-lock.txt             the project with all its extras: CI, `scripts/run_tests.sh`, `scripts/run_demo.sh`
#   requirements-monailabel-lock.txt  the MONAI Label environment of scripts/monailabel_app.py (numpy 1.26, pydicom < 3)
# Both are for CPython 3.11 on x86_64 Linux (what CI runs) with the CPU build of torch (constraints-cpu.txt).
#   TORCH_FIND_LINKS=DIR   a folder holding the CPU torch wheel (default /opt/wheels where it exists); otherwise the
#                          PyTorch CPU index is asked for it
#   UV=uv                  the uv executable
# Run it after changing pyproject.toml's dependencies, then run the tests: tests/test_lock.py checks that the lock
# covers pyproject.toml and stays inside its ranges, and `bash scripts/run_tests.sh --unlocked` shows what the
# newest releases would change.
set -euo pipefail
cd "$(dirname "$0")/.."
UV="${UV:-uv}"
TORCH_FIND_LINKS="${TORCH_FIND_LINKS:-/opt/wheels}"
if [ -d "$TORCH_FIND_LINKS" ]; then
  TORCH_SOURCE=(--find-links "$TORCH_FIND_LINKS")
else
  TORCH_SOURCE=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi
COMMON=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --constraint constraints-cpu.txt
  --custom-compile-command "bash scripts/lock.sh" --quiet "${TORCH_SOURCE[@]}")

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# pip itself is locked too: setup_env.sh installs this version before anything else
echo "pip" >"$TMP/pip.in"
"$UV" pip compile pyproject.toml "$TMP/pip.in" --all-extras "${COMMON[@]}" -o requirements-lock.txt

# MONAI Label 0.8.5 breaks with pydicom 3 (and pynetdicom 3, which needs it); its own metadata does not say so
printf 'monailabel==0.8.5\npydicom<3\npynetdicom<3\npip\n' >"$TMP/monailabel.in"
"$UV" pip compile "$TMP/monailabel.in" "${COMMON[@]}" -o requirements-monailabel-lock.txt
sed -i "s|$TMP/||g" requirements-lock.txt requirements-monailabel-lock.txt
echo "written: requirements-lock.txt requirements-monailabel-lock.txt"
