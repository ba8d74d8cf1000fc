"""Inference for the U-Net paper: overlap-tile prediction for valid-convolution networks and test-time augmentation.

Reference:
    O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015, arXiv:1505.04597. Overlap-tile strategy: Sec. 2 and Fig. 2; averaging over rotated versions of the
    input for the EM challenge: Sec. 4.
"""

from __future__ import annotations

import itertools
import math
import warnings
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from monai.config import KeysCollection
from monai.data.meta_tensor import MetaTensor
from monai.inferers import Inferer, SimpleInferer
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type, ensure_tuple, ensure_tuple_rep
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from .tiling import EXTRAPOLATION_MODES, extrapolated_indices

__all__ = [
    "TileGeometry",
    "probe_tile_geometry",
    "estimate_activation_bytes",
    "meta_copy_state",
    "OverlapTileInferer",
    "TestTimeAugmentationInferer",
    "SplitUncertaintyd",
    "TTA_TRANSFORMS",
]

_SEARCH_LIMIT = 1 << 16  # how far a valid tile size is searched above/below a requested size
_REAL_PROBE_ELEMENTS = 1 << 22  # cap on the input of one real (non-meta) probe forward pass
_PROBE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------------------------------------------------
# Network geometry
# ---------------------------------------------------------------------------------------------------------------


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


def _network_dtype(network: Any, default: torch.dtype) -> torch.dtype:
    if isinstance(network, nn.Module):
        for parameter in network.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
    return default


def _output_spatial_shape(output: Any, spatial_dims: int) -> tuple[int, ...]:
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
    memory, no arithmetic, a few milliseconds per size even for the paper's 31M-parameter network. Networks that
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
                        output = functional_call(network, state, (torch.empty(shape, device="meta", dtype=dtype),))
                    else:
                        output = network(torch.zeros(shape, device=target, dtype=dtype))
            except _ProbeError:
                raise
            except Exception:  # any failure means "size not accepted"
                return None
            return _output_spatial_shape(output, spatial_dims)

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
            functional_call(network, state, (tile,))
    except Exception:
        return None
    finally:
        _restore_modes(modes)
    return meter.total_bytes


# ---------------------------------------------------------------------------------------------------------------
# Overlap-tile inference
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _AxisTile:
    """One tile position along one axis, in image coordinates."""

    output_start: int  # where the tile's valid output begins (its input begins ``context`` earlier)
    write_from: int  # the part of the output this tile owns: [write_from, write_to)
    write_to: int


