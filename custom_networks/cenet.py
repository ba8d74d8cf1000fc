"""CE-Net of Gu et al. (2019), one of the U-Net families of the survey (PAPERS.md Sec. 4).

Reference:
    Z. Gu, J. Cheng, H. Fu, K. Zhou, H. Hao, Y. Zhao, T. Zhang, S. Gao, J. Liu, "CE-Net: Context Encoder Network
    for 2D Medical Image Segmentation", IEEE Transactions on Medical Imaging 38(10), 2281-2292, 2019,
    arXiv:1903.02740.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_act_layer, get_dropout_layer, get_norm_layer
from monai.networks.nets.resnet import ResNetBlock

from ._input_checks import check_divisible_input, check_network_arguments, check_positive_int, dropout_or_none

__all__ = ["CENet", "DACBlock", "RMPBlock", "CENetDecoderBlock", "RESNET34_IMAGENET_URL", "load_imagenet_resnet34"]

# torchvision's ImageNet ResNet-34 (IMAGENET1K_V1), the encoder CE-Net starts from (Sec. II-A).
RESNET34_IMAGENET_URL = "https://download.pytorch.org/models/resnet34-b627a593.pth"


class ResNetEncoder(nn.Module):
    """The ResNet-34 feature encoder of CE-Net (Sec. II-A), built from MONAI's ``ResNetBlock``.

    ``conv1`` (7x7, stride 2) -> ``bn1`` -> ``act`` -> 3x3 max pooling (stride 2), then ``layer1 ..`` with
    ``blocks[i]`` basic residual blocks of ``features[i]`` channels (stride 1 for the first layer, 2 for the
    others; 1x1 convolution + norm shortcuts where the shape changes). Module names are torchvision's, except
    ``layers.{i}`` for its ``layer{i+1}`` (a ``ModuleList``, so that TorchScript can loop over any depth);
    :func:`load_imagenet_resnet34` renames them. ``forward`` returns every layer's output.
    """

    def __init__(self, spatial_dims, in_channels, features: Sequence[int], blocks: Sequence[int], act, norm):
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.conv1 = conv(in_channels, features[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=features[0])
        self.act = get_act_layer(name=act)
        self.maxpool = Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=2, padding=1)
        layers, previous = [], features[0]
        for index, (width, count) in enumerate(zip(features, blocks, strict=True)):
            stride = 1 if index == 0 else 2
            shortcut = None
            if stride != 1 or previous != width:
                shortcut = nn.Sequential(
                    conv(previous, width, kernel_size=1, stride=stride, bias=False),
                    get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=width),
                )
            stage = [ResNetBlock(previous, width, spatial_dims, stride, shortcut, act, norm)]
            stage += [ResNetBlock(width, width, spatial_dims, 1, None, act, norm) for _ in range(count - 1)]
            layers.append(nn.Sequential(*stage))
            previous = width
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        outputs: List[torch.Tensor] = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs


class DACBlock(nn.Module):
    """Dense atrous convolution block (Sec. II-B, Fig. 3), as in the authors' code::

        b1 = act(d1(x))                   d1, d3, d5: 3x3 convolutions with dilation 1, 3, 5
        b2 = act(p(d3(x)))                p: a 1x1 convolution
        b3 = act(p(d3(d1(x))))
        b4 = act(p(d5(d3(d1(x)))))
        out = x + b1 + b2 + b3 + b4

    Four cascade branches with receptive fields 3, 7, 9 and 19; the branches share ``d1``, ``d3``, ``d5`` and
    ``p`` (the code's weight sharing, fixed). Channels are unchanged.
    """

    def __init__(self, spatial_dims: int, channels: int, act):
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.dilate1 = conv(channels, channels, kernel_size=3, dilation=1, padding=1)
        self.dilate3 = conv(channels, channels, kernel_size=3, dilation=3, padding=3)
        self.dilate5 = conv(channels, channels, kernel_size=3, dilation=5, padding=5)
        self.project = conv(channels, channels, kernel_size=1)
        # the branches reuse d1(x) and d3(d1(x)) after activating them, so the activation must not work in place
        if isinstance(act, tuple) and len(act) == 2 and isinstance(act[1], dict) and act[1].get("inplace"):
            act = (act[0], {**act[1], "inplace": False})
        self.act = get_act_layer(name=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.dilate1(x)
        d31 = self.dilate3(d1)
        out = x + self.act(d1) + self.act(self.project(self.dilate3(x))) + self.act(self.project(d31))
        return out + self.act(self.project(self.dilate5(d31)))


class RMPBlock(nn.Module):
    """Residual multi-kernel pooling (Sec. II-B, Fig. 4): max pooling with windows (and strides) ``pool_sizes``
    (2, 3, 5, 6), a shared 1x1 convolution to one channel each, (bi/tri)linear up-sampling back to the input size,
    and concatenation with the input: ``channels + len(pool_sizes)`` output channels.

    A window larger than the map (the paper's 448x448 input leaves 14x14 here; 256x256 leaves 8x8) is clipped to
    the map, so every branch has at least one value.
    """

    def __init__(self, spatial_dims: int, channels: int, pool_sizes: Sequence[int]):
        super().__init__()
        self.pool_sizes = [check_positive_int("RMPBlock", "every pool size", p) for p in pool_sizes]
        self.spatial_dims = spatial_dims
        self.project = Conv[Conv.CONV, spatial_dims](channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        branches: List[torch.Tensor] = []
        for pool in self.pool_sizes:
            window = [min(pool, s) for s in size]
            if self.spatial_dims == 2:
                pooled = F.max_pool2d(x, window, window)
                mode = "bilinear"
            else:
                pooled = F.max_pool3d(x, window, window)
                mode = "trilinear"
            branches.append(F.interpolate(self.project(pooled), size=size, mode=mode, align_corners=False))
        branches.append(x)
        return torch.cat(branches, dim=1)


class CENetDecoderBlock(nn.Sequential):
    """CE-Net decoder block (Sec. II-C, Fig. 2): 1x1 convolution to ``in_channels // 4``, 3x3 transposed convolution
    with stride 2, 1x1 convolution to ``out_channels``, each followed by ``norm`` and ``act`` (so without bias)."""

    def __init__(self, spatial_dims, in_channels, out_channels, act, norm, dropout):
        super().__init__()
        mid = max(1, in_channels // 4)
        conv, deconv = Conv[Conv.CONV, spatial_dims], Conv[Conv.CONVTRANS, spatial_dims]
        layers = [
            conv(in_channels, mid, kernel_size=1, bias=False),
            get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=mid),
            get_act_layer(name=act),
            deconv(mid, mid, kernel_size=3, stride=2, padding=1, output_padding=1, bias=False),
            get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=mid),
            get_act_layer(name=act),
            conv(mid, out_channels, kernel_size=1, bias=False),
            get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=out_channels),
            get_act_layer(name=act),
        ]
        if dropout is not None:
            layers.append(get_dropout_layer(dropout, dropout_dim=spatial_dims))
        for index, layer in enumerate(layers):
            self.add_module(str(index), layer)


class CENet(nn.Module):
    """CE-Net (Gu et al., TMI 2019, Fig. 2): a ResNet-34 encoder, a context extractor of a dense atrous convolution
    block (:class:`DACBlock`) and a residual multi-kernel pooling block (:class:`RMPBlock`), and a decoder of
    :class:`CENetDecoderBlock` whose outputs are **added** to the encoder maps of the same size.

    Layout for ``features = (64, 128, 256, 512)`` and ``encoder_blocks = (3, 4, 6, 3)`` (ResNet-34): the encoder
    reduces the input 32 times (stem 4x, then ``len(features) - 1`` stride-2 layers); DAC and RMP work on the
    deepest map; decoder blocks bring it back to the stem's 1/4 resolution adding each encoder map, one more
    decoder block reaches 1/2, and the head (4x4 transposed convolution with stride 2 to ``head_channels``, act,
    3x3 convolution, act, 3x3 convolution) gives ``out_channels`` logits at the input size. Default configuration:
    29,002,099 parameters for 3 input channels and 1 output channel, 21,284,672 of them in the ResNet-34
    encoder.

    Choices where the paper is vague (configurable unless stated):
        - Weight sharing in DAC and the shared 1x1 convolution of RMP follow the authors' code (fixed).
        - Initialisation: the paper starts from an ImageNet ResNet-34. Nothing can be downloaded on the machines
          that trained the project's models, so everything trains from scratch here;
          :func:`load_imagenet_resnet34` loads torchvision's weights into the encoder where they are available
          (2D, 3 input channels, the default widths and blocks).
        - Output: logits; the code's sigmoid is left to the loss or the post-processing, as for MONAI's networks.
        - Dropout: not in the paper; ``dropout`` (0 by default) after every decoder block.
        - 3D: the paper is 2D; ``spatial_dims=3`` builds the same layout with 3D layers.
        - Input size: every spatial size must be a multiple of ``2 ** (len(features) + 1)`` (32 by default).

    Args:
        spatial_dims: number of spatial dimensions, 2 (paper) or 3.
        in_channels: number of input channels.
        out_channels: number of output channels (logits).
        features: widths of the encoder's residual layers (ResNet-34: 64, 128, 256, 512); the stem has
            ``features[0]`` channels.
        encoder_blocks: basic residual blocks per encoder layer (ResNet-34: 3, 4, 6, 3).
        act: activation type and arguments (MONAI ``Act`` factory). Defaults to in-place ReLU.
        norm: feature normalisation type and arguments (MONAI ``Norm`` factory). Defaults to batch norm.
        dropout: dropout after every decoder block, 0 for none.
        rmp_pool_sizes: pooling windows of the RMP block.
        head_channels: channels of the output head (32 in the code).

    Example::

        net = CENet(spatial_dims=2, in_channels=3, out_channels=1)
        logits = net(torch.randn(1, 3, 448, 448))  # (1, 1, 448, 448)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        features: Sequence[int] = (64, 128, 256, 512),
        encoder_blocks: Sequence[int] = (3, 4, 6, 3),
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
        dropout: float | tuple = 0.0,
        rmp_pool_sizes: Sequence[int] = (2, 3, 5, 6),
        head_channels: int = 32,
    ):
        super().__init__()
        features = check_network_arguments("CENet", spatial_dims, in_channels, out_channels, features)
        encoder_blocks = tuple(check_positive_int("CENet", "every entry of encoder_blocks", b) for b in encoder_blocks)
        if len(encoder_blocks) != len(features):
            raise ValueError(
                f"CENet: encoder_blocks ({encoder_blocks!r}) needs one entry per encoder layer of features "
                f"({features!r})."
            )
        check_positive_int("CENet", "head_channels", head_channels)
        if norm is None:
            raise ValueError("CENet: norm must be a normalisation (the ResNet encoder needs one), got None.")
        dropout = dropout_or_none(dropout)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.size_divisor = 1 << (len(features) + 1)

        self.encoder = ResNetEncoder(spatial_dims, in_channels, features, encoder_blocks, act, norm)
        self.dac = DACBlock(spatial_dims, features[-1], act)
        self.rmp = RMPBlock(spatial_dims, features[-1], rmp_pool_sizes)
        decoder, previous = [], features[-1] + len(rmp_pool_sizes)
        for level in reversed(range(len(features))):
            width = features[max(0, level - 1)]
            decoder.append(CENetDecoderBlock(spatial_dims, previous, width, act, norm, dropout))
            previous = width
        self.decoder = nn.ModuleList(decoder)
        conv, deconv = Conv[Conv.CONV, spatial_dims], Conv[Conv.CONVTRANS, spatial_dims]
        self.head = nn.Sequential(
            deconv(features[0], head_channels, kernel_size=4, stride=2, padding=1),
            get_act_layer(name=act),
            conv(head_channels, head_channels, kernel_size=3, padding=1),
            get_act_layer(name=act),
            conv(head_channels, out_channels, kernel_size=3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(N, in_channels, *spatial)``, every spatial size a multiple of ``2 ** (len(features) + 1)``.

        Returns:
            logits ``(N, out_channels, *spatial)``.

        Raises:
            ValueError: (a ``RuntimeError`` when scripted) for a wrong number of axes or channels, or an indivisible
                size.
        """
        check_divisible_input(x, self.spatial_dims, self.in_channels, self.size_divisor, "CENet")
        skips = self.encoder(x)
        x = self.rmp(self.dac(skips[-1]))
        depth = len(skips)
        for step, block in enumerate(self.decoder):
            x = block(x)
            if step < depth - 1:
                x = x + skips[depth - 2 - step]
        return self.head(x)


def load_imagenet_resnet34(network: CENet, source: str | os.PathLike = RESNET34_IMAGENET_URL) -> CENet:
    """Loads torchvision's ImageNet ResNet-34 weights into ``network``'s encoder, as the paper initialises CE-Net.

    Args:
        network: a 2D :class:`CENet` with 3 input channels and the default ``features`` and ``encoder_blocks``.
        source: a local ``.pth`` file of torchvision's ``resnet34`` state dict, or a URL (downloaded and cached by
            ``torch.hub``; the default is torchvision's official file).

    Returns:
        ``network``, with the encoder's weights replaced (the decoder keeps its initialisation).

    Raises:
        ValueError: naming ``source`` when it is not a ResNet-34 state dict matching the encoder (missing keys,
            other shapes), or when ``network`` is not a ResNet-34 CE-Net.
    """
    encoder = network.encoder.state_dict()
    text = str(source)
    if text.startswith(("http://", "https://")):
        weights = torch.hub.load_state_dict_from_url(text, map_location="cpu", check_hash=True)
    else:
        try:
            weights = torch.load(text, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for a file that is not a state dict
            raise ValueError(f"{text}: not a readable PyTorch state dict ({error}).") from error
    if not isinstance(weights, dict):
        raise ValueError(f"{text}: expected a ResNet-34 state dict, got a {type(weights).__name__}.")
    # torchvision names the layers layer1..layer4; this encoder keeps them in a ModuleList ``layers.0..``
    renamed = {}
    for key, value in weights.items():
        if key.startswith("layer"):
            index, rest = key[len("layer") :].split(".", 1)
            key = f"layers.{int(index) - 1}.{rest}"
        renamed[key] = value
    missing = sorted(k for k in encoder if k not in renamed)
    if missing:
        raise ValueError(
            f"{text}: not a ResNet-34 state dict for this encoder; missing {len(missing)} entries, e.g. {missing[:3]}."
        )
    wrong = [k for k in encoder if tuple(renamed[k].shape) != tuple(encoder[k].shape)]
    if wrong:
        raise ValueError(
            f"{text}: {len(wrong)} tensors have other shapes than this CENet's encoder (e.g. {wrong[0]}: "
            f"{tuple(renamed[wrong[0]].shape)} in the file, {tuple(encoder[wrong[0]].shape)} here); the ImageNet "
            "weights need spatial_dims=2, in_channels=3 and the default features and encoder_blocks."
        )
    network.encoder.load_state_dict({k: renamed[k] for k in encoder})
    return network
