"""Tile geometry of a network: the valid input sizes and the output border, probed when unknown."""

from __future__ import annotations

import itertools
import math
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from monai.utils import ensure_tuple_rep
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

__all__ = [
    "TileGeometry",
    "meta_call",
    "meta_copy_state",
    "output_spatial_shape",
    "declared_tile_geometry",
    "probe_tile_geometry",
    "estimate_activation_bytes",
]

_SEARCH_LIMIT = 1 << 16  # how far a valid tile size is searched above/below a requested size
_REAL_PROBE_ELEMENTS = 1 << 22  # cap on the input of one real (non-meta) probe forward pass
_PROBE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class TileGeometry:
    """Which input sizes a network accepts along each spatial axis, and the border it loses.

    Attributes:
        border: pixels lost on each side of each axis, ``(input - output) / 2`` (92 for the paper's U-Net, 0 for a
            network with "same" padding); ``None`` per axis where it was not measured (the tile output tells).
        smallest: smallest valid input size per axis.
        period: spacing of the valid sizes per axis (``2**depth`` for a U-Net). Tiles are placed at multiples of it
            so that every tile sees the pooling grid of one whole-image forward pass.
        valid_size: predicate per axis telling whether an input size is valid.
    """

    border: tuple[int | None, ...]
    smallest: tuple[int, ...]
    period: tuple[int, ...]
    valid_size: tuple[Callable[[int], bool], ...]

    @classmethod
    def from_predicate(
        cls,
        valid_tile_size: Callable[[int], bool] | Sequence[Callable[[int], bool]],
        spatial_dims: int,
        border: Sequence[int | None] | int | None = None,
        max_size: int = 4096,
    ) -> TileGeometry:
        """Geometry from a user predicate (e.g. ``lambda s: is_valid_tile_size(s, depth=4)``); the smallest valid
        size and the period (gcd of the gaps between valid sizes) are read off ``1..max_size``."""
        predicates = tuple(valid_tile_size) if isinstance(valid_tile_size, Sequence) else (valid_tile_size,)
        predicates = ensure_tuple_rep(predicates if len(predicates) > 1 else predicates[0], spatial_dims)
        smallest, period = [], []
        for axis, predicate in enumerate(predicates):
            sizes = [s for s in range(1, max_size + 1) if predicate(s)]
            if not sizes:
                raise ValueError(f"valid_tile_size accepts no size in 1..{max_size} for spatial axis {axis}.")
            gaps = [b - a for a, b in zip(sizes, sizes[1:], strict=False)]
            smallest.append(sizes[0])
            period.append(math.gcd(*gaps) if gaps else 1)
        borders = ensure_tuple_rep(border, spatial_dims)
        return cls(tuple(borders), tuple(smallest), tuple(period), tuple(predicates))

    @classmethod
    def arithmetic(cls, border: Sequence[int], smallest: Sequence[int], period: Sequence[int]) -> TileGeometry:
        """Geometry whose valid sizes are ``smallest + k * period``, ``k >= 0`` (what :func:`probe_tile_geometry`
        finds for U-Nets)."""
        predicates = tuple(_ArithmeticSizes(s, p) for s, p in zip(smallest, period, strict=True))
        return cls(tuple(border), tuple(smallest), tuple(period), predicates)

    @property
    def spatial_dims(self) -> int:
        return len(self.smallest)

    def is_valid(self, size: int, axis: int) -> bool:
        return size >= 1 and bool(self.valid_size[axis](size))

    def valid_at_least(self, size: int, axis: int) -> int:
        """Smallest valid size ``>= size`` along ``axis``."""
        first = max(size, self.smallest[axis])
        for candidate in range(first, first + _SEARCH_LIMIT):
            if self.is_valid(candidate, axis):
                return candidate
        raise ValueError(f"no valid tile size in [{first}, {first + _SEARCH_LIMIT}) for spatial axis {axis}.")

    def valid_at_most(self, size: int, axis: int) -> int | None:
        """Largest valid size ``<= size`` along ``axis``, ``None`` when there is none."""
        for candidate in range(size, max(self.smallest[axis], size - _SEARCH_LIMIT) - 1, -1):
            if self.is_valid(candidate, axis):
                return candidate
        return None


