"""scripts/monailabel_app.py and the bundles' MONAI Label side: label maps, 2D slices and CT volumes through the
LG-Net config, the demo studies, and (marker ``monailabel``) the real server serving every bundle.

The integration tests build ``.venv-monailabel`` when it is missing (several minutes), package the four bundles
(about a minute) and start one server per bundle on 127.0.0.1: ``python -m pytest tests/test_monailabel.py -m
monailabel``; ``-m "not monailabel"`` keeps only the fast tests.
"""

import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from medseg_tools import monailabel as ml
from medseg_tools.scoring import segmentation_scores
from monai.bundle import ConfigParser
from PIL import Image

from tests.conftest import REPO_ROOT, require_dataset

BUNDLES = list(ml.BUNDLE_DATASETS)
SMOKE_FILE = REPO_ROOT / "tests" / "bundle_smoke_overrides.json"
SMOKE = json.loads(SMOKE_FILE.read_text())
# mask value of each bundle's foreground, by name, as MONAI Label must report it
EXPECTED_LABELS = {
    "unet_em_segmentation": {"cell": 1},
    "attention_resunet_cell_segmentation": {"cell": 1},
    "mcsa_unet_nuclei_segmentation": {"nucleus": 1},
    "lgnet_covid_ct_segmentation": {"infection": 1},
}
LGNET = "lgnet_covid_ct_segmentation"


def metadata_of(bundle: str) -> dict:
    return json.loads((REPO_ROOT / "bundles" / bundle / "configs" / "metadata.json").read_text())


def inference_parser(bundle: str, bundle_root: Path, smoke: bool = True, **overrides) -> ConfigParser:
    """A bundle's inference.json on the CPU, with the smoke settings (small network) or its own (the shipped
    weights' width)."""
    parser = ConfigParser()
    parser.read_config(str(bundle_root / "configs" / "inference.json"))
    config_values = {key: value for key, value in SMOKE[bundle].items() if key in parser} if smoke else {}
    parser.update({"bundle_root": str(bundle_root), **config_values, "device": "$torch.device('cpu')", **overrides})
    return parser


def run_inference(parser: ConfigParser, image: Path, network: torch.nn.Module) -> dict:
    """The bundle's preprocessing, inferer and postprocessing on one image, as MONAI Label chains them."""
    data = parser.get_parsed_content("preprocessing")({"image": str(image)})
    with torch.no_grad():
        data["pred"] = parser.get_parsed_content("inferer")(data["image"][None], network)[0]
    return parser.get_parsed_content("postprocessing")(data)


