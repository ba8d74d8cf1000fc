"""Input checks shared by the same-padding encoder-decoder networks (:class:`MCSAUNet`, :class:`ResUNet`,
:class:`UNet3Plus`). Plain ints and string concatenation only, so that scripted ``forward`` methods can call them."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["check_divisible_input", "check_network_arguments"]


def check_divisible_input(x: torch.Tensor, spatial_dims: int, in_channels: int, divisor: int, network: str) -> None:
    """Raises a ``ValueError`` unless ``x`` is ``(N, in_channels, *spatial)`` with every spatial size a positive
    multiple of ``divisor`` (``2**number_of_downsamplings``: each 2x down-sampling must see an even size so that
    the up-sampled map matches the skip connection exactly).

    Args:
        x: network input.
        spatial_dims: expected number of spatial axes.
        in_channels: expected number of channels.
        divisor: every spatial size must be a multiple of it.
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
    for axis in range(spatial_dims):
        size = x.shape[axis + 2]
        if size < divisor or size % divisor != 0:
            raise ValueError(
                network
                + ": spatial size "
                + str(size)
                + " (spatial axis "
                + str(axis)
                + ") must be a positive multiple of "
                + str(divisor)
                + " (2 ** number of down-samplings); pad or crop the input, e.g. to "
                + str(max(divisor, (size // divisor) * divisor))
                + " or "
                + str((size // divisor + 1) * divisor)
            )


def check_network_arguments(
    network: str, spatial_dims: int, in_channels: int, out_channels: int, features: Sequence[int], min_levels: int = 2
) -> tuple[int, ...]:
    """Validates the arguments common to the encoder-decoder constructors; returns ``features`` as a tuple.

    Raises:
        ValueError: naming the first bad argument.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"{network}: spatial_dims must be 2 or 3, got {spatial_dims!r}.")
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{network}: {name} must be a positive int, got {value!r}.")
    if isinstance(features, (str, bytes)) or not isinstance(features, Sequence):
        raise ValueError(f"{network}: features must be a sequence of ints, got {features!r}.")
    features = tuple(features)
    if len(features) < min_levels:
        raise ValueError(
            f"{network}: features needs at least {min_levels} entries (one per resolution level), got {features!r}."
        )
    if any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in features):
        raise ValueError(f"{network}: features must be positive ints, got {features!r}.")
    return features
