"""Gradient checkpointing for single-input blocks: :class:`CheckpointableBlock` recomputes a block's inner
activations in the backward pass without counting its batch-norm statistics twice. Used by LG-Net's blocks; usable
by any network.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.utils.checkpoint

__all__ = ["CheckpointableBlock"]


class CheckpointableBlock(nn.Module):
    """A single-input block that can trade compute for memory in training: with ``gradient_checkpointing`` set,
    ``forward`` runs :meth:`block_forward` under ``torch.utils.checkpoint`` (non-reentrant), so autograd keeps only
    the block's input and output and recomputes its inner activations in the backward pass.

    The recomputation would update the running statistics of the block's batch norms a second time; they are frozen
    during it (:func:`_batch_norm_statistics_frozen`), so a checkpointed step leaves exactly the same running
    statistics, outputs and gradients as a plain one. Dropout masks are replayed (``preserve_rng_state``).
    Checkpointing is skipped in eval mode, without gradients, and under TorchScript (which cannot script
    ``torch.utils.checkpoint``): a scripted model computes the same values with the memory of a plain one.
    """

    def __init__(self):
        super().__init__()
        self.gradient_checkpointing = False

    def block_forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return self._checkpointed_forward(x)
        return self.block_forward(x)

    @torch.jit.unused
    def _checkpointed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.utils.checkpoint.checkpoint(
            self.block_forward,
            x,
            use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(), _batch_norm_statistics_frozen(self)),
        )


@contextlib.contextmanager
def _batch_norm_statistics_frozen(module: nn.Module) -> Iterator[None]:
    """Within the context, the batch norms of ``module`` normalise with batch statistics as in training but leave
    their running statistics and ``num_batches_tracked`` as they were (momentum 0, counter restored)."""
    saved = []
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and child.training and child.track_running_stats:
            tracked = None if child.num_batches_tracked is None else child.num_batches_tracked.clone()
            saved.append((child, child.momentum, tracked))
            child.momentum = 0.0
    try:
        yield
    finally:
        for child, momentum, tracked in saved:
            child.momentum = momentum
            if tracked is not None:
                child.num_batches_tracked.copy_(tracked)