@dataclass(frozen=True)
class _ArithmeticSizes:
    smallest: int
    period: int

    def __call__(self, size: int) -> bool:
        return size >= self.smallest and (size - self.smallest) % self.period == 0


class _ProbeError(ValueError):
    """The network's output cannot be interpreted as a dense prediction (not a shape problem of one size)."""


class _NoSizeAccepted(ValueError):
    """Every probed size failed (on the meta device this may mean the network cannot run there)."""


def _module_modes(network: Any) -> dict[nn.Module, bool]:
    return {m: m.training for m in network.modules()} if isinstance(network, nn.Module) else {}


def _restore_modes(modes: dict[nn.Module, bool]) -> None:
    for module, training in modes.items():
        module.training = training


def meta_copy_state(network: nn.Module) -> dict[str, torch.Tensor]:
    """Shape-only (``meta`` device) stand-ins for every parameter and buffer of ``network``.

    Passed to ``torch.func.functional_call``, they run the network for its output shapes, memory or FLOP counts
    without allocating or computing anything; the network itself is left untouched. Floating-point stand-ins
    keep their ``requires_grad`` so that a backward pass on ``meta`` reaches the weights.

    Args:
        network: the module whose ``named_parameters()`` and ``named_buffers()`` are copied.

    Returns:
        ``{name: meta tensor of the same shape and dtype}``.
    """
    state = {}
    for name, tensor in itertools.chain(network.named_parameters(), network.named_buffers()):
        meta = torch.empty_like(tensor, device="meta")
        state[name] = meta.requires_grad_(tensor.requires_grad) if tensor.is_floating_point() else meta
    return state


def meta_call(network: nn.Module, state: dict[str, torch.Tensor], *args: Any) -> Any:
    """``network(*args)`` with the stand-ins of :func:`meta_copy_state` (``torch.func.functional_call``).

    ``tie_weights=False``: ``state`` names every tensor once, and a module reached under two names (MONAI's
    ``DynUNet`` keeps its encoder blocks in two lists) must be swapped and restored once. With PyTorch's default,
    both names are swapped in turn, the second one records the first one's meta stand-in as the original, and the
    network is left with meta weights.
    """
    return functional_call(network, state, args, tie_weights=False)


def _network_dtype(network: Any, default: torch.dtype) -> torch.dtype:
    if isinstance(network, nn.Module):
        for parameter in network.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
    return default


def output_spatial_shape(output: Any, spatial_dims: int) -> tuple[int, ...]:
    """Spatial shape of a single-tensor network output ``(N, C, *spatial)``; a probe error for anything else."""
    if not isinstance(output, torch.Tensor):
        raise _ProbeError(f"the network must return one tensor, got {type(output).__name__}.")
    if output.dim() != spatial_dims + 2:
        raise _ProbeError(
            f"the network output must be (N, C, *spatial) with {spatial_dims} spatial axes, got shape "
            f"{tuple(output.shape)}."
        )
    return tuple(int(s) for s in output.shape[2:])


