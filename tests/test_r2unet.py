"""Tests for R2U-Net (Alom et al. 2018), a Table 1 baseline of the Attention Residual-UNet paper."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from custom_networks import R2UNet
from custom_networks.r2unet import R2UpBlock, RecurrentConvBlock, RRCNNBlock

# torch >= 2.10 deprecates TorchScript; the bundles still export scripted models, so scripting is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated")

TINY = (4, 8, 16, 32)


def expected_parameter_count(in_channels, out_channels, features, dims=2, norm=True, steps=2):
    """RRCNN block = 1x1 conv + two recurrent layers of one 3x3 conv each, whatever the number of steps, with a BN
    per time step; decoder steps: 2x2 transposed conv, RRCNN on the concatenation; final 1x1 conv."""
    per_bn = 2 * (steps + 1) if norm else 0

    def rrcnn(c_in, c_out):
        return c_in * c_out + c_out + 2 * (c_out * c_out * 3**dims + c_out + per_bn * c_out)

    total, previous = 0, in_channels
    for width in features:
        total += rrcnn(previous, width)
        previous = width
    for coarse, fine in zip(reversed(features[1:]), reversed(features[:-1])):
        total += coarse * fine * 2**dims + fine + rrcnn(2 * fine, fine)
    return total + features[0] * out_channels + out_channels


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# --- the recurrent and recurrent residual units (Eq. 1-3, Fig. 4) ---------------------------------------------------


def _conv_norm_act(block: RecurrentConvBlock, x: torch.Tensor, step: int) -> torch.Tensor:
    """conv -> (eval-mode batch norm of that time step) -> ReLU by hand, with the block's weights."""
    conv = block.conv.conv
    y = F.conv2d(x, conv.weight, conv.bias, padding=1)
    norm = block.norm_act[step]
    if hasattr(norm, "N"):
        bn = norm.N
        y = (y - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
        y = y * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    return F.relu(y)


def _randomise_batch_norm_(module: nn.Module) -> None:
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.5, 0.5)


@pytest.mark.parametrize("norm", [None, "batch"])
def test_rrcnn_block_matches_hand_computation(norm):
    """x0 = conv1x1(x); per recurrent layer (t = 2): h = f(u); h = f(u + h); h = f(u + h); output x0 + F(x0)."""
    torch.manual_seed(0)
    block = RRCNNBlock(2, 3, 4, steps=2, act="relu", norm=norm).eval()
    _randomise_batch_norm_(block)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        x0 = F.conv2d(x, block.channel_match.weight, block.channel_match.bias)
        u = x0
        for layer in block.recurrent_convs:
            h = _conv_norm_act(layer, u, 0)
            h = _conv_norm_act(layer, u + h, 1)
            h = _conv_norm_act(layer, u + h, 2)
            u = h
        expected = x0 + u
        assert torch.allclose(block(x), expected, atol=1e-5)


def test_recurrent_conv_block_hand_values():
    """1 channel, 1x1-supported 3x3 kernel (only the centre tap): f(v) = relu(w v + b) pixel-wise."""
    block = RecurrentConvBlock(2, 1, steps=2, act="relu", norm=None)
    with torch.no_grad():
        block.conv.conv.weight.zero_()
        block.conv.conv.weight[0, 0, 1, 1] = 0.5
        block.conv.conv.bias.fill_(1.0)
    x = torch.tensor([[[[2.0, -4.0]]]])
    # pixel 2:  f(2) = 2;   f(2 + 2) = 3;   f(2 + 3) = 3.5
    # pixel -4: f(-4) = 0 (relu(-1)); f(-4 + 0) = 0; f(-4 + 0) = 0
    assert torch.equal(block(x), torch.tensor([[[[3.5, 0.0]]]]))
    plain = RecurrentConvBlock(2, 1, steps=0, act="relu", norm=None)
    plain.load_state_dict(block.state_dict())
    assert torch.equal(plain(x), torch.tensor([[[[2.0, 0.0]]]]))  # t = 0: a plain convolution


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
def test_recurrent_steps_reuse_one_convolution(steps):
    torch.manual_seed(0)
    block = RRCNNBlock(2, 2, 4, steps=steps, act="relu", norm="batch")
    calls = []
    for layer in block.recurrent_convs:
        layer.conv.register_forward_hook(lambda module, inputs, output: calls.append(module))
    block(torch.randn(2, 2, 8, 8))
    assert len(calls) == 2 * (steps + 1)  # two recurrent layers, t + 1 evaluations each
    assert len({id(m) for m in calls}) == 2  # shared weights within a layer
    # only the per-step batch norms grow with t: 2 layers x t extra norms x (weight + bias) x 4 channels
    plain = RRCNNBlock(2, 2, 4, steps=0, act="relu", norm="batch")
    assert count_parameters(block) == count_parameters(plain) + 2 * steps * 2 * 4
    assert count_parameters(RRCNNBlock(2, 2, 4, steps=steps, act="relu", norm=None)) == count_parameters(
        RRCNNBlock(2, 2, 4, steps=0, act="relu", norm=None))


