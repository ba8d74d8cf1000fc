"""scripts/package_bundle.py: self-contained Model Zoo packages of the bundles, and the checks that fail loudly."""

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from medseg_tools import zoo as pb
from monai.bundle import ConfigParser
from PIL import Image

from tests.conftest import REPO_ROOT, require_dataset

BUNDLES = pb.bundle_names()
SMOKE_OVERRIDES = json.loads((REPO_ROOT / "tests" / "bundle_smoke_overrides.json").read_text())
SCHEMA = json.loads(pb.SCHEMA_PATH.read_text())
# one real image per bundle for the inference run, and the dataset it comes from
INFERENCE_IMAGES = {
    "unet_em_segmentation": ("isbi2012_em", "image/20.png"),
    "attention_resunet_cell_segmentation": ("phc_usiigaci", "set29/raw.tif"),
    "mcsa_unet_nuclei_segmentation": ("monuseg2018", "images/TCGA-E2-A1B5-01Z-00-DX1.tif"),
    "lgnet_covid_ct_segmentation": ("covid_medseg", "Imgs/50.jpg"),
}


def _tree_digest(*folders: Path) -> str:
    digest = hashlib.md5()
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(REPO_ROOT)).encode() + path.read_bytes())
    return digest.hexdigest()


REPO_SOURCES = [REPO_ROOT / "bundles", *(REPO_ROOT / name for name in pb.VENDORED_PACKAGES)]


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """Every bundle packaged once (static checks only), and a digest of the repository's sources before."""
    before = _tree_digest(*REPO_SOURCES)
    out = tmp_path_factory.mktemp("dist")
    for bundle in BUNDLES:
        pb.package(bundle, out_dir=out, workflows=False)
    return out, before


def _random_weights(bundle: str, path: Path, overrides: dict) -> None:
    """A seeded random state_dict of the bundle's inference network, built from the repository's config."""
    parser = ConfigParser()
    parser.read_config(str(REPO_ROOT / "bundles" / bundle / "configs" / "inference.json"))
    parser.update({key: value for key, value in overrides.items() if key in parser})
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)


def _copy_package(packages, bundle: str, tmp_path: Path) -> Path:
    out, _ = packages
    return Path(shutil.copytree(out / bundle, tmp_path / bundle))


# ------------------------------------------------------------------------------------------- rewriting


def test_rewrite_config_points_every_project_reference_at_the_vendored_code():
    config = {
        "imports": ["$import os", "$import custom_networks", "$import transforms", "$import transforms.datalist"],
        "bundle_root": ".",
        "data_root": "$os.environ.get('MEDSEG_DATA', os.path.join(@bundle_root, '..', '..', '..', 'shared', 'data'))",
        "border": "$custom_networks.unet2015_border(depth=len(@features) - 1)",
        "datalist": "$transforms.datalist.validate_datalist(transforms.datalist.image_datalist(@images))",
        "network_def": {"_target_": "custom_networks.UNet2015", "features": "@features"},
        "validate#handlers#0#_target_": "transforms.AtomicCheckpointSaver",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [{"_target_": "transforms.EnsureChannelsd"}, {"_target_": "LoadImaged"}],
        },
        "train_transforms": "$@base_transforms + [monai.transforms.EnsureTyped(keys='image')]",
        "note": "transforms",
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
    }
    original = copy.deepcopy(config)
    rewritten = pb.rewrite_config(config)
    assert config == original, "the input config must not change"
    assert rewritten["imports"] == [
        "$import os",
        "$import sys",
        "$from importlib import import_module as load_package",
    ]
    assert list(rewritten)[:3] == ["imports", "bundle_root", "bundle_scripts"]
    assert rewritten["bundle_scripts"] == pb.SCRIPTS_EXPRESSION
    assert rewritten["data_root"] == "$os.environ.get('MEDSEG_DATA', os.path.join(@bundle_root, 'data'))"
    assert rewritten["border"] == "$@bundle_scripts.custom_networks.unet2015_border(depth=len(@features) - 1)"
    assert rewritten["datalist"] == (
        "$@bundle_scripts.transforms.datalist.validate_datalist("
        "@bundle_scripts.transforms.datalist.image_datalist(@images))"
    )
    assert rewritten["network_def"]["_target_"] == "scripts.custom_networks.UNet2015"
    assert rewritten["validate#handlers#0#_target_"] == "scripts.transforms.AtomicCheckpointSaver"
    # MONAI's names, the Compose argument "transforms", references and plain strings are not the project's
    assert rewritten["preprocessing"]["transforms"][0]["_target_"] == "scripts.transforms.EnsureChannelsd"
    assert rewritten["preprocessing"]["transforms"][1]["_target_"] == "LoadImaged"
    assert rewritten["train_transforms"] == original["train_transforms"]
    assert rewritten["note"] == "transforms"
    assert rewritten["initialize"] == ["$@bundle_scripts", "$monai.utils.set_determinism(seed=0)"]
    assert pb.project_references(original) and not pb.project_references(rewritten)
    assert sorted(path for _, path in pb.scripts_references(rewritten)) == [
        "scripts.custom_networks.UNet2015",
        "scripts.custom_networks.unet2015_border",
        "scripts.transforms.AtomicCheckpointSaver",
        "scripts.transforms.EnsureChannelsd",
        "scripts.transforms.datalist.image_datalist",
        "scripts.transforms.datalist.validate_datalist",
    ]


