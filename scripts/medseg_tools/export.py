"""One export-and-compare path for TorchScript and ONNX (kept in one piece: the network, its example input and eager
output prepared once are what every export and comparison reads, for ``export_bundle.py`` and the packages' check).

:func:`prepare_bundle` builds ``network_def`` of a bundle's ``configs/inference.json`` (a repository bundle or a
Model Zoo package) with its weights, an example input of the metadata's shape and the eager output;
:func:`export_torchscript` (MONAI's ``ckpt_export``) and the ONNX export (``onnx_export``, dynamic axes tried in
order) write the file, run it and compare it with the eager network (:func:`compare_with_eager`).
:func:`export_bundle` does both for bundles of ``bundles/`` (``scripts/export_bundle.py``, whose docstring
describes the choices); ``medseg_tools.zoo.probes`` checks a package's TorchScript export with the same functions.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg_tools.bundles import bundle_names
from medseg_tools.paths import BUNDLES_DIR
from medseg_tools.zoo.configs import PackageError, load_overrides

if TYPE_CHECKING:  # torch is imported where it is needed
    import torch

logger = logging.getLogger("export_bundle")

FORMATS = ("torchscript", "onnx")
#: ``--format`` values: one format, or ``both``
FORMAT_CHOICES = (*FORMATS, "both")
EXPORTERS = ("dynamo", "legacy")
DYNAMIC_CHOICES = ("auto", True, False)
FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}
NET_ID = "network_def"
#: where the exports and comparisons run: onnxruntime runs on its CPU provider, and CPU results are reproducible
EXPORT_DEVICE = "cpu"
#: the second input of a dynamic ONNX model: the first spatial axis this much larger (a multiple of 64 keeps the
#: sizes valid for networks that need a multiple of 2**depth, depth <= 6, and for the valid-convolution U-Net)
SECOND_INPUT_GROWTH = 64
SECOND_INPUT_BATCH = 2
#: names of the dynamic spatial axes (MONAI's order: H, W[, D])
SPATIAL_AXIS_NAMES = ("height", "width", "depth")


class ExportError(ValueError):
    """A request that cannot be exported (unknown bundle or format, bad shape or checkpoint) or an export that
    fails; the message names the bundle and the format."""


@dataclass
class ExportResult:
    """One exported file and its comparison with the eager network.

    Attributes:
        bundle: the bundle's name.
        format: ``torchscript`` or ``onnx``.
        path: the exported file.
        input_shape: the shape of the example input it was compared on.
        max_abs_difference: the largest ``|exported - eager|`` over the compared inputs.
        dynamic_axes: ONNX only: ``{axis: name}`` of the input's dynamic axes (empty: fixed shape).
        exporter: ONNX only: ``dynamo`` or ``legacy``.
        compared_shapes: every input shape the export was compared on.
    """

    bundle: str
    format: str
    path: Path
    input_shape: tuple[int, ...]
    max_abs_difference: float
    dynamic_axes: dict[int, str] = field(default_factory=dict)
    exporter: str = ""
    compared_shapes: list[tuple[int, ...]] = field(default_factory=list)

    def summary(self) -> str:
        """One line: bundle, format, file, difference and, for ONNX, the exporter and its axes."""
        shapes = ", ".join(_shape_text(shape) for shape in self.compared_shapes)
        text = f"{self.bundle} {self.format}: {self.path} max_abs_difference={self.max_abs_difference:.3g} ({shapes})"
        if self.format == "onnx":
            axes = ", ".join(self.dynamic_axes.values()) if self.dynamic_axes else "none (fixed input shape)"
            text += f" exporter={self.exporter} dynamic_axes: {axes}"
        return text


def _formats(requested_format: str | Sequence[str]) -> list[str]:
    requested = [requested_format] if isinstance(requested_format, str) else list(requested_format)
    unknown = [name for name in requested if name not in FORMAT_CHOICES]
    if unknown or not requested:
        raise ExportError(f"unknown format {unknown or requested!r}; use one of {list(FORMAT_CHOICES)}.")
    return list(FORMATS) if "both" in requested else [name for name in FORMATS if name in requested]


def _bundle_roots(bundle: str | os.PathLike) -> list[Path]:
    if str(bundle) == "all":
        return [BUNDLES_DIR / name for name in bundle_names()]
    from medseg_tools.runner import bundle_dir

    try:
        return [bundle_dir(bundle)]
    except FileNotFoundError as error:
        raise ExportError(f"unknown bundle: {error} (or 'all')") from error


def _config_keys(root: Path, name: str) -> set[str]:
    path = root / "configs" / name
    return set(json.loads(path.read_text())) if path.is_file() else set()


def _inference_defaults(root: Path, defaults: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``--defaults`` for ``inference.json``: ids of other configs of the bundle are left out (a shared file such
    as ``tests/bundle_smoke_overrides.json`` also sets training ids), ids of no config are an error."""
    try:
        values = load_overrides(defaults, root.name)
    except PackageError as error:
        raise ExportError(f"bundle {root.name!r}: --defaults: {error}") from error
    inference_keys = _config_keys(root, "inference.json")
    other_keys = set().union(*(_config_keys(root, path.name) for path in (root / "configs").glob("*.json")))
    unknown = sorted(key for key in values if key.split("#")[0] not in inference_keys | other_keys)
    if unknown:
        raise ExportError(f"bundle {root.name!r}: --defaults {unknown} are not ids of any config of the bundle.")
    ignored = sorted(key for key in values if key.split("#")[0] not in inference_keys)
    if ignored:
        logger.info("%s: --defaults %s are not ids of inference.json, not used by the export", root.name, ignored)
    return {key: value for key, value in values.items() if key.split("#")[0] in inference_keys}


