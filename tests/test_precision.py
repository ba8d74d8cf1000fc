"""The precision helper: which path it picks, and that the wrapped inferer runs the network in it and returns fp32."""

import logging

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.inferers import SimpleInferer

import transforms
from transforms.inferers import precision as precision_module


def test_cpu_with_bf16_units_gets_bf16(monkeypatch, caplog):
    monkeypatch.setattr(precision_module, "cpu_bf16_units", lambda: "AMX-BF16")
    with caplog.at_level(logging.INFO, logger=precision_module.__name__):
        chosen = transforms.select_precision("cpu")
    assert chosen.dtype == torch.bfloat16 and chosen.name == "bf16" and not chosen.engine_amp
    assert "AMX-BF16" in caplog.text and "amp to false" in caplog.text


def test_cpu_without_bf16_units_stays_fp32(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_bf16_units", lambda: None)
    chosen = transforms.select_precision(torch.device("cpu"), True)
    assert chosen.dtype is None and chosen.name == "fp32" and "no bf16" in chosen.reason


@pytest.mark.parametrize("amp", [False, "false", "fp32"])
def test_amp_off_forces_fp32(amp):
    assert transforms.select_precision("cpu", amp).dtype is None


def test_cuda_keeps_fp16_amp_with_grad_scaler():
    chosen = transforms.select_precision("cuda:0", True, log=False)
    assert chosen.dtype == torch.float16 and chosen.engine_amp
    assert not transforms.select_precision("cuda", "bf16", log=False).engine_amp


def test_bad_amp_values_are_named():
    with pytest.raises(ValueError, match="amp must be"):
        transforms.select_precision("cpu", "half")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        transforms.select_precision("cpu", "fp16")


def test_cpu_bf16_units_matches_the_cpu_flags():
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    units = transforms.inferers.cpu_bf16_units()
    if "avx512_bf16" in flags and torch.backends.mkldnn.is_available():
        assert units in ("AMX-BF16", "AVX512-BF16")
    elif "avx512_bf16" not in flags and "amx_bf16" not in flags:
        assert units is None


class _Recorder(torch.nn.Module):
    """A convolution that records the dtype it computed in, and returns a tuple like deep supervision does."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.seen = []

    def forward(self, x):
        y = self.conv(x)
        self.seen.append(y.dtype)
        return y, {"aux": y * 2}


def test_precision_inferer_runs_the_network_in_bf16_and_returns_fp32():
    net = _Recorder()
    inferer = transforms.PrecisionInferer(SimpleInferer(), transforms.Precision("cpu", torch.bfloat16))
    out, extra = inferer(torch.randn(1, 1, 8, 8), net)
    assert net.seen == [torch.bfloat16]
    assert out.dtype == torch.float32 and extra["aux"].dtype == torch.float32
    out32, _ = transforms.PrecisionInferer(SimpleInferer(), transforms.Precision("cpu", None))(
        torch.ones(1, 1, 8, 8), net
    )
    assert net.seen[-1] == torch.float32 and out32.dtype == torch.float32


def test_precision_inferer_forwards_settings_of_the_wrapped_inferer():
    wrapped = transforms.PrecisionInferer(transforms.OverlapTileInferer(roi_size=16), None)
    assert wrapped.roi_size == transforms.OverlapTileInferer(roi_size=16).roi_size
    with pytest.raises(AttributeError):
        wrapped.no_such_setting  # noqa: B018
    with pytest.raises(TypeError, match="callable"):
        transforms.PrecisionInferer(3)


def test_trainer_step_in_bf16_keeps_loss_and_weights_fp32():
    """MONAI's trainer with amp=False (no CUDA GradScaler) and the wrapped inferer: the network computes in bf16,
    the loss in fp32, the weights stay fp32 and move."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))
    before = [p.detach().clone() for p in net.parameters()]
    losses = []

    def loss_function(pred, target):
        assert pred.dtype == torch.float32
        loss = torch.nn.functional.binary_cross_entropy_with_logits(pred, target)
        losses.append(loss.dtype)
        return loss

    batch = [{"image": torch.randn(2, 1, 16, 16), "label": (torch.rand(2, 1, 16, 16) > 0.5).float()}]
    precision = transforms.select_precision("cpu", True, log=False)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=batch,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=loss_function,
        inferer=transforms.PrecisionInferer(SimpleInferer(), precision),
        amp=precision.engine_amp,
    )
    trainer.run()
    assert losses == [torch.float32]
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
