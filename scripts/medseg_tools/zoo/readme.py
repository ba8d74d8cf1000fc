"""The package's docs: the repository's bundle README in the Model Zoo's sections, and the data licence."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from medseg_tools.zoo.configs import _PROJECT_PACKAGES, SCRIPTS_PACKAGE, PackageError

#: sections of the Model Zoo's bundle README, in order
README_SECTIONS = (
    "Model Overview",
    "Data",
    "Training configuration",
    "Input",
    "Output",
    "Performance",
    "MONAI Bundle Commands",
    "References",
    "License",
)
#: the zoo section each section of the repository's bundle READMEs goes to (lower-case heading); others stay
#: their own sections, after "MONAI Bundle Commands"
README_SECTION_OF = {
    "model overview": "Model Overview",
    "data": "Data",
    "training": "Training configuration",
    "other networks and the ablation": "Training configuration",
    "ema": "Training configuration",
    "metrics": "Performance",
    "results": "Performance",
    "reproduction": "Performance",
    "evaluation": "MONAI Bundle Commands",
    "inference": "MONAI Bundle Commands",
    "references": "References",
    "license": "License",
}
#: the same references in prose and shell commands of the docs (``transforms/elastic.py`` too)
_DOCS_REFERENCE = re.compile(rf"(?<![\w.@#/$-])({_PROJECT_PACKAGES})(?=[./][A-Za-z_])")
_DATASET_NAME = re.compile(r"os\.path\.join\(@data_root, '([^']+)'\)")


def _markdown_sections(text: str) -> tuple[str, str, list[tuple[str, str]]]:
    """Title (``# ...``), the text before the first ``## `` heading, and ``(heading, body)`` per ``## `` section;
    ``#`` lines inside code fences are code, not headings."""
    title, preamble, sections = "", [], []
    current: list[str] | None = None
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("# ") and not title and current is None:
            title = line[2:].strip()
            continue
        if not in_code and line.startswith("## "):
            current = []
            sections.append((line[3:].strip(), current))
            continue
        (preamble if current is None else current).append(line)
    return (
        title,
        "\n".join(preamble).strip("\n"),
        [(heading, "\n".join(body).strip("\n")) for heading, body in sections],
    )


def _demote_headings(body: str) -> str:
    """One level deeper for the headings of a section body moved under a zoo section (code fences kept)."""
    lines, in_code = [], False
    for line in body.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        lines.append(f"#{line}" if not in_code and re.match(r"#{3,5} ", line) else line)
    return "\n".join(lines)


def package_docs_text(text: str, bundle: str) -> str:
    """Text of the repository's bundle docs as it reads in the package: the repository's packages named through the
    vendored ``scripts`` (``scripts.transforms.X``, ``scripts/transforms/x.py``), and ``B=bundles/<bundle>``
    (commands run from the repository root) as ``B=.`` (commands run from the bundle folder)."""
    text = text.replace(f"B=bundles/{bundle}", "B=.")

    def vendored(match: re.Match) -> str:
        separator = text[match.end()]
        return f"{SCRIPTS_PACKAGE}{separator}{match.group(1)}"

    return _DOCS_REFERENCE.sub(vendored, text)


def _format_shape(shape: Sequence[Any]) -> str:
    return "x".join(str(size) for size in shape)


def _io_description(name: str, spec: Mapping[str, Any]) -> str:
    channels = spec.get("channel_def", {})
    channel_text = ", ".join(f"{index}: {meaning}" for index, meaning in channels.items())
    parts = [
        f"{spec.get('num_channels', '?')} channel(s) ({channel_text})" if channel_text else "",
        f"{spec.get('type', '')} {spec.get('format', '')}".strip(),
        f"modality {spec['modality']}" if spec.get("modality") else "",
        f"spatial shape {_format_shape(spec.get('spatial_shape', []))}"
        + (" (a patch: the inferer tiles larger images)" if spec.get("is_patch_data") else ""),
        f"{spec.get('dtype', '')}",
        f"value range {spec['value_range']}" if spec.get("value_range") else "",
    ]
    return f"- `{name}`: " + ", ".join(part for part in parts if part) + "."


def _dataset_name(train_config: Mapping[str, Any]) -> str | None:
    found = _DATASET_NAME.search(str(train_config.get("dataset_dir", "")))
    return found.group(1) if found else None


def _commands_text(bundle: str, dataset: str | None, config_names: Sequence[str]) -> str:
    data = f"`$MEDSEG_DATA/{dataset}`, else `data/{dataset}` in this folder" if dataset else "see Data"
    overlays = [name for name in config_names if name not in ("train.json", "inference.json", "metadata.json")]
    lines = [
        f"Run from this folder (`cd {bundle}`), or from any other folder with `--bundle_root /path/to/{bundle}` and",
        "the config files given by their paths. The bundle's own code is the `scripts` package of this folder",
        "(`scripts.custom_networks`, `scripts.transforms`, copied from medseg-bundles): it needs only MONAI and the",
        "packages listed in `configs/metadata.json`, not medseg-bundles. The configs reach it through the",
        "`bundle_scripts` item, which their `initialize` step imports after putting `bundle_root` on `sys.path`.",
        "",
        f"The dataset is read from `dataset_dir` (default {data}): pass `--dataset_dir /path/to/data`",
        "(inference: `--input_images` takes a folder, a glob, a file or a list).",
        "",
        "```bash",
        "# training",
        "python -m monai.bundle run training --config_file configs/train.json --dataset_dir /path/to/data",
        "# several processes (GPUs with NCCL, or CPU processes with gloo)",
        "torchrun --nproc_per_node 2 -m monai.bundle run \\",
        "    --config_file \"['configs/train.json','configs/multi_gpu_train.json']\" --dataset_dir /path/to/data",
        "# evaluation of models/model.pt on the validation split",
        "python -m monai.bundle run --config_file \"['configs/train.json','configs/evaluate.json']\" "
        "--dataset_dir /path/to/data",
        "# inference",
        "python -m monai.bundle run --config_file configs/inference.json \\",
        "    --input_images /path/to/images --output_dir /path/to/predictions",
        "# the same from another folder",
        f"python -m monai.bundle run --config_file /path/to/{bundle}/configs/inference.json \\",
        f"    --bundle_root /path/to/{bundle} --input_images /path/to/images --output_dir /path/to/predictions",
        "# TorchScript export and the network's input/output check (from this folder: these commands build the",
        "# network without the config's initialize step, so `scripts` must be importable from the working directory)",
        "python -m monai.bundle ckpt_export network_def --filepath models/model.ts --ckpt_file models/model.pt \\",
        "    --meta_file configs/metadata.json --config_file configs/inference.json",
        "python -m monai.bundle verify_net_in_out network_def --meta_file configs/metadata.json \\",
        "    --config_file configs/inference.json",
        "```",
    ]
    if overlays:
        listed = ", ".join(f"`configs/{name}`" for name in overlays)
        lines += [
            "",
            f"Other configs of this bundle, merged after `train.json` or used alone as described below: {listed}.",
        ]
    return "\n".join(lines)


def zoo_readme(
    bundle: str, readme: str, metadata: Mapping[str, Any], train_config: Mapping[str, Any], config_names: Sequence[str]
) -> str:
    """The package's ``docs/README.md``: the repository's bundle README in the Model Zoo's sections.

    Every section of the repository README is kept: a section whose heading is a zoo section (``Data``) is its
    body; the others go as ``###`` subsections into the zoo section of ``README_SECTION_OF`` (their own
    subsections one level deeper) or stay their own ``##`` sections after "MONAI Bundle Commands". "Input" and
    "Output" come from the metadata's ``network_data_format``; "MONAI Bundle Commands" starts with the
    package's own commands.

    Raises:
        PackageError: the README lacks a section every package needs (Model overview, Data, References, License).
    """
    title, preamble, sections = _markdown_sections(package_docs_text(readme, bundle))
    found = {README_SECTION_OF.get(heading.lower()) for heading, _ in sections}
    missing = [name for name in ("Model Overview", "Data", "References", "License") if name not in found]
    if missing:
        raise PackageError(f"bundle {bundle!r}: docs/README.md lacks the section(s) {missing}.")
    parts: dict[str, list[str]] = {name: [] for name in README_SECTIONS}
    extra: list[str] = []
    for heading, body in sections:
        section = README_SECTION_OF.get(heading.lower())
        if section is None:
            extra.append(f"## {heading}\n\n{body}")
        elif section.lower() == heading.lower():
            parts[section].insert(0, body)
        else:
            parts[section].append(f"### {heading}\n\n{_demote_headings(body)}")
    data_format = metadata.get("network_data_format", {})
    parts["Input"] = [
        "\n".join(_io_description(name, spec) for name, spec in data_format.get("inputs", {}).items())
        + f"\n\nImage: {metadata.get('image_classes', '')}.\n\nLabels (training): {metadata.get('label_classes', '')}."
    ]
    parts["Output"] = [
        "\n".join(_io_description(name, spec) for name, spec in data_format.get("outputs", {}).items())
        + f"\n\nPrediction: {metadata.get('pred_classes', '')}."
    ]
    parts["MONAI Bundle Commands"].insert(0, _commands_text(bundle, _dataset_name(train_config), config_names))
    version = metadata.get("version", "?")
    note = (
        f"> Model Zoo package of `{bundle}` version {version}, made by `scripts/package_bundle.py` of medseg-bundles "
        f"from `bundles/{bundle}/`. Its code is vendored in `scripts/`; the sections below are the repository's "
        "docs, with `custom_networks` / `transforms` named `scripts.custom_networks` / `scripts.transforms`. "
        "Their commands set `B=.` (this folder; run them from here). `scripts/reproduce.py`, "
        "`scripts/score_predictions.py`, `scripts/prepare_data.py`, `scripts/benchmark.py`, `tests/` and "
        "`pip install -e .` belong to the medseg-bundles repository, not to this package; its reproduction "
        "specs (`configs/reproduce/`) are not packaged."
    )
    text = [f"# {title or metadata.get('name', bundle)}", "", note, ""]
    if preamble:
        text += [preamble, ""]
    for name in README_SECTIONS:
        text += [f"## {name}", "", "\n\n".join(parts[name]).strip() or "-", ""]
        if name == "MONAI Bundle Commands":
            text += [*(f"{section}\n" for section in extra)]
    return "\n".join(text).rstrip() + "\n"


def data_license_text(bundle: str, readme: str, metadata: Mapping[str, Any]) -> str:
    """``docs/data_license.txt``: the data licenses named in the License section of the bundle's README.

    Raises:
        PackageError: no License section, or one that does not name the data's license (``Data: ...``).
    """
    _, _, sections = _markdown_sections(readme)
    license_text = next((body for heading, body in sections if heading.lower() == "license"), None)
    if license_text is None or "Data:" not in license_text:
        raise PackageError(
            f"bundle {bundle!r}: docs/README.md: the License section must name the data's license "
            "('Data: ...'), the package's docs/data_license.txt is made from it."
        )
    data_terms = " ".join(license_text[license_text.index("Data:") :].split())
    return (
        f"Third party data license of the {metadata.get('name', bundle)} bundle\n\n"
        f"{data_terms}\n\n"
        f"Data source: {metadata.get('data_source', 'see docs/README.md')}\n\n"
        "The datasets are not part of this bundle. Their licenses, not the bundle's LICENSE (which covers the\n"
        "configs, the code in scripts/ and the weights), apply to the data: check them before using the data or\n"
        "the models trained on it, in particular for commercial use.\n"
    )