class ShiftedIntensity(torch.nn.Module):
    """Logit = input - 0.5: the thresholded sigmoid of a [0, 1] image is the image above 0.5, a result known in
    advance at every pixel (a random network's output is close to constant)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - 0.5


# ------------------------------------------------------------------------------------------------- fast tests


@pytest.mark.parametrize("bundle", BUNDLES)
def test_label_names_are_the_mask_values_monailabel_reports(bundle):
    adapted = ml.monailabel_metadata(metadata_of(bundle))
    assert ml.label_map(adapted) == EXPECTED_LABELS[bundle]
    # only the first output's channel_def changes
    original = metadata_of(bundle)
    first = next(iter(original["network_data_format"]["outputs"]))
    adapted["network_data_format"]["outputs"][first].pop("channel_def")
    original["network_data_format"]["outputs"][first].pop("channel_def")
    assert adapted == original


def test_single_sigmoid_channel_gets_background_at_zero_and_bad_metadata_is_refused():
    metadata = {"network_data_format": {"outputs": {"pred": {"num_channels": 1, "channel_def": {"0": "Tumour"}}}}}
    assert ml.monailabel_metadata(metadata)["network_data_format"]["outputs"]["pred"]["channel_def"] == {
        "0": "background",
        "1": "Tumour",
    }
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "Tumour"}, "input unchanged"
    assert ml.label_map(ml.monailabel_metadata(metadata)) == {"tumour": 1}
    with pytest.raises(ValueError, match="no network_data_format outputs"):
        ml.monailabel_metadata({"network_data_format": {"inputs": {}}})


@pytest.mark.parametrize("bundle", BUNDLES)
def test_inference_ends_with_the_label_map_monailabel_writes(bundle, tmp_path):
    """The last postprocessing step, after every saver, turns the (1, X, Y) class ids into an (X, Y) uint8 map."""
    parser = inference_parser(
        bundle, REPO_ROOT / "bundles" / bundle, output_dir=str(tmp_path), input_images=str(tmp_path)
    )
    steps = parser.get_parsed_content("postprocessing").transforms
    label_map = parser.get_parsed_content("label_map")
    assert steps[-1] is label_map
    assert not any(type(step).__name__ == "SaveImaged" for step in label_map.transforms)
    pred = torch.zeros(1, 5, 3)
    pred[0, 1, 2] = 1.0
    out = label_map({"pred": pred})["pred"]
    assert out.shape == (5, 3) and out.dtype == torch.uint8 and out.tolist()[1][2] == 1 and int(out.sum()) == 1


def test_lgnet_inference_keeps_2d_slices_and_segments_ct_volumes_slice_by_slice(tmp_path):
    covid = require_dataset("covid_medseg")
    series = require_dataset("volumes") / "ct_3slice_dicom" / "ct-3slice"
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    volume_path = ml.write_nifti_volume(series, inputs / "ct.nii.gz")
    slice_path = Path(shutil.copy(covid / "Imgs" / "0.jpg", inputs / "0.jpg"))
    # the network input at 256 x 256: little detail lost in the down- and up-sizing
    parser = inference_parser(
        LGNET,
        REPO_ROOT / "bundles" / LGNET,
        output_dir=str(tmp_path / "out"),
        input_images=str(inputs),
        spatial_size=[256, 256],
    )
    network = ShiftedIntensity()

    # a 2D JPEG slice (273 x 369): the mask is the [0, 255] intensity above 127.5, at the slice's own size
    result = run_inference(parser, slice_path, network)
    pixels = np.asarray(Image.open(slice_path), dtype=np.float64).T  # MONAI's PIL reader indexes (x, y)
    mask = result["pred"].numpy()
    assert mask.shape == pixels.shape == (273, 369) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}
    clear = np.abs(pixels - 127.5) > 32  # away from the threshold, where resampling cannot flip the answer
    agreement = np.mean(mask[clear] == (pixels[clear] > 127.5))
    assert agreement > 0.99, f"{agreement}: resize, pad and their inversion keep the pixels in place"
    saved = np.asarray(Image.open(tmp_path / "out" / "0_mask.png")).T
    assert np.array_equal(saved, mask * 255), "the bundle's own mask file is unchanged by the label map step"

    # a CT volume (512 x 512 x 3, HU): windowed to [-1000, 0] HU, so the mask is HU above -500, in the file's grid
    result = run_inference(parser, volume_path, network)
    hounsfield = np.asarray(nib.load(str(volume_path)).dataobj, dtype=np.float64)
    mask = result["pred"].numpy()
    assert mask.shape == hounsfield.shape == (512, 512, 3) and mask.dtype == np.uint8
    clear = np.abs(hounsfield + 500) > 125
    agreement = [np.mean(mask[..., k][clear[..., k]] == (hounsfield[..., k][clear[..., k]] > -500)) for k in range(3)]
    assert min(agreement) > 0.99, f"per-slice agreement {agreement}: orientation and slice order restored"
    assert 0.1 < mask.mean() < 0.9, "both air and tissue are present"


def test_lgnet_inference_names_unsupported_input_dimensions(tmp_path):
    parser = inference_parser(LGNET, REPO_ROOT / "bundles" / LGNET, output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"has 4 spatial dimension\(s\); this pipeline handles \[2, 3\]"):
        parser.get_parsed_content("inferer")(torch.zeros(1, 1, 2, 2, 2, 2), ShiftedIntensity())


def test_demo_studies_pair_real_images_with_final_labels(tmp_path):
    require_dataset("isbi2012_em")
    require_dataset("covid_medseg")
    require_dataset("volumes")
    studies = Path(ml.demo_studies(tmp_path / "studies", "unet_em_segmentation", images=2, crop=128))
    images = sorted(path.name for path in studies.iterdir() if path.is_file())
    assert images == ["unet_em_segmentation_0.png", "unet_em_segmentation_1.png"]
    for name in images:
        image, label = Image.open(studies / name), Image.open(studies / "labels" / "final" / name)
        assert image.size == label.size == (128, 128)
        assert set(np.unique(np.asarray(label))) <= {0, 255}, "the dataset's own label values"
    # several bundles: no labels (MONAI Label would train each model on the others' images too)
    both = Path(ml.demo_studies(tmp_path / "both", "unet_em_segmentation,lgnet_covid_ct_segmentation", images=1))
    assert not any((both / "labels" / "final").iterdir())
    volume = nib.load(str(both / "lgnet_covid_ct_segmentation_ct_volume.nii.gz"))
    assert volume.shape == (512, 512, 3) and float(np.min(volume.dataobj)) < -500, "the CT series, in HU"


def test_bad_arguments_are_refused_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="unknown bundle"):
        ml.bundle_names("unet_em_segmentation,no_such_bundle")
    with pytest.raises(ValueError, match="JSON object"):
        ml.app._weights_of(str(tmp_path / "model.pt"), ["unet_em_segmentation", LGNET])
    with pytest.raises(ValueError, match="do not exist"):
        ml.app._weights_of({LGNET: str(tmp_path / "missing.pt")}, [LGNET])
    with pytest.raises(ValueError, match="images must be at least 1"):
        ml.demo_studies(tmp_path / "studies", LGNET, images=0)
    with pytest.raises(ValueError, match="crop must be a side in pixels, or 0 for whole images; got -5"):
        ml.demo_studies(tmp_path / "studies", LGNET, crop=-5)
    (tmp_path / "mine").mkdir()
    venv = tmp_path / "venv"
    sample_app = venv / "monailabel" / "sample-apps" / "monaibundle"
    sample_app.mkdir(parents=True)
    (sample_app / "main.py").write_text("")
    with pytest.raises(ValueError, match="was not made by monailabel_app.py"):
        ml.assemble_app(tmp_path / "mine", LGNET, venv=venv)
    with pytest.raises(FileNotFoundError, match="no monaibundle sample app"):
        ml.assemble_app(tmp_path / "app", LGNET, venv=tmp_path / "no_venv")


def test_server_command_serves_local_bundles_on_loopback_only():
    command = ml.server_command("/env/bin/python", "/app", "/studies", ["a", "b"], port=8123)
    assert command[:4] == ["/env/bin/python", "-m", "monailabel.main", "start_server"]
    pairs = {command[i + 1]: command[i + 2] for i, word in enumerate(command) if word == "--conf"}
    assert pairs == {"models": "a,b", "zoo_source": "github", "sam2": "false", "preload": "false"}
    assert command[command.index("--host") + 1] == "127.0.0.1" and command[command.index("--port") + 1] == "8123"


def test_a_failing_setup_command_reports_its_output():
    command = [sys.executable, "-c", "import sys; print('ERROR: No matching distribution found for x'); sys.exit(1)"]
    with pytest.raises(ml.MonaiLabelSetupError) as raised:
        ml.environment._run(command, "pip install x")
    message = str(raised.value)
    assert message.startswith("pip install x failed (exit status 1)")
    assert "No matching distribution found for x" in message


def test_environment_problems_name_what_is_wrong():
    working = {"monailabel": "0.8.5", "monai": "1.6.1", "torch": "2.13.0+cpu", "numpy": "1.26.4", "pydicom": "2.4.5"}
    assert ml.environment_problems({**working, "torchvision": True}) == []
    problems = ml.environment_problems(
        {**working, "pydicom": "3.0.1", "torchvision": False, "torchvision_error": "RuntimeError: no nms"}
    )
    assert problems == [
        "pydicom is 3.0.1: MONAI Label 0.8.5 needs pydicom < 3",
        "torchvision does not import: RuntimeError: no nms",
    ]


# --------------------------------------------------------------------------------- the real server (slow)


@pytest.fixture(scope="module")
def monailabel_python():
    """The MONAI Label environment, built when missing; a pip failure fails the tests with pip's output."""
    return ml.setup_environment()