def test_rewrite_config_refuses_a_project_import_outside_imports():
    with pytest.raises(pb.PackageError, match=r"configs/x\.json: id 'initialize#0'.*imports a repository package"):
        pb.rewrite_config({"initialize": ["$import transforms.volumes"]}, where="configs/x.json")


def test_docs_text_names_the_vendored_code():
    text = (
        "B=bundles/unet_em_segmentation\n`custom_networks.UNet2015` and `transforms.OverlapTileInferer` "
        "(see `transforms/elastic.py`), `monai.transforms.Rand2DElasticd`, `@base_transforms`, the transforms."
    )
    assert pb.package_docs_text(text, "unet_em_segmentation") == (
        "B=.\n`scripts.custom_networks.UNet2015` and `scripts.transforms.OverlapTileInferer` "
        "(see `scripts/transforms/elastic.py`), `monai.transforms.Rand2DElasticd`, `@base_transforms`, the transforms."
    )


def test_load_overrides(tmp_path):
    smoke = REPO_ROOT / "tests" / "bundle_smoke_overrides.json"
    assert pb.load_overrides(smoke, "unet_em_segmentation") == SMOKE_OVERRIDES["unet_em_segmentation"]
    assert pb.load_overrides('{"features": [4, 8]}', "any") == {"features": [4, 8]}
    assert pb.load_overrides({"epochs": 1}, "any") == {"epochs": 1}
    assert pb.load_overrides(None, "any") == {}
    with pytest.raises(pb.PackageError, match="no file"):
        pb.load_overrides(str(tmp_path / "missing.json"), "any")
    with pytest.raises(pb.PackageError, match="JSON object"):
        pb.load_overrides("[1, 2]", "any")


def test_large_files_round_trip(tmp_path):
    entries = [{"path": "models/model.pt", "url": "https://x/model.pt", "hash_val": "abc", "hash_type": "md5"}]
    path = tmp_path / "large_files.yml"
    path.write_text(pb.large_files_yml(entries))
    assert path.read_text().splitlines()[:2] == ["large_files:", '  - path: "models/model.pt"']
    assert pb.read_large_files(path) == entries
    path.write_text("files:\n")
    with pytest.raises(pb.PackageError, match="must start with 'large_files:'"):
        pb.read_large_files(path)


# ------------------------------------------------------------------------------------------- packaging


