"""Training losses: the original U-Net's pixel-wise weighted softmax cross entropy (alone or with a Dice term) and
LG-Net's Tversky + focal loss.

Reference:
    O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015, section 3, eq. (1). arXiv:1505.04597.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, FocalLoss, TverskyLoss
from monai.utils import convert_to_tensor
from torch.nn.modules.loss import _Loss

__all__ = ["WeightedCrossEntropyLoss", "DiceWeightedCELoss", "TverskyFocalLoss"]

_REDUCTIONS = ("mean", "weighted_mean", "sum", "none")


class WeightedCrossEntropyLoss(_Loss):
    """
    Softmax cross entropy weighted per pixel by a weight map, paper eq. (1)::

        E = - sum_x w(x) * log(p_l(x)(x)),   p_k(x) = exp(a_k(x)) / sum_k' exp(a_k'(x))

    (the paper writes the energy without the minus sign; minimising ``-sum w log p`` is what it trains).
    ``a_k(x)`` are the logits, ``l(x)`` the true class of pixel ``x`` and ``w(x)`` the weight map, for
    example from :py:class:`transforms.BorderWeightMap`.

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


class DiceWeightedCELoss(_Loss):
    """Soft Dice loss plus the U-Net's weight-map cross entropy (paper eq. (1), :class:`WeightedCrossEntropyLoss`)::

        L = lambda_dice * Dice(softmax(a), onehot(l)) + lambda_ce * sum_x w(x) ce(x) / M

    Our choice for the release recipe, not the paper's: at the few minutes of training a CPU allows, the
    weight-map cross entropy alone learns the separating membranes but leaves the overlap low for a long time;
    the Dice term (MONAI's ``DiceLoss``, softmax over the classes, background included) pulls the overlap up
    from the first epochs while the weight map keeps its border emphasis. ``lambda_dice=0`` is the paper's loss.

    The target is ``[B, 2, *spatial]`` = (class ids, weight map) as for ``WeightedCrossEntropyLoss(weight_in_target
    =True)``, so MONAI's ``SupervisedTrainer`` can call ``loss(pred, label)``. Logits in bf16/fp16 are upcast to
    float32 first.

    Args:
        lambda_dice: weight of the Dice term, >= 0.
        lambda_ce: weight of the weighted cross entropy, >= 0.
        dice_kwargs: extra arguments of ``monai.losses.DiceLoss`` (``softmax`` and ``to_onehot_y`` are set here).
    """

    #: the target carries the weight map (read by code that builds targets for a loss, e.g. the benchmarks)
    weight_in_target = True

    def __init__(self, lambda_dice: float = 1.0, lambda_ce: float = 1.0, dice_kwargs: dict | None = None) -> None:
        super().__init__()
        if lambda_dice < 0 or lambda_ce < 0:
            raise ValueError(f"lambda_dice and lambda_ce must be >= 0, got {lambda_dice} and {lambda_ce}.")
        self.lambda_dice = float(lambda_dice)
        self.lambda_ce = float(lambda_ce)
        self.dice = DiceLoss(softmax=True, to_onehot_y=True, **(dice_kwargs or {}))
        self.cross_entropy = WeightedCrossEntropyLoss(weight_in_target=True, validate_targets=False)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        input = convert_to_tensor(input, track_meta=False)
        target = convert_to_tensor(target, track_meta=False)
        if target.ndim != input.ndim or target.shape[1] != 2:
            raise ValueError(
                f"target must be [B, 2, *spatial] (class ids, weight map), got shape {tuple(target.shape)} "
                f"for input {tuple(input.shape)}."
            )
        if input.dtype in (torch.float16, torch.bfloat16):
            input = input.float()
        loss = self.lambda_ce * self.cross_entropy(input, target)
        if self.lambda_dice:
            loss = loss + self.lambda_dice * self.dice(input, target[:, :1])
        return loss