@pytest.fixture(scope="module")
def app_dir(monailabel_python, tmp_path_factory):
    """Every bundle packaged into one monaibundle app with the weights it ships (the app's default)."""
    return Path(ml.assemble_app(tmp_path_factory.mktemp("monailabel") / "app", "all"))


@pytest.fixture(scope="module", params=BUNDLES)
def served(request, monailabel_python, app_dir, tmp_path_factory):
    """One server per bundle, with a studies folder of two real images (and final labels) of its dataset."""
    bundle = request.param
    require_dataset(ml.BUNDLE_DATASETS[bundle])
    if bundle == LGNET:
        require_dataset("volumes")
    work = tmp_path_factory.mktemp(bundle)
    studies = Path(ml.demo_studies(work / "studies", bundle, images=2, crop=256))
    server = ml.MonaiLabelServer(monailabel_python, app_dir, studies, [bundle], log_path=work / "server.log")
    with server:
        yield bundle, server, studies, work


def read_label(content: bytes, suffix: str, path: Path) -> np.ndarray:
    """A label file MONAI Label returned, indexed as MONAI indexes the image: (x, y) or (x, y, z)."""
    path.write_bytes(content)
    if suffix == ".nii.gz":
        return np.asarray(nib.load(str(path)).dataobj)
    return np.asarray(Image.open(path)).T


def class_mean_dice(mask: np.ndarray, truth: np.ndarray) -> float:
    """Mean of the foreground's and the background's Dice: at most 0.5 for an all-foreground or all-background
    mask, so a floor above 0.5 needs a model that segments."""
    return segmentation_scores(mask, truth)["mean_dice"]


