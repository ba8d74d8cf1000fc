"""scripts/export_bundle.py: TorchScript and ONNX exports of every bundle's network, matching the eager network.

Tolerance: every exported output within ``atol 1e-4 + rtol 1e-4 * (max|eager| + |eager|)`` of the eager network's
output (logits or probabilities, as each network returns them), checked by the script and again here, independently,
on another input.
"""

import json

import pytest
import torch
from medseg_tools import export as eb
from medseg_tools.bundles import bundle_names
from monai.bundle import ConfigParser
from monai.data import load_net_with_metadata

from tests.conftest import REPO_ROOT, require_module

onnx = require_module("onnx")
onnxruntime = require_module("onnxruntime")

BUNDLES = bundle_names()
SMOKE_OVERRIDES = json.loads((REPO_ROOT / "tests" / "bundle_smoke_overrides.json").read_text())
ATOL = RTOL = 1e-4
# LG-Net pools its attention input to a grid computed from the input size (adaptive pooling to ceil(side / factor)),
# which neither ONNX exporter can express for symbolic sizes: its ONNX model keeps fixed spatial axes (the inferers
# run it on fixed-size windows); the other networks get dynamic spatial axes
SPATIAL_AXES_DYNAMIC = {
    "unet_em_segmentation": True,
    "attention_resunet_cell_segmentation": True,
    "mcsa_unet_nuclei_segmentation": True,
    "lgnet_covid_ct_segmentation": False,
}
# LG-Net's pixel-correlation attention costs O((HW)^2): its test input is a quarter of the metadata's 512 x 512
TEST_INPUT_SHAPES = {"lgnet_covid_ct_segmentation": [1, 1, 256, 256]}


def _parser(bundle: str, features: list) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(REPO_ROOT / "bundles" / bundle / "configs" / "inference.json"))
    parser.read_meta(str(REPO_ROOT / "bundles" / bundle / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(REPO_ROOT / "bundles" / bundle), "features": features})
    return parser


def _trained_like_network(bundle: str, features: list, path) -> torch.nn.Module:
    """The bundle's eager network with seeded random weights, saved as a plain state_dict at ``path``."""
    torch.manual_seed(7)
    network = _parser(bundle, features).get_parsed_content("network_def").eval()
    torch.save(network.state_dict(), path)
    return network


