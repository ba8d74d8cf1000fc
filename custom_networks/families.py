"""The U-Net families of the survey (PAPERS.md Sec. 4) by name: one place that builds any of them for any bundle.

``build_network("multiresunet", spatial_dims=2, in_channels=3, out_channels=2, width=16)`` returns a module whose
``forward`` maps ``(N, in_channels, *spatial)`` to logits ``(N, out_channels, *spatial)`` (one tensor; networks
that return several outputs are wrapped in :class:`~custom_networks.select_output.SelectOutput`), for every
spatial size that is a multiple of the family's ``size_divisor``. Every family gets the same widths, ``width``
times 1, 2, 4, 8, 16 over five resolution levels, read the way its paper reads widths (see each entry's note);
everything else keeps the paper's (or MONAI's) defaults, so the survey table compares the architectures under one
recipe. The bundles reach it through ``configs/family.json`` and ``--network_family NAME``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn
from monai.networks.layers import Conv
from monai.networks.nets import AttentionUnet, BasicUNet, BasicUNetPlusPlus, DynUNet, UNet, VNet

from .attention_resunet import AttentionResUNet
from .bcdunet import BCDUNet
from .cenet import CENet
from .fcn import FCN8s
from .lgnet import LGNet
from .mcsa_unet import MCSAUNet
from .multiresunet import MultiResUNet
from .pad_to_divisible import PadToDivisible
from .r2unet import R2UNet
from .resunet import ResUNet
from .resunetpp import ResUNetPlusPlus
from .segnet import SegNet
from .select_output import SelectOutput
from .u2net import U2NET_LITE, U2Net
from .unet3plus import UNet3Plus
from .unet2015 import UNet2015

__all__ = ["Family", "FAMILIES", "build_network", "family_names"]


@dataclass(frozen=True)
class Family:
    """One network family: how to build it from ``(spatial_dims, in_channels, out_channels, widths)``.

    Attributes:
        name: registry key (lower case, used by ``--network_family``).
        label: the name the survey and the papers use.
        source: ``"MONAI"`` or ``"medseg-bundles"`` (``custom_networks``).
        reference: first author, venue and year.
        size_divisor: every spatial input size must be a multiple of it.
        build: ``build(spatial_dims, in_channels, out_channels, widths)`` with ``widths`` the five level widths.
        note: how the family reads ``widths`` and what differs from its paper here.
    """

    name: str
    label: str
    source: str
    reference: str
    size_divisor: int
    build: Callable[[int, int, int, tuple[int, ...]], nn.Module]
    note: str = ""


class _VNetAnyChannels(nn.Sequential):
    """MONAI's ``VNet`` repeats its input to 16 channels, so ``in_channels`` must divide 16; for other inputs (RGB)
    a 1x1 convolution to 4 channels comes first."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int):
        layers = []
        if 16 % in_channels:
            layers.append(Conv[Conv.CONV, spatial_dims](in_channels, 4, kernel_size=1))
            in_channels = 4
        layers.append(VNet(spatial_dims, in_channels, out_channels, dropout_dim=spatial_dims))
        super().__init__(*layers)


