"""A wrapper that lets a network with a size rule (every spatial size a multiple of ``2 ** poolings``) run on any
image size, so that whole-image validation and inference work for every family of :mod:`.families`."""

from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["PadToDivisible"]


class PadToDivisible(nn.Module):
    """Pads the input at the end of every spatial axis to the next multiple of ``divisor`` (replicating the border,
    so that no artificial edge enters the image), runs ``network`` and crops its output back to the input size.

    The same as MONAI's ``DivisiblePad`` + ``Crop`` around the call, inside the module so that trainers, inferers,
    export and MONAI Label see one network. Input already divisible passes unchanged.

    Args:
        network: a module mapping ``(N, C, *spatial)`` to ``(N, C', *spatial)`` for divisible sizes.
        divisor: the multiple every spatial size is padded to (>= 1).
    """

    def __init__(self, network: nn.Module, divisor: int):
        super().__init__()
        if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
            raise ValueError(f"PadToDivisible: divisor must be a positive int, got {divisor!r}.")
        self.network = network
        self.divisor = divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes: List[int] = list(x.shape[2:])
        pad: List[int] = []
        padded = False
        for axis in range(len(sizes) - 1, -1, -1):  # F.pad lists the last axis first
            extra = (self.divisor - sizes[axis] % self.divisor) % self.divisor
            pad += [0, extra]
            padded = padded or extra > 0
        if not padded:
            return self.network(x)
        y = self.network(F.pad(x, pad, mode="replicate"))
        if len(sizes) == 2:
            return y[:, :, : sizes[0], : sizes[1]]
        return y[:, :, : sizes[0], : sizes[1], : sizes[2]]