def _onnx_dims(path, which: str) -> list:
    graph = onnx.load(str(path)).graph
    value = (graph.input if which == "input" else graph.output)[0]
    return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_exports_of_every_bundle_match_the_eager_network(bundle, tmp_path):
    features = SMOKE_OVERRIDES[bundle]["features"]
    network = _trained_like_network(bundle, features, tmp_path / "model.pt")
    results = eb.export_bundle(
        bundle,
        "both",
        ckpt=tmp_path / "model.pt",
        out_dir=tmp_path / "exports",
        defaults={"features": features},
        input_shape=TEST_INPUT_SHAPES.get(bundle),
        exporter="legacy",  # seconds per network; the dynamo exporter is checked below on one bundle
    )
    assert [result.format for result in results] == ["torchscript", "onnx"]
    scripted_result, onnx_result = results
    assert scripted_result.path == tmp_path / "exports" / bundle / "model.ts"
    assert onnx_result.path == tmp_path / "exports" / bundle / "model.onnx"

    data_format = json.loads((REPO_ROOT / "bundles" / bundle / "configs" / "metadata.json").read_text())
    data_format = data_format["network_data_format"]
    data = eb.example_input(data_format, TEST_INPUT_SHAPES.get(bundle), seed=123)
    assert scripted_result.input_shape == onnx_result.input_shape == tuple(data.shape)
    # the files hold the given weights, not the script's random ones: compare on an input the script never saw
    with torch.no_grad():
        eager = network(data)
    # onnxruntime's InstanceNormalization sums the 512x512 maps in another order than torch: a few logits (of up to
    # ~8) differ by ~2e-4, so the absolute part of the tolerance scales with the output's range
    bound = ATOL + RTOL * float(eager.abs().max())
    assert 0 <= scripted_result.max_abs_difference <= bound and 0 <= onnx_result.max_abs_difference <= bound
    scripted, metadata, extra = load_net_with_metadata(str(scripted_result.path), more_extra_files=["inference.json"])
    assert metadata["network_data_format"] == data_format  # ckpt_export stores the metadata and the config
    assert json.loads(extra["inference.json"])["network_def"]["_target_"].startswith("custom_networks.")
    with torch.no_grad():
        torch.testing.assert_close(scripted(data), eager, rtol=RTOL, atol=ATOL)
    session = onnxruntime.InferenceSession(str(onnx_result.path), providers=["CPUExecutionProvider"])
    input_name, output_name = next(iter(data_format["inputs"])), next(iter(data_format["outputs"]))
    assert [item.name for item in session.get_inputs()] == [input_name]
    assert [item.name for item in session.get_outputs()] == [output_name]
    onnx_output = torch.from_numpy(session.run(None, {input_name: data.numpy()})[0])
    torch.testing.assert_close(onnx_output, eager, rtol=RTOL, atol=bound)

    # the ONNX input's axes are those reported, and the script compared a second input that exercises them
    channels, spatial = data.shape[1], tuple(data.shape[2:])
    if SPATIAL_AXES_DYNAMIC[bundle]:
        assert onnx_result.dynamic_axes == {0: "batch", 2: "height", 3: "width"}
        assert _onnx_dims(onnx_result.path, "input") == ["batch", channels, "height", "width"]
        other = torch.rand(2, channels, spatial[0] + 64, spatial[1])
        with torch.no_grad():
            expected = network(other)
            torch.testing.assert_close(
                torch.from_numpy(session.run(None, {input_name: other.numpy()})[0]),
                expected,
                rtol=RTOL,
                atol=ATOL + RTOL * float(expected.abs().max()),
            )
    else:
        assert onnx_result.dynamic_axes == {0: "batch"}
        assert _onnx_dims(onnx_result.path, "input") == ["batch", channels, *spatial]
        other = torch.rand(2, channels, *spatial)
    assert onnx_result.compared_shapes == [tuple(data.shape), tuple(other.shape)]


def test_dynamo_exporter_and_a_training_checkpoint(tmp_path):
    """torch's default ONNX exporter (torch.export) on the smallest bundle network, weights from the ``model`` entry
    of a training checkpoint; the example input given as ``input_shape``."""
    bundle = "mcsa_unet_nuclei_segmentation"
    features = SMOKE_OVERRIDES[bundle]["features"]
    network = _trained_like_network(bundle, features, tmp_path / "weights.pt")
    torch.save({"model": network.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pt")
    (result,) = eb.export_bundle(
        bundle,
        "onnx",
        ckpt=tmp_path / "checkpoint.pt",
        key_in_ckpt="model",
        out_dir=tmp_path,
        defaults={"features": features},
        input_shape=[1, 3, 64, 64],
        exporter="dynamo",
        dynamic=True,
    )
    assert result.exporter == "dynamo" and result.dynamic_axes == {0: "batch", 2: "height", 3: "width"}
    assert result.compared_shapes == [(1, 3, 64, 64), (2, 3, 128, 64)] and result.max_abs_difference <= ATOL
    assert _onnx_dims(result.path, "input") == ["batch", 3, "height", "width"]
    data = torch.rand(1, 3, 96, 160)
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        torch.testing.assert_close(
            torch.from_numpy(session.run(None, {"image": data.numpy()})[0]), network(data), rtol=RTOL, atol=ATOL
        )


def test_summary_line_names_the_file_the_difference_and_the_axes(tmp_path):
    result = eb.ExportResult("b", "onnx", tmp_path / "model.onnx", (1, 1, 8, 8), 2.5e-7, {0: "batch"}, "legacy")
    result.compared_shapes = [(1, 1, 8, 8), (2, 1, 8, 8)]
    line = result.summary()
    assert line.startswith(f"b onnx: {tmp_path / 'model.onnx'} max_abs_difference=2.5e-07 (1x1x8x8, 2x1x8x8)")
    assert line.endswith("exporter=legacy dynamic_axes: batch")


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"bundle": "no_such_bundle"}, "unknown bundle: no bundle at 'no_such_bundle'"),
        ({"format": "tflite"}, "unknown format ['tflite']; use one of ['torchscript', 'onnx', 'both']"),
        ({"exporter": "jit"}, "unknown ONNX exporter 'jit'"),
        ({"dynamic": "sometimes"}, "--dynamic must be one of"),
        ({"atol": -1.0}, "tolerances must be >= 0"),
        ({"input_shape": [1, 3, 64, 64]}, "needs positive sizes and 1 channel(s)"),
        ({"input_shape": [1, 1, 64]}, "must be 4 ints [N, C, *spatial]"),
        ({"defaults": {"no_such_id": 1}}, "--defaults ['no_such_id'] are not ids of any config of the bundle"),
        ({"ckpt": "missing.pt"}, "checkpoint missing.pt does not exist"),
    ],
)
def test_bad_requests_fail_with_a_clear_message(arguments, message, tmp_path):
    request = {"bundle": "unet_em_segmentation", "out_dir": tmp_path, **arguments}
    with pytest.raises(eb.ExportError) as error:
        eb.export_bundle(**request)
    assert message in str(error.value)
    assert not list(tmp_path.rglob("model.*"))


