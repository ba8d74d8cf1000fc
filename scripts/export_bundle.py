"""Export a bundle's network to TorchScript and ONNX, and check each exported file against the eager network.

Usage (``python scripts/export_bundle.py export ...``, a `fire <https://github.com/google/python-fire>`_ CLI)::

    python scripts/export_bundle.py export unet_em_segmentation                   # both formats, random weights
    python scripts/export_bundle.py export unet_em_segmentation --format onnx --ckpt runs/model.pt \\
        --defaults '{"features": [16, 32, 64, 128, 256]}' --out_dir dist/exports
    python scripts/export_bundle.py export all --defaults tests/bundle_smoke_overrides.json --exporter legacy

For each bundle, ``network_def`` of ``configs/inference.json`` is built (``--defaults`` replaces config values such
as the ``features`` the weights were trained with) and ``--ckpt`` is loaded into it (a ``state_dict``, or the
``--key_in_ckpt`` entry of a training checkpoint; default: seeded random weights). The exports go through MONAI's
bundle functions, as ``python -m monai.bundle ckpt_export`` / ``onnx_export`` would run them:

- ``OUT_DIR/<bundle>/model.ts``: ``ckpt_export`` (``torch.jit.script``; the metadata and ``inference.json`` are
  stored in the file, ``monai.data.load_net_with_metadata`` reads them back);
- ``OUT_DIR/<bundle>/model.onnx``: ``onnx_export`` (``monai.networks.utils.convert_to_onnx``) with torch's
  ``dynamo`` exporter (``torch.export``, torch's default since 2.9; needs ``onnxscript``) or the deprecated
  ``legacy`` TorchScript-based one. The weights are stored inside the file.

Each exported file is then run (``torch.jit.load`` / onnxruntime) on a seeded random input of the metadata's
input shape (``network_data_format.inputs``, batch 1; ``--input_shape`` replaces it) and compared with the eager
network: the largest absolute difference is printed, and any value outside ``atol + rtol * |eager|`` fails the
command (exit status 1, a message naming the bundle and the format).

ONNX axes (``--dynamic``): ``auto`` (default) first exports with dynamic batch and spatial axes and keeps them when
the ONNX model also matches the eager network on a second input (batch 2, first spatial axis 64 larger, which keeps
a valid size for networks that need a multiple of up to 64 or a valid-convolution tile size); otherwise it exports
with a dynamic batch only, then with the fixed example shape, and reports what it kept. Fixed spatial axes are
enough for the bundles' inferers, which run the network on fixed-size windows (the metadata's spatial shape).
``True`` requires dynamic batch and spatial axes, ``False`` exports the fixed example shape.

Exports and comparisons run on the CPU (onnxruntime's CPU provider); the exported files run on any device.

The code is ``medseg_tools.export`` (installed with the project, shared with the packages' TorchScript check of
``scripts/package_bundle.py``); this file is its command line.
"""

import sys

from medseg_tools.export import main

if __name__ == "__main__":
    sys.exit(main())