def _input_shape(data_format: Mapping[str, Any], input_shape: Sequence[int] | None, bundle: str) -> tuple[int, ...]:
    _, spec = next(iter(data_format["inputs"].items()))
    if input_shape is None or (isinstance(input_shape, (list, tuple)) and not input_shape):
        shape = example_input(data_format).shape
        return tuple(int(size) for size in shape)
    if isinstance(input_shape, str) or not isinstance(input_shape, Sequence):
        raise ExportError(f"bundle {bundle!r}: --input_shape must be a list [N, C, *spatial], got {input_shape!r}.")
    spatial_dims = len(spec.get("spatial_shape", []))
    sizes = list(input_shape)
    if len(sizes) != spatial_dims + 2 or not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
        raise ExportError(
            f"bundle {bundle!r}: --input_shape {input_shape!r} must be {spatial_dims + 2} ints [N, C, *spatial] "
            f"({spatial_dims} spatial axes as the metadata's spatial_shape {spec.get('spatial_shape')})."
        )
    if min(sizes) < 1 or sizes[1] != spec["num_channels"]:
        raise ExportError(
            f"bundle {bundle!r}: --input_shape {input_shape!r} needs positive sizes and {spec['num_channels']} "
            "channel(s), as the metadata's input."
        )
    return tuple(sizes)


def _load_weights(network: Any, ckpt: str | os.PathLike, key_in_ckpt: str, bundle: str) -> None:
    """Loads a plain ``state_dict`` or the ``key_in_ckpt`` entry of a checkpoint (strict), mapped to the CPU."""
    import torch

    path = Path(ckpt)
    if not path.is_file():
        raise ExportError(f"bundle {bundle!r}: checkpoint {path} does not exist.")
    state = torch.load(path, map_location=EXPORT_DEVICE, weights_only=True)
    if key_in_ckpt:
        if not isinstance(state, Mapping) or key_in_ckpt not in state:
            keys = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ExportError(f"bundle {bundle!r}: checkpoint {path} has no entry {key_in_ckpt!r} (it has {keys}).")
        state = state[key_in_ckpt]
    elif isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        raise ExportError(
            f"bundle {bundle!r}: checkpoint {path} is a training checkpoint ({sorted(state)}); "
            "pass --key_in_ckpt model."
        )
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ExportError(
            f"bundle {bundle!r}: checkpoint {path} does not fit {NET_ID} of configs/inference.json (were the weights "
            f"trained with other settings? e.g. --defaults '{{\"features\": [...]}}'): {error}"
        ) from error


def _dynamic_candidates(dynamic: str | bool, spatial_dims: int) -> list[dict[int, str]]:
    """The input axes to make dynamic, in the order ``dynamic`` tries them."""
    spatial = {axis + 2: SPATIAL_AXIS_NAMES[axis] if axis < 3 else f"spatial_{axis}" for axis in range(spatial_dims)}
    full, batch_only, fixed = {0: "batch", **spatial}, {0: "batch"}, {}
    if dynamic == "auto":
        return [full, batch_only, fixed]
    return [full] if dynamic else [fixed]


