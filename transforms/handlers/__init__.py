"""Ignite handlers: atomic checkpoints, resuming, and a wall-clock stop and a learning-rate schedule over that budget."""

from .checkpoint import (
    AtomicCheckpointSaver,
    CheckedCheckpointLoader,
    CheckpointMismatchError,
    ResumeFromCheckpoint,
    atomic_torch_save,
    check_checkpoint_fits,
)
from .schedules import BudgetCosineLR
from .stopping import StopAfterSeconds

__all__ = [
    "BudgetCosineLR",
    "atomic_torch_save",
    "AtomicCheckpointSaver",
    "CheckedCheckpointLoader",
    "CheckpointMismatchError",
    "check_checkpoint_fits",
    "ResumeFromCheckpoint",
    "StopAfterSeconds",
]
