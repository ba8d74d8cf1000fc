"""Argument and input checks shared by the networks of this package.

The input checks (:func:`check_input_shape`, :func:`check_divisible_input`) use plain ints and string concatenation
only, so that scripted ``forward`` methods can call them; the constructor checks (``check_*`` of arguments) name the
network and the argument in every message.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "UPSAMPLE_MODES",
    "check_input_shape",
    "check_divisible_input",
    "check_network_arguments",
    "check_positive_int",
    "check_convs_per_stage",
    "check_dropout_probability",
    "check_upsample_mode",
    "dropout_or_none",
]

UPSAMPLE_MODES = ("deconv", "nontrainable", "pixelshuffle")


def _prefix(network: str) -> str:
    return f"{network}: " if network else ""


# ---------------------------------------------------------------------------------------------------------------
# Input tensors (called from scripted ``forward``)
# ---------------------------------------------------------------------------------------------------------------


def check_input_shape(x: torch.Tensor, spatial_dims: int, in_channels: int, network: str) -> None:
    """Raises a ``ValueError`` unless ``x`` is ``(N, in_channels, *spatial)`` with ``spatial_dims`` spatial axes.

    Args:
        x: network input.
        spatial_dims: expected number of spatial axes.
        in_channels: expected number of channels.
        network: class name used in the message.
    """
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            network
            + " expects an input of shape (N, C, "
            + str(spatial_dims)
            + " spatial axes), got "
            + str(x.dim())
            + " dimensions"
        )
    if x.shape[1] != in_channels:
        raise ValueError(network + " expects " + str(in_channels) + " input channels, got " + str(x.shape[1]))


def check_divisible_input(x: torch.Tensor, spatial_dims: int, in_channels: int, divisor: int, network: str) -> None:
    """:func:`check_input_shape`, then raises a ``ValueError`` unless every spatial size is a positive multiple of
    ``divisor`` (``2**number_of_downsamplings``: each 2x down-sampling must see an even size so that the
    up-sampled map matches the skip connection, or the un-pooling indices, exactly).

    The message names the axis, the size, the required multiple with its power of two and the valid sizes nearby.

    Args:
        x: network input.
        spatial_dims: expected number of spatial axes.
        in_channels: expected number of channels.
        divisor: every spatial size must be a multiple of it, a power of two.
        network: class name used in the message.
    """
    check_input_shape(x, spatial_dims, in_channels, network)
    downsamplings = 0
    while (1 << downsamplings) < divisor:
        downsamplings += 1
    for axis in range(spatial_dims):
        size = x.shape[axis + 2]
        if size < divisor or size % divisor != 0:
            below = (size // divisor) * divisor
            nearby = "the smallest is " + str(divisor)
            if below >= divisor:
                nearby = str(below) + " or " + str(below + divisor)
            raise ValueError(
                network
                + ": spatial size "
                + str(size)
                + " (spatial axis "
                + str(axis)
                + ") must be a positive multiple of "
                + str(divisor)
                + " = 2 ** "
                + str(downsamplings)
                + " (one factor 2 per down-sampling). Valid sizes nearby: "
                + nearby
                + "; pad or crop the input (e.g. monai.transforms.DivisiblePad(k="
                + str(divisor)
                + "))"
            )


# ---------------------------------------------------------------------------------------------------------------
# Constructor arguments
# ---------------------------------------------------------------------------------------------------------------


def check_positive_int(network: str, name: str, value: object) -> int:
    """Returns ``value`` if it is an ``int`` >= 1 (``bool`` excluded), else raises a ``ValueError`` naming ``name``.

    Args:
        network: class name used in the message (``""`` for none).
        name: argument name used in the message.
        value: the value to check.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{_prefix(network)}{name} must be a positive int, got {value!r}.")
    return value


def check_network_arguments(
    network: str,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    features: Sequence[int],
    min_levels: int = 2,
    spatial_dims_options: Sequence[int] = (2, 3),
    min_levels_reason: str = "one per resolution level",
) -> tuple[int, ...]:
    """Validates the arguments common to the network constructors; returns ``features`` as a tuple.

    Args:
        network: class name used in the messages.
        spatial_dims: number of spatial dimensions, one of ``spatial_dims_options``.
        in_channels: must be a positive int.
        out_channels: must be a positive int.
        features: channels per resolution level (or stage), a sequence of at least ``min_levels`` positive ints.
        min_levels: the fewest entries ``features`` may have.
        spatial_dims_options: the supported numbers of spatial dimensions.
        min_levels_reason: why ``min_levels`` entries are needed, for the message.

    Raises:
        ValueError: naming the first bad argument.
    """
    if spatial_dims not in spatial_dims_options:
        options = ", ".join(str(option) for option in spatial_dims_options[:-1])
        options = f"{options} or {spatial_dims_options[-1]}" if options else str(spatial_dims_options[-1])
        raise ValueError(f"{network}: spatial_dims must be {options}, got {spatial_dims!r}.")
    check_positive_int(network, "in_channels", in_channels)
    check_positive_int(network, "out_channels", out_channels)
    if isinstance(features, (str, bytes)) or not isinstance(features, Sequence):
        raise ValueError(f"{network}: features must be a sequence of ints, got {features!r}.")
    features = tuple(features)
    if len(features) < min_levels:
        entries = "entry" if min_levels == 1 else "entries"
        raise ValueError(
            f"{network}: features needs at least {min_levels} {entries} ({min_levels_reason}), got {features!r}."
        )
    if any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in features):
        raise ValueError(f"{network}: features must be positive ints, got {features!r}.")
    return features


def check_convs_per_stage(network: str, convs_per_stage: Sequence[int], features: Sequence[int]) -> tuple[int, ...]:
    """Validates the number of 3x3 convolutions of each VGG-style stage: one positive int per entry of
    ``features``; returns it as a tuple."""
    convs_per_stage = tuple(check_positive_int(network, "every entry of convs_per_stage", c) for c in convs_per_stage)
    if len(convs_per_stage) != len(features):
        raise ValueError(
            f"{network}: convs_per_stage ({convs_per_stage!r}) must have one entry per stage of features "
            f"({tuple(features)!r})."
        )
    return convs_per_stage


def check_dropout_probability(network: str, dropout: float) -> float:
    """Returns ``dropout`` as a float if it is a probability in ``[0, 1)``, else raises a ``ValueError``."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{_prefix(network)}dropout must be a probability in [0, 1), got {dropout!r}.")
    return float(dropout)


def check_upsample_mode(network: str, upsample: str, modes: Sequence[str] = UPSAMPLE_MODES) -> str:
    """Returns ``upsample`` if it is one of ``modes`` (MONAI ``UpSample`` modes), else raises a ``ValueError``."""
    if upsample not in modes:
        raise ValueError(f"{_prefix(network)}upsample must be one of {tuple(modes)}, got {upsample!r}.")
    return upsample


def dropout_or_none(dropout: float | tuple | None) -> float | tuple | None:
    """``None`` for a zero probability (int or float), ``dropout`` otherwise, so that MONAI's ``ADN`` and
    ``Convolution`` add no no-op ``Dropout(p=0)`` layer and callers can skip building one."""
    if isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and dropout == 0:
        return None
    return dropout
