"""Tests for CE-Net (Gu et al., TMI 2019): DAC, RMP, decoder sums, ResNet-34 encoder and its ImageNet loader."""

import pytest
import torch
import torch.nn.functional as F

from custom_networks import CENet
from custom_networks.cenet import DACBlock, RMPBlock, load_imagenet_resnet34

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")


def test_dac_block_sums_four_cascade_branches_with_shared_convolutions():
    torch.manual_seed(0)
    block = DACBlock(2, 3, act="relu").eval()
    x = torch.randn(1, 3, 12, 12)

    def conv(layer, t, d):
        return F.conv2d(t, layer.weight, layer.bias, padding=d, dilation=d)

    def p(t):
        return F.conv2d(t, block.project.weight, block.project.bias)

    with torch.no_grad():
        d1 = conv(block.dilate1, x, 1)
        d31 = conv(block.dilate3, d1, 3)
        expected = (
            x
            + F.relu(d1)
            + F.relu(p(conv(block.dilate3, x, 3)))
            + F.relu(p(d31))
            + F.relu(p(conv(block.dilate5, d31, 5)))
        )
        assert torch.allclose(block(x), expected, atol=1e-5)


def test_rmp_block_adds_one_channel_per_pool_and_clips_large_windows():
    torch.manual_seed(0)
    block = RMPBlock(2, 5, pool_sizes=(2, 3, 5, 6)).eval()
    x = torch.randn(2, 5, 8, 8)
    y = block(x)
    assert y.shape == (2, 9, 8, 8)
    assert torch.equal(y[:, 4:], x)
    with torch.no_grad():
        pooled = F.conv2d(F.max_pool2d(x, 2, 2), block.project.weight, block.project.bias)
        assert torch.allclose(y[:, :1], F.interpolate(pooled, size=(8, 8), mode="bilinear"), atol=1e-6)
        # a 6x6 window on a 4x4 map is clipped to 4x4: one value per channel, spread over the map
        small = block(torch.randn(1, 5, 4, 4))
        assert torch.allclose(small[:, 3], small[:, 3, :1, :1].expand(1, 4, 4))


def test_resnet34_encoder_has_torchvisions_size_and_the_net_reduces_32_times():
    net = CENet()
    assert sum(p.numel() for p in net.encoder.parameters()) == 21_284_672  # torchvision resnet34 without fc
    assert sum(p.numel() for p in net.parameters()) == 29_002_099
    assert net.size_divisor == 32
    with pytest.raises(ValueError, match="encoder_blocks"):
        CENet(features=(8, 16), encoder_blocks=(1,))


def _torchvision_style(state: dict) -> dict:
    """The encoder's state dict under torchvision's names, plus the classifier torchvision has."""
    out = {}
    for key, value in state.items():
        if key.startswith("layers."):
            index, rest = key[len("layers.") :].split(".", 1)
            key = f"layer{int(index) + 1}.{rest}"
        out[key] = torch.randn_like(value) if value.is_floating_point() else value
    out["fc.weight"], out["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    return out


def test_imagenet_loader_maps_torchvision_names_from_a_local_file(tmp_path):
    net = CENet()
    weights = _torchvision_style(net.encoder.state_dict())
    path = tmp_path / "resnet34.pth"
    torch.save(weights, path)
    decoder_before = net.head[0].weight.clone()
    load_imagenet_resnet34(net, path)
    assert torch.equal(net.encoder.conv1.weight, weights["conv1.weight"])
    assert torch.equal(net.encoder.layers[3][2].conv2.weight, weights["layer4.2.conv2.weight"])
    assert torch.equal(net.head[0].weight, decoder_before)


def test_imagenet_loader_names_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("not weights")
    with pytest.raises(ValueError, match="notes.pth: not a readable PyTorch state dict"):
        load_imagenet_resnet34(CENet(), bad)
    small = CENet(features=(8, 16, 32, 64), encoder_blocks=(1, 1, 1, 1))
    path = tmp_path / "resnet34.pth"
    torch.save(_torchvision_style(CENet().encoder.state_dict()), path)
    with pytest.raises(ValueError, match="resnet34.pth: .*other shapes"):
        load_imagenet_resnet34(small, path)
    partial = tmp_path / "partial.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, partial)
    with pytest.raises(ValueError, match="partial.pth: not a ResNet-34 state dict.*missing"):
        load_imagenet_resnet34(CENet(), partial)
