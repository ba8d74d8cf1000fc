#!/usr/bin/env bash
# Creates (or updates) a virtual environment with the CPU build of PyTorch and this project.
#   VENV=.venv           where the environment lives
#   TORCH_INDEX_URL=...  optional package index for the torch wheel, e.g. https://download.pytorch.org/whl/cpu
#   $1                   optional extras, e.g. "test"
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
EXTRAS="${1:-}"
PYTHON="${PYTHON:-python3}"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
# torch first and pinned: an unpinned torch pulls several GB of CUDA wheels.
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  "${PIP[@]}" --index-url "$TORCH_INDEX_URL" "torch==2.13.0"
else
  "${PIP[@]}" "torch==2.13.0"
fi
TARGET="."
[ -n "$EXTRAS" ] && TARGET=".[$EXTRAS]"
"${PIP[@]}" -c constraints-cpu.txt -e "$TARGET"
echo "environment ready: $VENV"