@pytest.mark.parametrize("bundle", BUNDLES)
def test_package_layout(packages, bundle):
    out, _ = packages
    package = out / bundle
    missing = [name for name in pb.REQUIRED_FILES if not (package / name).is_file()]
    assert not missing
    assert (package / "scripts" / "custom_networks" / "__init__.py").is_file()
    assert (package / "scripts" / "transforms" / "data" / "datalists.py").is_file()
    assert not (package / "configs" / "reproduce").exists()
    assert (package / "LICENSE").read_bytes() == (REPO_ROOT / "bundles" / bundle / "LICENSE").read_bytes()

    metadata = json.loads((package / "configs" / "metadata.json").read_text())
    jsonschema.validate(metadata, SCHEMA)
    source_metadata = json.loads((REPO_ROOT / "bundles" / bundle / "configs" / "metadata.json").read_text())
    assert metadata["version"] == source_metadata["version"] and metadata["version"] in metadata["changelog"]
    assert "medseg-bundles" not in metadata["required_packages_version"]
    assert "medseg-bundles" in source_metadata["required_packages_version"]

    # the shipped weights go into the package with the URL and md5 of the bundle's own large_files.yml (the U-Net
    # bundle's second model, for phc_cells.json, stays in the repository)
    source_entries = {e["path"]: e for e in pb.read_large_files(REPO_ROOT / "bundles" / bundle / "large_files.yml")}
    assert pb.read_large_files(package / "large_files.yml") == [source_entries["models/model.pt"]]
    assert (package / "models" / "model.pt").read_bytes() == (
        REPO_ROOT / "bundles" / bundle / "models" / "model.pt"
    ).read_bytes()
    readme = (package / "docs" / "README.md").read_text()
    headings = [line[3:] for line in readme.splitlines() if line.startswith("## ")]
    assert [h for h in headings if h in pb.README_SECTIONS] == list(pb.README_SECTIONS)
    data_license = (package / "docs" / "data_license.txt").read_text()
    assert "Data:" in data_license and metadata["data_source"] in data_license

    zip_path = out / f"{bundle}_v{metadata['version']}.zip"
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    assert {
        f"{bundle}/configs/inference.json",
        f"{bundle}/scripts/transforms/__init__.py",
        f"{bundle}/LICENSE",
    } <= names
    assert not [name for name in names if "__pycache__" in name]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_packaged_configs_use_only_the_vendored_code(packages, bundle):
    out, _ = packages
    source_configs = sorted((REPO_ROOT / "bundles" / bundle / "configs").glob("*.json"))
    packaged_configs = sorted((out / bundle / "configs").glob("*.json"))
    assert [p.name for p in packaged_configs] == [p.name for p in source_configs]
    for source, packaged in zip(source_configs, packaged_configs):
        if source.name == "metadata.json":
            continue
        config = json.loads(packaged.read_text())
        assert not pb.project_references(config), f"{packaged.name} still refers to the repository's packages"
        assert "'shared'" not in packaged.read_text()
        if "imports" in config:
            assert config["bundle_scripts"] == pb.SCRIPTS_EXPRESSION
        if "initialize" in config:
            assert config["initialize"][0] == "$@bundle_scripts"
    inference = json.loads((out / bundle / "configs" / "inference.json").read_text())
    assert inference["network_def"]["_target_"].startswith("scripts.custom_networks.")
    assert "$import custom_networks" not in inference["imports"]
    source_inference = json.loads((REPO_ROOT / "bundles" / bundle / "configs" / "inference.json").read_text())
    assert pb.project_references(source_inference), "the repository's config refers to its packages"


def test_monai_names_are_kept(packages):
    out, _ = packages
    train = (out / "unet_em_segmentation" / "configs" / "train.json").read_text()
    assert "monai.transforms.EnsureTyped" in train and "@base_transforms" in train
    assert "scripts.monai" not in train and "@bundle_scripts.monai" not in train


def test_repository_is_unchanged(packages):
    _, before = packages
    assert _tree_digest(*REPO_SOURCES) == before


@pytest.mark.parametrize("bundle", BUNDLES)
def test_readme_keeps_every_line_of_the_bundle_docs(packages, bundle):
    out, _ = packages
    source = pb.package_docs_text((REPO_ROOT / "bundles" / bundle / "docs" / "README.md").read_text(), bundle)
    packaged_lines = set((out / bundle / "docs" / "README.md").read_text().splitlines())
    # a repository section keeps its heading, under a zoo section of the same name ("Model overview") or below one
    packaged_headings = {line.lstrip("#").strip().lower() for line in packaged_lines if line.startswith("#")}
    in_code = False
    for line in source.splitlines():
        in_code = in_code != line.lstrip().startswith("```")
        if line.startswith("#") and not in_code:
            assert line.lstrip("#").strip().lower() in packaged_headings, f"heading {line!r} lost"
        elif line.strip():
            assert line in packaged_lines, f"line {line!r} of docs/README.md lost"


def test_vendored_code_passes_the_zoo_style_and_imports_only_listed_packages(packages):
    out, _ = packages
    package = out / "unet_em_segmentation"
    flake8 = subprocess.run([sys.executable, "-m", "flake8", "--version"], capture_output=True, text=True).stdout
    # the test extra installs the zoo's flake8 plugins: their codes (B, B9, C4, N) are checked too
    assert all(plugin.replace("flake8-", "") in flake8 for plugin in pb.FLAKE8_ZOO_PLUGINS), flake8
    assert pb.check_code_style(package) == []
    assert pb.check_vendored_code(package) == []
    assert pb.check_references(package) == []