def _second_input_shape(shape: Sequence[int], axes: Mapping[int, str]) -> tuple[int, ...] | None:
    """A second input that exercises the dynamic axes (``None`` for a fixed shape)."""
    if not axes:
        return None
    second = list(shape)
    if 0 in axes:
        second[0] = SECOND_INPUT_BATCH
    if len(second) > 2 and 2 in axes:
        second[2] += SECOND_INPUT_GROWTH
    return tuple(second)


@dataclass
class PreparedBundle:
    """What the exports of one bundle share: its files, the config overrides, the eager network and its weights,
    the example input and the eager network's output for it."""

    root: Path
    overrides: dict[str, Any]
    network: Any
    weights: Path
    data_format: dict[str, Any]
    input_shape: tuple[int, ...]
    example: Any
    example_output: Any

    @property
    def name(self) -> str:
        return self.root.name

    def export_arguments(self, filepath: Path) -> dict[str, Any]:
        """Arguments of MONAI's ``ckpt_export`` / ``onnx_export`` (``**override`` included)."""
        return {
            "net_id": NET_ID,
            "filepath": str(filepath),
            "ckpt_file": str(self.weights),
            "meta_file": str(self.root / "configs" / "metadata.json"),
            "config_file": str(self.root / "configs" / "inference.json"),
            "input_shape": list(self.input_shape),
            **self.overrides,
        }

    def eager(self, data: Any) -> Any:
        return _eager(self.network, data)


def _eager(network: Any, data: Any) -> Any:
    import torch

    with torch.no_grad():
        return network(data)


def prepare_bundle(
    root: Path,
    work_dir: Path,
    ckpt: str | os.PathLike | None,
    key_in_ckpt: str,
    defaults: str | Mapping[str, Any] | None,
    input_shape: Sequence[int] | None,
    seed: int,
) -> PreparedBundle:
    import torch
    from monai.bundle import ConfigParser

    overrides = {"bundle_root": str(root), **_inference_defaults(root, defaults)}
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser.read_meta(str(root / "configs" / "metadata.json"))
    parser.update(overrides)
    data_format = parser.get("_meta_#network_data_format")
    if not data_format or not data_format.get("inputs") or not data_format.get("outputs"):
        raise ExportError(f"bundle {root.name!r}: configs/metadata.json lacks network_data_format inputs/outputs.")
    shape = _input_shape(data_format, input_shape, root.name)
    with torch.random.fork_rng(devices=[]):  # seeded random weights without touching the caller's random state
        torch.manual_seed(seed)
        network = parser.get_parsed_content(NET_ID)
    if not isinstance(network, torch.nn.Module):
        raise ExportError(f"bundle {root.name!r}: {NET_ID} is a {type(network).__name__}, not a torch.nn.Module.")
    network = network.to(EXPORT_DEVICE)
    if ckpt:
        _load_weights(network, ckpt, key_in_ckpt, root.name)
    network.eval()
    # the exporters read the weights from a file: a CPU state_dict of exactly the compared network
    weights = work_dir / f"{root.name}_weights.pt"
    torch.save(network.state_dict(), weights)
    example = example_input(data_format, shape, seed=seed)
    output = _eager(network, example)
    expected = expected_output_shape(data_format)
    if input_shape is None and isinstance(output, torch.Tensor) and tuple(output.shape) != expected:
        raise ExportError(
            f"bundle {root.name!r}: {NET_ID} gives an output of shape {tuple(output.shape)} for the metadata's "
            f"input {shape}, the metadata says {expected}."
        )
    return PreparedBundle(root, overrides, network, weights, data_format, shape, example, output)


