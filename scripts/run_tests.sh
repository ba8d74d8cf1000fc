#!/usr/bin/env bash
# The project's test command: sets up .venv (CPU torch + test extras, exact versions of requirements-lock.txt) and
# runs the whole suite. Extra arguments go to pytest, e.g. `bash scripts/run_tests.sh -k unet2015`.
#   --unlocked   the canary for tomorrow's releases: builds .venv-unlocked with the newest versions pyproject.toml
#                allows (and .venv-monailabel-unlocked for the MONAI Label tests), runs the suite there and lists
#                the packages that differ from the lock
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--unlocked" ]; then
  shift
  export MEDSEG_UNLOCKED=1 VENV="${VENV:-.venv-unlocked}"
  export MEDSEG_MONAILABEL_VENV="${MEDSEG_MONAILABEL_VENV:-.venv-monailabel-unlocked}"
fi
VENV="${VENV:-.venv}" bash scripts/setup_env.sh test
if [ "${MEDSEG_UNLOCKED:-0}" = 1 ]; then
  echo "packages of $VENV that differ from requirements-lock.txt:"
  "$VENV/bin/python" scripts/check_lock.py diff requirements-lock.txt
fi
exec "${VENV:-.venv}/bin/python" -m pytest -q "$@"
