"""``unet2015``'s baseline: the usual re-implementation of U-Net (2015) (:class:`NaiveUNet`, contiguous fp32) with
the weights of a :class:`~custom_networks.unet2015.UNet2015`, run tile by tile on fixed 572x572 tiles."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from custom_networks.unet2015 import UNet2015

PAPER_FEATURES = (64, 128, 256, 512, 1024)


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size=3),
        nn.ReLU(inplace=True),
    )


class NaiveUNet(nn.Module):
    """The 2D U-Net of Ronneberger et al. (2015, Fig. 1) written the way most re-implementations do: plain
    ``nn.Conv2d``/``nn.ConvTranspose2d`` layers, skip maps cropped with explicitly computed slice offsets and joined
    with ``torch.cat``, contiguous (NCHW) fp32 tensors. The benchmark's baseline; layer shapes, concatenation order
    ``[skip, up-sampled]`` and dropout placement are those of :class:`UNet2015`, so weights can be copied over with
    :func:`copy_unet2015_weights`.

    Args:
        in_channels: input channels.
        out_channels: output channels (classes).
        features: channels per resolution level, full resolution first (the paper: 64, ..., 1024).
        dropout: dropout probability after the bottom block.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = PAPER_FEATURES,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        features = tuple(features)
        if len(features) < 2:
            raise ValueError(f"features needs at least 2 entries, got {features!r}.")
        self.depth = len(features) - 1
        self.encoder = nn.ModuleList(
            [_double_conv(in_channels, features[0])]
            + [_double_conv(features[level], features[level + 1]) for level in range(self.depth)]
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.dropout = nn.Dropout(dropout)
        self.up_convs = nn.ModuleList(
            [
                nn.ConvTranspose2d(features[level + 1], features[level], kernel_size=2, stride=2)
                for level in reversed(range(self.depth))
            ]
        )
        self.decoder = nn.ModuleList(
            [_double_conv(2 * features[level], features[level]) for level in reversed(range(self.depth))]
        )
        self.final = nn.Conv2d(features[0], out_channels, kernel_size=1)

    def conv_layers(self) -> list[nn.Module]:
        """The (transposed) convolutions in the order of Fig. 1: contracting path, then per expansive step the
        up-convolution and its two 3x3 convolutions, then the 1x1 output convolution."""
        layers: list[nn.Module] = [m for block in self.encoder for m in block if isinstance(m, nn.Conv2d)]
        for up_conv, block in zip(self.up_convs, self.decoder):
            layers.append(up_conv)
            layers.extend(m for m in block if isinstance(m, nn.Conv2d))
        layers.append(self.final)
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                x = self.pool(x)
            x = block(x)
            if level < self.depth:
                skips.append(x)
        x = self.dropout(x)
        for up_conv, block in zip(self.up_convs, self.decoder):
            x = up_conv(x)
            skip = skips.pop()
            top = (skip.shape[2] - x.shape[2]) // 2
            left = (skip.shape[3] - x.shape[3]) // 2
            skip = skip[:, :, top : top + x.shape[2], left : left + x.shape[3]]
            x = block(torch.cat([skip, x], dim=1))
        return self.final(x)


def copy_unet2015_weights(source: UNet2015, target: NaiveUNet) -> NaiveUNet:
    """Copies the weights of a 2D :class:`UNet2015` into a :class:`NaiveUNet` of the same widths (in place).

    Raises:
        ValueError: when the two networks do not have the same layers.
    """
    source_layers = [m for m in source.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    target_layers = target.conv_layers()
    if len(source_layers) != len(target_layers):
        raise ValueError(f"UNet2015 has {len(source_layers)} convolutions, NaiveUNet {len(target_layers)}.")
    with torch.no_grad():
        for index, (src, dst) in enumerate(zip(source_layers, target_layers)):
            if type(src) is not type(dst) or src.weight.shape != dst.weight.shape:
                raise ValueError(
                    f"convolution {index} differs: {type(src).__name__}{tuple(src.weight.shape)} vs "
                    f"{type(dst).__name__}{tuple(dst.weight.shape)}."
                )
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    return target


def fixed_tile_starts(size: int, output_tile: int) -> list[tuple[int, int]]:
    """Output tiles along one axis for the usual fixed-tile loop: starts ``0, t, 2t, ...`` and a last tile shifted
    back to end at the image edge (so it overlaps its neighbour and is not aligned to the pooling grid).

    Returns:
        ``(start, first_new)`` per tile: where its output begins and from where on it writes (the pixels before
        ``first_new`` were already written by the previous tile).
    """
    if output_tile < 1 or size < output_tile:
        raise ValueError(f"an image axis of {size} pixels cannot be covered by fixed output tiles of {output_tile}.")
    starts = list(range(0, size - output_tile, output_tile)) + [size - output_tile]
    return [(start, max(start, previous + output_tile)) for previous, start in zip([-output_tile] + starts, starts)]


def fixed_tile_inference(
    image: torch.Tensor, network: Callable[[torch.Tensor], torch.Tensor], tile: int, border: int
) -> tuple[torch.Tensor, int]:
    """The usual overlap-tile loop: mirror-pad the image by ``border``, cut fixed ``tile x tile`` inputs, run them
    one at a time, paste each ``tile - 2 border`` output; where the shifted last tiles overlap, the tile run first
    keeps its pixels.

    Args:
        image: ``(B, C, H, W)``; both spatial sizes at least ``tile - 2 * border``.
        network: maps ``(1, C, tile, tile)`` to ``(1, K, tile - 2 border, tile - 2 border)``.
        tile: input tile size.
        border: pixels lost per side by the network.

    Returns:
        ``(B, K, H, W)`` logits and the number of tiles run.
    """
    if image.dim() != 4:
        raise ValueError(f"image must be (B, C, H, W), got shape {tuple(image.shape)}.")
    output_tile = tile - 2 * border
    height, width = image.shape[2:]
    padded = F.pad(image, (border, border, border, border), mode="reflect")
    rows, columns = fixed_tile_starts(height, output_tile), fixed_tile_starts(width, output_tile)
    output: torch.Tensor | None = None
    tiles = 0
    for sample in range(image.shape[0]):
        for top, first_row in rows:
            for left, first_column in columns:
                logits = network(padded[sample : sample + 1, :, top : top + tile, left : left + tile])
                tiles += 1
                if output is None:
                    output = torch.empty((image.shape[0], logits.shape[1], height, width), dtype=logits.dtype)
                output[sample, :, first_row : top + output_tile, first_column : left + output_tile] = logits[
                    0, :, first_row - top :, first_column - left :
                ]
    assert output is not None
    return output, tiles
