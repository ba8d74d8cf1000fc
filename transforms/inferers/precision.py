"""The one place that decides in which precision the networks run: bf16 autocast on CPUs with bf16 matrix units,
fp16 AMP on CUDA, fp32 elsewhere, and an inferer wrapper that runs any inferer's network calls under it.

Why an inferer wrapper rather than MONAI's ``amp`` flag: MONAI 1.6's ``SupervisedTrainer`` and ``SupervisedEvaluator``
hard-code ``torch.autocast("cuda")`` and ``torch.cuda.amp.GradScaler`` when ``amp=True``, so on a CPU they run fp32
(with a warning). Wrapping the inferer covers training (the trainer's ``SimpleInferer``), validation, ``inference.json``
and MONAI Label (which reads the ``inferer`` id) alike, and it returns fp32, so the losses, weight maps, activations
and metrics that follow stay in fp32. The engines' own ``amp`` is kept for what only they do: the CUDA ``GradScaler``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["Precision", "PrecisionInferer", "cpu_bf16_units", "select_precision", "to_float32"]

logger = logging.getLogger(__name__)


def cpu_bf16_units() -> str | None:
    """Names the CPU's bf16 matrix units that oneDNN uses (``"AMX-BF16"`` or ``"AVX512-BF16"``), or ``None``.

    Without them bf16 convolutions are emulated and run slower than fp32, so autocast would not pay.
    """
    if not torch.backends.mkldnn.is_available():
        return None
    if torch.cpu._is_amx_tile_supported() and torch.cpu._is_avx512_bf16_supported():
        return "AMX-BF16"
    if torch.cpu._is_avx512_bf16_supported():
        return "AVX512-BF16"
    return None


@dataclass(frozen=True)
class Precision:
    """Where and how the network runs.

    Attributes:
        device_type: ``"cpu"`` or ``"cuda"`` (the autocast device type).
        dtype: the autocast dtype, ``None`` for fp32.
        reason: one line saying why this precision was chosen.
    """

    device_type: str
    dtype: torch.dtype | None
    reason: str = ""

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    @property
    def engine_amp(self) -> bool:
        """What MONAI's engines' ``amp`` must be: ``True`` only for fp16 on CUDA, the case that needs a
        ``GradScaler`` (bf16 has fp32's exponent range and needs none)."""
        return self.device_type == "cuda" and self.dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def __str__(self) -> str:
        return (
            f"{self.name} on {self.device_type} ({self.reason})"
            if self.reason
            else f"{self.name} on {self.device_type}"
        )


def select_precision(device: torch.device | str, amp: bool | str = True, log: bool = True) -> Precision:
    """Picks the precision for ``device``: with ``amp`` on, bf16 autocast on a CPU with AMX-BF16 or AVX512-BF16
    (and oneDNN), fp16 AMP on CUDA, fp32 on other CPUs and devices; with ``amp`` off, fp32. Logs one line saying
    which path runs.

    Args:
        device: the device the network runs on.
        amp: ``True`` (default: on where it pays), ``False`` (fp32), or the names ``"bf16"``/``"fp16"``/``"fp32"``
            to force one (``"bf16"`` also on CUDA GPUs that support it).
        log: log the choice (once per config parse).
    """
    device_type = torch.device(device).type
    if isinstance(amp, str) and amp.lower() in ("true", "false"):
        amp = amp.lower() == "true"
    if isinstance(amp, str):
        forced = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}.get(amp.lower(), "?")
        if forced == "?":
            raise ValueError(f"amp must be true, false, 'bf16', 'fp16' or 'fp32', got {amp!r}.")
        if forced == torch.float16 and device_type != "cuda":
            raise ValueError(f"amp='fp16' needs a CUDA device, got {device_type!r}; use 'bf16' or false on a CPU.")
        precision = Precision(device_type, forced, "forced by amp")
    elif not amp:
        precision = Precision(device_type, None, "amp is off")
    elif device_type == "cuda":
        precision = Precision("cuda", torch.float16, "CUDA automatic mixed precision")
    elif device_type == "cpu":
        units = cpu_bf16_units()
        if units:
            precision = Precision("cpu", torch.bfloat16, f"the CPU has {units}")
        else:
            precision = Precision("cpu", None, "this CPU has no bf16 matrix units, where bf16 would be slower")
    else:
        precision = Precision(device_type, None, f"no mixed precision path for {device_type!r}")
    if log:
        logger.info("precision: %s; set amp to false for fp32", precision)
    return precision


def to_float32(output: Any) -> Any:
    """``output`` (a tensor, or a tuple/list/dict of them, e.g. deep-supervision heads) with every floating tensor of
    lower precision cast to fp32; metadata of a :class:`MetaTensor` is kept."""
    if isinstance(output, torch.Tensor):
        if output.is_floating_point() and output.dtype not in (torch.float32, torch.float64):
            return output.float()
        return output
    if isinstance(output, Mapping):
        return type(output)({k: to_float32(v) for k, v in output.items()})
    if isinstance(output, (list, tuple)):
        return type(output)(to_float32(v) for v in output)
    return output


class PrecisionInferer(Inferer):
    """Runs ``inferer`` with the network calls under ``precision``'s autocast and returns fp32.

    Everything the wrapped inferer does is in the autocast region, so it must accumulate in fp32 itself (MONAI's
    sliding window does, in the input's dtype; the project's overlap-tile, TTA and slice inferers do too).

    Args:
        inferer: any MONAI inferer (``SimpleInferer``, ``SlidingWindowInferer``, the project's inferers).
        precision: from :func:`select_precision`; ``None`` runs fp32.
    """

    def __init__(self, inferer: Inferer | Callable[..., Any], precision: Precision | None = None) -> None:
        super().__init__()
        if not callable(inferer):
            raise TypeError(f"inferer must be callable, got {type(inferer).__name__}.")
        self.inferer = inferer
        self.precision = precision

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self.precision.autocast() if self.precision is not None else contextlib.nullcontext():
            output = self.inferer(inputs, network, *args, **kwargs)
        return to_float32(output)

    def __getattr__(self, name: str) -> Any:
        # MONAI Label and the tests read settings of the wrapped inferer (roi_size, base_inferer, ...)
        if name in ("inferer", "precision") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inferer, name)
