#!/usr/bin/env bash
# GPU readiness check for gemseg: one script, one results file, < 8 minutes on one GPU.
#
#   benchmarks/gpu_check.sh [--dry-run] [--output FILE]
#
# Steps (each appends its table/figures to the results file, default gpu_check_results.md):
#   1. FPS of GEM-Tiny@384 and GEM-Base@384 (random weights: same cost as trained ones) in fp32, fp16 and bf16
#      (gem bench: network and end-to-end latency, FPS, peak CUDA memory, mask agreement with fp32);
#   2. gem train, 300 iterations of GEM-Tiny on freshly synthesised images (gem synth, 96 images at 384x288) with
#      AMP (float16 + loss scaling): the loss must fall (mean of the first vs the last 30 logged iterations);
#      median step time and peak CUDA memory;
#   3. ONNX Runtime with the CUDA provider (fp32, GEM-Tiny@384) if onnxruntime-gpu is installed, else a line saying so.
# --dry-run runs the same steps tiny on the CPU (64 px models with a small head, fp32/bf16, 30 training
# iterations, loss window 8: 6 iterations were too few to tell a falling loss from noise; ONNX Runtime on the CPU): a test runs it (tests/inference/test_gpu_check.py).
# Exit code: 0 if every step passed, 1 otherwise (the results file says which).
set -uo pipefail

DRY=0
OUT=gpu_check_results.md
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --output) OUT="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

WORK="$(mktemp -d -t gem-gpu-check-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
FAILED=0
if [ "$DRY" = 1 ]; then
  DEVICE=cpu; SIZE=64; PRECISIONS="fp32 bf16"; RUNS=1; WARMUP=0; ITERS=30; IMAGES=4; SYNTH_SIZE=96x64
  BENCH_EXTRA=(--in-process --network-only --threads 2)
  MODEL_OPTS=(MODEL.MaskDINO.DEC_LAYERS 1 MODEL.MaskDINO.NUM_OBJECT_QUERIES 10 MODEL.MaskDINO.DIM_FEEDFORWARD 64)
  TRAIN_OPTS=(INPUT.MIN_SIZE_TEST 64 INPUT.MAX_SIZE_TEST 64 "INPUT.CROP.SIZE" "(64, 64)" INPUT.SIZE_DIVISIBILITY 64
              "INPUT.MIN_SIZE_TRAIN" "(64,)" MODEL.MaskDINO.DN_NUM 8 MODEL.MaskDINO.TRAIN_NUM_POINTS 256
              SOLVER.IMS_PER_BATCH 2 SOLVER.BASE_LR 1e-3 SOLVER.LOG_PERIOD 1)
  WINDOW=8
else
  DEVICE=cuda; SIZE=384; PRECISIONS="fp32 fp16 bf16"; RUNS=30; WARMUP=5; ITERS=300; IMAGES=96; SYNTH_SIZE=384x288
  BENCH_EXTRA=()
  MODEL_OPTS=()
  TRAIN_OPTS=(SOLVER.IMS_PER_BATCH 8 SOLVER.LOG_PERIOD 1 DATALOADER.NUM_WORKERS 4)
  WINDOW=30
fi

say() { echo "$*" | tee -a "$OUT" >&2; }
: > "$OUT"
say "# gemseg GPU check ($( [ "$DRY" = 1 ] && echo 'dry run on the CPU' || echo "device $DEVICE" ))"
say ""
say "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); host: $(hostname)"
say "- $(python -c 'import torch, gemseg; print(f"gemseg {gemseg.__version__}, torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")')"
if command -v nvidia-smi >/dev/null 2>&1; then
  say "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
fi
if [ "$DRY" = 0 ] && ! python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  say ""; say "**No CUDA device visible to PyTorch: nothing measured.** (Use --dry-run to test the script on a CPU.)"
  exit 1
fi
START=$(date +%s)

# 1. FPS per model and precision --------------------------------------------------------------------------------
say ""; say "## 1. Inference FPS ($DEVICE, size $SIZE, random weights, batch 1)"
for CFG in gem-tiny gem-base; do
  say ""; say "### $CFG"
  # shellcheck disable=SC2086
  if gem bench --config "$CFG" --sizes "$SIZE" --devices "$DEVICE" --precisions $PRECISIONS --runs "$RUNS" \
       --warmup "$WARMUP" "${BENCH_EXTRA[@]}" --json "$WORK/bench_$CFG.json" \
       ${MODEL_OPTS[@]+--opts "${MODEL_OPTS[@]}"} > "$WORK/bench_$CFG.md" 2> "$WORK/bench_$CFG.err"; then
    cat "$WORK/bench_$CFG.md" | tee -a "$OUT" >&2
  else
    FAILED=1; say "FAILED: gem bench $CFG"; tail -5 "$WORK/bench_$CFG.err" | tee -a "$OUT" >&2
  fi