class TverskyFocalLoss(_Loss):
    """Weighted sum of a Tversky ("Dice") loss and a focal loss, the training loss of LG-Net (Lu, Yuan, Xu 2023,
    Sec. 2.5, Eqs. 14-16)::

        L = tversky_weight * L_Tversky + focal_weight * L_Focal    (paper: 0.3, 0.7; alpha = beta = 0.5; gamma = 2)

    Both terms are MONAI's, composed as they are:

    - ``L_Tversky`` = :class:`monai.losses.TverskyLoss`: per image (or per batch with ``batch=True``) and channel
      ``1 - (TP + smooth_nr) / (TP + alpha * FP + beta * FN + smooth_dr)`` on soft counts, averaged over images and
      channels. Note the convention: ``alpha`` weighs false positives and ``beta`` false negatives (MONAI's and
      Salehi et al.'s); the paper's Eq. (14) writes them the other way round, which makes no difference at the
      paper's ``alpha = beta = 0.5`` (then the term is the soft Dice loss).
    - ``L_Focal`` = :class:`monai.losses.FocalLoss` with ``use_softmax=softmax`` and no class weighting
      (``focal_alpha=None``): per element ``-(1 - p_t)^gamma * log(p_t)``, averaged over all elements (computed in
      float32 by MONAI). With ``include_background=False`` the softmax still runs over all channels and the
      background channel is dropped afterwards, as in the Tversky term (MONAI's ``FocalLoss`` would drop the
      background logit before its softmax). With
      ``sigmoid=True`` and one output channel ``p_t`` is ``p`` on foreground and ``1 - p`` on background pixels, i.e.
      exactly Eq. (15) for the two classes foreground/background, ``-1/N sum_n sum_c g_n(c) (1 - p_n(c))^2 log
      p_n(c)``. With ``softmax=True`` and ``K`` channels MONAI averages over the ``K`` channels as well, giving
      Eq. (15) divided by ``K``.

    Scale relative to the paper: Eq. (14) sums ``1 - TI`` over the classes where MONAI averages, so with ``K``
    channels both terms, and hence ``L``, are the paper's divided by ``K`` (``K = 1`` for the binary sigmoid
    output: identical). A constant factor changes neither the minimiser nor, for Adam (the paper's optimiser), the
    updates, apart from its epsilon. With a single sigmoid channel the Tversky term covers the foreground only
    (Eq. 14 with ``c = 0`` the lesion class); use two softmax channels to include the background.

    Args:
        tversky_weight: weight of the Tversky term (paper: ``gamma = 0.3`` of Eq. 16).
        focal_weight: weight of the focal term (paper: ``1 - gamma = 0.7``).
        alpha: Tversky weight of false positives.
        beta: Tversky weight of false negatives.
        gamma: focusing parameter of the focal term (paper: 2).
        include_background: whether channel 0 enters both terms (MONAI semantics; ignored for one channel).
        to_onehot_y: convert a class-id target ``[B, 1, *spatial]`` to one-hot (multi-class softmax).
        sigmoid: apply a sigmoid to the logits (binary / multi-label); default: ``not softmax``.
        softmax: apply a softmax over the channels (multi-class). Exactly one of ``sigmoid``/``softmax`` is used.
        smooth_nr: added to the Tversky numerator.
        smooth_dr: added to the Tversky denominator.
        batch: sum the Tversky counts over the batch before the ratio (MONAI ``batch``).
        focal_alpha: MONAI ``FocalLoss`` ``alpha`` class balancing; ``None`` (paper) for none.
        reduction: ``"mean"`` (default) or ``"sum"`` of both terms over images and channels (MONAI semantics; the
            focal ``"sum"`` first averages over the spatial axes).

    Example::

        loss = TverskyFocalLoss(sigmoid=True)  # LG-Net, binary lesion mask, 1 logit channel
        multi = TverskyFocalLoss(softmax=True, to_onehot_y=True)  # background / GGO / consolidation, 3 logits
    """

    def __init__(
        self,
        tversky_weight: float = 0.3,
        focal_weight: float = 0.7,
        alpha: float = 0.5,
        beta: float = 0.5,
        gamma: float = 2.0,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool | None = None,
        softmax: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        focal_alpha: float | None = None,
        reduction: str = "mean",
    ) -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"TverskyFocalLoss: reduction must be 'mean' or 'sum', got {reduction!r}.")
        super().__init__(reduction=reduction)
        if sigmoid is None:
            sigmoid = not softmax
        if bool(sigmoid) == bool(softmax):
            raise ValueError(
                "TverskyFocalLoss: exactly one of sigmoid and softmax must be True (the focal term needs the logits' "
                f"activation), got sigmoid={sigmoid!r}, softmax={softmax!r}."
            )
        for name, value in (("tversky_weight", tversky_weight), ("focal_weight", focal_weight), ("gamma", gamma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"TverskyFocalLoss: {name} must be a non-negative number, got {value!r}.")
        self.tversky_weight = float(tversky_weight)
        self.focal_weight = float(focal_weight)
        self.tversky = TverskyLoss(
            include_background=include_background,
            to_onehot_y=to_onehot_y,
            sigmoid=bool(sigmoid),
            softmax=bool(softmax),
            alpha=alpha,
            beta=beta,
            reduction=reduction,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            batch=batch,
        )
        # element-wise focal losses on all channels, background removed afterwards: MONAI's FocalLoss would drop the
        # background logit before its softmax, i.e. renormalise over the foreground classes only, unlike TverskyLoss
        self.include_background = include_background
        self.focal = FocalLoss(
            include_background=True,
            to_onehot_y=to_onehot_y,
            gamma=gamma,
            alpha=focal_alpha,
            reduction="none",
            use_softmax=bool(softmax),
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits ``[B, C, *spatial]`` (no activation applied yet).
            target: ``[B, C, *spatial]`` (one-hot / binary), or class ids ``[B, 1, *spatial]`` with
                ``to_onehot_y=True``.

        Returns:
            the scalar loss.
        """
        input = convert_to_tensor(input, track_meta=False)
        target = convert_to_tensor(target, track_meta=False)
        focal = self.focal(input, target)
        if not self.include_background and focal.shape[1] > 1:
            focal = focal[:, 1:]
        if self.reduction == "sum":
            focal = focal.flatten(2).mean(dim=2).sum()  # MONAI FocalLoss "sum": spatial mean, sum over images, channels
        else:
            focal = focal.mean()
        return self.tversky_weight * self.tversky(input, target) + self.focal_weight * focal
