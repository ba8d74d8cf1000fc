"""The bundles of ``bundles/``: their names, and a choice of them."""

from __future__ import annotations

from collections.abc import Sequence

from medseg_tools.paths import BUNDLES_DIR


def bundle_names(bundles: str | Sequence[str] = "all") -> list[str]:
    """The bundles of ``bundles/`` (those with ``configs/metadata.json``), sorted; or a choice of them.

    Args:
        bundles: ``"all"`` (default: every bundle), a comma-separated string or a list of bundle names.

    Raises:
        ValueError: unknown bundle names, or none.
    """
    known = sorted(path.name for path in BUNDLES_DIR.iterdir() if (path / "configs" / "metadata.json").is_file())
    if isinstance(bundles, str):
        names = known if bundles == "all" else [name.strip() for name in bundles.split(",") if name.strip()]
    else:
        names = [str(name) for name in bundles]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(f"unknown bundle(s) {unknown or names!r}; bundles: {known} (or 'all').")
    return names
