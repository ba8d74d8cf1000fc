"""Tests for UNet 3+ (Huang et al., ICASSP 2020): full-scale skip connections and deep supervision."""

import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DeepSupervisionLoss, DiceCELoss

from custom_networks import UNet3Plus
from custom_networks.unet3plus import FullScaleDecoderNode

# torch >= 2.10 deprecates TorchScript; the bundles still export scripted models, so scripting is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")

TINY = (4, 8, 16, 32, 64)
CAT = 3


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def unet3plus_parameters(in_channels, out_channels, features, cat, dims=2) -> int:
    """Hand count: VGG-style encoder with BN, per node n branch convs (3x3 + BN) and a fusion conv, 3x3 output."""
    k3, n = 3**dims, len(features)
    fused = n * cat
    total, previous = 0, in_channels
    for f in features:
        total += (previous * k3 + 1) * f + 2 * f + (f * k3 + 1) * f + 2 * f
        previous = f
    for level in range(n - 1):
        sources = list(features[: level + 1]) + [fused] * (n - 2 - level) + [features[-1]]
        total += sum((c * k3 + 1) * cat + 2 * cat for c in sources)
        total += (fused * k3 + 1) * fused + 2 * fused
    return total + (fused * k3 + 1) * out_channels


def test_paper_network_parameter_count():
    net = UNet3Plus(in_channels=3, out_channels=1)
    params = count_parameters(net)
    print(f"UNet3Plus (3 -> 1) parameters: {params:,}")
    assert params == unet3plus_parameters(3, 1, (64, 128, 256, 512, 1024), 64) == 26_971_777
    assert round(params / 1e6, 2) == 26.97  # paper, Table 1 (UNet 3+, VGG-16 backbone)
    assert net.decoder[0].fusion.conv.in_channels == 320  # 5 * cat_channels


def test_parameter_count_other_configuration():
    net = UNet3Plus(spatial_dims=3, in_channels=2, out_channels=4, features=(2, 4, 8), cat_channels=5)
    assert count_parameters(net) == unet3plus_parameters(2, 4, (2, 4, 8), 5, dims=3)


@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 3, 32, 48)), (3, (1, 3, 16, 16, 16))])
def test_output_shape(spatial_dims, shape):
    torch.manual_seed(0)
    net = UNet3Plus(spatial_dims=spatial_dims, out_channels=3, features=TINY, cat_channels=CAT).eval()
    with torch.no_grad():
        y = net(torch.randn(*shape))
    assert y.shape == (shape[0], 3) + shape[2:]


def test_every_decoder_node_receives_all_five_scales():
    torch.manual_seed(0)
    net = UNet3Plus(features=TINY, cat_channels=CAT).eval()
    encoder_maps, node_outputs, branch_io = [], {}, {}
    for block in net.encoder:
        block.register_forward_hook(lambda module, inputs, output: encoder_maps.append(output))
    for node in net.decoder:
        node.register_forward_hook(lambda module, inputs, output: node_outputs.update({module.level: output}))
        for source, branch in enumerate(node.branches):

            def record(module, inputs, output, key=(node.level, source)):
                branch_io[key] = (inputs[0], output)

            branch.register_forward_hook(record)
    size = 32
    net(torch.randn(1, 3, size, size))
    assert [node.level for node in net.decoder] == [3, 2, 1, 0]  # coarse to fine
    assert len(branch_io) == 4 * 5
    for level in range(4):
        for source in range(5):
            received, aggregated = branch_io[(level, source)]
            assert received.shape[-1] == size // 2**source  # one input per scale
            assert aggregated.shape[1:] == (CAT, size // 2**level, size // 2**level)  # brought to the node's scale
            if source <= level or source == 4:  # encoder maps X_En^0..X_En^i and the bottom map
                assert received is encoder_maps[source]
            else:  # decoder maps X_De^{i+1}..X_De^3
                assert received is node_outputs[source]


def test_branch_resampling_operations():
    net = UNet3Plus(features=TINY, cat_channels=CAT)
    node = net.decoder[1]  # level 2
    assert node.level == 2
    pools = [branch[0] for branch in node.branches[:2]]
    assert all(isinstance(p, nn.MaxPool2d) for p in pools)
    assert [p.kernel_size for p in pools] == [4, 2] and [p.stride for p in pools] == [4, 2]
    assert isinstance(node.branches[2][0], nn.Identity)
    upsamplers = [branch[0].upsample_non_trainable for branch in node.branches[3:]]
    assert [u.scale_factor for u in upsamplers] == [(2.0, 2.0), (4.0, 4.0)]
    assert all(u.mode == "bilinear" for u in upsamplers)
    for branch in node.branches:
        conv = branch[1].conv
        assert conv.kernel_size == (3, 3) and conv.out_channels == CAT
    assert node.fusion.conv.in_channels == node.fusion.conv.out_channels == 5 * CAT


def test_decoder_node_rejects_wrong_number_of_inputs():
    node = FullScaleDecoderNode(2, 0, [2, 4], 3, "relu", "batch")
    with pytest.raises(ValueError, match="expects 2 inputs, got 1"):
        node([torch.randn(1, 2, 8, 8)])


def test_deep_supervision_output_convention():
    torch.manual_seed(0)
    net = UNet3Plus(features=TINY, cat_channels=CAT, deep_supervision=True).train()
    head_resolutions = []
    for head in net.side_heads:
        head[0].register_forward_hook(lambda module, inputs, output: head_resolutions.append(output.shape[-1]))
    x = torch.randn(2, 3, 32, 32)
    stacked = net(x)
    assert stacked.shape == (2, 5, 2, 32, 32)
    assert head_resolutions == [2, 4, 8, 16]  # heads of levels 4 (bottom) .. 1: auxiliary outputs first
    outputs = net.forward_deep_supervision(x)
    assert len(outputs) == 5 and all(o.shape == (2, 2, 32, 32) for o in outputs)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(torch.unbind(stacked, dim=1), outputs))
    net.eval()
    final = net(x)
    assert final.shape == (2, 2, 32, 32)  # inference: the final output only
    assert torch.allclose(final, net.forward_deep_supervision(x)[-1], atol=1e-6)  # ... which is the last entry


