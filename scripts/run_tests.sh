#!/usr/bin/env bash
# The project's test command: sets up .venv (CPU torch + test extras) and runs the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/run_tests.sh -k unet2015`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}" bash scripts/setup_env.sh test
exec "${VENV:-.venv}/bin/python" -m pytest -q "$@"
