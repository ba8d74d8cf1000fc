"""Overlay pictures of segmentations: moved to :mod:`medseg_tools.visualize` (kept here under its old name)."""

from medseg_tools.visualize import overlay, save_overlay, to_display_gray

__all__ = ["overlay", "save_overlay", "to_display_gray"]