def export_torchscript(bundle: PreparedBundle, target: Path, rtol: float, atol: float) -> ExportResult:
    import torch
    from monai.bundle import ckpt_export

    what = f"bundle {bundle.name!r}, format torchscript"
    try:
        ckpt_export(**bundle.export_arguments(target))
    except Exception as error:  # any failure of the scripting, reported with the bundle and the format
        raise ExportError(f"{what}: ckpt_export failed: {type(error).__name__}: {error}") from error
    scripted = torch.jit.load(str(target), map_location=EXPORT_DEVICE).eval()
    with torch.no_grad():
        exported = scripted(bundle.example)
    what += f", input {_shape_text(bundle.input_shape)}"
    difference = compare_with_eager(exported, bundle.example_output, what, rtol=rtol, atol=atol)
    return ExportResult(
        bundle.name, "torchscript", target, bundle.input_shape, difference, {}, "", [bundle.input_shape]
    )


def _run_onnx(session: Any, data: Any) -> Any:
    return session.run(None, {session.get_inputs()[0].name: data.numpy()})[0]


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(size) for size in shape)


def _export_onnx_once(
    bundle: PreparedBundle, target: Path, exporter: str, axes: dict[int, str], opset: int | None
) -> Any:
    """One ``onnx_export`` with the given dynamic input axes; returns the onnxruntime session of the file."""
    import onnxruntime
    from monai.bundle import onnx_export

    input_name, _ = next(iter(bundle.data_format["inputs"].items()))
    output_name, _ = next(iter(bundle.data_format["outputs"].items()))
    converter_kwargs: dict[str, Any] = {
        "input_names": [input_name],
        "output_names": [output_name],
        "opset_version": opset,
        "dynamo": exporter == "dynamo",
    }
    if exporter == "dynamo":
        # weights inside the .onnx file, as the legacy exporter writes them (fine below ONNX's 2 GB limit)
        converter_kwargs.update(external_data=False, dynamic_shapes=(dict(axes),) if axes else None)
    elif axes:
        output_axes = {axis: name if axis == 0 else f"{output_name}_{name}" for axis, name in axes.items()}
        converter_kwargs["dynamic_axes"] = {input_name: dict(axes), output_name: output_axes}
    # use_trace: convert_to_onnx hands converter_kwargs to torch.onnx.export only on this path
    onnx_export(**bundle.export_arguments(target), use_trace=True, converter_kwargs=converter_kwargs)
    return onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])


def _export_onnx(
    bundle: PreparedBundle,
    target: Path,
    exporter: str,
    dynamic: str | bool,
    opset: int | None,
    rtol: float,
    atol: float,
    seed: int,
) -> ExportResult:
    what = f"bundle {bundle.name!r}, format onnx ({exporter} exporter)"
    candidates = _dynamic_candidates(dynamic, len(bundle.input_shape) - 2)
    failures = []
    for index, axes in enumerate(candidates):
        label = ", ".join(axes.values()) or "none"
        try:
            session = _export_onnx_once(bundle, target, exporter, axes, opset)
            compared = [bundle.input_shape]
            exported = _run_onnx(session, bundle.example)
        except Exception as error:  # the exporter's or onnxruntime's failure for these axes: the next ones may work
            failures.append(f"dynamic axes [{label}]: export failed: {type(error).__name__}: {_first_line(error)}")
            logger.warning("%s: %s", what, failures[-1])
            continue
        # a wrong result on the example input is no matter of dynamic axes: fail, whatever else could be tried
        difference = compare_with_eager(
            exported, bundle.example_output, f"{what}, input {_shape_text(bundle.input_shape)}", rtol=rtol, atol=atol
        )
        second_shape = _second_input_shape(bundle.input_shape, axes)
        if second_shape is not None:
            second = example_input(bundle.data_format, second_shape, seed=seed + 1)
            second_what = f"{what}, dynamic axes [{label}], input {_shape_text(second_shape)}"
            try:
                second_output = _run_onnx(session, second)
                second_difference = compare_with_eager(
                    second_output, bundle.eager(second), second_what, rtol=rtol, atol=atol
                )
            except Exception as error:  # a dynamic model that is wrong or fails at another shape: fewer axes next
                failures.append(f"dynamic axes [{label}]: {type(error).__name__}: {_first_line(error)}")
                logger.warning("%s: %s", what, failures[-1])
                continue
            difference = max(difference, second_difference)
            compared.append(second_shape)
        if failures:
            logger.warning("%s: kept dynamic axes [%s] (attempt %d of %d)", what, label, index + 1, len(candidates))
        return ExportResult(bundle.name, "onnx", target, bundle.input_shape, difference, axes, exporter, compared)
    target.unlink(missing_ok=True)
    raise ExportError(f"{what}: no export matched the eager network:\n  - " + "\n  - ".join(failures))


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else "")[:limit]


