"""Pixel-wise weighted softmax cross entropy, the training loss of the original U-Net.

Reference:
    O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015, section 3, eq. (1). arXiv:1505.04597.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from monai.utils import convert_to_tensor

__all__ = ["WeightedCrossEntropyLoss"]

_REDUCTIONS = ("mean", "weighted_mean", "sum", "none")


class WeightedCrossEntropyLoss(_Loss):
    """
    Softmax cross entropy weighted per pixel by a weight map, paper eq. (1)::

        E = - sum_x w(x) * log(p_l(x)(x)),   p_k(x) = exp(a_k(x)) / sum_k' exp(a_k'(x))

    (the paper writes the energy without the minus sign; minimising ``-sum w log p`` is what it trains).
    ``a_k(x)`` are the logits, ``l(x)`` the true class of pixel ``x`` and ``w(x)`` the weight map, for
    example from :py:class:`transforms.weight_map.BorderWeightMap`.

    Reductions over the per-pixel losses ``w(x) * ce(x)``, where pixels whose target is ``ignore_index``
    count as absent (loss 0, weight 0):

    - ``"mean"`` (default): ``sum(w * ce) / M``, with ``M`` the number of non-ignored pixels over the batch
      (all pixels when ``ignore_index`` is None). With ``w = 1`` this equals ``torch.nn.CrossEntropyLoss``.
    - ``"weighted_mean"``: ``sum(w * ce) / sum(w)`` over non-ignored pixels, a weighted average that does not
      depend on the overall scale of ``w``.
    - ``"sum"``: ``sum(w * ce)``.
    - ``"none"``: the per-pixel ``w * ce`` with shape [B, 1, *spatial].

    When nothing is left to average (every pixel ignored, or ``sum(w) = 0``) the means are 0, not NaN.

    The logits must have at least two channels (one per class, softmax over the channel dimension);
    single-channel sigmoid outputs are not supported, give them two logits or use a BCE loss.

    MONAI's ``SupervisedTrainer`` calls ``loss(pred, label)`` with two arguments only; with
    ``weight_in_target=True`` the target carries the weight map as its second channel
    (``target[:, 0]`` = class ids, ``target[:, 1]`` = weight), e.g. built with ``ConcatItemsd``.

    Half-precision logits (float16, bfloat16) are upcast to float32 before the softmax: outside autocast the
    float16 cross entropy and its weighted sum over an image overflow float16's range (65504) to inf/NaN. The
    loss is then float32 (the gradient reaching the logits keeps their dtype).

    Args:
        reduction: ``"mean"``, ``"weighted_mean"``, ``"sum"`` or ``"none"``, see above.
        ignore_index: target value whose pixels do not contribute; ``None`` uses every pixel.
        weight_in_target: read the weight map from channel 1 of a two-channel target when no ``weight``
            is passed to :py:meth:`forward`.
        validate_targets: check that a floating-point target holds integer class ids (e.g. a label that was
            resampled with bilinear instead of nearest interpolation) and raise ``ValueError`` otherwise. The
            check reads a value back to the host, i.e. one device-to-host synchronisation per call on a GPU;
            pass ``False`` to skip it when the data pipeline guarantees integer labels. Integer and boolean
            targets are checked by dtype only (no synchronisation), and nothing is checked while
            ``torch.compile`` traces the loss.

    Example::

        loss = WeightedCrossEntropyLoss()
        logits = torch.randn(2, 2, 64, 64, requires_grad=True)
        target = torch.randint(0, 2, (2, 1, 64, 64))
        weight = torch.rand(2, 1, 64, 64) * 10
        loss(logits, target, weight).backward()
    """

    def __init__(
        self,
        reduction: str = "mean",
        ignore_index: int | None = None,
        weight_in_target: bool = False,
        validate_targets: bool = True,
    ) -> None:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
        super().__init__(reduction=reduction)
        self.ignore_index = ignore_index
        self.weight_in_target = weight_in_target
        self.validate_targets = validate_targets

    def _class_ids(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``target`` as int64 class ids of shape [B, *spatial]."""
        expected = (input.shape[0], *input.shape[2:])
        if target.ndim == input.ndim:
            if target.shape[1] != 1:
                raise ValueError(
                    f"target must have one channel of class ids ([B, 1, *spatial] or [B, *spatial]), "
                    f"got shape {tuple(target.shape)} for input {tuple(input.shape)}."
                )
            target = target[:, 0]
        if tuple(target.shape) != expected:
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match input {tuple(input.shape)}: "
                f"expected [B, 1, *spatial] or [B, *spatial] with B, spatial = {expected}."
            )
        if target.dtype == torch.bool or target.is_complex():
            raise ValueError(f"target must hold integer class ids, got dtype {target.dtype}.")
        if target.is_floating_point() and self.validate_targets and not torch.compiler.is_compiling():
            if not torch.equal(target, torch.round(target)):
                raise ValueError("target must hold integer class ids, found non-integer values.")
        return target.to(device=input.device, dtype=torch.long)

    def _pixel_weights(self, input: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``weight`` as a tensor of shape [B, *spatial] in the dtype of ``input``."""
        expected = (input.shape[0], *input.shape[2:])
        if weight.ndim == input.ndim:
            if weight.shape[1] != 1:
                raise ValueError(
                    f"weight must have one channel ([B, 1, *spatial] or [B, *spatial]), "
                    f"got shape {tuple(weight.shape)}."
                )
            weight = weight[:, 0]
        if tuple(weight.shape) != expected:
            raise ValueError(
                f"weight shape {tuple(weight.shape)} does not match input {tuple(input.shape)}: "
                f"expected [B, 1, *spatial] or [B, *spatial] with B, spatial = {expected}."
            )
        return weight.to(device=input.device, dtype=input.dtype)

    def forward(self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            input: logits [B, C, *spatial], C >= 2 (no softmax applied yet).
            target: class ids [B, 1, *spatial] or [B, *spatial], integer or integer-valued float; with
                ``weight_in_target`` and no ``weight``, [B, 2, *spatial] = (class ids, weight map).
            weight: per-pixel weight [B, 1, *spatial] or [B, *spatial]; ``None`` means 1 everywhere.

        Returns:
            scalar loss, or [B, 1, *spatial] for ``reduction="none"``.
        """
        # MetaTensor inputs would turn the loss into a MetaTensor; the loss is plain tensor arithmetic
        input = convert_to_tensor(input, track_meta=False)
        target = convert_to_tensor(target, track_meta=False)
        weight = None if weight is None else convert_to_tensor(weight, track_meta=False)
        if input.ndim < 2 or input.shape[1] < 2:
            raise ValueError(
                f"input must be logits [B, C, *spatial] with C >= 2 classes, got shape {tuple(input.shape)}; "
                "single-channel (sigmoid) outputs are not supported."
            )
        if input.dtype in (torch.float16, torch.bfloat16):
            input = input.float()
        if weight is None and self.weight_in_target:
            if target.ndim != input.ndim or target.shape[1] != 2:
                raise ValueError(
                    f"weight_in_target=True needs a target [B, 2, *spatial] (class ids, weight), "
                    f"got shape {tuple(target.shape)}."
                )
            target, weight = target[:, :1], target[:, 1:]
        class_ids = self._class_ids(input, target)
        ignore_index = -100 if self.ignore_index is None else self.ignore_index
        cross_entropy = F.cross_entropy(input, class_ids, reduction="none", ignore_index=ignore_index)

        if self.ignore_index is None:
            kept = torch.ones_like(cross_entropy)
        else:
            kept = (class_ids != ignore_index).to(input.dtype)
        pixel_weight = kept if weight is None else self._pixel_weights(input, weight) * kept
        weighted = pixel_weight * cross_entropy

        if self.reduction == "none":
            return weighted.unsqueeze(1)
        total = weighted.sum()
        if self.reduction == "sum":
            return total
        denominator = kept.sum() if self.reduction == "mean" else pixel_weight.sum()
        # all pixels ignored (or zero weight): the numerator is 0 too, return 0 instead of 0/0
        return total / denominator.clamp(min=torch.finfo(total.dtype).tiny)
