"""The library behind the command-line tools of ``scripts/``: what several of them share, one job per module.

Installed with the project (``pip install -e .`` maps it from ``scripts/medseg_tools``), so that the tools and the
tests import it by name, without ``sys.path`` edits. It is not vendored into the Model Zoo packages: those carry
``custom_networks`` and ``transforms`` only.
"""
