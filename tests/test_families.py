"""The network-family registry (issue 16): every family builds by name, takes any image size, and trains one step in
every bundle through its ``configs/family.json`` overlay with the bundle's own loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from custom_networks import FAMILIES, PadToDivisible, build_network, family_names

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLES = sorted(p.parent.parent.name for p in (REPO_ROOT / "bundles").glob("*/configs/family.json"))


def test_every_bundle_has_a_family_overlay_and_the_registry_covers_the_survey():
    assert len(BUNDLES) == 4
    # MONAI's families of issue 16, ours, the four papers' and the four that MONAI lacks
    expected = {"attention_unet", "unetplusplus", "dynunet", "vnet", "unet", "unet3plus", "r2unet", "segnet"}
    expected |= {"fcn8s", "u2net", "unet2015", "attention_resunet", "lgnet", "mcsa_unet"}
    expected |= {"multiresunet", "resunetpp", "bcdunet", "cenet"}
    assert expected <= set(family_names())


@pytest.mark.parametrize("name", family_names())
def test_family_takes_any_size_and_its_divisor_is_right(name):
    family = FAMILIES[name]
    torch.manual_seed(0)
    net = build_network(name, 2, 3, 2, width=8).eval()
    assert isinstance(net, PadToDivisible) and net.divisor == family.size_divisor
    with torch.no_grad():
        assert net(torch.rand(1, 3, 37, 50)).shape == (1, 2, 37, 50)
        bare = build_network(name, 2, 3, 2, width=8, any_size=False).eval()
        assert bare(torch.rand(1, 3, family.size_divisor, 2 * family.size_divisor)).shape[2:] == (
            family.size_divisor,
            2 * family.size_divisor,
        )
    if hasattr(bare, "size_divisor"):
        assert bare.size_divisor == family.size_divisor


def test_unknown_family_and_bad_width_name_the_problem():
    with pytest.raises(ValueError, match="unknown network family 'transunet'; known: basicunet"):
        build_network("transunet")
    with pytest.raises(ValueError, match="width must be a positive int"):
        build_network("unet2015", width=0)
    assert type(build_network("MultiRes-UNet".replace("-", ""), any_size=False)).__name__ == "MultiResUNet"


def _target(bundle: str, parser: ConfigParser, logits: torch.Tensor) -> torch.Tensor:
    """A random label of the bundle's training format for ``logits``' shape."""
    n, c, *spatial = logits.shape
    classes = torch.randint(0, max(2, c), (n, 1, *spatial)).float()
    if bundle == "unet_em_segmentation":  # label and the weight map stacked (weight_in_target)
        return torch.cat([classes, torch.rand(n, 1, *spatial) + 0.5], dim=1)
    return classes


@pytest.mark.parametrize("bundle", BUNDLES)
def test_every_family_trains_one_step_in_every_bundle(bundle):
    """One Adam step of every family with the bundle's loss: finite loss, gradients in the first layer."""
    configs = REPO_ROOT / "bundles" / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "family.json")])
    metadata = json.loads((configs / "metadata.json").read_text())["network_data_format"]
    in_channels = next(iter(metadata["inputs"].values()))["num_channels"]
    out_channels = next(iter(metadata["outputs"].values()))["num_channels"]
    loss_function = parser.get_parsed_content("loss")
    for name in family_names():
        parser["network_family"] = name
        parser["family_width"] = 8  # ResUNet++ needs more channels than its SE reduction (8)
        parser.parse()
        network = parser.get_parsed_content("network_def").train()
        x = torch.rand(2, in_channels, 64, 64)
        logits = network(x)
        assert logits.shape == (2, out_channels, 64, 64), name
        loss = loss_function(logits, _target(bundle, parser, logits))
        assert torch.isfinite(loss), name
        loss.backward()
        grads = [p.grad for p in network.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name


@pytest.mark.parametrize("name", ["multiresunet", "cenet", "basicunet"])
def test_padded_family_is_torchscript_able(name):
    """Bundles export TorchScript: the padding wrapper scripts with the network inside it."""
    torch.manual_seed(0)
    net = build_network(name, 2, 1, 2, width=8).eval()
    x = torch.rand(1, 1, 37, 50)
    with torch.no_grad():
        assert torch.allclose(torch.jit.script(net)(x), net(x), atol=1e-5)
