"""``python -m medseg_tools.zoo COMMAND ...``: the command line of ``scripts/package_bundle.py``."""

import sys

from medseg_tools.zoo.packaging import main

sys.exit(main())
