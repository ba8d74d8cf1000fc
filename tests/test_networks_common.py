"""Contract shared by every network of ``custom_networks``: shapes, TorchScript, gradients and input errors.

Each network's own test file checks its paper; this file checks, with one tiny configuration per network, what the
bundles rely on for all of them alike.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

import custom_networks
from custom_networks import AttentionResUNet, BCDUNet, CENet, FCN8s, MCSAUNet, R2UNet, ResUNet, SegNet, UNet2015
from custom_networks import LGNet, MultiResUNet, ResUNetPlusPlus, U2Net, UNet3Plus

# torch >= 2.10 deprecates TorchScript; the bundles still export scripted models, so scripting is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")

VALID_2D = (16, 24)
VALID_3D = (8, 8, 16)


@dataclass(frozen=True)
class Case:
    """One tiny network; every spatial size must be a multiple of ``size_divisor`` (``2**number_of_poolings``)."""

    network: type
    kwargs: dict
    in_channels: int = 1
    out_channels: int = 2
    size_divisor: int = 4

    @property
    def invalid_2d(self) -> tuple[int, int]:
        """A size whose first axis lies halfway between the valid sizes 16 and ``16 + size_divisor``."""
        return (VALID_2D[0] + self.size_divisor // 2, VALID_2D[1])

    def size_error(self, name: str) -> str:
        """Regex of the message for :attr:`invalid_2d`: axis, size, rule and the valid sizes on either side."""
        bad, nearby = self.invalid_2d[0], f"Valid sizes nearby: 16 or {16 + self.size_divisor}"
        if self.network is UNet2015:
            return rf"spatial size {bad} \(spatial axis 0\) is not a valid UNet2015 tile.*{nearby}"
        exponent = self.size_divisor.bit_length() - 1
        rule = rf"must be a positive multiple of {self.size_divisor} = 2 \*\* {exponent}"
        return rf"{name}: spatial size {bad} \(spatial axis 0\) {rule} .*{nearby}.*DivisiblePad"


CASES = {
    "UNet2015": Case(UNet2015, dict(features=(2, 4, 8), padding="same")),  # "same": output size == input size
    "AttentionResUNet": Case(AttentionResUNet, dict(features=(2, 4, 8)), out_channels=1),
    "MCSAUNet": Case(MCSAUNet, dict(features=(4, 8, 16)), in_channels=3),
    "ResUNet": Case(ResUNet, dict(features=(2, 4, 8)), in_channels=3),
    "UNet3Plus": Case(UNet3Plus, dict(features=(2, 4, 8), cat_channels=2), in_channels=3),
    "FCN8s": Case(
        FCN8s, dict(features=(2, 2, 4), convs_per_stage=(1, 1, 1), fc_channels=4, fc_kernel_size=3), size_divisor=8
    ),
    "SegNet": Case(SegNet, dict(features=(2, 4), convs_per_stage=(1, 1))),
    "R2UNet": Case(R2UNet, dict(features=(2, 4), recurrent_steps=1), size_divisor=2),
    "LGNet": Case(LGNet, dict(features=(12, 24, 48))),  # >= 12 channels: no SE block with a single hidden unit
    "BCDUNet": Case(BCDUNet, dict(features=(4, 8, 8))),
    "CENet": Case(CENet, dict(features=(4, 8), encoder_blocks=(1, 1)), size_divisor=8),
    "MultiResUNet": Case(MultiResUNet, dict(features=(6, 12, 24))),
    "ResUNetPlusPlus": Case(ResUNetPlusPlus, dict(features=(16, 24, 32, 32)), in_channels=3),  # SE: >= 2 hidden units
    "U2Net": Case(
        U2Net,
        dict(
            features=(4, 8, 8), mid_features=(2, 4, 4), decoder_mid_features=(2, 4), heights=(3, 3, 2), dilated_stages=1
        ),
    ),
}


def build(name: str, spatial_dims: int = 2) -> nn.Module:
    case = CASES[name]
    torch.manual_seed(0)
    return case.network(
        spatial_dims=spatial_dims, in_channels=case.in_channels, out_channels=case.out_channels, **case.kwargs
    )


def network_input(name: str, spatial_size: tuple[int, ...], channels: int | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    channels = CASES[name].in_channels if channels is None else channels
    return torch.randn(2, channels, *spatial_size, generator=generator)


def test_every_network_is_covered():
    """A network added to the package (a module with ``in_channels``, ``out_channels`` and ``features``) must be
    added here too."""
    exported = {
        name
        for name, obj in vars(custom_networks).items()
        if inspect.isclass(obj)
        and issubclass(obj, nn.Module)
        and {"in_channels", "out_channels", "features"} <= set(inspect.signature(obj).parameters)
    }
    assert exported == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_output_has_input_spatial_size(name, spatial_dims):
    case = CASES[name]
    size = VALID_2D if spatial_dims == 2 else VALID_3D
    net = build(name, spatial_dims).eval()
    with torch.no_grad():
        y = net(network_input(name, size))
    assert y.shape == (2, case.out_channels, *size)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", list(CASES))
def test_torchscript_matches_eager_and_raises_the_same_error(name):
    case = CASES[name]
    net = build(name).eval()
    scripted = torch.jit.script(net)
    x = network_input(name, VALID_2D)
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-5)
    with pytest.raises(torch.jit.Error, match=case.size_error(name)):
        scripted(network_input(name, case.invalid_2d))
    with pytest.raises(torch.jit.Error, match=f"expects {case.in_channels} input channels"):
        scripted(network_input(name, VALID_2D, channels=case.in_channels + 1))


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_reach_every_parameter(name):
    case = CASES[name]
    net = build(name).train()
    net(network_input(name, VALID_2D)).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing


@pytest.mark.parametrize("name", list(CASES))
def test_bad_inputs_raise_value_errors_that_name_the_problem(name):
    case = CASES[name]
    net = build(name).eval()
    wrong_channels = f"{name} expects {case.in_channels} input channels, got {case.in_channels + 1}"
    with pytest.raises(ValueError, match=wrong_channels):
        net(network_input(name, VALID_2D, channels=case.in_channels + 1))
    with pytest.raises(ValueError, match=case.size_error(name)):
        net(network_input(name, case.invalid_2d))
    with pytest.raises(ValueError, match=f"{name} expects an input of shape \\(N, C, 2 spatial axes\\), got 5"):
        net(network_input(name, VALID_3D))


@pytest.mark.parametrize("name", list(CASES))
def test_constructor_errors_name_the_network_and_the_argument(name):
    case = CASES[name]
    with pytest.raises(ValueError, match=f"{name}: in_channels must be a positive int"):
        case.network(in_channels=0, **case.kwargs)
    with pytest.raises(ValueError, match=f"{name}: spatial_dims must be"):
        case.network(spatial_dims=4, **case.kwargs)
    with pytest.raises(ValueError, match=f"{name}: features must be positive ints"):
        case.network(**{**case.kwargs, "features": (2, 0) + tuple(case.kwargs["features"][2:])})