def export_bundle(
    bundle: str,
    format: str | Sequence[str] = "both",
    ckpt: str | os.PathLike | None = None,
    out_dir: str | os.PathLike = "dist/exports",
    defaults: str | Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    key_in_ckpt: str = "",
    exporter: str = "dynamo",
    dynamic: str | bool = "auto",
    opset: int | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-4,
    seed: int = 0,
) -> list[ExportResult]:
    """Exports the ``network_def`` of bundles to TorchScript and/or ONNX and compares each file with the eager
    network; see the docstring of ``scripts/export_bundle.py``.

    Args:
        bundle: a bundle of ``bundles/`` (name or path), or ``all``.
        format: ``torchscript``, ``onnx`` or ``both``.
        ckpt: the weights: a ``state_dict`` of ``network_def`` (e.g. the bundle's ``models/model.pt``), or a
            checkpoint with ``key_in_ckpt``; default: seeded random weights.
        out_dir: the files go to ``out_dir/<bundle>/model.ts`` and ``model.onnx`` (replaced if there).
        defaults: ``{id: value}`` replacing values of ``inference.json``, e.g. ``{"features": [...]}`` of the
            trained weights (a JSON object or file; a file keyed by bundle names gives each bundle its entry).
        input_shape: ``[N, C, *spatial]`` of the example input; default: batch 1 and the metadata's input shape.
        key_in_ckpt: the checkpoint's entry holding the weights (``model`` in the bundles' training checkpoints).
        exporter: the ONNX exporter, ``dynamo`` (``torch.export``, needs ``onnxscript``) or ``legacy``.
        dynamic: ONNX axes: ``auto``, ``True`` (dynamic batch and spatial axes) or ``False`` (fixed shape).
        opset: ONNX opset version; default: the exporter's.
        rtol: relative tolerance of the comparison.
        atol: absolute tolerance of the comparison (on the network's output, e.g. logits).
        seed: seed of the random weights (without ``ckpt``) and of the example inputs.

    Returns:
        One result per bundle and format, in order.

    Raises:
        ExportError: unknown bundle, format, exporter or ``dynamic``, a bad ``input_shape``, ``defaults`` or
            checkpoint, or an export that fails.
        ExportMismatchError: an exported file whose output differs from the eager network's.
    """
    formats = _formats(format)
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown ONNX exporter {exporter!r}; use one of {list(EXPORTERS)}.")
    if dynamic not in DYNAMIC_CHOICES:
        raise ExportError(f"--dynamic must be one of {list(DYNAMIC_CHOICES)}, got {dynamic!r}.")
    if not (rtol >= 0 and atol >= 0):
        raise ExportError(f"tolerances must be >= 0, got rtol={rtol!r}, atol={atol!r}.")
    roots = _bundle_roots(bundle)
    results = []
    with tempfile.TemporaryDirectory() as work:
        for root in roots:
            prepared = prepare_bundle(root.resolve(), Path(work), ckpt, key_in_ckpt, defaults, input_shape, seed)
            target_dir = Path(out_dir).resolve() / prepared.name
            target_dir.mkdir(parents=True, exist_ok=True)
            for name in formats:
                target = target_dir / FILE_NAMES[name]
                target.unlink(missing_ok=True)
                if name == "torchscript":
                    result = export_torchscript(prepared, target, rtol, atol)
                else:
                    result = _export_onnx(prepared, target, exporter, dynamic, opset, rtol, atol, seed)
                results.append(result)
    return results


# --------------------------------------------------------------------------------------- exported against eager


class ExportMismatchError(ValueError):
    """An exported network whose output is not the eager network's within the tolerance."""


def _metadata_shape(spec: Mapping[str, Any], what: str) -> list[int]:
    shape = spec.get("spatial_shape", [])
    if not all(isinstance(size, int) for size in shape):
        raise ValueError(f"metadata {what} spatial_shape {shape} must be numbers to build an example input.")
    return list(shape)


def _first_spec(data_format: Mapping[str, Any], kind: str) -> tuple[str, Mapping[str, Any]]:
    specs = data_format.get(kind) or {}
    if not specs:
        raise ValueError(f"metadata network_data_format has no {kind}.")
    return next(iter(specs.items()))


