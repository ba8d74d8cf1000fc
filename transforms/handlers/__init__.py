"""Ignite handlers: atomic checkpoints, resuming, and a wall-clock stop."""

from .checkpoint import (
    AtomicCheckpointSaver,
    CheckedCheckpointLoader,
    CheckpointMismatchError,
    ResumeFromCheckpoint,
    atomic_torch_save,
    check_checkpoint_fits,
)
from .stopping import StopAfterSeconds

__all__ = [
    "atomic_torch_save",
    "AtomicCheckpointSaver",
    "CheckedCheckpointLoader",
    "CheckpointMismatchError",
    "check_checkpoint_fits",
    "ResumeFromCheckpoint",
    "StopAfterSeconds",
]