done

# 2. training with AMP on freshly synthesised data ----------------------------------------------------------------
say ""; say "## 2. gem train: $ITERS iterations of GEM-Tiny with AMP on $IMAGES synthesised images ($SYNTH_SIZE)"
if gem synth --num-images "$IMAGES" --output "$WORK/synth" --size "$SYNTH_SIZE" --seed 11 --quiet \
     > "$WORK/synth.log" 2>&1; then
  python - "$WORK" "$DEVICE" "$ITERS" "$WINDOW" "${MODEL_OPTS[@]}" "${TRAIN_OPTS[@]}" > "$WORK/train.md" 2> "$WORK/train.err" <<'PY'
import json, resource, statistics, sys, time
from pathlib import Path

import torch

from gemseg.cli.main import main

work, device, iters, window, opts = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
out = work / "train"
t0 = time.time()
code = main(["train", "--config-file", "gem-tiny", "--device", device, "OUTPUT_DIR", str(out),
             "DATASETS.TRAIN", f"('{work / 'synth'}',)", "DATASETS.TEST", "()", "TEST.EVAL_PERIOD", "0",
             "MODEL.WEIGHTS", "", "SOLVER.MAX_ITER", str(iters), "SOLVER.CHECKPOINT_PERIOD", "100000",
             "SOLVER.AMP.ENABLED", "True", *opts])
wall = time.time() - t0
rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
rows = [r for r in rows if "total_loss" in r]
first = statistics.mean(r["total_loss"] for r in rows[:window])
last = statistics.mean(r["total_loss"] for r in rows[-window:])
step = statistics.median(r["time"] for r in rows[1:] if "time" in r) if len(rows) > 1 else float("nan")
mem = (f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB CUDA peak" if torch.cuda.is_available() and device == "cuda"
       else f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB peak RSS")
fell = last < first
print(f"| iterations | exit code | total_loss first {window} → last {window} (mean) | loss fell | median step s | "
      f"memory | wall s |")
print("|---|---|---|---|---|---|---|")
print(f"| {len(rows)} | {code} | {first:.2f} → {last:.2f} | {'yes' if fell else '**no**'} | {step:.3f} | {mem} | {wall:.0f} |")
sys.exit(0 if code == 0 and fell else 1)
PY
  STATUS=$?
  cat "$WORK/train.md" | tee -a "$OUT" >&2
  if [ $STATUS -ne 0 ]; then FAILED=1; say "FAILED: training (exit $STATUS)"; tail -5 "$WORK/train.err" | tee -a "$OUT" >&2; fi
else
  FAILED=1; say "FAILED: gem synth"; tail -5 "$WORK/synth.log" | tee -a "$OUT" >&2
fi

# 3. ONNX Runtime (CUDA provider when present) ---------------------------------------------------------------------
say ""; say "## 3. ONNX Runtime"
ORT_DEVICE=$DEVICE
if [ "$DRY" = 0 ] && ! python -c 'import onnxruntime as o, sys; sys.exit(0 if "CUDAExecutionProvider" in o.get_available_providers() else 1)' 2>/dev/null; then
  say "skipped: onnxruntime has no CUDAExecutionProvider here (pip install onnxruntime-gpu)"
else
  if gem bench --config gem-tiny --sizes "$SIZE" --devices "$ORT_DEVICE" --backends onnxruntime --runs "$RUNS" \
       --warmup "$WARMUP" "${BENCH_EXTRA[@]}" ${MODEL_OPTS[@]+--opts "${MODEL_OPTS[@]}"} \
       > "$WORK/ort.md" 2> "$WORK/ort.err"; then
    cat "$WORK/ort.md" | tee -a "$OUT" >&2
  else
    FAILED=1; say "FAILED: ONNX Runtime"; tail -5 "$WORK/ort.err" | tee -a "$OUT" >&2
  fi
fi

say ""; say "Total wall time: $(( $(date +%s) - START )) s; result: $( [ $FAILED = 0 ] && echo PASS || echo FAIL )"
exit $FAILED
