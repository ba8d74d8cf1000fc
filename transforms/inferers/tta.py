"""Test-time augmentation over the dihedral group, with an optional uncertainty map."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data.meta_tensor import MetaTensor
from monai.inferers import Inferer, SimpleInferer
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type, ensure_tuple

__all__ = ["TTA_TRANSFORMS", "TestTimeAugmentationInferer", "SplitUncertaintyd"]

# Elements of the dihedral group as (number of 90-degree rotations, flip of the second axis first).
TTA_TRANSFORMS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),  # no augmentation: only the activation (and a zero uncertainty) is applied
    "d4": tuple((k, flip) for flip in (False, True) for k in range(4)),
    "flips": ((0, False), (0, True), (2, True), (2, False)),  # identity, flip 2nd axis, flip 1st axis, flip both
    "rot90": tuple((k, False) for k in range(4)),
}
_ACTIVATIONS = ("softmax", "sigmoid")
_UNCERTAINTIES = ("variance", "entropy")


class TestTimeAugmentationInferer(Inferer):
    """Averages the predictions over flipped and 90-degree-rotated copies of the input, the paper's "averaging over
    7 rotated versions of the input data" for the EM challenge (Ronneberger et al. 2015, Sec. 4) extended to the
    full dihedral group.

    Each copy ``g(x)`` is predicted by ``base_inferer``; the prediction is mapped back with ``g^-1``, converted to
    probabilities by ``activation`` (before averaging, so the mean is a mean of probabilities) and averaged.
    Rotations act on two spatial axes (the last two by default); for non-square inputs a 90-degree rotation swaps
    their lengths, so the base inferer must accept both orientations (:class:`OverlapTileInferer` does; a plain call
    of a fully convolutional network does if both sizes are valid).

    Optionally a per-pixel uncertainty map is appended as one extra LAST channel (``C + 1`` channels, so the
    usual evaluation and post-processing can work on the first ``C``; :class:`SplitUncertaintyd` moves it to its own
    key):

        - ``"variance"``: population variance of the probabilities across the augmented copies, averaged over the
          channels (for a 2-class softmax both channels have the same variance). 0 when all copies agree.
        - ``"entropy"``: predictive entropy of the mean probabilities in nats: ``-sum_c p_c log p_c`` for softmax
          (``log C`` for a uniform prediction); for sigmoid, the mean over channels of the binary entropies.

    Args:
        base_inferer: inferer run on every augmented copy (default: ``SimpleInferer``, the network on the whole input).
        transforms: ``"d4"`` (8 copies: 4 rotations, each with and without a flip; identity included),
            ``"flips"`` (4: identity, both single-axis flips, both axes) or ``"rot90"`` (4 rotations).
        activation: ``"softmax"`` over the channels (default), ``"sigmoid"``, a callable, or ``None`` to average raw
            outputs. A callable is treated as giving categorical probabilities for ``"entropy"``.
        uncertainty: ``None``, ``"variance"`` or ``"entropy"``.
        spatial_axes: the two spatial axes (0-based among the spatial axes, negative counts from the end) the
            rotations and flips act on.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(
        self,
        base_inferer: Inferer | None = None,
        transforms: str = "d4",
        activation: str | Callable[[torch.Tensor], torch.Tensor] | None = "softmax",
        uncertainty: str | None = None,
        spatial_axes: tuple[int, int] = (-2, -1),
    ) -> None:
        super().__init__()
        if transforms not in TTA_TRANSFORMS:
            raise ValueError(f"transforms must be one of {tuple(TTA_TRANSFORMS)}, got {transforms!r}.")
        if activation is not None and not callable(activation) and activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, a callable or None, got {activation!r}.")
        if uncertainty is not None and uncertainty not in _UNCERTAINTIES:
            raise ValueError(f"uncertainty must be one of {_UNCERTAINTIES} or None, got {uncertainty!r}.")
        if uncertainty == "entropy" and activation is None:
            raise ValueError("uncertainty='entropy' needs probabilities: set activation.")
        if len(tuple(spatial_axes)) != 2:
            raise ValueError(f"spatial_axes must name two spatial axes, got {spatial_axes!r}.")
        self.base_inferer = base_inferer if base_inferer is not None else SimpleInferer()
        self.transforms = transforms
        self.activation = activation
        self.uncertainty = uncertainty
        self.spatial_axes = tuple(spatial_axes)

    def _axes(self, tensor: torch.Tensor) -> tuple[int, int]:
        spatial_dims = tensor.dim() - 2
        if spatial_dims < 2:
            raise ValueError(f"test-time rotations need at least 2 spatial axes, got shape {tuple(tensor.shape)}.")
        if not all(-spatial_dims <= a < spatial_dims for a in self.spatial_axes):
            raise ValueError(f"spatial_axes {self.spatial_axes} are not axes of {spatial_dims} spatial axes.")
        first, second = (a % spatial_dims + 2 for a in self.spatial_axes)
        if first == second:
            raise ValueError(f"spatial_axes {self.spatial_axes} name the same axis twice.")
        return first, second

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.activation == "softmax":
            return torch.softmax(logits, dim=1)
        if self.activation == "sigmoid":
            return torch.sigmoid(logits)
        if callable(self.activation):
            return self.activation(logits)
        return logits

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Mean (and optionally uncertainty) of the predictions of all augmented copies of ``inputs``.

        Args:
            inputs: batch ``B, C_in, *spatial``.
            network: the network; extra ``args``/``kwargs`` go to the base inferer.

        Returns:
            mean probabilities ``B, C(+1), *spatial`` (at least float32), a :class:`MetaTensor` with the input's
            metadata when the input is one.
        """
        image = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        axes = self._axes(image)
        mean: torch.Tensor | None = None
        spread: torch.Tensor | None = None  # Welford's running sum of squared deviations: exactly 0 for equal copies
        for count, (rotations, flip) in enumerate(TTA_TRANSFORMS[self.transforms], start=1):
            augmented = image.flip(axes[1]) if flip else image
            augmented = torch.rot90(augmented, rotations, dims=axes)
            predicted = self.base_inferer(augmented, network, *args, **kwargs)
            if isinstance(predicted, MetaTensor):
                predicted = predicted.as_tensor()
            if not isinstance(predicted, torch.Tensor):
                raise ValueError(f"the base inferer must return one tensor, got {type(predicted).__name__}.")
            restored = torch.rot90(predicted, -rotations, dims=axes)
            restored = restored.flip(axes[1]) if flip else restored
            probabilities = self._probabilities(restored)
            probabilities = probabilities.to(torch.promote_types(probabilities.dtype, torch.float32))
            if mean is None:
                mean, spread = probabilities.clone(), torch.zeros_like(probabilities)
                continue
            if probabilities.shape != mean.shape:
                raise ValueError(
                    f"augmented predictions differ in shape ({tuple(probabilities.shape)} vs {tuple(mean.shape)}); "
                    "the base inferer must accept both orientations of a non-square input."
                )
            deviation = probabilities - mean
            mean = mean + deviation / count
            spread = spread + deviation * (probabilities - mean)
        assert mean is not None and spread is not None
        result = mean
        if self.uncertainty == "variance":
            variance = spread / len(TTA_TRANSFORMS[self.transforms])
            result = torch.cat([mean, variance.mean(dim=1, keepdim=True)], dim=1)
        elif self.uncertainty == "entropy":
            result = torch.cat([mean, self._entropy(mean)], dim=1)
        if isinstance(inputs, MetaTensor):
            return convert_to_dst_type(result, inputs, dtype=result.dtype, device=result.device)[0]
        return result

    def _entropy(self, mean: torch.Tensor) -> torch.Tensor:
        if self.activation == "sigmoid":
            binary = -(torch.special.xlogy(mean, mean) + torch.special.xlogy(1 - mean, 1 - mean))
            return binary.mean(dim=1, keepdim=True)
        return -torch.special.xlogy(mean, mean).sum(dim=1, keepdim=True)


class SplitUncertaintyd(MapTransform):
    """Moves the uncertainty channel appended by :class:`TestTimeAugmentationInferer` (the LAST channel of each key)
    into its own key, leaving the class probabilities in place. :class:`MetaTensor` metadata is kept on both.

    Args:
        keys: keys of the predictions (channel-first, e.g. after ``decollate_batch``).
        uncertainty_key: destination key, one per key in ``keys``.
        channel_dim: channel axis (0 for decollated items, 1 for batched ones).
        allow_missing_keys: don't raise when a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        uncertainty_key: Sequence[Hashable] | Hashable = "uncertainty",
        channel_dim: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        destinations = ensure_tuple(uncertainty_key)
        if len(destinations) == 1:
            destinations = destinations * len(self.keys)
        if len(destinations) != len(self.keys):
            raise ValueError(f"need one uncertainty_key per key: {len(self.keys)} keys, {len(destinations)} targets.")
        if len(self.keys) > 1 and len(set(destinations)) != len(destinations):
            raise ValueError("several keys would write to the same uncertainty_key.")
        self.uncertainty_keys = destinations
        self.channel_dim = channel_dim

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key, destination in self.key_iterator(d, self.uncertainty_keys):
            value = d[key]
            channels = value.shape[self.channel_dim]
            if channels < 2:
                raise ValueError(
                    f"{key!r} has {channels} channel(s) along axis {self.channel_dim}; expected the class channels "
                    "plus the uncertainty channel."
                )
            d[destination] = value.narrow(self.channel_dim, channels - 1, 1)
            d[key] = value.narrow(self.channel_dim, 0, channels - 1)
        return d