def _scan_valid_sizes(run: Callable[[int], tuple[int, ...] | None], max_size: int) -> tuple[int, int, int]:
    """Scans isotropic input sizes ``1..max_size`` with ``run`` (spatial output shape, or ``None`` on failure).

    A size is valid when the network accepts it *and* loses the smallest border seen: networks that floor an odd
    size at a max pool still run, but lose one more pixel and misalign the skip crops. The scan stops once three
    valid sizes are evenly spaced (two full periods seen). Returns ``(border, smallest, period)``.
    """
    shrink: dict[int, int] = {}
    for size in range(1, max_size + 1):
        out_shape = run(size)
        if out_shape is None:
            continue
        if len(set(out_shape)) != 1:
            raise _ProbeError(f"an isotropic input of size {size} gave the anisotropic output {out_shape}.")
        shrink[size] = size - out_shape[0]
        least = min(shrink.values())
        valid = [s for s, d in shrink.items() if d == least]
        if len(valid) >= 3 and len({b - a for a, b in zip(valid, valid[1:], strict=False)}) == 1:
            break
    if not shrink:
        raise _NoSizeAccepted(f"the network accepted no input size in 1..{max_size}; pass border and valid_tile_size.")
    least = min(shrink.values())
    if least < 0 or least % 2 != 0:
        raise ValueError(
            f"the network changes the size by {-least} pixels; only outputs smaller than the input by an even amount "
            "(a border on each side) are supported."
        )
    valid = sorted(s for s, d in shrink.items() if d == least)
    if len(valid) < 2:
        raise ValueError(
            f"only one valid input size ({valid[0]}) found up to {max_size}; increase max_probe_size or pass "
            "valid_tile_size."
        )
    gaps = {b - a for a, b in zip(valid, valid[1:], strict=False)}
    if len(gaps) != 1:
        raise ValueError(f"valid input sizes {valid} are not evenly spaced; pass valid_tile_size to describe them.")
    return least // 2, valid[0], gaps.pop()


def declared_tile_geometry(network: Any, spatial_dims: int) -> TileGeometry | None:
    """The tile geometry a network tells about itself, ``None`` when it does not.

    A network tells it with three int attributes, the same along every spatial axis: ``border`` (pixels lost on
    each side), ``smallest_tile_size`` and ``tile_period`` (the valid input sizes are ``smallest_tile_size + k *
    tile_period``, ``k >= 0``), as :class:`custom_networks.UNet2015` does. Networks that do not (or wrappers that
    hide them, e.g. TorchScript) are probed instead (:func:`probe_tile_geometry`).
    """
    try:
        values = [getattr(network, name, None) for name in ("border", "smallest_tile_size", "tile_period")]
    except Exception:  # a property that cannot answer (e.g. an unsupported configuration) tells nothing
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    border, smallest, period = values
    return TileGeometry.arithmetic((border,) * spatial_dims, (smallest,) * spatial_dims, (period,) * spatial_dims)


