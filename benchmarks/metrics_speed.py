"""Metric computation speed: gemseg's streaming GlassMetrics vs pysodmetrics, same data, same run.

    python benchmarks/metrics_speed.py [--images 600]

pysodmetrics pins old numpy/OpenCV, so it may live in another interpreter: set GEMSEG_PYSODMETRICS_PYTHON (as
.ci/run does); otherwise it is imported in-process if available. Prints a table (seconds, speed-up, max |Δ| of the
four paper metrics).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

SOD_SCRIPT = r"""
import json, sys, time, numpy as np, py_sod_metrics as sod
sys.path.insert(0, sys.argv[3])
from metrics_speed import make_data
data = make_data(int(sys.argv[1]), sys.argv[2])
t = time.perf_counter()
fm, mae = sod.Fmeasure(beta=0.3), sod.MAE()
v2 = sod.FmeasureV2(metric_handlers={
    "iou": sod.IOUHandler(with_dynamic=False, with_adaptive=False, with_binary=True, sample_based=True),
    "ber": sod.BERHandler(with_dynamic=False, with_adaptive=False, with_binary=True, sample_based=True)})
for p, g in data:
    fm.step(p, g, normalize=False); mae.step(p, g, normalize=False); v2.step(p, g, normalize=False)
r = fm.get_results(); P, R = r["pr"]["p"], r["pr"]["r"]; r2 = v2.get_results()
print(json.dumps({"seconds": time.perf_counter() - t, "IoU": float(r2["iou"]["binary"]),
                  "Fbeta": float(np.nanmax(1.3 * P * R / (0.3 * P + R))), "MAE": float(mae.get_results()["mae"]),
                  "BER": 100 * float(r2["ber"]["binary"])}))
"""


def make_data(n: int, kind: str):
    """n deterministic 640×480 (prediction, GT) pairs; ``kind`` = soft or binary predictions."""
    rng = np.random.default_rng(0)
    base = rng.random((480, 640))
    out = []
    for i in range(n):
        gt = np.roll(base, 7 * i, axis=1) < 0.55
        p = np.clip(gt * 0.5 + np.roll(base, 3 * i, axis=0) * 0.5, 0, 1)
        p[0, 0] = 1.0
        if kind == "binary":
            p = (p >= 0.5).astype(np.float64)
        out.append((p, gt))
    return out


def run_ours(n: int, kind: str) -> dict:
    from gemseg.evaluation import GlassMetrics

    data = make_data(n, kind)
    t = time.perf_counter()
    m = GlassMetrics()
    for p, g in data:
        m.update(p, g)
    res = m.compute()
    return {"seconds": time.perf_counter() - t, **{k: float(res[k]) for k in ("IoU", "Fbeta", "MAE", "BER")}}


def run_sod(n: int, kind: str):
    here = os.path.dirname(os.path.abspath(__file__))
    py = sys.executable if importlib.util.find_spec("py_sod_metrics") else os.environ.get("GEMSEG_PYSODMETRICS_PYTHON")
    if not py:
        return None
    out = subprocess.run([py, "-c", SOD_SCRIPT, str(n), kind, here], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=600)
    args = ap.parse_args()
    print(f"| maps | gemseg s | pysodmetrics s | speed-up | max |Δ| IoU/Fβ/MAE/BER |  ({args.images} × 640×480)")
    print("|---|---:|---:|---:|---|")
    for kind in ("soft", "binary"):
        ours, sod = run_ours(args.images, kind), run_sod(args.images, kind)
        if sod is None:
            print(f"| {kind} | {ours['seconds']:.2f} | n/a (pysodmetrics not available) | | |")
            continue
        d = " / ".join(f"{abs(ours[k] - sod[k]):.1e}" for k in ("IoU", "Fbeta", "MAE", "BER"))
        print(f"| {kind} | {ours['seconds']:.2f} | {sod['seconds']:.2f} | {sod['seconds'] / ours['seconds']:.1f}× | {d} |")


if __name__ == "__main__":
    main()
