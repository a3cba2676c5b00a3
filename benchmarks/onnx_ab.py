#!/usr/bin/env python
"""Interleaved A/B latency of ONNX files in one process (e.g. fp32 vs int8 of the same model).

On a machine shared with other jobs, separate runs are not comparable; here every round runs each file once on the
same input, in turn, so both see the same load. Reports the median wall time and the median CPU time (user+system
of this process) per network call, and their ratio to the first file.

    python benchmarks/onnx_ab.py gem_tiny.onnx gem_tiny.int8.onnx --rounds 15
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help=".onnx files exported by gem export (same input size)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from gemseg.inference.onnx_export import create_session
    from gemseg.inference.preprocess import preprocess_image

    sessions = [create_session(f, threads=args.threads) for f in args.files]
    size = sessions[0].get_inputs()[0].shape[-1]
    x = preprocess_image(Path(__file__).resolve().parents[1] / "src/gemseg/assets/examples/glass_room.jpg",
                         size)[0].numpy()[None]
    for s in sessions:
        for _ in range(args.warmup):
            s.run(None, {"image": x})
    wall = [[] for _ in sessions]
    cpu = [[] for _ in sessions]
    for _ in range(args.rounds):
        for i, s in enumerate(sessions):
            c0, t0 = time.process_time(), time.perf_counter()
            s.run(None, {"image": x})
            wall[i].append(time.perf_counter() - t0)
            cpu[i].append(time.process_time() - c0)
    w0, c0 = np.median(wall[0]), np.median(cpu[0])
    print(f"{args.threads} threads, {args.rounds} interleaved rounds, input {size}x{size}")
    print("| file | wall ms (median) | CPU ms (median) | wall ratio | CPU ratio |")
    print("|---|---|---|---|---|")
    for f, w, c in zip(args.files, wall, cpu):
        print(f"| {Path(f).name} | {1000 * np.median(w):.0f} | {1000 * np.median(c):.0f} | "
              f"{np.median(w) / w0:.2f} | {np.median(c) / c0:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
