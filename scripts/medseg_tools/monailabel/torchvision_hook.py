"""Declares torchvision's nms/qnms operator schemas when its C++ operators did not load.

Copied into the MONAI Label environment by medseg-bundles' scripts/monailabel_app.py
(``medseg_tools/monailabel/torchvision_hook.py``, installed as ``medseg_torchvision_ops``; never imported by the
project itself, whose torchvision is not affected): torchvision 0.28 registers fake kernels for them
unconditionally, which fails with the CUDA torchvision wheel on a CPU torch. The operators stay unavailable;
the rest of torchvision works.
"""

import sys

_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


class DeclareMissingTorchvisionOps:
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision._meta_registrations":
            import torch
            import torchvision.extension

            if not torchvision.extension._has_ops():
                for name in ("nms", "qnms"):
                    try:
                        torch.library.define(f"torchvision::{name}", _SCHEMA)
                    except RuntimeError:  # already declared
                        pass
        return None  # the regular finders import the module


sys.meta_path.insert(0, DeclareMissingTorchvisionOps())