def test_deep_supervision_adds_only_the_side_heads():
    torch.manual_seed(0)
    supervised = UNet3Plus(features=TINY, cat_channels=CAT, deep_supervision=True).eval()
    plain = UNet3Plus(features=TINY, cat_channels=CAT).eval()
    assert len(plain.side_heads) == 0
    heads = (TINY[-1] * 9 + 1) * 2 + 3 * (5 * CAT * 9 + 1) * 2  # bottom head, 3 decoder heads (3x3 convs)
    assert count_parameters(supervised) - count_parameters(plain) == heads
    missing, unexpected = plain.load_state_dict(supervised.state_dict(), strict=False)
    assert missing == [] and all(key.startswith("side_heads.") for key in unexpected)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(plain(x), supervised(x), atol=1e-6)
    with pytest.raises(ValueError, match="deep_supervision=True"):
        plain.forward_deep_supervision(x)


def test_deep_supervision_loss_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = UNet3Plus(features=TINY, cat_channels=CAT, deep_supervision=True).train()
    x = torch.randn(2, 3, 32, 32)
    labels = torch.randint(0, 2, (2, 1, 32, 32))
    loss = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True), weight_mode="same")
    value = loss(list(torch.unbind(net(x), dim=1)), labels)
    value.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.count_nonzero(param.grad) > 0, name


def test_gradients_reach_every_parameter_without_deep_supervision():
    torch.manual_seed(0)
    net = UNet3Plus(features=TINY, cat_channels=CAT).train()
    F.cross_entropy(net(torch.randn(2, 3, 32, 32)), torch.randint(0, 2, (2, 32, 32))).backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.count_nonzero(param.grad) > 0, name


@pytest.mark.parametrize("deep_supervision", [False, True])
def test_torchscript_matches_eager(deep_supervision):
    torch.manual_seed(0)
    net = UNet3Plus(features=TINY, cat_channels=CAT, deep_supervision=deep_supervision).eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = torch.randn(1, 3, 32, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-6)
        if deep_supervision:
            loaded.train()
            net.train()
            assert torch.allclose(loaded(x), net(x), atol=1e-5)
            assert loaded(x).shape == (1, 5, 2, 32, 16)
    with pytest.raises(torch.jit.Error, match="multiple of 16"):
        loaded(torch.randn(1, 3, 40, 16))


def test_invalid_inputs_raise():
    net = UNet3Plus(features=TINY, cat_channels=CAT)
    with pytest.raises(ValueError, match=r"spatial size 40 \(spatial axis 0\).*multiple of 16"):
        net(torch.randn(1, 3, 40, 32))
    with pytest.raises(ValueError, match="2 spatial axes"):
        net(torch.randn(1, 3, 32))
    with pytest.raises(ValueError, match="3 input channels"):
        net(torch.randn(1, 4, 32, 32))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": (8,)}, "at least 2"),
        ({"features": "abc"}, "sequence"),
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"cat_channels": 0}, "cat_channels"),
        ({"out_channels": 1.5}, "out_channels"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet3Plus(**{"features": TINY, **kwargs})