def example_input(
    data_format: Mapping[str, Any], input_shape: Sequence[int] | None = None, seed: int = 0
) -> torch.Tensor:
    """A seeded random input of the network: ``(1, num_channels, *spatial_shape)`` of the metadata's first input
    (in its ``dtype``), or ``input_shape`` when given.

    Args:
        data_format: the metadata's ``network_data_format``.
        input_shape: the full shape ``(N, C, *spatial)`` instead of the metadata's.
        seed: seed of the values (uniform in ``[0, 1)``), so that a comparison can be repeated.
    """
    import torch

    _, spec = _first_spec(data_format, "inputs")
    shape = tuple(input_shape) if input_shape else (1, spec["num_channels"], *_metadata_shape(spec, "input"))
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator, dtype=getattr(torch, spec.get("dtype", "float32")))


def expected_output_shape(data_format: Mapping[str, Any], batch_size: int = 1) -> tuple[int, ...]:
    """``(batch_size, num_channels, *spatial_shape)`` of the metadata's first output (for its input shape)."""
    _, spec = _first_spec(data_format, "outputs")
    return (batch_size, spec["num_channels"], *_metadata_shape(spec, "output"))


def compare_with_eager(exported: Any, eager: Any, what: str, rtol: float = 1e-4, atol: float = 1e-5) -> float:
    """The largest absolute difference between an exported network's output and the eager network's; raises when
    some value is outside ``|exported - eager| <= atol + rtol * max|eager| + rtol * |eager|``.

    The ``rtol * max|eager|`` term lets the absolute tolerance follow the output's range: a runtime that reduces a
    normalisation over a whole map in another order (onnxruntime's ``InstanceNormalization`` over 512x512) moves
    logits near zero by a few 1e-4 of the largest logit, which a fixed ``atol`` would call a mismatch.

    Args:
        exported: the exported network's output (a tensor or a numpy array, e.g. from onnxruntime).
        eager: the eager network's output, a tensor.
        what: names the export in the error message, e.g. ``"bundle 'x', format onnx"``.
        rtol: relative tolerance.
        atol: absolute tolerance.

    Raises:
        TypeError: an output that is not a tensor.
        ExportMismatchError: different shapes, or values outside the tolerance.
    """
    import torch

    if not isinstance(eager, torch.Tensor):
        raise TypeError(f"{what}: the eager network returns {type(eager).__name__}, the comparison needs a tensor")
    if not isinstance(exported, torch.Tensor):
        exported = torch.as_tensor(exported)
    exported = exported.to(device=eager.device, dtype=eager.dtype)
    if exported.shape != eager.shape:
        raise ExportMismatchError(
            f"{what}: output shape {tuple(exported.shape)} differs from the eager network's {tuple(eager.shape)}"
        )
    difference = (exported - eager).abs()
    max_difference = float(difference.nan_to_num(nan=float("inf")).max()) if difference.numel() else 0.0
    scale = float(eager.abs().nan_to_num(nan=0.0).max()) if eager.numel() else 0.0
    outside = ~torch.isclose(exported, eager, rtol=rtol, atol=atol + rtol * scale, equal_nan=True)
    if bool(outside.any()):
        raise ExportMismatchError(
            f"{what}: output differs from the eager network's: max abs difference {max_difference:.3g}, "
            f"{int(outside.sum())} of {outside.numel()} values outside the tolerance (atol {atol:g}, rtol {rtol:g})"
        )
    return max_difference


# the CLI command: export_bundle's arguments and help (fire reads them through __wrapped__), printing one line per
# exported file (its path, the largest absolute difference from eager, the compared shapes; for ONNX the axes)
@functools.wraps(export_bundle)
def export(*args: Any, **kwargs: Any) -> str:
    return "\n".join(result.summary() for result in export_bundle(*args, **kwargs))


COMMANDS = {"export": export}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; a bad request or an export outside the tolerance prints one message and gives exit status 1."""
    import fire

    # this script's progress only: the ONNX exporters' INFO logs run to thousands of lines
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    try:
        fire.Fire(COMMANDS, command=list(argv) if argv is not None else None, name="export_bundle.py")
    except (ExportError, ExportMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