# ------------------------------------------------------------------------------------------ broken packages


def test_missing_file_fails_the_cli(packages, tmp_path, capsys):
    package = _copy_package(packages, "unet_em_segmentation", tmp_path)
    (package / "LICENSE").unlink()
    assert pb.main(["check", str(package), "--workflows", "False"]) == 1
    message = capsys.readouterr().err
    assert "bundle 'unet_em_segmentation'" in message and "LICENSE: missing" in message


def test_invalid_metadata_fails(packages, tmp_path):
    package = _copy_package(packages, "attention_resunet_cell_segmentation", tmp_path)
    metadata_path = package / "configs" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    del metadata["network_data_format"]
    metadata["version"] = "9.9.9"
    metadata["required_packages_version"]["medseg-bundles"] = "0.1.0"
    metadata_path.write_text(json.dumps(metadata))
    with pytest.raises(pb.PackageError) as raised:
        pb.check(package, workflows=False)
    message = str(raised.value)
    assert "bundle 'attention_resunet_cell_segmentation'" in message
    assert "configs/metadata.json: (top level): 'network_data_format' is a required property" in message
    assert "version '9.9.9' is not in 'changelog'" in message
    assert "required_packages_version lists medseg-bundles" in message


def test_config_pointing_at_a_missing_class_fails(packages, tmp_path):
    package = _copy_package(packages, "unet_em_segmentation", tmp_path)
    inference_path = package / "configs" / "inference.json"
    inference = json.loads(inference_path.read_text())
    inference["network_def"]["_target_"] = "scripts.custom_networks.NoSuchNet"
    inference["datalist"] = "$@bundle_scripts.transforms.datalist.no_such_function(@input_images)"
    inference["inferer"]["_target_"] = "transforms.TestTimeAugmentationInferer"
    inference_path.write_text(json.dumps(inference))
    with pytest.raises(pb.PackageError) as raised:
        pb.check(package, workflows=False)
    message = str(raised.value)
    assert "configs/inference.json: id 'inferer#_target_' refers to the repository's packages" in message
    # the reference check runs once the configs are clean
    inference["inferer"]["_target_"] = "scripts.transforms.TestTimeAugmentationInferer"
    inference_path.write_text(json.dumps(inference))
    with pytest.raises(pb.PackageError) as raised:
        pb.check(package, workflows=False)
    message = str(raised.value)
    assert "configs/inference.json: id 'network_def#_target_': scripts.custom_networks.NoSuchNet" in message
    assert "scripts.custom_networks has no attribute 'NoSuchNet'" in message
    assert "id 'datalist': scripts.transforms.datalist.no_such_function does not exist" in message


def test_large_file_hash_mismatch_fails(packages, tmp_path):
    package = _copy_package(packages, "unet_em_segmentation", tmp_path)
    (package / "models" / "model.pt").write_bytes(b"weights")
    unhashed = [{"path": "models/model.pt", "url": "", "hash_val": "", "hash_type": "md5"}]
    (package / "large_files.yml").write_text(pb.large_files_yml(unhashed))
    assert pb.check_large_files(package) == ["large_files.yml: models/model.pt exists but has no hash_val"]
    entries = [{"path": "models/model.pt", "url": "", "hash_val": "0" * 32, "hash_type": "md5"}]
    (package / "large_files.yml").write_text(pb.large_files_yml(entries))
    assert pb.check_large_files(package) == [
        f"large_files.yml: models/model.pt: md5 {hashlib.md5(b'weights').hexdigest()} differs from hash_val {'0' * 32}"
    ]


def test_bad_arguments_fail_clearly(tmp_path):
    with pytest.raises(pb.PackageError, match="no bundle 'nope'"):
        pb.package("nope", out_dir=tmp_path)
    with pytest.raises(pb.PackageError, match="needs --weights"):
        pb.package("unet_em_segmentation", out_dir=tmp_path, weights="", export_torchscript=True)
    with pytest.raises(pb.PackageError, match="would overwrite the repository's bundles"):
        pb.package("unet_em_segmentation", out_dir=REPO_ROOT / "bundles")


