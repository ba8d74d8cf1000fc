"""Checks an environment or ``pyproject.toml`` against a lock file of ``scripts/lock.sh``.

Usage::

    python scripts/check_lock.py installed requirements-lock.txt   # exit 1 if an installed package is not as locked
    python scripts/check_lock.py diff requirements-lock.txt        # lists what differs from the lock (the canary)
    python scripts/check_lock.py pyproject requirements-lock.txt   # exit 1 if the lock misses or breaks a range

``installed`` and ``diff`` use the standard library only, so they run in any environment (the MONAI Label one
included); ``pyproject`` needs ``packaging``.
"""

import sys

# python puts this file's folder (scripts/) first on sys.path, so medseg_tools.lock (standard library only, like the
# package's __init__) imports also where the project is not installed: setup_env.sh's bare venv, the MONAI Label one
from medseg_tools.lock import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
