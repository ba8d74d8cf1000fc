"""Tile geometry of the original U-Net (Ronneberger et al. 2015): which input tile sizes pass the unpadded network,
the border it loses and its output size, for a given depth and padding.

:class:`.unet2015.UNet2015` uses these functions to check its input and exposes them as methods; the tiling
transforms and the overlap-tile inferer use them through the network. The private ``_``-functions take plain ints
only, so that ``UNet2015.forward`` can call them when scripted.

Reference: see :mod:`.unet2015`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Tuple

__all__ = [
    "unet2015_output_size",
    "unet2015_border",
    "is_valid_tile_size",
    "valid_tile_sizes",
    "nearest_valid_tile_size",
    "PADDING_MODES",
    "ROUNDING_MODES",
]

PADDING_MODES = ("valid", "same")
ROUNDING_MODES = ("nearest", "floor", "ceil")


def _shrink_per_double_conv(padding: str) -> int:
    """Pixels lost along one axis by two 3x3 convolutions: 4 when unpadded (paper), 0 with padding 1."""
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}.")
    return 4 if padding == "valid" else 0


def _check_depth(depth: int) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth (number of 2x2 max-pool steps) must be an int >= 1, got {depth!r}.")
    return depth


def _check_size(size: int, name: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError(f"{name} must be an int, got {size!r} ({type(size).__name__}).")
    return size


def _size_list(size: Sequence[int] | int, name: str) -> list[int]:
    """One int per spatial axis from an int or a sequence (``torch.Size`` included)."""
    if isinstance(size, Sequence) and not isinstance(size, str):
        if len(size) == 0:
            raise ValueError(f"{name} must not be empty.")
        return [_check_size(s, name) for s in size]
    return [_check_size(size, name)]


def _propagate_tile_size(size: int, depth: int, shrink: int) -> Tuple[int, str]:
    """Follows one spatial axis through the network of Fig. 1.

    Contracting step: ``s -> (s - shrink) / 2`` (two 3x3 convs, then a 2x2 max pool that must see an even size
    so that the later crop aligns exactly); bottom: ``s -> s - shrink``; expansive step: ``s -> 2 s - shrink``
    (2x2 up-convolution, then two 3x3 convs).

    Returns:
        ``(output_size, "")`` for a valid tile, ``(-1, reason)`` otherwise.
    """
    current = size
    if current < 1:
        return -1, "the size must be positive"
    for level in range(depth):
        current = current - shrink
        if current < 2:
            return -1, "the max pool of step " + str(level + 1) + " would see size " + str(current) + " (< 2)"
        if current % 2 != 0:
            return -1, "the max pool of step " + str(level + 1) + " would see the odd size " + str(current)
        current = current // 2
    current = current - shrink
    if current < 1:
        return -1, "the bottom convolutions would output size " + str(current)
    for level in range(depth):
        current = 2 * current - shrink
        if current < 1:
            return -1, "expansive step " + str(level + 1) + " would output size " + str(current)
    return current, ""


def _smallest_valid_tile_size(depth: int, shrink: int) -> int:
    """Valid sizes form ``{s_min + k * 2**depth, k >= 0}``: one residue class mod ``2**depth``, upward closed."""
    step = 1 << depth  # an int also under TorchScript, where ** gives a float
    # Every pre-pool size is even iff (s - shrink * (2**depth - 1)) is a multiple of 2**depth.
    candidate = (shrink * (step - 1)) % step
    if candidate == 0:
        candidate = step
    while _propagate_tile_size(candidate, depth, shrink)[0] < 1:
        candidate += step
    return candidate


def _valid_tile_size_below(size: int, depth: int, shrink: int) -> int:
    """Largest valid tile size ``<= size``, or -1 when there is none."""
    smallest = _smallest_valid_tile_size(depth, shrink)
    if size < smallest:
        return -1
    step = 1 << depth
    return smallest + ((size - smallest) // step) * step


def _valid_tile_size_above(size: int, depth: int, shrink: int) -> int:
    """Smallest valid tile size ``>= size``."""
    smallest = _smallest_valid_tile_size(depth, shrink)
    if size <= smallest:
        return smallest
    step = 1 << depth
    return smallest + ((size - smallest + step - 1) // step) * step


def unet2015_border(depth: int = 4, padding: str = "valid") -> int:
    """Pixels lost on EACH side of every spatial axis: ``(input - output) / 2``.

    With unpadded convolutions every double conv at resolution level ``l`` (``l = 0`` full resolution) removes
    2 pixels per side of that level, i.e. ``2 * 2**l`` input pixels; summing over the ``depth`` contracting steps,
    the bottom block and the ``depth`` expansive steps gives ``6 * 2**depth - 4`` (92 for the paper's depth 4:
    572 -> 388). Zero for ``padding="same"``.

    Args:
        depth: number of 2x2 max-pool steps (``len(features) - 1``).
        padding: ``"valid"`` (unpadded 3x3 convolutions, paper) or ``"same"``.
    """
    _check_depth(depth)
    shrink = _shrink_per_double_conv(padding)
    return (shrink // 4) * (6 * (1 << depth) - 4)


def is_valid_tile_size(size: Sequence[int] | int, depth: int = 4, padding: str = "valid") -> bool:
    """Whether an input tile (every axis of it, for a sequence) passes the network: each max pool sees an even
    size and the output is not empty.

    Args:
        size: spatial size, one int or one per axis.
        depth: number of 2x2 max-pool steps (``len(features) - 1``).
        padding: ``"valid"`` or ``"same"``.
    """
    _check_depth(depth)
    shrink = _shrink_per_double_conv(padding)
    return all(_propagate_tile_size(s, depth, shrink)[0] > 0 for s in _size_list(size, "size"))


def unet2015_output_size(input_size: Sequence[int] | int, depth: int = 4, padding: str = "valid") -> tuple[int, ...]:
    """Spatial output size for a given input tile (572 -> 388 for the paper's network).

    Args:
        input_size: spatial input size, one int or one per axis.
        depth: number of 2x2 max-pool steps (``len(features) - 1``).
        padding: ``"valid"`` or ``"same"``.

    Returns:
        one output size per axis (a 1-tuple for an int ``input_size``).

    Raises:
        ValueError: when some max pool would see an odd size (or less than 2) or the output would be empty.
    """
    _check_depth(depth)
    shrink = _shrink_per_double_conv(padding)
    outputs = []
    for axis, size in enumerate(_size_list(input_size, "input_size")):
        output, reason = _propagate_tile_size(size, depth, shrink)
        if output < 1:
            raise ValueError(_invalid_size_message(size, axis, depth, shrink, reason))
        outputs.append(output)
    return tuple(outputs)


def valid_tile_sizes(min_size: int, max_size: int, depth: int = 4, padding: str = "valid") -> list[int]:
    """All valid input tile sizes in ``[min_size, max_size]`` (ascending; spaced by ``2**depth``).

    Args:
        min_size: smallest size considered (inclusive).
        max_size: largest size considered (inclusive).
        depth: number of 2x2 max-pool steps (``len(features) - 1``).
        padding: ``"valid"`` or ``"same"``.
    """
    _check_depth(depth)
    shrink = _shrink_per_double_conv(padding)
    _check_size(min_size, "min_size")
    _check_size(max_size, "max_size")
    if min_size > max_size:
        raise ValueError(f"min_size ({min_size}) must not exceed max_size ({max_size}).")
    first = _valid_tile_size_above(max(min_size, 1), depth, shrink)
    return list(range(first, max_size + 1, (1 << depth)))


def nearest_valid_tile_size(size: int, depth: int = 4, padding: str = "valid", mode: str = "nearest") -> int:
    """Valid input tile size close to ``size`` (572 -> 572; 512 -> 508 for the paper's network).

    Args:
        size: wanted input size along one axis.
        depth: number of 2x2 max-pool steps (``len(features) - 1``).
        padding: ``"valid"`` or ``"same"``.
        mode: ``"nearest"`` (ties go to the larger size), ``"floor"`` (largest valid ``<= size``) or
            ``"ceil"`` (smallest valid ``>= size``).

    Raises:
        ValueError: for an unknown ``mode``, or in ``"floor"`` mode when no valid size ``<= size`` exists.
    """
    _check_depth(depth)
    shrink = _shrink_per_double_conv(padding)
    _check_size(size)
    if mode not in ROUNDING_MODES:
        raise ValueError(f"mode must be one of {ROUNDING_MODES}, got {mode!r}.")
    below = _valid_tile_size_below(size, depth, shrink)
    above = _valid_tile_size_above(size, depth, shrink)
    if mode == "ceil":
        return above
    if mode == "floor":
        if below < 0:
            raise ValueError(
                f"no valid tile size <= {size} for depth {depth} and padding {padding!r}; the smallest is {above}."
            )
        return below
    if below < 0 or above - size <= size - below:
        return above
    return below


def _invalid_size_message(size: int, axis: int, depth: int, shrink: int, reason: str) -> str:
    below = _valid_tile_size_below(size, depth, shrink)
    above = _valid_tile_size_above(size, depth, shrink)
    suggestion = "the smallest is " + str(above) if below < 0 else str(below) + " or " + str(above)
    padding = "valid" if shrink > 0 else "same"
    return (
        "spatial size "
        + str(size)
        + " (spatial axis "
        + str(axis)
        + ") is not a valid UNet2015 tile for depth "
        + str(depth)
        + " and padding '"
        + padding
        + "': "
        + reason
        + ". Valid sizes nearby: "
        + suggestion
        + " (see nearest_valid_tile_size)."
    )