def _families() -> dict[str, Family]:
    def vgg(w):
        return (w[0], w[1], w[2], w[3], w[3])

    entries = [
        Family(
            "basicunet",
            "U-Net (MONAI BasicUNet)",
            "MONAI",
            "Ronneberger et al., MICCAI 2015",
            16,
            lambda d, i, o, w: BasicUNet(d, i, o, features=(*w, w[0])),
            "the plain MONAI baseline of issue 14; instance norm, LeakyReLU",
        ),
        Family(
            "unet",
            "Residual U-Net (MONAI UNet)",
            "MONAI",
            "Kerfoot et al., STACOM 2018",
            16,
            lambda d, i, o, w: UNet(d, i, o, channels=w, strides=(2, 2, 2, 2), num_res_units=2),
            "",
        ),
        Family(
            "unet2015",
            "U-Net (2015)",
            "medseg-bundles",
            "Ronneberger et al., MICCAI 2015",
            16,
            lambda d, i, o, w: UNet2015(d, i, o, features=w, padding="same", norm="batch", dropout=0.0),
            "same padding and batch norm, as in the U-Net bundle's 0.4.1 recipe",
        ),
        Family(
            "attention_unet",
            "Attention U-Net (MONAI AttentionUnet)",
            "MONAI",
            "Oktay et al., MIDL 2018",
            16,
            lambda d, i, o, w: AttentionUnet(d, i, o, channels=w, strides=(2, 2, 2, 2)),
            "",
        ),
        Family(
            "unetplusplus",
            "UNet++ (MONAI BasicUNetPlusPlus)",
            "MONAI",
            "Zhou et al., DLMIA 2018",
            16,
            lambda d, i, o, w: SelectOutput(BasicUNetPlusPlus(d, i, o, features=(*w, w[0]))),
            "final output only (no deep supervision)",
        ),
        Family(
            "dynunet",
            "nnU-Net's network (MONAI DynUNet)",
            "MONAI",
            "Isensee et al., Nat. Methods 2021",
            16,
            lambda d, i, o, w: DynUNet(
                d,
                i,
                o,
                kernel_size=[3] * 5,
                strides=[1, 2, 2, 2, 2],
                upsample_kernel_size=[2] * 4,
                filters=w,
                norm_name="instance",
            ),
            "no deep supervision",
        ),
        Family(
            "vnet",
            "V-Net (MONAI VNet)",
            "MONAI",
            "Milletari et al., 3DV 2016",
            16,
            lambda d, i, o, w: _VNetAnyChannels(d, i, o),
            "fixed widths 16-256; RGB input gets a 1x1 convolution to 4 channels first",
        ),
        Family(
            "attention_resunet",
            "Attention Residual-UNet",
            "medseg-bundles",
            "PAPERS.md, phase-contrast cells",
            16,
            lambda d, i, o, w: AttentionResUNet(d, i, o, features=w),
            "paper dropout 0.2",
        ),
        Family(
            "lgnet",
            "LG-Net",
            "medseg-bundles",
            "PAPERS.md, COVID-19 CT",
            16,
            lambda d, i, o, w: LGNet(d, i, o, features=w),
            "attention pooled to 32x32",
        ),
        Family(
            "mcsa_unet",
            "MCSA-UNet",
            "medseg-bundles",
            "PAPERS.md, mitotic nuclei",
            16,
            lambda d, i, o, w: MCSAUNet(d, i, o, features=w),
            "",
        ),
        Family(
            "multiresunet",
            "MultiResUNet",
            "medseg-bundles",
            "Ibtehaz & Rahman, Neural Networks 2020",
            16,
            lambda d, i, o, w: MultiResUNet(d, i, o, features=w),
            "widths are U; the MultiRes blocks have 1.67 U channels",
        ),
        Family(
            "resunetpp",
            "ResUNet++",
            "medseg-bundles",
            "Jha et al., ISM 2019",
            8,
            lambda d, i, o, w: ResUNetPlusPlus(d, i, o, features=w),
            "stem, three encoder levels and the ASPP bridge (the authors' code: 16-256)",
        ),
        Family(
            "bcdunet",
            "BCDU-Net",
            "medseg-bundles",
            "Azad et al., ICCVW 2019",
            16,
            lambda d, i, o, w: BCDUNet(d, i, o, features=w),
            "four pooling steps (the paper: three)",
        ),
        Family(
            "cenet",
            "CE-Net",
            "medseg-bundles",
            "Gu et al., TMI 2019",
            32,
            lambda d, i, o, w: CENet(d, i, o, features=w[1:]),
            "ResNet-34 encoder of widths 2w-16w, trained from scratch (no ImageNet weights offline)",
        ),
        Family(
            "resunet",
            "Deep ResUNet",
            "medseg-bundles",
            "Zhang et al., GRSL 2018",
            8,
            lambda d, i, o, w: ResUNet(d, i, o, features=w[:4]),
            "the paper's four levels",
        ),
        Family(
            "r2unet",
            "R2U-Net",
            "medseg-bundles",
            "Alom et al., arXiv 2018",
            16,
            lambda d, i, o, w: R2UNet(d, i, o, features=w),
            "",
        ),
        Family(
            "unet3plus",
            "UNet 3+",
            "medseg-bundles",
            "Huang et al., ICASSP 2020",
            16,
            lambda d, i, o, w: UNet3Plus(d, i, o, features=w, cat_channels=w[0]),
            "full-scale skips of w channels (the paper: 64 at width 64)",
        ),
        Family(
            "segnet",
            "SegNet",
            "medseg-bundles",
            "Badrinarayanan et al., TPAMI 2017",
            32,
            lambda d, i, o, w: SegNet(d, i, o, features=vgg(w)),
            "VGG-16 layout, widths w-8w",
        ),
        Family(
            "fcn8s",
            "FCN-8s",
            "medseg-bundles",
            "Long et al., CVPR 2015",
            32,
            lambda d, i, o, w: FCN8s(d, i, o, features=vgg(w), fc_channels=64 * w[0]),
            "VGG-16 layout, widths w-8w, fully connected layers of 64w channels",
        ),
        Family(
            "u2net",
            "U2-Net (lite)",
            "medseg-bundles",
            "Qin et al., Pattern Recognition 2020",
            32,
            lambda d, i, o, w: U2Net(d, i, o, **U2NET_LITE),
            "the paper's small U2-Net-lite, fixed widths",
        ),
    ]
    return {family.name: family for family in entries}


FAMILIES: dict[str, Family] = _families()


def family_names() -> list[str]:
    """The registry keys, in the order of the survey table."""
    return list(FAMILIES)


def build_network(
    name: str,
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 2,
    width: int = 16,
    any_size: bool = True,
) -> nn.Module:
    """Builds the family ``name`` with level widths ``width * (1, 2, 4, 8, 16)``.

    Args:
        name: a key of :data:`FAMILIES` (case-insensitive; ``-`` and ``_`` are the same).
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (logits).
        width: the first level's width.
        any_size: wrap the network in :class:`~custom_networks.pad_to_divisible.PadToDivisible` so that it takes
            any image size (whole-image validation and inference); ``False`` returns the bare network.

    Raises:
        ValueError: for an unknown name (listing the known ones) or a width below 1.
    """
    key = str(name).lower().replace("-", "_")
    if key not in FAMILIES:
        raise ValueError(f"unknown network family {name!r}; known: {', '.join(FAMILIES)}.")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"network family width must be a positive int, got {width!r}.")
    widths = tuple(width * 2**level for level in range(5))
    network = FAMILIES[key].build(spatial_dims, in_channels, out_channels, widths)
    return PadToDivisible(network, FAMILIES[key].size_divisor) if any_size else network
