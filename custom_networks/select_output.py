"""A wrapper that makes a network returning several outputs usable wherever one logits tensor is expected.

MONAI's ``BasicUNetPlusPlus`` (UNet++, a comparison network of the MCSA-UNet paper, Table 2) returns a *list* of
tensors from ``forward``, even without deep supervision (``[final]``, or ``[x_0_1, x_0_2, x_0_3, final]`` with it).
MONAI's trainers, inferers (``SlidingWindowInferer`` included), losses and post-processing expect one tensor, so the
bundles wrap such a network in :class:`SelectOutput` through their ``network_def``.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn as nn

__all__ = ["SelectOutput"]


class SelectOutput(nn.Module):
    """Runs ``network`` and returns one element of the list (or tuple) of tensors it returns.

    The default ``index=-1`` is the final, full-resolution output of ``BasicUNetPlusPlus`` with or without deep
    supervision (its list ends with ``output_0_4``), so training, validation, sliding-window inference and export
    all see the same single logits tensor. The wrapped network's weights are stored under ``network.`` in the
    state dict.

    Args:
        network: a module whose ``forward(x)`` returns a list or tuple of tensors.
        index: position of the output to return (Python indexing, negative counts from the end).

    Raises:
        ValueError: in ``forward``, when ``network`` returns a single tensor (indexing it would silently pick a
            batch element) or a list without an element at ``index``.

    Example (bundle override)::

        --network_def "{'_target_': 'custom_networks.SelectOutput', 'network': {'_target_': 'BasicUNetPlusPlus',
            'spatial_dims': 2, 'in_channels': 3, 'out_channels': 2, 'features': [16, 32, 64, 128, 256, 16]}}"
    """

    def __init__(self, network: nn.Module, index: int = -1) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise ValueError(f"SelectOutput wraps a torch.nn.Module, got {type(network).__name__}.")
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f"SelectOutput: index must be an int, got {index!r}.")
        self.network = network
        self.index = index

    def _select(self, outputs: List[torch.Tensor]) -> torch.Tensor:
        count = len(outputs)
        if self.index >= count or self.index < -count:
            raise ValueError(
                f"SelectOutput: the network returned {count} output(s), there is no output at index {self.index}."
            )
        return outputs[self.index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: the wrapped network's input.

        Returns:
            the output at ``index`` of the wrapped network's list of outputs.
        """
        outputs = self.network(x)
        if isinstance(outputs, torch.Tensor):
            raise ValueError(
                f"SelectOutput: {type(self.network).__name__} returned a single tensor, not a list of outputs; "
                "use the network without SelectOutput."
            )
        return self._select(list(outputs))