# class-mean Dice of the shipped model's labels against the ground truth, averaged over the labelled studies (the
# first two 256x256 crops of ISBI, phase-contrast and H&E images; two whole CT slices); an untrained or trivial
# model stays at or below 0.5. Measured with the shipped 0.4.0 weights: 0.875, 0.924, 0.678, 0.897.
SERVED_DICE_FLOOR = {
    "unet_em_segmentation": 0.8,
    "attention_resunet_cell_segmentation": 0.85,
    "mcsa_unet_nuclei_segmentation": 0.6,
    "lgnet_covid_ct_segmentation": 0.8,
}


def study_truth(studies: Path, image_id: str) -> np.ndarray | None:
    """The final label of a study as a boolean foreground, indexed (x, y) like MONAI's image; None if unlabelled."""
    path = studies / "labels" / "final" / f"{image_id}.png"
    if not path.is_file():
        return None
    truth = np.asarray(Image.open(path))
    return (truth[..., 0] if truth.ndim == 3 else truth).T > 0


def check_inference(
    bundle: str,
    server: ml.MonaiLabelServer,
    studies: Path,
    app_dir: Path,
    work: Path,
    truth_floor: float | None = None,
) -> None:
    """Every image of the studies through /infer/: the label equals the bundle's own pipeline run here with the
    served weights, at the image's size, with values among the label map's; with ``truth_floor``, its
    class-mean Dice against the studies' ground truth, averaged over the labelled ones, reaches the floor."""
    bundle_root = app_dir / "model" / bundle
    network = inference_parser(bundle, REPO_ROOT / "bundles" / bundle, smoke=False).get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle_root / "models" / "model.pt", weights_only=True))
    network.eval()
    # the bundle's own savers write below output_dir (input_images: where the studies are, so nothing lands there)
    parser = inference_parser(
        bundle, REPO_ROOT / "bundles" / bundle, smoke=False, output_dir=str(work / "local"), input_images=str(studies)
    )
    # the studies' images (MONAI Label adds its datastore's .json and .lock files)
    images = sorted(path for path in studies.glob("*_*.*") if path.name.endswith((".png", ".tif", ".jpg", ".nii.gz")))
    scores = {}
    assert len(images) == (3 if bundle == LGNET else 2)
    for image in images:
        suffix = ".nii.gz" if image.name.endswith(".nii.gz") else image.suffix
        image_id = image.name[: -len(suffix)]
        # JPEG would store the label lossily: a PNG label is asked for
        params = {"result_extension": ".png"} if suffix == ".jpg" else {}
        content, result = server.infer(bundle, image_id, params)
        assert result["label_names"] == EXPECTED_LABELS[bundle]
        label = read_label(content, params.get("result_extension", suffix), work / f"label{suffix}")
        expected = run_inference(parser, image, network)["pred"].numpy()
        assert label.shape == expected.shape, f"{image.name}: label {label.shape}, image {expected.shape}"
        assert set(np.unique(label)) <= {0, *EXPECTED_LABELS[bundle].values()}
        assert np.array_equal(label, expected), f"{image.name}: MONAI Label's label differs from the bundle's"
        truth = study_truth(studies, image_id)
        if truth is not None:
            scores[image.name] = class_mean_dice(label > 0, truth)
    if truth_floor is not None:
        assert scores and np.mean(list(scores.values())) >= truth_floor, f"class-mean Dice per study: {scores}"


@pytest.mark.monailabel
@pytest.mark.timeout(3600)
def test_server_lists_the_bundle_and_serves_inference(served, app_dir):
    bundle, server, studies, work = served
    info = server.info()
    model = info["models"][bundle]
    assert model["labels"] == EXPECTED_LABELS[bundle] and model["dimension"] == 2 and model["type"] == "segmentation"
    assert bundle in info["trainers"]
    check_inference(bundle, server, studies, app_dir, work, truth_floor=SERVED_DICE_FLOOR[bundle])


@pytest.mark.monailabel
@pytest.mark.timeout(3600)
def test_server_trains_one_epoch_and_serves_the_new_weights(served, app_dir):
    bundle, server, studies, work = served
    weights = app_dir / "model" / bundle / "models" / "model.pt"
    before = ml.md5(weights)
    # two labelled images: one trains, one validates
    server.train(bundle, {"max_epochs": 1, "val_split": 0.5, "device": "cpu", "multi_gpu": False})
    assert ml.md5(weights) != before, f"training did not save models/model.pt\n{server.log_tail()}"
    assert "Epoch[1] Complete" in server.log_path.read_text(errors="replace")
    check_inference(bundle, server, studies, app_dir, work)
