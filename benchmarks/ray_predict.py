"""Throughput of ``gem predict --engine ray`` against the local engine on the same folder, and what Ray adds.

    python benchmarks/ray_predict.py [--images 32] [--size 448] [--model gem-lite-synth]

Every engine predicts the same folder twice, with ``--images`` and with a quarter of them; a straight line through
the two wall times (best of ``--repeats``, after one warm-up run) splits each run into a fixed cost (Ray start-up, actor start, model loading) and a per-image cost
(decode + network + writing the mask). Rows (one table, all measured in this run; baseline first):

* local, torch threads = CPUs (the default ``gem predict``) and local, 1 thread (what one Ray replica gets);
* ray, 1 and 2 workers (one CPU and one network thread each), a local Ray started once before the rows (its
  start-up is reported separately).

"Ray per-image overhead" = ray 1 worker's per-image cost minus local 1 thread's: the price of shipping rows and
records through Ray Data. Also checks that the ray masks equal the local 1-thread masks byte for byte.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def make_folder(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` 640×480 JPEGs with structure at several scales (decode and resize cost like photos)."""
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = np.zeros((480, 640, 3), np.float32)
        for cells in (4, 12, 40):
            img += cv2.resize(rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32), (640, 480)) / 3
        cv2.imwrite(str(root / f"img_{i:04d}.jpg"), img.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--size", type=int, default=448, help="network input size")
    ap.add_argument("--model", default="gem-lite-synth")
    ap.add_argument("--repeats", type=int, default=2, help="runs per row and folder; the fastest counts")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import torch

    from gemseg.distributed.predict import SegmentorSpec, run_predict_ray
    from gemseg.distributed.runtime import connect
    from gemseg.inference.pipeline import PredictOptions, run_predict
    from gemseg.inference.sources import expand_inputs

    cpus = os.cpu_count() or 1
    spec = SegmentorSpec(source=args.model, size=args.size, threads=1)
    quiet = dict(progress=False, log=lambda s: None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sizes = (max(1, args.images // 4), args.images)
        folders = {n: expand_inputs([str(make_folder(tmp / f"in{n}", n))]) for n in sizes}

        def local(threads: int):
            def run(items, out):
                torch.set_num_threads(threads)
                seg = SegmentorSpec(source=args.model, size=args.size, threads=threads).build()
                run_predict(seg, items, out, PredictOptions(workers=2), **quiet)
            return run

        def on_ray(workers: int):
            def run(items, out):
                run_predict_ray(spec, items, out, PredictOptions(), workers=workers, **quiet)
            return run

        rows = [(f"local, {cpus} threads", local(cpus)), ("local, 1 thread", local(1))]
        t = time.perf_counter()
        connect(num_cpus=2)
        ray_start = time.perf_counter() - t
        rows += [("ray, 1 worker", on_ray(1)), ("ray, 2 workers", on_ray(2))]

        local(1)(folders[sizes[0]], tmp / "warm-up")  # first model build, imports, file cache: not in the rows
        results = {}
        for name, fn in rows:
            times = []
            for n in sizes:
                best = float("inf")
                for rep in range(args.repeats):  # the best of a few: the machine may be shared
                    out = tmp / f"out-{name.replace(' ', '').replace(',', '-')}-{n}-{rep}"
                    t = time.perf_counter()
                    fn(folders[n], out)
                    best = min(best, time.perf_counter() - t)
                times.append(best)
            per = (times[1] - times[0]) / (sizes[1] - sizes[0])
            results[name] = (times, per, times[0] - sizes[0] * per)

        same = all((tmp / f"out-ray-2workers-{args.images}-0" / p.name).read_bytes() == p.read_bytes()
                   for p in (tmp / f"out-local-1thread-{args.images}-0").glob("*.png") if p.stem.startswith("img_"))
    print(f"{args.model} at {args.size} px, {args.images} images of 640×480, torch {torch.__version__}, {cpus} CPUs")
    print(f"| engine | {sizes[1]} images: s | images/s | per image: ms | fixed cost: s |")
    print("|---|---:|---:|---:|---:|")
    for name, (times, per, fixed) in results.items():
        print(f"| {name} | {times[1]:.1f} | {sizes[1] / times[1]:.2f} | {per * 1000:.0f} | {fixed:.1f} |")
    overhead = (results["ray, 1 worker"][1] - results["local, 1 thread"][1]) * 1000
    print(f"\nRay start-up (ray.init, local, 2 CPUs): {ray_start:.1f} s (not in the rows)")
    print(f"Ray per-image overhead (ray 1 worker − local 1 thread): {overhead:+.0f} ms")
    print(f"ray 2-worker masks identical to local 1-thread masks: {same}")


if __name__ == "__main__":
    main()
