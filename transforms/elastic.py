"""The elastic deformation of the original U-Net, on top of MONAI's ``Rand2DElasticd``.

Paper, section 3.1: "We generate smooth deformations using random displacement vectors on a coarse
3 by 3 grid. The displacements are sampled from a Gaussian distribution with 10 pixels standard
deviation. Per-pixel displacements are then computed using bicubic interpolation."

Reference:
    O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015, section 3.1. arXiv:1505.04597.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor, SequenceStr
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import Rand2DElasticd
from monai.transforms.utils import create_grid
from monai.utils import GridSamplePadMode, convert_to_tensor, ensure_tuple

__all__ = ["RandPaperElasticd"]


class RandPaperElasticd(Rand2DElasticd):
    """
    Random elastic deformation of the U-Net paper: Gaussian displacements on a coarse control grid that
    spans the image, interpolated bicubically to every pixel.

    For each call, ``grid_points`` x ``grid_points`` control points are placed on the image with the
    first and last ones on the image corners (spacing ``(size - 1) / (grid_points - 1)`` per axis, so the
    3x3 default has points at the corners, the edge midpoints and the centre, whatever the image size).
    Each control point gets a displacement vector with independent ``N(0, displacement_std^2)``
    components (in pixels); the per-pixel displacement is the bicubic interpolation of those vectors
    (PyTorch's cubic convolution, ``a = -0.75``, ``align_corners=True``, control values repeated beyond
    the grid). The displacement equals the drawn vector exactly at every control point and is smooth
    (continuous with continuous first derivatives) everywhere. The output pixel ``x`` takes the input
    value at ``x + u(x)`` (a backward map, as in MONAI's resampling); the optional affine ranges of
    ``Rand2DElasticd`` are applied on top.

    What is reused from MONAI: the random state, probability handling and ``set_random_state`` of
    ``Rand2DElasticd``; its ``RandDeformGrid`` draws the control displacements (``normal * magnitude``
    with ``magnitude_range=(displacement_std, displacement_std)``), its ``RandAffineGrid`` the optional
    affine part and its ``Resample`` the resampling of every key. What differs from calling
    ``Rand2DElasticd`` with a coarse ``spacing``: MONAI upsamples the *absolute* control-point
    coordinates with PyTorch bicubic interpolation, which does not reproduce linear functions
    (``a = -0.75``), so a coarse grid adds a fixed, non-random distortion of up to about 10 % of the
    spacing (about 12 px on a 512x512 image with a 3x3 grid, and a half-pixel shift) on top of the
    random displacements, and its control points sit on the corners only for odd image sizes. Here only
    the random displacements are interpolated and added to an exact identity grid, so a zero
    ``displacement_std`` returns the image unchanged. The spacing is recomputed from each sample's
    spatial size, because images differ in size; the last one is kept in
    ``self.rand_2d_elastic.deform_grid.spacing``.

    Args:
        keys: keys of the items to deform, channel-first 2D ([C, H, W]); all share one deformation.
        grid_points: control points per axis, >= 2 (paper: 3).
        displacement_std: standard deviation of each displacement component at the control points,
            in pixels (paper: 10).
        prob: probability of deforming a sample.
        rotate_range: optional random rotation, see ``Rand2DElasticd``.
        shear_range: optional random shear, see ``Rand2DElasticd``.
        translate_range: optional random shift in pixels, see ``Rand2DElasticd``.
        scale_range: optional random scaling, see ``Rand2DElasticd``.
        mode: interpolation per key, ``"bicubic"``, ``"bilinear"``, ``"nearest"`` or a spline order 0-5;
            a single value applies to every key. The default suits ``keys=("image", "label")``:
            bicubic for the image, nearest for the label (keeps its values); pass one entry per key for
            other key lists.
        padding_mode: how values outside the image are filled, ``"zeros"``, ``"border"`` or
            ``"reflection"`` (the paper mirrors missing context); one per key or one for all.
        device: device of the sampling grid; ``None`` uses the device of the first key's tensor.
        allow_missing_keys: don't raise an exception when a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        grid_points: int = 3,
        displacement_std: float = 10.0,
        prob: float = 1.0,
        rotate_range: Sequence[tuple[float, float] | float] | float | None = None,
        shear_range: Sequence[tuple[float, float] | float] | float | None = None,
        translate_range: Sequence[tuple[float, float] | float] | float | None = None,
        scale_range: Sequence[tuple[float, float] | float] | float | None = None,
        mode: SequenceStr = ("bicubic", "nearest"),
        padding_mode: SequenceStr = GridSamplePadMode.REFLECTION,
        device: torch.device | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        if int(grid_points) != grid_points or grid_points < 2:
            raise ValueError(f"grid_points must be an integer >= 2, got {grid_points}.")
        if displacement_std < 0:
            raise ValueError(f"displacement_std must be non-negative, got {displacement_std}.")
        num_keys = len(ensure_tuple(keys))
        for name, value in (("mode", mode), ("padding_mode", padding_mode)):
            if not isinstance(value, (str, int)) and len(ensure_tuple(value)) not in (1, num_keys):
                raise ValueError(
                    f"{name} must be one value or one per key: got {len(ensure_tuple(value))} values "
                    f"for {num_keys} keys {ensure_tuple(keys)}."
                )
        if not isinstance(mode, (str, int)) and len(ensure_tuple(mode)) == 1:
            mode = ensure_tuple(mode)[0]
        if not isinstance(padding_mode, str) and len(ensure_tuple(padding_mode)) == 1:
            padding_mode = ensure_tuple(padding_mode)[0]
        super().__init__(
            keys=keys,
            spacing=1.0,  # replaced on every call by the spacing of that sample
            magnitude_range=(float(displacement_std), float(displacement_std)),
            prob=prob,
            rotate_range=rotate_range,
            shear_range=shear_range,
            translate_range=translate_range,
            scale_range=scale_range,
            mode=mode,
            padding_mode=padding_mode,
            device=device,
            allow_missing_keys=allow_missing_keys,
        )
        self.grid_points = int(grid_points)
        self.displacement_std = float(displacement_std)

    def control_spacing(self, spatial_size: Sequence[int]) -> tuple[float, ...]:
        """Distance in pixels between neighbouring control points so that the grid spans ``spatial_size``."""
        return tuple((size - 1) / (self.grid_points - 1) for size in spatial_size)

    def control_displacements(self) -> torch.Tensor:
        """The displacements drawn at the control points by the last call, shape [2, grid_points, grid_points]."""
        deform_grid = self.rand_2d_elastic.deform_grid
        return torch.as_tensor(deform_grid.rand_mag * deform_grid.random_offset, dtype=torch.float32)

    def displacement_field(self, spatial_size: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
        """
        Per-pixel displacement (in pixels) from the control displacements of the last randomization.

        Args:
            spatial_size: (H, W) of the field.
            device: device of the returned tensor.

        Returns:
            float32 tensor [2, H, W]; channel 0 is the displacement along H, channel 1 along W.
        """
        control = self.control_displacements().to(device)
        return F.interpolate(control[None], size=tuple(spatial_size), mode="bicubic", align_corners=True)[0]

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """
        Args:
            data: dictionary whose ``keys`` hold channel-first 2D arrays or tensors of one spatial size.

        Returns:
            the dictionary with every key deformed by the same random field.
        """
        d = dict(data)
        first_key: Hashable = self.first_key(d)
        if first_key == ():
            out: dict[Hashable, NdarrayOrTensor] = convert_to_tensor(d, track_meta=get_track_meta())
            return out
        first = d[first_key]
        if first.ndim != 3:
            raise ValueError(
                f"RandPaperElasticd deforms channel-first 2D data [C, H, W]; "
                f"{first_key!r} has shape {tuple(first.shape)}."
            )
        spatial_size = tuple(int(s) for s in first.shape[1:])
        for key in self.key_iterator(d):
            if tuple(d[key].shape[1:]) != spatial_size:
                raise ValueError(
                    f"all keys must share one spatial size: {first_key!r} is {spatial_size}, "
                    f"{key!r} is {tuple(d[key].shape[1:])}."
                )

        self.randomize(None)
        elastic = self.rand_2d_elastic
        device = elastic.device
        if device is None and isinstance(first, torch.Tensor):
            device = first.device
            elastic.set_device(device)
        if isinstance(first, MetaTensor) and first.pending_operations:
            raise ValueError(f"data[{first_key!r}] has pending lazy operations; apply them before this transform.")

        grid = create_grid(spatial_size=spatial_size, device=device, backend="torch", dtype=torch.float32)
        if self._do_transform:
            elastic.deform_grid.spacing = self.control_spacing(spatial_size)
            elastic.deform_grid.randomize((self.grid_points,) * len(spatial_size))
            grid[: len(spatial_size)] += self.displacement_field(spatial_size, device=grid.device)
            grid = elastic.rand_affine_grid(grid=grid)

        for key, mode, padding_mode in self.key_iterator(d, self.mode, self.padding_mode):
            d[key] = elastic.resampler(d[key], grid, mode=mode, padding_mode=padding_mode)  # type: ignore
        return d
