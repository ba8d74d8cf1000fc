"""The ``precision`` benchmark: every bundle's network in fp32 and under bf16 autocast, side by side in one run.

The bundles default to ``"amp": true``, which on a CPU with AMX-BF16 / AVX512-BF16 means bf16 autocast
(:func:`transforms.select_precision`). This benchmark measures what that buys per network: one training step and the
inference of one real image, each in fp32 and in bf16, with the achieved convolution GFLOP/s against a dense 3x3
convolution of the same precision timed in the same rounds.

Everything a bundle trains and infers with is read from its own configs, so the benchmark follows them:
``train.json`` gives the network (``network_def`` with ``features``), the loss, the optimizer, the patch size and the
batch (``batch_size`` x crops per image); ``inference.json`` gives the preprocessing and the inferer (its inner
inferer is run through :class:`transforms.PrecisionInferer` with fp32 and with bf16). The image is the first
validation image of the bundle's dataset (``val_ids`` of ``train.json``, found through the dataset registry). Only
the widths differ between rows: the recipe's (``train.json``) and the paper's (one row when they are the same).

One piece (over 400 lines): the configs' reading, the two timed measurements and the row that reports them share
the per-bundle setup, which split files would pass around as one long argument list.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from medseg_tools.benchmark.harness import (
    TimedCase,
    _environment,
    _relative_difference,
    configure_threads,
    convolution_flops,
    dense_conv_peak_case,
    register_benchmark,
    summarize_seconds,
    time_interleaved,
    write_results,
)
from medseg_tools.benchmark.report import _precision_report
from medseg_tools.paths import BUNDLES_DIR
from monai.bundle import ConfigParser

import transforms
from transforms.inferers import (
    Precision,
    PrecisionInferer,
    cpu_bf16_units,
    meta_call,
    meta_copy_state,
    to_float32,
)

PAPER_WIDTHS = (64, 128, 256, 512, 1024)
FP32, BF16 = Precision("cpu", None), Precision("cpu", torch.bfloat16)


@dataclass(frozen=True)
class NetworkRecipe:
    """What the benchmark needs about one bundle's network beyond the bundle's configs.

    Attributes:
        bundle: the bundle whose ``configs/train.json`` and ``configs/inference.json`` are read.
        paper_features: the paper's widths (the network's docstring and the bundle's docs: U-Net's 64-1024 for all
            four, given or assumed where the paper's figure is illegible).
        inference_target: minimum bf16/fp32 speedup of the inference of one image (medians).
        training_target: minimum bf16/fp32 speedup of one training step (medians).
        targets_at_paper_width: the targets apply at the paper's width too (otherwise at the recipe's only).
        overlay: a config of the bundle whose ``network_def`` (and ``inferer``) replace the bundle's, with the
            rest of ``train.json`` (loss, optimizer, patches, batch): ``baseline_monai`` for the bundle's plain
            MONAI baseline, which has one width (``paper_features`` ``None``).
    """

    bundle: str
    paper_features: tuple[int, ...] | None = PAPER_WIDTHS
    inference_target: float = 2.0
    training_target: float = 1.8
    targets_at_paper_width: bool = False
    overlay: str | None = None


RECIPES: dict[str, NetworkRecipe] = {
    "UNet2015": NetworkRecipe("unet_em_segmentation", PAPER_WIDTHS, 2.8, 2.5, True),
    "AttentionResUNet": NetworkRecipe("attention_resunet_cell_segmentation"),
    "LGNet": NetworkRecipe("lgnet_covid_ct_segmentation"),
    "MCSAUNet": NetworkRecipe("mcsa_unet_nuclei_segmentation"),
    # the plain MONAI baselines of issue 14 (BasicUNet 16-256) as each bundle trains and runs them
    "BasicUNet-ISBI": NetworkRecipe("unet_em_segmentation", None, overlay="baseline_monai"),
    "BasicUNet-PhC": NetworkRecipe("attention_resunet_cell_segmentation", None, overlay="baseline_monai"),
    "BasicUNet-CT": NetworkRecipe("lgnet_covid_ct_segmentation", None, overlay="baseline_monai"),
    "BasicUNet-MoNuSeg": NetworkRecipe("mcsa_unet_nuclei_segmentation", None, overlay="baseline_monai"),
}
#: what ``small=True`` sets (unless given): seconds for the whole run, for tests and a first look
SMALL = {"width_divisor": 8, "train_batch_size": 1, "train_patch_size": 64, "image_size": 64}
SMALL_PEAK = {"peak_channels": 16, "peak_size": 32, "peak_calls": 1}


def _config(bundle: str, name: str, overlay: str | None = None) -> ConfigParser:
    """The bundle's config ``name``; with ``overlay``, the overlay's ``network_def`` and ``inferer`` replace its own
    (the whole overlay is merged into ``train``: its loss, transforms and optimizer are the baseline's)."""
    folder = BUNDLES_DIR / bundle / "configs"
    parser = ConfigParser()
    if overlay and name == "train":
        parser.read_config([str(folder / f"{name}.json"), str(folder / f"{overlay}.json")])
    else:
        parser.read_config(str(folder / f"{name}.json"))
        if overlay:
            extra = ConfigParser.load_config_file(str(folder / f"{overlay}.json"))
            for key in ("network_def", "inferer"):
                if key in extra:
                    parser[key] = extra[key]
    parser["bundle_root"] = str(BUNDLES_DIR / bundle)
    return parser


def _selected(networks: str | Sequence[str]) -> list[str]:
    """Network names (case-insensitive, or their bundle names) from ``"all"``, a comma-separated string or a list."""
    if isinstance(networks, str):
        networks = list(RECIPES) if networks == "all" else [n for n in networks.split(",") if n.strip()]
    by_key = {name.lower(): name for name in RECIPES}
    by_key |= {r.bundle: name for name, r in RECIPES.items() if r.overlay is None}
    chosen = [by_key.get(str(n).strip().lower()) for n in networks]
    if not chosen or None in chosen:
        raise ValueError(f"unknown network(s) in {networks!r}; choose from {list(RECIPES)} (or their bundles).")
    return list(dict.fromkeys(chosen))


def _widths(recipe_features: Sequence[int], paper: Sequence[int] | None, which: str, divisor: int) -> dict[str, tuple]:
    """The widths to run, by label: ``recipe``, ``paper``, or ``recipe = paper`` when they are the same; a network
    without a paper width (``None``: the baselines) has its recipe's only."""
    if which not in ("both", "recipe", "paper"):
        raise ValueError(f"widths must be 'both', 'recipe' or 'paper', got {which!r}.")
    if paper is None:
        return {"recipe": tuple(max(1, int(f) // divisor) for f in recipe_features)}
    recipe, paper = (tuple(max(1, int(f) // divisor) for f in fs) for fs in (recipe_features, paper))
    if recipe == paper:
        return {"recipe = paper": recipe}
    return {label: fs for label, fs in (("recipe", recipe), ("paper", paper)) if which in (label, "both")}


def _validation_image(bundle: str, train: ConfigParser, inference: ConfigParser, size: int | None) -> tuple:
    """The bundle's first validation image through its inference preprocessing, as a plain ``(1, C, H, W)`` tensor
    (center-cropped to ``size`` when given), and where it came from."""
    spec = transforms.bundle_dataset(bundle)
    first = list(train.get_parsed_content("val_ids"))[0]
    item = transforms.folder_datalist(transforms.dataset_dir(spec.name), spec.layout, ids=[first], with_labels=False)
    image = inference.get_parsed_content("preprocessing", lazy=False)({"image": item[0]["image"]})["image"]
    image = (image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image))[None].float()
    if size:
        starts = [max(0, (s - size) // 2) for s in image.shape[2:]]
        image = image[..., starts[0] : starts[0] + size, starts[1] : starts[1] + size]
    return image.contiguous(), f"{spec.name}/{first}"


def _training_shape(train: ConfigParser, network: nn.Module, in_channels: int, patch: int | None, batch: int | None):
    """``(N, C, H, W)`` of one training batch as the bundle's trainer forms it: ``batch_size`` images x crops per
    image (``num_samples`` / ``patches_per_image`` / ``crops_per_image``), of ``patch_size`` / ``spatial_size``, or for a valid-convolution
    U-Net ``train_output_size`` plus the border it loses."""

    def value(key: str) -> Any:
        return train.get_parsed_content(key) if train.get(key) is not None else None

    if patch:
        sizes = (patch, patch)
    elif value("train_output_size") is not None:
        sizes = (int(value("train_output_size")) + 2 * int(getattr(network, "border", 0)),) * 2
    else:
        sizes = tuple(int(s) for s in (value("patch_size") or value("spatial_size")))
    if hasattr(network, "nearest_valid_tile_size"):
        sizes = tuple(network.nearest_valid_tile_size(s, mode="ceil") for s in sizes)
    crops = value("num_samples") or value("patches_per_image") or value("crops_per_image") or 1
    return (batch or int(value("batch_size")) * int(crops), in_channels, *sizes)


def _real_patches(image: torch.Tensor, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """``shape[0]`` random crops of ``image`` (edge-padded when smaller), channels-last, as a training batch."""
    sizes = shape[2:]
    pads = [max(0, s - i) for s, i in zip(sizes, image.shape[2:], strict=True)]
    if any(pads):
        image = F.pad(image, (pads[1] // 2, pads[1] - pads[1] // 2, pads[0] // 2, pads[0] - pads[0] // 2), "replicate")
    crops = []
    for _ in range(shape[0]):
        top, left = (
            int(torch.randint(0, i - s + 1, (1,), generator=generator))
            for i, s in zip(image.shape[2:], sizes, strict=True)
        )
        crops.append(image[0, :, top : top + sizes[0], left : left + sizes[1]])
    return torch.stack(crops).contiguous(memory_format=torch.channels_last)


def _training_target(loss: Any, output_shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """A random target of the kind the bundle's loss takes: binary for one logit, class ids (``(N, 1, ...)``)
    otherwise, plus the weight-map channel for a loss that reads it from the target (U-Net's)."""
    n, channels, *spatial = output_shape
    if channels == 1:
        return (torch.rand((n, 1, *spatial), generator=generator) > 0.5).float()
    target = torch.randint(0, channels, (n, 1, *spatial), generator=generator).float()
    if getattr(loss, "weight_in_target", False):
        target = torch.cat([target, 1.0 + 9.0 * torch.rand((n, 1, *spatial), generator=generator)], dim=1)
    return target


def _meta_output_shape(network: nn.Module, shape: Sequence[int]) -> tuple[int, ...]:
    with torch.no_grad():
        output = meta_call(network, meta_copy_state(network), torch.empty(tuple(shape), device="meta"))
    return tuple(output.shape)


def _useful_training_flops(network: nn.Module, shape: Sequence[int]) -> float:
    """Convolution FLOPs of forward + backward, without the recomputation of gradient checkpointing (LG-Net's
    default): the work a step needs, which is what GFLOP/s should measure (the recomputation also cannot be
    counted on the meta device, where it would run outside ``functional_call``'s stand-ins)."""
    plain = copy.deepcopy(network)
    for module in plain.modules():
        for flag in ("gradient_checkpointing", "checkpoint"):
            if isinstance(getattr(module, flag, None), bool):
                setattr(module, flag, False)
    return convolution_flops(plain, shape, backward=True)


def _decision_disagreement(candidate: torch.Tensor, reference: torch.Tensor) -> float:
    """Fraction of pixels whose decision differs: the sign of a single logit, else the arg-max class."""
    if reference.shape[1] == 1:
        return float(((candidate > 0) != (reference > 0)).float().mean())
    return float((candidate.argmax(dim=1) != reference.argmax(dim=1)).float().mean())


def _group(
    name: str,
    recipe: NetworkRecipe,
    width: str,
    features: tuple[int, ...],
    options: dict[str, Any],
    peaks: list[TimedCase],
) -> dict[str, Any]:
    """All rows of one network at one width: peaks, training step and inference, fp32 and bf16, interleaved."""
    train = _config(recipe.bundle, "train", recipe.overlay)
    inference = _config(recipe.bundle, "inference", recipe.overlay)
    train["features"] = inference["features"] = list(features)
    if recipe.overlay:  # the baseline's widths are written in its network_def
        for parser in (train, inference):
            parser["network_def#features"] = [*features, features[0]]
    torch.manual_seed(options["seed"])
    network = train.get_parsed_content("network_def", lazy=False).to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(options["seed"] + 1)
    image, source = _validation_image(recipe.bundle, train, inference, options["image_size"])
    in_channels = image.shape[1]
    shape = _training_shape(train, network, in_channels, options["train_patch_size"], options["train_batch_size"])
    batch = _real_patches(image, shape, generator)
    loss = train.get_parsed_content("loss", lazy=False)
    target = _training_target(loss, _meta_output_shape(network.train(), shape), generator)
    train_flops = _useful_training_flops(network.train(), shape)

    def training_case(precision: Precision) -> TimedCase:
        trained = copy.deepcopy(network).train()
        train["network"] = trained  # the bundle's optimizer expression reads @network
        optimizer = train.get_parsed_content("optimizer", lazy=False)

        def run() -> None:
            with precision.autocast():
                output = trained(batch)
            loss(to_float32(output), target).backward()  # the loss in fp32, as PrecisionInferer hands it on
            optimizer.step()

        return TimedCase(f"train {precision.name}", run, train_flops, lambda: optimizer.zero_grad(set_to_none=True))

    evaluated = copy.deepcopy(network).eval()
    inner = inference.get_parsed_content("inferer", lazy=False)
    inner = inner.inferer if isinstance(inner, PrecisionInferer) else inner
    outputs: dict[str, torch.Tensor] = {}
    calls: list[tuple[int, ...]] = []

    def record_call(module: nn.Module, args: tuple) -> None:
        if args[0].device.type != "meta":  # not the inferer's memory estimate of a tile
            calls.append(tuple(args[0].shape))

    def inference_case(precision: Precision, net: nn.Module, label: str, record: bool = False) -> TimedCase:
        inferer = PrecisionInferer(inner, precision)

        def run() -> None:
            # the fp32 run records the input shape of every network call (windows, tiles) for the FLOP count
            hook = None
            if record:
                calls.clear()
                hook = net.register_forward_pre_hook(record_call)
            try:
                with torch.inference_mode():
                    outputs[label] = inferer(image, net)
            finally:
                if hook is not None:
                    hook.remove()

        return TimedCase(label, run)

    cases = [*peaks, training_case(FP32), training_case(BF16)]
    cases += [inference_case(FP32, evaluated, "infer fp32", record=True), inference_case(BF16, evaluated, "infer bf16")]
    compile_info = _compiled_case(evaluated, inference_case, options) if options["torch_compile"] else None
    if compile_info and compile_info.get("case"):
        cases.append(compile_info.pop("case"))
    seconds = time_interleaved(cases, options["repeats"], options["warmup"])

    flops_by_shape: dict[tuple[int, ...], float] = {}
    for call in calls:
        flops_by_shape.setdefault(call, convolution_flops(evaluated, call))
    infer_flops = sum(flops_by_shape[call] for call in calls)
    summaries = {case.name: summarize_seconds(seconds[case.name], case.flops or infer_flops) for case in cases}
    summaries["peak fp32"], summaries["peak bf16"] = summaries[peaks[0].name], summaries[peaks[1].name]
    train_work = f"{shape[0]} x {shape[1]}x{shape[2]}x{shape[3]}, {type(loss).__name__}"
    rows = _rows(name, recipe, width, features, summaries, train_work, _inference_work(image, source, inner, calls))
    if compile_info and "first_call_s" in compile_info:
        compiled = summaries["infer bf16 compiled"]
        rows[-1]["bf16_compiled"] = compiled
        compile_info["compile_s"] = compile_info["first_call_s"] - compiled["median_s"]
        compile_info["speedup_vs_eager_bf16"] = summaries["infer bf16"]["median_s"] / compiled["median_s"]
    agreement = _relative_difference(outputs["infer bf16"], outputs["infer fp32"])
    agreement["decision_disagreement"] = _decision_disagreement(outputs["infer bf16"], outputs["infer fp32"])
    return {
        "network": name,
        "bundle": recipe.bundle,
        "width": width,
        "features": list(features),
        "parameters": sum(p.numel() for p in network.parameters()),
        "image": {"source": source, "shape": list(image.shape)},
        "training_batch": list(shape),
        "peak": {"fp32": summaries["peak fp32"], "bf16": summaries["peak bf16"]},
        "rows": rows,
        "agreement": agreement,
        "torch_compile": compile_info,
    }


def _rows(
    name: str,
    recipe: NetworkRecipe,
    width: str,
    features: tuple[int, ...],
    summaries: dict[str, dict],
    train_work: str,
    infer_work: str,
) -> list[dict[str, Any]]:
    """The training-step and inference rows of one group: both precisions, the ratio, fractions of the peaks of the
    same precision and the verdict (``None`` where no target applies: the paper's width of a network whose targets
    hold at the recipe's width only)."""
    with_targets = width != "paper" or recipe.targets_at_paper_width
    rows = []
    for kind, prefix, target, work in (
        ("train step", "train", recipe.training_target, train_work),
        ("inference", "infer", recipe.inference_target, infer_work),
    ):
        fp32, bf16 = summaries[f"{prefix} fp32"], summaries[f"{prefix} bf16"]
        ratio = fp32["median_s"] / bf16["median_s"]
        rows.append(
            {
                "network": name,
                "width": width,
                "features": list(features),
                "case": kind,
                "work": work,
                "fp32": fp32,
                "bf16": bf16,
                "ratio": ratio,
                "ratio_min": fp32["min_s"] / bf16["min_s"],
                "fp32_fraction_of_peak": fp32["gflops_at_median"] / summaries["peak fp32"]["gflops_at_median"],
                "bf16_fraction_of_peak": bf16["gflops_at_median"] / summaries["peak bf16"]["gflops_at_median"],
                "target": target if with_targets else None,
                "passed": (ratio >= target) if with_targets else None,
            }
        )
    return rows


def _inference_work(image: torch.Tensor, source: str, inferer: Any, calls: list[tuple[int, ...]]) -> str:
    windows = sum(call[0] for call in calls)
    size = "x".join(str(s) for s in calls[0][2:]) if calls else "?"
    return f"{image.shape[2]}x{image.shape[3]} {source}, {type(inferer).__name__}: {windows} x {size}"


def _compiled_case(network: nn.Module, inference_case: Callable, options: dict[str, Any]) -> dict[str, Any]:
    """``torch.compile`` (Inductor, frozen weights) of the eval network, run under bf16 autocast through the same
    inferer. The module is compiled in place on a copy, so inferers that read the network's tile geometry or
    estimate its memory on the meta device still see the module. Returns the case and the first call's time
    (compilation + one inference), or the reason when compilation failed here (no C++ compiler, ...)."""
    import torch._inductor.config as inductor_config

    compiled = copy.deepcopy(network)
    compiled.compile()
    case = inference_case(BF16, compiled, "infer bf16 compiled")
    eager_run = case.run

    def run() -> None:
        with inductor_config.patch(freezing=True):  # weights are constants at inference: prepacked for oneDNN
            eager_run()

    start = time.perf_counter()
    try:
        run()
    except Exception as error:  # an unsupported backend must not end the benchmark
        warnings.warn(f"torch.compile failed ({type(error).__name__}: {error}); compiled rows left out.", stacklevel=2)
        return {"error": f"{type(error).__name__}: {error}"}
    return {"case": TimedCase(case.name, run), "first_call_s": time.perf_counter() - start}


@register_benchmark("precision")
def precision(
    networks: str | Sequence[str] = "all",
    widths: str = "both",
    repeats: int = 3,
    warmup: int = 1,
    threads: int | None = None,
    train_batch_size: int | None = None,
    train_patch_size: int | None = None,
    image_size: int | None = None,
    width_divisor: int | None = None,
    small: bool = False,
    torch_compile: bool = False,
    peak_channels: int | None = None,
    peak_size: int | None = None,
    peak_calls: int | None = None,
    seed: int = 0,
    json_out: str | None = None,
    quiet: bool = False,
) -> dict:
    """fp32 against bf16 autocast for every bundle's network: one training step (forward, the bundle's loss in fp32,
    backward, its optimizer's step; its patch size and batch, channels-last) and the inference of one real image
    through the bundle's inferer (``transforms.PrecisionInferer`` with fp32 and with bf16), at the recipe's width and
    at the paper's; achieved GFLOP/s against dense-convolution peaks of both precisions; bf16/fp32 speedups against
    the targets (UNet2015 >= 2.8x inference and >= 2.5x training at both widths; the others >= 2.0x and >= 1.8x at
    the recipe's width). Per network and width, the peaks and the fp32 and bf16 cases are timed interleaved.

    GFLOP counts are the convolutions (transposed ones included) of the work needed: every network call the inferer
    makes (windows, tiles), and for training forward + backward without LG-Net's gradient-checkpointing
    recomputation (the time includes it: the bundle trains with it). Not timed: data loading, preprocessing,
    MCSA-UNet's EMA update. ``torch_compile`` adds bf16 inference of a ``torch.compile``-d copy (Inductor with frozen
    weights; on the development machine, a 2-core Xeon with a C++ compiler, Inductor works) with its compile time.

    Args:
        networks: ``"all"``, or names (``UNet2015,LGNet``; case-insensitive) or bundle names, comma-separated.
        widths: ``"both"`` (default), ``"recipe"`` (``train.json``'s ``features``) or ``"paper"``.
        repeats: timed interleaved rounds.
        warmup: untimed rounds before (oneDNN primitive caches; compilation).
        threads: intra-op threads (default: PyTorch's choice, one per core).
        train_batch_size: patches per training step (default: the bundle's batch x crops per image).
        train_patch_size: side of the training patches (default: the bundle's; a valid tile for UNet2015).
        image_size: center-crop the real image to this side (default: the whole image, as the bundle infers).
        width_divisor: divide every width by this (default 1; 8 with ``small``).
        small: seconds instead of minutes (tests): widths / 8, one 64-px patch, a 64-px image, a small peak;
            its ratios and verdicts say nothing about the real sizes (tiny layers are overhead-bound).
        torch_compile: also time a compiled bf16 model (inference).
        peak_channels: channels of the dense reference convolution (default 256).
        peak_size: its spatial size (default 128).
        peak_calls: its calls per timed sample (default 3).
        seed: seed of the weights, crops and targets.
        json_out: file to write all results to (JSON).
        quiet: do not print the tables.

    Returns:
        settings, environment, one group per network and width (peaks, rows, agreement of bf16 with fp32), the
        targets and the overall verdict.
    """
    names = _selected(networks)
    small_defaults = SMALL if small else {"width_divisor": 1}
    given = {
        "width_divisor": width_divisor,
        "train_batch_size": train_batch_size,
        "train_patch_size": train_patch_size,
        "image_size": image_size,
    }
    options = {key: small_defaults.get(key) if value is None else value for key, value in given.items()}
    for key, value in options.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{key} must be a positive int, got {value!r}.")
    peak_defaults = SMALL_PEAK if small else {"peak_channels": 256, "peak_size": 128, "peak_calls": 3}
    peak_args = {"peak_channels": peak_channels, "peak_size": peak_size, "peak_calls": peak_calls}
    peak_args = {key: peak_defaults[key] if value is None else value for key, value in peak_args.items()}
    options.update(repeats=repeats, warmup=warmup, seed=seed, torch_compile=bool(torch_compile))
    threads_used = configure_threads(threads)
    peaks = [
        dense_conv_peak_case(peak_args["peak_channels"], peak_args["peak_size"], peak_args["peak_calls"], precision=p)
        for p in ("fp32", "bf16")
    ]
    groups = []
    for name in names:
        recipe = RECIPES[name]
        train = _config(recipe.bundle, "train", recipe.overlay)
        features_id = "network_def#features" if recipe.overlay else "features"
        recipe_features = list(train.get_parsed_content(features_id))[: 5 if recipe.overlay else None]
        for width, features in _widths(
            recipe_features, recipe.paper_features, widths, options["width_divisor"]
        ).items():
            groups.append(_group(name, recipe, width, features, options, peaks))
    verdicts = [row["passed"] for group in groups for row in group["rows"] if row["passed"] is not None]
    results: dict[str, Any] = {
        "benchmark": "precision",
        "environment": _environment(threads_used) | {"bf16_units": cpu_bf16_units()},
        "settings": {"networks": names, "widths": widths, "small": bool(small), **options, **peak_args},
        "targets": {
            name: {"inference": r.inference_target, "training": r.training_target} for name, r in RECIPES.items()
        },
        "groups": groups,
        "peak_ratio_median": statistics.median(
            g["peak"]["fp32"]["median_s"] / g["peak"]["bf16"]["median_s"] for g in groups
        ),
        "passed": all(verdicts) if verdicts else None,
    }
    if not quiet:
        print(_precision_report(results))
    write_results(results, json_out, quiet)
    return results
