#!/usr/bin/env bash
# The project's main job on a fresh machine: sets up .venv (CPU torch) and runs scripts/demo.py.
# Extra arguments go to the demo, e.g. `bash scripts/run_demo.sh --epochs 10`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}" bash scripts/setup_env.sh
exec "${VENV:-.venv}/bin/python" scripts/demo.py "$@"
