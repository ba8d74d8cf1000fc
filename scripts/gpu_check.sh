#!/usr/bin/env bash
# The GPU check of the bundles, for a CUDA machine with this repository and ../shared/data (or $MEDSEG_DATA):
#   1. trains every bundle's paper recipe (train.json + paper.json, full width) for one epoch with AMP on cuda:0;
#   2. segments the validation images with the shipped weights on cuda:0 and on the CPU;
#   3. compares the two sets of masks (Dice >= 0.99 per image) and prints the timings.
# Usage: bash scripts/gpu_check.sh [OUT_DIR]     (default outputs/gpu_check; exit status 1 if a check fails)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-outputs/gpu_check}"
PYTHON="${PYTHON:-.venv/bin/python}"
DATA="${MEDSEG_DATA:-$(cd .. && pwd)/shared/data}"
mkdir -p "$OUT"
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this check needs a GPU')"
"$PYTHON" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"

# bundle | extra training config | shipped checkpoint | validation images (relative to DATA)
CHECKS=(
  "unet_em_segmentation||models/model.pt|isbi2012_em/image/2[0-3].png"
  "unet_em_segmentation|phc_cells.json|models/phc_cells/model.pt|phc_usiigaci/set29/raw.tif"
  "attention_resunet_cell_segmentation||models/model.pt|phc_usiigaci/set29/raw.tif"
  "lgnet_covid_ct_segmentation||models/model.pt|covid_medseg/Imgs/5[0-3].jpg"
  "mcsa_unet_nuclei_segmentation||models/model.pt|monuseg2018/images/TCGA-E2-A1B5-01Z-00-DX1.tif"
)

seconds() { local start=$SECONDS; "$@" > "$LOG" 2>&1 || { tail -n 40 "$LOG"; return 1; }; echo $((SECONDS - start)); }

failed=0
for check in "${CHECKS[@]}"; do
  IFS='|' read -r BUNDLE EXTRA CKPT IMAGES <<< "$check"
  B="bundles/$BUNDLE"
  NAME="$BUNDLE${EXTRA:+-${EXTRA%.json}}"
  WORK="$OUT/$NAME"
  mkdir -p "$WORK"
  LOG="$WORK/log.txt"
  TRAIN_CONFIGS="'$B/configs/train.json'${EXTRA:+,'$B/configs/$EXTRA'},'$B/configs/paper.json'"
  train_s=$(seconds "$PYTHON" -m monai.bundle run training --config_file "[$TRAIN_CONFIGS]" \
    --bundle_root "$B" --logging_file "$B/configs/logging.conf" --epochs 1 --val_interval 1 --amp True \
    --device "cuda:0" --ckpt_dir "$WORK/paper_models" --log_dir "$WORK/runs" --resume False) || { failed=1; continue; }
  # the inference config with the shipped weights; an extra config (e.g. phc_cells.json) may set its own widths
  # and normalisation, which inference.json must then be told
  FEATURES=()
  if [ -n "$EXTRA" ]; then
    read -r WIDTHS NORM < <("$PYTHON" -c "import json; c = json.load(open('$B/configs/$EXTRA'))
print(json.dumps(c['features']).replace(' ', ''), c['norm'])")
    FEATURES=(--features "$WIDTHS" --norm "$NORM")
  fi
  for device in cuda cpu; do
    LOG="$WORK/infer_$device.txt"
    s=$(seconds "$PYTHON" -m monai.bundle run --config_file "$B/configs/inference.json" --bundle_root "$B" \
      --ckpt_path "$B/$CKPT" --input_images "$DATA/$IMAGES" --output_dir "$WORK/masks_$device" \
      --device "$( [ $device = cuda ] && echo cuda:0 || echo cpu )" "${FEATURES[@]}") || { failed=1; continue 2; }
    eval "infer_${device}_s=$s"
  done
  agreement=$("$PYTHON" - "$WORK/masks_cuda" "$WORK/masks_cpu" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

gpu, cpu = Path(sys.argv[1]), Path(sys.argv[2])
scores = []
for mask in sorted(gpu.rglob("*_mask.png")):
    a = np.asarray(Image.open(mask)) > 0
    b = np.asarray(Image.open(cpu / mask.relative_to(gpu))) > 0
    scores.append(2.0 * (a & b).sum() / max(1, a.sum() + b.sum()))
print(f"{min(scores):.4f}" if scores else "none")
EOF
)
  status=ok
  if [ "$agreement" = none ] || "$PYTHON" -c "import sys; sys.exit(0 if float('$agreement') < 0.99 else 1)"; then
    status=FAILED
    failed=1
  fi
  printf '%-52s paper.json 1 epoch (AMP): %5ss | inference cuda %4ss, cpu %4ss | min GPU/CPU mask Dice %s %s\n' \
    "$NAME" "$train_s" "$infer_cuda_s" "$infer_cpu_s" "$agreement" "$status" | tee -a "$OUT/summary.txt"
done
exit $failed