def test_checkpoints_that_do_not_fit_fail_with_a_clear_message(tmp_path):
    bundle = "unet_em_segmentation"
    _trained_like_network(bundle, [2, 4, 8, 16, 32], tmp_path / "narrow.pt")
    with pytest.raises(eb.ExportError, match=r"narrow.pt does not fit network_def .* --defaults"):
        eb.export_bundle(bundle, ckpt=tmp_path / "narrow.pt", out_dir=tmp_path, defaults={"features": [4] * 5})
    state = torch.load(tmp_path / "narrow.pt", weights_only=True)
    torch.save({"model": state, "optimizer": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(eb.ExportError, match="is a training checkpoint .* pass --key_in_ckpt model"):
        eb.export_bundle(bundle, ckpt=tmp_path / "checkpoint.pt", out_dir=tmp_path)
    with pytest.raises(eb.ExportError, match=r"has no entry 'weights' \(it has \['model', 'optimizer'\]\)"):
        eb.export_bundle(bundle, ckpt=tmp_path / "checkpoint.pt", key_in_ckpt="weights", out_dir=tmp_path)


class ScriptedOutputDiffers(torch.nn.Module):
    """A network whose TorchScript differs from its eager self: a broken export, to see the check fail."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self.conv(x) + 1.0
        return self.conv(x)


class OnnxOutputDiffers(ScriptedOutputDiffers):
    """A network whose ONNX graph differs from its eager self."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return self.conv(x) * 2.0
        return self.conv(x)


@pytest.mark.parametrize(
    "export_format, network",
    [("torchscript", "ScriptedOutputDiffers"), ("onnx", "OnnxOutputDiffers")],
)
def test_cli_fails_loudly_above_the_tolerance(export_format, network, tmp_path, capsys):
    broken = {"network_def": {"_target_": f"{__name__}.{network}"}}
    command = ["export", "unet_em_segmentation", "--format", export_format, "--defaults", json.dumps(broken)]
    command += ["--input_shape", "[1,1,32,32]", "--exporter", "legacy", "--out_dir", str(tmp_path)]
    assert eb.main(command) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: bundle 'unet_em_segmentation', format {export_format}")
    assert "output differs from the eager network's: max abs difference" in error
    assert "(atol 0.0001, rtol 0.0001)" in error


def test_cli_prints_one_line_per_export(tmp_path, capsys):
    features = json.dumps({"features": SMOKE_OVERRIDES["unet_em_segmentation"]["features"]})
    command = ["export", "unet_em_segmentation", "--format", "torchscript", "--defaults", features]
    assert eb.main(command + ["--out_dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = f"unet_em_segmentation torchscript: {tmp_path / 'unet_em_segmentation' / 'model.ts'} max_abs_difference="
    assert len(lines) == 1 and lines[0].startswith(expected) and lines[0].endswith("(1x1x512x512)")
    assert eb.main(["export", "unet_em_segmentation", "--format", "tflite"]) == 1
    assert "unknown format ['tflite']" in capsys.readouterr().err