# ------------------------------------------------------------------------------- full checks, real runs


@pytest.mark.slow
def test_package_with_weights_passes_every_check(tmp_path):
    """Trained-like weights of a narrow network: its width baked into the configs, TorchScript exported and
    compared, properties of both workflows, verify_net_in_out; all from the package folder alone."""
    require_dataset("isbi2012_em")
    bundle = "unet_em_segmentation"
    smoke = SMOKE_OVERRIDES[bundle]
    weights = tmp_path / "trained.pt"
    _random_weights(bundle, weights, smoke)
    zip_path = pb.package(
        bundle,
        out_dir=tmp_path / "dist",
        weights=weights,
        weights_url="https://example.org/unet/model.pt",
        defaults={"features": smoke["features"]},
        export_torchscript=True,
        overrides={key: value for key, value in smoke.items() if key != "features"},
    )
    package = tmp_path / "dist" / bundle
    assert json.loads((package / "configs" / "inference.json").read_text())["features"] == smoke["features"]
    assert json.loads((package / "configs" / "train.json").read_text())["features"] == smoke["features"]
    entries = {entry["path"]: entry for entry in pb.read_large_files(package / "large_files.yml")}
    assert entries["models/model.pt"]["hash_val"] == hashlib.md5(weights.read_bytes()).hexdigest()
    assert entries["models/model.pt"]["url"] == "https://example.org/unet/model.pt"
    assert entries["models/model.ts"]["url"] == "https://example.org/unet/model.ts"
    assert (
        entries["models/model.ts"]["hash_val"]
        == hashlib.md5((package / "models" / "model.ts").read_bytes()).hexdigest()
    )
    scripted = torch.jit.load(str(package / "models" / "model.ts"))
    assert tuple(scripted(torch.rand(1, 1, 512, 512)).shape) == (1, 2, 512, 512)
    with zipfile.ZipFile(zip_path) as archive:
        assert {f"{bundle}/models/model.pt", f"{bundle}/models/model.ts"} <= set(archive.namelist())


def _isolated_python(tmp_path: Path) -> Path:
    """A venv that sees this interpreter's installed packages but not this project: a plain path in a .pth file
    adds the site-packages folder without running the .pth files in it (an editable install of the project is one)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site_packages, "parent_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES)
def test_packaged_bundle_runs_without_the_project(packages, bundle, tmp_path):
    """The key test: `python -m monai.bundle run` of the package on a real image, in an environment with MONAI and
    the bundle's packages but not this project, from a working directory outside the repository."""
    dataset, image_name = INFERENCE_IMAGES[bundle]
    image_path = require_dataset(dataset) / image_name
    package = _copy_package(packages, bundle, tmp_path)
    # the package carries the bundle's shipped weights, built at the width inference.json names
    assert (package / "models" / "model.pt").is_file(), "the package must contain the shipped weights"
    python = _isolated_python(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "MEDSEG_DATA")}

    project_import = subprocess.run(
        [str(python), "-c", "import custom_networks"], cwd=work, env=env, capture_output=True, text=True
    )
    assert project_import.returncode != 0 and "No module named 'custom_networks'" in project_import.stderr
    monai_import = subprocess.run([str(python), "-c", "import monai, torch"], cwd=work, env=env)
    assert monai_import.returncode == 0

    output_dir = tmp_path / "predictions"
    command = [
        str(python), "-m", "monai.bundle", "run",
        "--config_file", str(package / "configs" / "inference.json"),
        "--bundle_root", str(package),
        "--input_images", str(image_path),
        "--output_dir", str(output_dir),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    stem = image_path.stem
    mask_path, probability_path = output_dir / f"{stem}_mask.png", output_dir / f"{stem}_prob.png"
    assert mask_path.is_file() and probability_path.is_file(), sorted(p.name for p in output_dir.rglob("*"))
    with Image.open(image_path) as image:
        image_size = image.size
    mask, probability = np.asarray(Image.open(mask_path)), np.asarray(Image.open(probability_path))
    assert Image.open(mask_path).size == image_size and Image.open(probability_path).size == image_size
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert probability.dtype == np.uint16 and probability.std() > 0, "the network's output should vary"
    # the mask is the thresholded probability (argmax / 0.5 of the saved foreground probability)
    agreement = np.mean((mask > 0) == (probability >= 32768))
    assert agreement > 0.99