def _axis_tiles(size: int, tile: int, context: int, period: int) -> list[_AxisTile]:
    """Tile positions along one axis of ``size`` pixels for a tile of input ``tile`` with ``context`` per side.

    Each tile's valid output covers ``tile - 2 * context`` pixels. Starts are multiples of ``period`` (when the
    valid output is at least one period long), so every tile sees the same pooling grid as a single forward pass over
    the whole mirror-padded image and the stitched result equals that pass; the overlap this costs in computed
    output is less than one period per tile and is written once (no blending). The last tile is shifted inward to the
    first aligned start that reaches the image end, so padding beyond the image stays below one period plus the
    context.
    """
    valid_output = tile - 2 * context
    if valid_output < 1:
        raise ValueError(f"tile size {tile} leaves no valid output with a border of {context} pixels per side.")
    if valid_output >= size:
        return [_AxisTile(0, 0, size)]
    aligned = valid_output >= period
    stride = (valid_output // period) * period if aligned else valid_output
    count = 1 + math.ceil((size - valid_output) / stride)
    starts = [k * stride for k in range(count - 1)]
    remaining = size - valid_output
    starts.append(-(-remaining // period) * period if aligned else remaining)
    tiles, written = [], 0
    for start in starts:
        end = min(start + valid_output, size)
        tiles.append(_AxisTile(start, written, end))
        written = end
    return tiles


class OverlapTileInferer(Inferer):
    """Overlap-tile inference (Ronneberger et al. 2015, Sec. 2, Fig. 2) for networks whose output is smaller than
    their input (valid convolutions), also correct for "same"-padded networks.

    The image is mirror-padded by the network's border and cut into input tiles whose valid outputs tile the image
    seamlessly: each output pixel is predicted once from its full context, with mirrored context at the image
    border, and no blending is needed. The output has the input's spatial size.

    Geometry: ``border`` (context per side) and ``valid_tile_size`` (which input sizes the network accepts) are
    probed from the network when not given (:func:`probe_tile_geometry`, a meta-device scan, cached per network).
    Tile starts are multiples of the period of the valid sizes (``2**depth`` for a U-Net), so that a tiled result
    equals one forward pass over the whole mirror-padded image extended to the next valid size, independent of
    the tiling (see :func:`_axis_tiles`).

    Tile size heuristic (``roi_size=None``):
        1. The *covering* tile per axis is the smallest valid size ``>= image + 2 * border``: one tile for the whole
           image (a 512x512 image and the paper's U-Net: one 700x700 tile rather than four 572x572 tiles).
        2. If ``memory_budget_mb`` is set and ``sw_batch_size`` tiles of that size exceed it (activation memory from
           :func:`estimate_activation_bytes`, a conservative meta-device count), the tile is shrunk one valid step
           at a time along its currently longest axis until it fits (a linear-in-voxels model gets close first, the
           exact count confirms). If even the smallest valid tile does not fit it is used with a warning.
        3. Each axis is then reduced to the smallest valid size that needs the same number of tiles, so that tiles
           are equal-sized with as little wasted overlap as possible.
        An explicit ``roi_size`` must be valid; it is only reduced to the covering size when larger than that.

    Args:
        roi_size: input tile size (one int or one per spatial axis), or ``None`` to choose it (see above).
        sw_batch_size: number of tiles per forward pass.
        border: context per side of each axis, mirror-padded around the image and cropped from every tile's output;
            ``None`` uses the border the network loses. A larger value than the network's (e.g. the receptive-field
            radius of a "same"-padded network) crops zero-padding artefacts off each tile.
        valid_tile_size: predicate ``size -> bool`` (one, or one per axis) telling which input sizes the network
            accepts; ``None`` probes it. For ``UNet2015``: ``lambda s: is_valid_tile_size(s, depth, padding)``.
        memory_budget_mb: activation memory allowed for one forward pass of ``sw_batch_size`` tiles when
            ``roi_size=None``; ``None`` means no limit (one covering tile).
        padding_mode: extrapolation outside the image: ``"reflect"`` (paper), ``"symmetric"``, ``"replicate"`` or
            ``"circular"``; repeated as needed when the image is smaller than the border.
        sw_device: device the tiles are computed on (default: the input's device).
        device: device of the stitched output (default: the input's device).
        max_probe_size: largest size tried by the geometry probe.

    Example::

        inferer = OverlapTileInferer(sw_batch_size=2)
        with torch.no_grad():
            logits = inferer(image, net)  # same spatial size as ``image``
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int | None = None,
        sw_batch_size: int = 1,
        border: Sequence[int] | int | None = None,
        valid_tile_size: Callable[[int], bool] | Sequence[Callable[[int], bool]] | None = None,
        memory_budget_mb: float | None = 2048.0,
        padding_mode: str = "reflect",
        sw_device: torch.device | str | None = None,
        device: torch.device | str | None = None,
        max_probe_size: int = 512,
    ) -> None:
        super().__init__()
        if isinstance(sw_batch_size, bool) or int(sw_batch_size) != sw_batch_size or sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be an int >= 1, got {sw_batch_size!r}.")
        if padding_mode not in EXTRAPOLATION_MODES:
            raise ValueError(f"padding_mode must be one of {EXTRAPOLATION_MODES}, got {padding_mode!r}.")
        if border is not None and any(int(b) != b or b < 0 for b in ensure_tuple(border)):
            raise ValueError(f"border must be int(s) >= 0 or None, got {border!r}.")
        if roi_size is not None and any(int(r) != r or r < 1 for r in ensure_tuple(roi_size)):
            raise ValueError(f"roi_size must be int(s) >= 1 or None, got {roi_size!r}.")
        if memory_budget_mb is not None and memory_budget_mb <= 0:
            raise ValueError(f"memory_budget_mb must be positive or None, got {memory_budget_mb!r}.")
        self.roi_size = roi_size
        self.sw_batch_size = int(sw_batch_size)
        self.border = border
        self.valid_tile_size = valid_tile_size
        self.memory_budget_mb = memory_budget_mb
        self.padding_mode = padding_mode
        self.sw_device = sw_device
        self.device = device
        self.max_probe_size = max_probe_size
        self._explicit_geometry: dict[tuple, TileGeometry] = {}
        # tile sizes depend on the architecture only, not on the weights: choose once per network and image size
        self._tile_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def geometry(
        self,
        network: Callable[..., torch.Tensor],
        in_channels: int,
        spatial_dims: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> TileGeometry:
        """The network's tile geometry: the explicit arguments where given, probed otherwise (a plain callable is
        probed with inputs of ``dtype`` on ``device``)."""
        if self.valid_tile_size is not None and self.border is not None:
            return self._from_predicate(spatial_dims, ensure_tuple_rep(self.border, spatial_dims))
        if isinstance(network, nn.Module):
            dtype = device = None
        probed = probe_tile_geometry(network, in_channels, spatial_dims, self.max_probe_size, device, dtype)
        if self.valid_tile_size is not None:
            return self._from_predicate(spatial_dims, probed.border)
        return probed

    def _from_predicate(self, spatial_dims: int, border: tuple[int | None, ...]) -> TileGeometry:
        key = (spatial_dims, border)
        if key not in self._explicit_geometry:  # scanning the predicate takes a few milliseconds: do it once
            self._explicit_geometry[key] = TileGeometry.from_predicate(self.valid_tile_size, spatial_dims, border)
        return self._explicit_geometry[key]

    def _context(self, geometry: TileGeometry) -> tuple[int, ...]:
        if self.border is not None:
            return tuple(int(b) for b in ensure_tuple_rep(self.border, geometry.spatial_dims))
        if any(b is None for b in geometry.border):
            raise ValueError("the network border is unknown; pass border.")
        return tuple(int(b) for b in geometry.border)  # type: ignore[arg-type]

    def tile_size(
        self,
        image_size: Sequence[int],
        network: Callable[..., torch.Tensor],
        in_channels: int,
        geometry: TileGeometry | None = None,
    ) -> tuple[int, ...]:
        """The input tile size used for an image of spatial size ``image_size`` (see the class docstring)."""
        key = (int(in_channels), tuple(int(s) for s in image_size))
        cacheable = geometry is None and isinstance(network, nn.Module)
        if cacheable and key in self._tile_cache.get(network, {}):
            return self._tile_cache[network][key]
        tile = self._choose_tile_size(image_size, network, in_channels, geometry)
        if cacheable:
            self._tile_cache.setdefault(network, {})[key] = tile
        return tile

    def _choose_tile_size(
        self,
        image_size: Sequence[int],
        network: Callable[..., torch.Tensor],
        in_channels: int,
        geometry: TileGeometry | None,
    ) -> tuple[int, ...]:
        spatial_dims = len(image_size)
        geometry = geometry or self.geometry(network, in_channels, spatial_dims)
        context = self._context(geometry)
        cover = [
            geometry.valid_at_least(s + 2 * c, a) for a, (s, c) in enumerate(zip(image_size, context, strict=True))
        ]
        if self.roi_size is not None:
            requested = ensure_tuple_rep(self.roi_size, spatial_dims)
            for axis, size in enumerate(requested):
                if not geometry.is_valid(int(size), axis):
                    below, above = geometry.valid_at_most(int(size), axis), geometry.valid_at_least(int(size), axis)
                    raise ValueError(
                        f"roi_size {size} (spatial axis {axis}) is not a valid input size for this network; "
                        f"nearest valid sizes: {below} and {above}."
                    )
            return tuple(min(int(r), c) for r, c in zip(requested, cover, strict=True))
        if self.memory_budget_mb is None:
            return tuple(cover)
        budget = self.memory_budget_mb * 2**20

        def estimate(tile: Sequence[int]) -> int:
            value = estimate_activation_bytes(network, in_channels, tile)  # type: ignore[arg-type]
            if value is None:
                raise ValueError(
                    "roi_size=None needs an nn.Module network that runs on the meta device to estimate its memory; "
                    "pass roi_size or memory_budget_mb=None."
                )
            return value * self.sw_batch_size

        def smaller(tile: list[int]) -> bool:
            order = sorted(range(spatial_dims), key=lambda a: tile[a], reverse=True)
            for axis in order:
                candidate = geometry.valid_at_most(tile[axis] - 1, axis)
                if candidate is not None and candidate - 2 * context[axis] >= 1:
                    tile[axis] = candidate
                    return True
            return False

        tile = list(cover)
        cover_bytes = estimate(cover)
        if cover_bytes > budget:
            bytes_per_voxel = cover_bytes / math.prod(cover)
            while bytes_per_voxel * math.prod(tile) > budget and smaller(tile):
                pass
            while estimate(tile) > budget:
                if not smaller(tile):
                    warnings.warn(
                        f"the smallest valid tile {tuple(tile)} needs more than memory_budget_mb="
                        f"{self.memory_budget_mb}; using it anyway.",
                        stacklevel=2,
                    )
                    break
        for axis in range(spatial_dims):
            needed = len(_axis_tiles(image_size[axis], tile[axis], context[axis], geometry.period[axis]))
            candidate = geometry.valid_at_least(2 * context[axis] + 1, axis)
            while candidate < tile[axis]:
                tiles = _axis_tiles(image_size[axis], candidate, context[axis], geometry.period[axis])
                if len(tiles) <= needed:
                    tile[axis] = candidate
                    break
                candidate = geometry.valid_at_least(candidate + 1, axis)
        return tuple(tile)

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Predicts ``inputs`` (``B, C, *spatial``) tile by tile.

        Args:
            inputs: batch of images.
            network: the network (or a callable); extra ``args``/``kwargs`` are passed to it with every tile batch.

        Returns:
            ``B, out_channels, *spatial`` on ``device``; a :class:`MetaTensor` with the input's metadata when the
            input is one.
        """
        if not isinstance(inputs, torch.Tensor) or inputs.dim() < 3:
            raise ValueError(f"inputs must be a (B, C, *spatial) tensor, got {getattr(inputs, 'shape', inputs)!r}.")
        image = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        batch, in_channels, *image_size = image.shape
        if min(image_size) < 1:
            raise ValueError(f"inputs has an empty spatial axis: {tuple(image.shape)}.")
        spatial_dims = len(image_size)
        sw_device = torch.device(self.sw_device) if self.sw_device is not None else image.device
        device = torch.device(self.device) if self.device is not None else image.device
        geometry = self.geometry(network, in_channels, spatial_dims, image.dtype, sw_device)
        context = self._context(geometry)
        tile = self.tile_size(image_size, network, in_channels)
        axis_tiles = [_axis_tiles(image_size[a], tile[a], context[a], geometry.period[a]) for a in range(spatial_dims)]
        index_cache: dict[tuple[int, int], torch.Tensor] = {}

        def cut(sample: int, position: tuple[_AxisTile, ...]) -> torch.Tensor:
            piece = image[sample]
            for axis, axis_tile in enumerate(position):
                first = axis_tile.output_start - context[axis]
                if (axis, first) not in index_cache:
                    index_cache[(axis, first)] = extrapolated_indices(
                        image_size[axis], first, first + tile[axis], self.padding_mode, image.device
                    )
                piece = piece.index_select(axis + 1, index_cache[(axis, first)])
            return piece

        jobs = [(s, p) for s in range(batch) for p in itertools.product(*axis_tiles)]
        output: torch.Tensor | None = None
        crop: tuple[int, ...] = ()
        for chunk_start in range(0, len(jobs), self.sw_batch_size):
            chunk = jobs[chunk_start : chunk_start + self.sw_batch_size]
            tiles = torch.stack([cut(s, p) for s, p in chunk]).to(sw_device)
            predicted = network(tiles, *args, **kwargs)
            if output is None:
                crop = self._output_crop(predicted, tile, context)
                output = torch.empty((batch, predicted.shape[1], *image_size), dtype=predicted.dtype, device=device)
            valid_region = tuple(slice(c, c + t - 2 * k) for c, t, k in zip(crop, tile, context, strict=True))
            valid = predicted[(slice(None), slice(None)) + valid_region].to(device)
            for item, (sample, position) in enumerate(chunk):
                target = tuple(slice(t.write_from, t.write_to) for t in position)
                source = tuple(slice(t.write_from - t.output_start, t.write_to - t.output_start) for t in position)
                output[(sample, slice(None)) + target] = valid[(item, slice(None)) + source]
        assert output is not None
        if isinstance(inputs, MetaTensor):
            return convert_to_dst_type(output, inputs, dtype=output.dtype, device=output.device)[0]
        return output

    @staticmethod
    def _output_crop(predicted: Any, tile: Sequence[int], context: Sequence[int]) -> tuple[int, ...]:
        """Pixels to crop per side from a tile output: the context minus what the network already lost."""
        output_size = _output_spatial_shape(predicted, len(tile))
        crop = []
        for axis, (t, o, c) in enumerate(zip(tile, output_size, context, strict=True)):
            lost = t - o
            if lost < 0 or lost % 2 != 0:
                raise ValueError(
                    f"a tile of size {t} gave an output of size {o} along spatial axis {axis}; overlap-tile inference "
                    "needs an output smaller than the input by the same amount on both sides."
                )
            if lost // 2 > c:
                raise ValueError(
                    f"border={c} is smaller than the {lost // 2} pixels per side the network loses "
                    f"(spatial axis {axis})."
                )
            crop.append(c - lost // 2)
        return tuple(crop)


# ---------------------------------------------------------------------------------------------------------------
# Test-time augmentation
# ---------------------------------------------------------------------------------------------------------------

# Elements of the dihedral group as (number of 90-degree rotations, flip of the second axis first).
TTA_TRANSFORMS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),  # no augmentation: only the activation (and a zero uncertainty) is applied
    "d4": tuple((k, flip) for flip in (False, True) for k in range(4)),
    "flips": ((0, False), (0, True), (2, True), (2, False)),  # identity, flip 2nd axis, flip 1st axis, flip both
    "rot90": tuple((k, False) for k in range(4)),
}
_ACTIVATIONS = ("softmax", "sigmoid")
_UNCERTAINTIES = ("variance", "entropy")


class TestTimeAugmentationInferer(Inferer):
    """Averages the predictions over flipped and 90-degree-rotated copies of the input, the paper's "averaging over
    7 rotated versions of the input data" for the EM challenge (Ronneberger et al. 2015, Sec. 4) extended to the
    full dihedral group.

    Each copy ``g(x)`` is predicted by ``base_inferer``; the prediction is mapped back with ``g^-1``, converted to
    probabilities by ``activation`` (before averaging, so the mean is a mean of probabilities) and averaged.
    Rotations act on two spatial axes (the last two by default); for non-square inputs a 90-degree rotation swaps
    their lengths, so the base inferer must accept both orientations (:class:`OverlapTileInferer` does; a plain call
    of a fully convolutional network does if both sizes are valid).

    Optionally a per-pixel uncertainty map is appended as one extra LAST channel (``C + 1`` channels, so the
    usual evaluation and post-processing can work on the first ``C``; :class:`SplitUncertaintyd` moves it to its own
    key):

        - ``"variance"``: population variance of the probabilities across the augmented copies, averaged over the
          channels (for a 2-class softmax both channels have the same variance). 0 when all copies agree.
        - ``"entropy"``: predictive entropy of the mean probabilities in nats: ``-sum_c p_c log p_c`` for softmax
          (``log C`` for a uniform prediction); for sigmoid, the mean over channels of the binary entropies.

    Args:
        base_inferer: inferer run on every augmented copy (default: ``SimpleInferer``, the network on the whole input).
        transforms: ``"d4"`` (8 copies: 4 rotations, each with and without a flip; identity included),
            ``"flips"`` (4: identity, both single-axis flips, both axes) or ``"rot90"`` (4 rotations).
        activation: ``"softmax"`` over the channels (default), ``"sigmoid"``, a callable, or ``None`` to average raw
            outputs. A callable is treated as giving categorical probabilities for ``"entropy"``.
        uncertainty: ``None``, ``"variance"`` or ``"entropy"``.
        spatial_axes: the two spatial axes (0-based among the spatial axes, negative counts from the end) the
            rotations and flips act on.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(
        self,
        base_inferer: Inferer | None = None,
        transforms: str = "d4",
        activation: str | Callable[[torch.Tensor], torch.Tensor] | None = "softmax",
        uncertainty: str | None = None,
        spatial_axes: tuple[int, int] = (-2, -1),
    ) -> None:
        super().__init__()
        if transforms not in TTA_TRANSFORMS:
            raise ValueError(f"transforms must be one of {tuple(TTA_TRANSFORMS)}, got {transforms!r}.")
        if activation is not None and not callable(activation) and activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, a callable or None, got {activation!r}.")
        if uncertainty is not None and uncertainty not in _UNCERTAINTIES:
            raise ValueError(f"uncertainty must be one of {_UNCERTAINTIES} or None, got {uncertainty!r}.")
        if uncertainty == "entropy" and activation is None:
            raise ValueError("uncertainty='entropy' needs probabilities: set activation.")
        if len(tuple(spatial_axes)) != 2:
            raise ValueError(f"spatial_axes must name two spatial axes, got {spatial_axes!r}.")
        self.base_inferer = base_inferer if base_inferer is not None else SimpleInferer()
        self.transforms = transforms
        self.activation = activation
        self.uncertainty = uncertainty
        self.spatial_axes = tuple(spatial_axes)

    def _axes(self, tensor: torch.Tensor) -> tuple[int, int]:
        spatial_dims = tensor.dim() - 2
        if spatial_dims < 2:
            raise ValueError(f"test-time rotations need at least 2 spatial axes, got shape {tuple(tensor.shape)}.")
        if not all(-spatial_dims <= a < spatial_dims for a in self.spatial_axes):
            raise ValueError(f"spatial_axes {self.spatial_axes} are not axes of {spatial_dims} spatial axes.")
        first, second = (a % spatial_dims + 2 for a in self.spatial_axes)
        if first == second:
            raise ValueError(f"spatial_axes {self.spatial_axes} name the same axis twice.")
        return first, second

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.activation == "softmax":
            return torch.softmax(logits, dim=1)
        if self.activation == "sigmoid":
            return torch.sigmoid(logits)
        if callable(self.activation):
            return self.activation(logits)
        return logits

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Mean (and optionally uncertainty) of the predictions of all augmented copies of ``inputs``.

        Args:
            inputs: batch ``B, C_in, *spatial``.
            network: the network; extra ``args``/``kwargs`` go to the base inferer.

        Returns:
            mean probabilities ``B, C(+1), *spatial`` (at least float32), a :class:`MetaTensor` with the input's
            metadata when the input is one.
        """
        image = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        axes = self._axes(image)
        mean: torch.Tensor | None = None
        spread: torch.Tensor | None = None  # Welford's running sum of squared deviations: exactly 0 for equal copies
        for count, (rotations, flip) in enumerate(TTA_TRANSFORMS[self.transforms], start=1):
            augmented = image.flip(axes[1]) if flip else image
            augmented = torch.rot90(augmented, rotations, dims=axes)
            predicted = self.base_inferer(augmented, network, *args, **kwargs)
            if isinstance(predicted, MetaTensor):
                predicted = predicted.as_tensor()
            if not isinstance(predicted, torch.Tensor):
                raise ValueError(f"the base inferer must return one tensor, got {type(predicted).__name__}.")
            restored = torch.rot90(predicted, -rotations, dims=axes)
            restored = restored.flip(axes[1]) if flip else restored
            probabilities = self._probabilities(restored)
            probabilities = probabilities.to(torch.promote_types(probabilities.dtype, torch.float32))
            if mean is None:
                mean, spread = probabilities.clone(), torch.zeros_like(probabilities)
                continue
            if probabilities.shape != mean.shape:
                raise ValueError(
                    f"augmented predictions differ in shape ({tuple(probabilities.shape)} vs {tuple(mean.shape)}); "
                    "the base inferer must accept both orientations of a non-square input."
                )
            deviation = probabilities - mean
            mean = mean + deviation / count
            spread = spread + deviation * (probabilities - mean)
        assert mean is not None and spread is not None
        result = mean
        if self.uncertainty == "variance":
            variance = spread / len(TTA_TRANSFORMS[self.transforms])
            result = torch.cat([mean, variance.mean(dim=1, keepdim=True)], dim=1)
        elif self.uncertainty == "entropy":
            result = torch.cat([mean, self._entropy(mean)], dim=1)
        if isinstance(inputs, MetaTensor):
            return convert_to_dst_type(result, inputs, dtype=result.dtype, device=result.device)[0]
        return result

    def _entropy(self, mean: torch.Tensor) -> torch.Tensor:
        if self.activation == "sigmoid":
            binary = -(torch.special.xlogy(mean, mean) + torch.special.xlogy(1 - mean, 1 - mean))
            return binary.mean(dim=1, keepdim=True)
        return -torch.special.xlogy(mean, mean).sum(dim=1, keepdim=True)


class SplitUncertaintyd(MapTransform):
    """Moves the uncertainty channel appended by :class:`TestTimeAugmentationInferer` (the LAST channel of each key)
    into its own key, leaving the class probabilities in place. :class:`MetaTensor` metadata is kept on both.

    Args:
        keys: keys of the predictions (channel-first, e.g. after ``decollate_batch``).
        uncertainty_key: destination key, one per key in ``keys``.
        channel_dim: channel axis (0 for decollated items, 1 for batched ones).
        allow_missing_keys: don't raise when a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        uncertainty_key: Sequence[Hashable] | Hashable = "uncertainty",
        channel_dim: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        destinations = ensure_tuple(uncertainty_key)
        if len(destinations) == 1:
            destinations = destinations * len(self.keys)
        if len(destinations) != len(self.keys):
            raise ValueError(f"need one uncertainty_key per key: {len(self.keys)} keys, {len(destinations)} targets.")
        if len(self.keys) > 1 and len(set(destinations)) != len(destinations):
            raise ValueError("several keys would write to the same uncertainty_key.")
        self.uncertainty_keys = destinations
        self.channel_dim = channel_dim

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key, destination in self.key_iterator(d, self.uncertainty_keys):
            value = d[key]
            channels = value.shape[self.channel_dim]
            if channels < 2:
                raise ValueError(
                    f"{key!r} has {channels} channel(s) along axis {self.channel_dim}; expected the class channels "
                    "plus the uncertainty channel."
                )
            d[destination] = value.narrow(self.channel_dim, channels - 1, 1)
            d[key] = value.narrow(self.channel_dim, 0, channels - 1)
        return d
