"""Channel-count checks for images entering a network with a fixed number of input channels."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = ["EnsureChannels", "EnsureChannelsd"]

# ITU-R BT.601 luma weights, what Pillow's "L" conversion uses.
_LUMA = (0.299, 0.587, 0.114)


def _source_name(img: Any) -> str:
    if isinstance(img, MetaTensor):
        return str(img.meta.get("filename_or_obj", "<in-memory image>"))
    return "<in-memory image>"


class EnsureChannels(Transform):
    """Checks a channel-first image has ``channels`` channels, optionally converting colour to gray.

    Args:
        channels: channel count the network expects.
        convert: when ``channels == 1``, turn RGB/RGBA into gray (BT.601 luma, alpha dropped) and keep
            the gray channel of gray + alpha (2 channels, e.g. a PNG of mode ``LA``); when ``channels == 3``,
            drop the alpha of RGBA and repeat a gray (or gray + alpha) image three times. ``False`` refuses
            such images with a ``ValueError`` naming the file.
    """

    def __init__(self, channels: int, convert: bool = False) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}.")
        self.channels = channels
        self.convert = convert

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        found = img.shape[0]
        if found == self.channels:
            return img
        name = _source_name(img)
        if self.convert and self.channels == 1 and found in (2, 3, 4):
            if found == 2:  # gray + alpha
                return img[:1]
            weights = torch.as_tensor(_LUMA, dtype=img.dtype, device=img.device).view(3, *([1] * (img.ndim - 1)))
            return (img[:3] * weights).sum(dim=0, keepdim=True)
        if self.convert and self.channels == 3 and found in (1, 2, 4):
            return img[:3] if found == 4 else img[:1].repeat(3, *([1] * (img.ndim - 1)))
        hint = "" if self.convert else " (set convert=True to convert colour/gray images)"
        raise ValueError(f"{name}: expected {self.channels} channel(s), found {found}{hint}.")


class EnsureChannelsd(MapTransform):
    """Dictionary version of :class:`EnsureChannels`."""

    def __init__(self, keys: KeysCollection, channels: int, convert: bool = False, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.checker = EnsureChannels(channels=channels, convert=convert)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.checker(d[key])
        return d
