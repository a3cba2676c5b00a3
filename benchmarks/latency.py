#!/usr/bin/env python
"""Per-image CPU latency and peak memory of GEM-Tiny/GEM-Base (issue 2/3 benchmark).

Cases: GEM-Tiny@384, GEM-Base@384 and GEM-Tiny@1024, built from the official configs, and GEM-Lite at 320 and 448
(gemseg's own small model, `gem_lite_effnet.yaml`) (random weights unless
``--tiny-weights``/``--base-weights`` are given: the cost is the same). For each case and path

* ``torch-plain``: PyTorch eager, the model exactly as loaded (the unoptimised baseline),
* ``torch``: PyTorch eager after the exact inference rewrites (BatchNorm folded into the convolutions),
* ``onnxruntime``: the exported ONNX graph in ONNX Runtime (CPU provider, same thread count),
* ``torch-bf16`` (opt-in): PyTorch autocast bfloat16 (AVX-512 BF16 / AMX through oneDNN),
* ``onnxruntime-int8`` (opt-in): the graph quantised to int8 as ``gem export --quantize int8`` does (calibrated on
  synthesised images),

one fresh subprocess measures (after warm-up) the median/p90 of ``--runs`` runs of the network alone and of the
end-to-end path (decode → resize → network → resize back → argmax → PNG encode), the CPU time per image and the
process's peak RSS. The network scores of the bundled example image are compared with the baseline's
(``max |Δ|``): every path must agree to float rounding.

    python benchmarks/latency.py                      # all cases, 2 threads, 7 runs
    python benchmarks/latency.py --cases tiny384 --runs 10 --json latency.json

Official reference on the 2-core development machine: Tiny@384 365 ms, Base@384 1108 ms per image; peak RSS
735 MiB / 1.18 GiB. The official code cannot run here (it needs detectron2), so the ``× official`` column estimates
the official latency *of this run* from the ``torch-plain`` row measured in the same run, scaled by the idle ratio
official / torch-plain (365 / 297 for Tiny, 1108 / 890 for Base): on a busy machine the ratio stays meaningful.
``--rounds N`` repeats all variants N times, interleaved, and reports the median round.

    python benchmarks/latency.py --cases tiny384 base384 lite448 \
        --variants torch-plain onnxruntime onnxruntime-int8 torch-bf16 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
# the measured cases run in subprocesses (python -m gemseg.inference.bench): they must import this checkout too
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))

from gemseg.inference.bench import run_case_subprocess  # noqa: E402
from gemseg.inference.export_check import match_size  # noqa: E402

CONFIG_DIRS = [REPO / "src" / "gemseg" / "configs", REPO.parent / "shared" / "fixtures" / "official-configs"]
CASES = {
    "tiny384": ("GEM-Tiny", "gem_sam_tiny_bs32_iter1w_steplr.yaml", 384),
    "base384": ("GEM-Base", "gem_sam_base_bs16_iter2w_steplr.yaml", 384),
    "tiny1024": ("GEM-Tiny", "gem_sam_tiny_bs32_iter1w_steplr.yaml", 1024),
    # gemseg's own small model (the bundled default gem-lite-synth runs at 448); no official counterpart
    "lite320": ("GEM-Lite", "gem_lite_effnet.yaml", 320),
    "lite448": ("GEM-Lite", "gem_lite_effnet.yaml", 448),
}
OFFICIAL = {"tiny384": (365, 735), "base384": (1108, 1208)}
VARIANTS = ("torch-plain", "torch", "onnxruntime", "torch-bf16", "onnxruntime-int8")
DEFAULT_VARIANTS = ("torch-plain", "torch", "onnxruntime")
# variant → (backend, precision); torch-plain is the unoptimised model
VARIANT_RUN = {"torch-plain": ("torch", "fp32"), "torch": ("torch", "fp32"), "onnxruntime": ("onnxruntime", "fp32"),
               "torch-bf16": ("torch", "bf16"), "onnxruntime-int8": ("onnxruntime", "int8")}
# official / torch-plain on the idle machine (2026-11-26 table in docs/inference.md): scales this run's torch-plain
# row to an estimate of the official code's latency under the same load
OFFICIAL_OVER_PLAIN = {"tiny384": 365 / 297, "base384": 1108 / 890}


def find_config(name: str) -> Path:
    for d in CONFIG_DIRS:
        if (d / name).is_file():
            return d / name
    raise SystemExit(f"config {name} not found in {', '.join(map(str, CONFIG_DIRS))}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=VARIANTS,
                    help="paths to measure (torch-bf16: PyTorch autocast bf16; onnxruntime-int8: gem export "
                         "--quantize int8 calibrated on synthesised images); the first is the reference of the "
                         "max abs diff and mask agreement columns")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat all variants this many times, interleaved (on a busy machine: the median over "
                         "rounds is reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--tiny-weights")
    ap.add_argument("--base-weights")
    ap.add_argument("--image", help="default: the bundled example (640×416)")
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--omp-active", action="store_true",
                    help="leave OpenMP/onnxruntime threads spinning (default: OMP_WAIT_POLICY=PASSIVE, which is much "
                         "faster on a CPU shared with other processes)")
    ap.add_argument("--no-roofline", action="store_true", help="skip the FLOP count / GEMM-peak table")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="gem-latency-"))
    rows = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    for case in args.cases:
        label, cfg_name, size = CASES[case]
        weights = {"GEM-Tiny": args.tiny_weights, "GEM-Base": args.base_weights}.get(label)
        base_scores = None
        per_variant = {v: [] for v in args.variants}
        for rnd in range(args.rounds):
            for variant in args.variants:  # interleaved: every round measures every variant once
                scores_path = tmp / f"{case}-{variant}-{rnd}.npy"
                backend, precision = VARIANT_RUN[variant]
                spec = {
                    "config": str(find_config(cfg_name)), "weights": weights, "size": size, "device": "cpu",
                    "backend": backend, "precision": precision,
                    "optimize": variant != "torch-plain", "batch": 1, "runs": args.runs, "warmup": args.warmup,
                    "threads": args.threads, "image": args.image, "save_scores": str(scores_path), "seed": 0,
                    "label": f"{label}@{size}", "omp_passive": not args.omp_active,
                }
                print(f"[{time.strftime('%H:%M:%S')}] {label}@{size} {variant} (round {rnd + 1}) ...",
                      file=sys.stderr, flush=True)
                res = run_case_subprocess(spec)
                res["variant"] = variant
                res["case"] = case
                if "error" not in res and scores_path.exists():
                    s = np.load(scores_path)
                    if base_scores is None:
                        base_scores = s
                    # an int8 graph's fast head gives S/4 scores: compare after the post-processing's resize
                    s = match_size(s[None], base_scores.shape[-2:])[0]
                    res["max_abs_diff_vs_first"] = float(np.abs(s - base_scores).max())
                    res["mask_agreement_vs_first"] = float(((s[1] > s[0]) == (base_scores[1] > base_scores[0])).mean())
                per_variant[variant].append(res)
                if "error" in res:
                    print(f"  failed: {res['error']}", file=sys.stderr)
        for variant in args.variants:
            rows.append(_median_round(per_variant[variant]))
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    header = ("| model | path | network ms (median) | p90 | end-to-end ms (median) | p90 | e2e images/s | "
              "CPU ms/img (e2e) | peak RSS MiB | max abs diff vs first row | mask agreement vs first row | "
              "× official (est. same run) | official ms / RSS MiB |")
    lines = [header, "|" + "|".join(["---"] * 13) + "|"]
    plain = {r["case"]: r for r in rows if r.get("variant") == "torch-plain" and "error" not in r}
    for r in rows:
        ref = OFFICIAL.get(r["case"])
        ref_s = f"{ref[0]} / {ref[1]}" if ref and r["variant"] == args.variants[0] else ""
        if "error" in r:
            lines.append(f"| {r['label']} | {r['variant']} | error: {r['error']} |" + " |" * 10)
            continue
        n, e = r["network"], r["e2e"]
        ratio = ""
        if r["case"] in plain and r["case"] in OFFICIAL_OVER_PLAIN:
            official_now = plain[r["case"]]["network"]["median_ms"] * OFFICIAL_OVER_PLAIN[r["case"]]
            ratio = f"{n['median_ms'] / official_now:.2f}×"
        lines.append(
            f"| {r['label']} | {r['variant']} | {n['median_ms']:.0f} | {n['p90_ms']:.0f} | {e['median_ms']:.0f} | "
            f"{e['p90_ms']:.0f} | {e['fps']:.2f} | {e['cpu_ms_per_image']:.0f} | {r['peak_rss_mib']:.0f} | "
            f"{r.get('max_abs_diff_vs_first', float('nan')):.1e} | "
            f"{100 * r.get('mask_agreement_vs_first', float('nan')):.2f} % | {ratio} | {ref_s} |"
        )
    policy = "active (spinning)" if args.omp_active else "PASSIVE"
    print(f"\nCPU, {args.threads} threads (OMP_WAIT_POLICY {policy}), batch 1, median of {args.runs} runs after "
          f"{args.warmup} warm-up; image {rows[0].get('image_hw') if rows else ''}; load average {load:.1f} → {load_end:.1f}; "
          f"started {started}\n")
    print("\n".join(lines))
    roofline = [] if args.no_roofline else roofline_table(args, rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "runs": args.runs, "load_avg": [load, load_end],
                                               "results": rows, "roofline": roofline}, indent=1))
    return 1 if any("error" in r for r in rows) else 0


def _median_round(results):
    """The round whose network median is the median over rounds (all rounds kept under "rounds")."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[0]
    ok.sort(key=lambda r: r["network"]["median_ms"])
    chosen = dict(ok[len(ok) // 2])
    chosen["rounds_network_ms"] = [round(r["network"]["median_ms"], 1) for r in results if "error" not in r]
    return chosen


def roofline_table(args, rows):
    """Counted matmul/conv/attention FLOPs of each case against this machine's measured GEMM peak (same run).

    ``fp32 floor`` = FLOPs / peak: no fp32 implementation of the same arithmetic can be faster here, whatever it
    fuses. When the target (half the official time) is below the floor, only fewer FLOPs or lower precision
    (non-identical outputs) can reach it.
    """
    import torch

    from gemseg.config import get_config
    from gemseg.inference.bench import count_gemm_flops, gemm_peak_flops
    from gemseg.modeling.build import build_model, input_size_overrides

    peak32 = gemm_peak_flops(args.threads, "float32")
    peak16 = gemm_peak_flops(args.threads, "bfloat16")
    out, lines = [], []
    for case in args.cases:
        label, cfg_name, size = CASES[case]
        torch.manual_seed(0)
        model = build_model(get_config(str(find_config(cfg_name)), input_size_overrides(size)))
        flops = count_gemm_flops(model, size)
        del model
        measured = [r for r in rows if r.get("case") == case and "error" not in r]
        best = min(measured, key=lambda r: r["network"]["median_ms"]) if measured else None
        ref = OFFICIAL.get(case)
        target = ref[0] / 2 if ref else None
        floor = flops["total"] / peak32 * 1000
        row = {"case": case, "gflop": flops["total"] / 1e9, "backbone_gflop": flops.get("backbone", 0) / 1e9,
               "head_gflop": flops.get("sem_seg_head", 0) / 1e9, "fp32_peak_gflops": peak32 / 1e9,
               "bf16_peak_gflops": peak16 / 1e9, "fp32_floor_ms": floor, "target_ms": target,
               "best_network_ms": best["network"]["median_ms"] if best else None,
               "best_path": best["variant"] if best else None}
        out.append(row)
        tgt = f"{target:.0f}" if target else "–"
        reach = "–" if target is None else ("yes" if target >= floor else f"**no** (needs {flops['total'] / target / 1e6:.0f} GFLOP/s)")
        best_s = f"{row['best_network_ms']:.0f} ({row['best_path']}, {row['best_network_ms'] / floor:.2f}× floor)" if best else "–"
        lines.append(f"| {label}@{size} | {row['gflop']:.1f} ({row['backbone_gflop']:.1f} / {row['head_gflop']:.1f}) | "
                     f"{floor:.0f} | {tgt} | {best_s} | {reach} |")
    print(f"\nRoofline: measured GEMM peak with {args.threads} threads in this run: fp32 {peak32 / 1e9:.0f} GFLOP/s, "
          f"bf16 {peak16 / 1e9:.0f} GFLOP/s. FLOPs counted by torch.utils.flop_counter (matmul, conv, attention).\n")
    print("| model | GFLOP (backbone / head) | fp32 floor ms | target ms (official / 2) | best network ms | "
          "target reachable in fp32? |")
    print("|---|---|---|---|---|---|")
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    sys.exit(main())