def test_each_time_step_has_its_own_batch_norm_statistics():
    """A shared norm would average the statistics of ``x`` and ``x + out``: per-step norms track each step."""
    torch.manual_seed(0)
    block = RecurrentConvBlock(2, 3, steps=2, act="relu", norm="batch").train()
    block(torch.randn(4, 3, 8, 8) + 3.0)
    means = [norm.N.running_mean.clone() for norm in block.norm_act]
    assert len(means) == 3 and not torch.allclose(means[0], means[2])
    # evaluation mode after training on a fixed batch gives nearly the training-mode output
    batch = torch.randn(8, 3, 8, 8) + 3.0
    for norm in block.norm_act:
        norm.N.momentum = None  # cumulative average: the running statistics become this batch's
        norm.N.reset_running_stats()
    with torch.no_grad():
        trained = block.train()(batch)
        evaluated = block.eval()(batch)
    assert torch.allclose(trained, evaluated, atol=1e-2)  # up to the unbiased running variance


def test_up_block_concatenates_skip_then_upsampled():
    torch.manual_seed(0)
    up = R2UpBlock(2, in_channels=8, skip_channels=4, out_channels=4, steps=2, act="relu", norm=None).eval()
    x, skip = torch.randn(1, 8, 4, 4), torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        expected = up.rrcnn(torch.cat([skip, up.upsample(x)], dim=1))
        assert torch.allclose(up(x, skip), expected)
    deconv = up.upsample.deconv
    assert deconv.kernel_size == (2, 2) and deconv.stride == (2, 2)


# --- the network ---------------------------------------------------------------------------------------------------


def test_paper_network_parameter_count():
    with torch.device("meta"):
        net = R2UNet(spatial_dims=2, in_channels=3, out_channels=1)
    params = count_parameters(net)
    print(f"R2UNet (3 -> 1, features 64..1024, t = 2): {params:,} parameters")
    assert params == expected_parameter_count(3, 1, (64, 128, 256, 512, 1024)) == 35_631_425
    assert sum(isinstance(m, RRCNNBlock) for m in net.modules()) == 9
    assert all(m.steps == 2 for m in net.modules() if isinstance(m, RecurrentConvBlock))


@pytest.mark.parametrize("dims, norm", [(2, "batch"), (3, "batch"), (2, None)])
def test_parameter_count_matches_hand_count(dims, norm):
    net = R2UNet(spatial_dims=dims, in_channels=2, out_channels=3, features=TINY, norm=norm)
    assert count_parameters(net) == expected_parameter_count(2, 3, TINY, dims, norm=norm is not None)


@pytest.mark.parametrize("dims, size", [(2, (32, 48)), (3, (16, 16, 24)), (1, (40,))])
def test_output_is_logits_at_input_size(dims, size):
    torch.manual_seed(0)
    net = R2UNet(spatial_dims=dims, in_channels=2, out_channels=3, features=TINY)
    y = net(torch.randn(2, 2, *size))
    assert y.shape == (2, 3, *size)
    assert (y < 0).any() and (y > 1).any()  # final 1x1 conv without activation


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = R2UNet(spatial_dims=2, in_channels=1, out_channels=2, features=TINY, dropout=0.1)
    net(torch.randn(2, 1, 32, 32)).square().mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_recurrent_steps_switch_changes_computation_not_convolutions():
    torch.manual_seed(0)
    nets = {t: R2UNet(features=TINY, recurrent_steps=t, norm=None).eval() for t in (0, 1, 2)}
    nets[0].load_state_dict(nets[2].state_dict())
    nets[1].load_state_dict(nets[2].state_dict())
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        outputs = {t: net(x) for t, net in nets.items()}
    assert not torch.allclose(outputs[0], outputs[2]) and not torch.allclose(outputs[1], outputs[2])


def test_upsample_and_dropout_switches():
    deconv = R2UNet(features=TINY)
    interp = R2UNet(features=TINY, upsample="nontrainable")
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in deconv.modules()) == 3
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in interp.modules())
    assert sum(isinstance(m, nn.Upsample) for m in interp.modules()) == 3
    assert not any(isinstance(m, (nn.Dropout, nn.Dropout2d)) for m in deconv.modules())
    dropped = R2UNet(features=TINY, dropout=0.2)
    assert sum(isinstance(m, nn.Dropout2d) and m.p == 0.2 for m in dropped.modules()) == 7  # one per RRCNN block
    assert not any(isinstance(m, nn.BatchNorm2d) for m in R2UNet(features=TINY, norm=None).modules())


@pytest.mark.parametrize("dims, size", [(2, (32, 16)), (3, (16, 16, 16))])
def test_torchscript_matches_eager(dims, size):
    torch.manual_seed(0)
    net = R2UNet(spatial_dims=dims, in_channels=1, out_channels=2, features=TINY).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-5)
    with pytest.raises(Exception, match="multiple of 8"):
        scripted(torch.randn(1, 1, *([12] * dims)))


# --- bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(36, 32), (32, 20), (4, 8)])
def test_indivisible_sizes_raise(size):
    net = R2UNet(features=TINY)
    with pytest.raises(ValueError, match="multiple of 8"):
        net(torch.randn(1, 1, *size))


def test_wrong_number_of_axes_raises():
    with pytest.raises(ValueError, match="spatial axes"):
        R2UNet(spatial_dims=3, features=TINY)(torch.randn(1, 1, 16, 16))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(spatial_dims=4), "spatial_dims"),
        (dict(in_channels=0), "in_channels"),
        (dict(features=(4,)), "at least 2"),
        (dict(features=(4, 0)), "features"),
        (dict(recurrent_steps=-1), "recurrent_steps"),
        (dict(recurrent_steps=True), "recurrent_steps"),
        (dict(upsample="bilinear"), "upsample"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        R2UNet(**kwargs)
