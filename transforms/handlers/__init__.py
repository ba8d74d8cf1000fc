"""Ignite handlers: atomic checkpoints, resuming, and a wall-clock stop."""

from .checkpoint import AtomicCheckpointSaver, ResumeFromCheckpoint, atomic_torch_save
from .stopping import StopAfterSeconds

__all__ = ["atomic_torch_save", "AtomicCheckpointSaver", "ResumeFromCheckpoint", "StopAfterSeconds"]