def probe_tile_geometry(
    network: Callable[..., torch.Tensor],
    in_channels: int,
    spatial_dims: int,
    max_size: int = 512,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> TileGeometry:
    """Finds the valid input sizes and the lost border of ``network`` by running it on isotropic inputs
    ``1, 2, ..., max_size`` (stopping early once the pattern repeats).

    An ``nn.Module`` is run on the ``meta`` device (``torch.func.functional_call`` with shape-only parameters): no
    memory, no arithmetic, so it is cheap even for the paper's 31M-parameter network. Networks that
    cannot run on ``meta`` (or plain callables) are run for real under ``torch.no_grad`` on ``device`` (inputs of at
    most 2**22 values, so a smaller ``max_size`` in 3D), which can be slow for large networks: pass ``border`` and
    ``valid_tile_size`` to :class:`OverlapTileInferer` then.
    Modules are probed in ``eval`` mode (their modes are restored); forward hooks registered on the network see the
    meta-device probe passes too. The result is cached per network, channel count
    and dimensionality. All spatial axes are assumed to follow the same rule (pass per-axis predicates to
    :class:`OverlapTileInferer` for anisotropic networks). Valid sizes are assumed to be evenly spaced, as for any
    U-Net (``smallest + k * 2**depth``).

    Args:
        network: the network (or a callable ``tensor -> tensor``).
        in_channels: input channels.
        spatial_dims: number of spatial dimensions.
        max_size: largest size tried.
        device: device of the real-forward fallback (default: the network's parameters, else CPU).
        dtype: input dtype (default: the dtype of the network's first floating parameter, else float32).

    Raises:
        ValueError: when no regular pattern of valid sizes is found or the output is not a dense prediction.
    """
    key = (int(in_channels), int(spatial_dims), int(max_size))
    try:
        cached = _PROBE_CACHE.get(network, {})
    except TypeError:  # not weak-referenceable
        cached = {}
    if key in cached:
        return cached[key]
    dtype = dtype or _network_dtype(network, torch.float32)

    def make_runner(target: str) -> Callable[[int], tuple[int, ...] | None]:
        if target == "meta":
            state = meta_copy_state(network)

        def run(size: int) -> tuple[int, ...] | None:
            shape = (1, in_channels) + (size,) * spatial_dims
            try:
                with torch.no_grad():
                    if target == "meta":
                        output = meta_call(network, state, torch.empty(shape, device="meta", dtype=dtype))
                    else:
                        output = network(torch.zeros(shape, device=target, dtype=dtype))
            except _ProbeError:
                raise
            except Exception:  # any failure means "size not accepted"
                return None
            return output_spatial_shape(output, spatial_dims)

        return run

    modes = _module_modes(network)
    try:
        for module in modes:
            module.training = False
        result = None
        if isinstance(network, nn.Module):
            try:
                result = _scan_valid_sizes(make_runner("meta"), max_size)
            except _NoSizeAccepted:
                result = None
        if result is None:
            if device is None:
                first = next(iter(network.parameters()), None) if isinstance(network, nn.Module) else None
                device = first.device if first is not None else torch.device("cpu")
            warnings.warn(
                (
                    "probing the tile geometry with real forward passes (the network does not run on the meta device); "
                    "pass border and valid_tile_size to OverlapTileInferer to skip this."
                    if isinstance(network, nn.Module)
                    else "probing the tile geometry of a plain callable with real forward passes; pass border and "
                    "valid_tile_size to OverlapTileInferer to skip this."
                ),
                stacklevel=2,
            )
            # real inputs must stay small: at most _REAL_PROBE_ELEMENTS values per probe
            real_max = int((_REAL_PROBE_ELEMENTS / in_channels) ** (1.0 / spatial_dims))
            result = _scan_valid_sizes(make_runner(str(device)), max(1, min(max_size, real_max)))
    finally:
        _restore_modes(modes)
    border, smallest, period = result
    geometry = TileGeometry.arithmetic((border,) * spatial_dims, (smallest,) * spatial_dims, (period,) * spatial_dims)
    try:
        _PROBE_CACHE.setdefault(network, {})[key] = geometry
    except TypeError:
        pass
    return geometry


class _ActivationMeter(TorchFunctionMode):
    """Adds up the bytes of every new tensor an operation returns (views and in-place results excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.total_bytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        inputs = [a for a in itertools.chain(args, (kwargs or {}).values()) if isinstance(a, torch.Tensor)]
        for item in outputs:
            if not isinstance(item, torch.Tensor) or item._base is not None or any(item is a for a in inputs):
                continue
            self.total_bytes += item.numel() * item.element_size()
        return output


def estimate_activation_bytes(
    network: nn.Module,
    in_channels: int,
    tile_size: Sequence[int],
    batch_size: int = 1,
    dtype: torch.dtype | None = None,
) -> int | None:
    """Activation memory of one forward pass over a batch of tiles, by running the network on the ``meta`` device.

    The model: the sum of the sizes of all tensors created by the forward pass (views and in-place results
    excluded), i.e. what autograd would keep for a backward pass. Under ``torch.no_grad`` intermediate maps are
    freed as soon as they are used, so the real peak is lower (about 2-4x for a U-Net, whose skip maps stay alive);
    the estimate is deliberately conservative. It is exact in shape, so no scaling from a small probe is needed.
    fp32 activations are counted unless ``dtype`` says otherwise (autocast halves the real figure).

    Returns:
        bytes, or ``None`` when ``network`` is not an ``nn.Module`` or cannot run on the ``meta`` device.
    """
    if not isinstance(network, nn.Module):
        return None
    dtype = dtype or _network_dtype(network, torch.float32)
    shape = (batch_size, in_channels) + tuple(tile_size)
    meter = _ActivationMeter()
    modes = _module_modes(network)
    try:
        for module in modes:
            module.training = False
        state, tile = meta_copy_state(network), torch.empty(shape, device="meta", dtype=dtype)
        with torch.no_grad(), meter:
            meta_call(network, state, tile)
    except Exception:
        return None
    finally:
        _restore_modes(modes)
    return meter.total_bytes
