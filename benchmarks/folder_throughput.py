#!/usr/bin/env python
"""End-to-end images/s of ``gem predict`` on a folder of 640×480 photos (issue 15's folder target), per variant.

Every variant runs the real command (decode, resize, network, resize back, mask PNG written) on the same folder, in
interleaved rounds so that all variants see the same machine load; the table gives the median images/s as the
command reports it (model loading excluded) and the ratio to the first row, the baseline of the same run:

    OMP_WAIT_POLICY=PASSIVE python benchmarks/folder_throughput.py --rounds 3

Variants (bundled model unless --model): ``onnx-unfolded`` (fp32 ONNX without the res2 fold, 1 stream: the state
before the fold), ``onnx`` (fp32 exact head, folded), ``onnx-fast`` (fp32 fast head), ``torch``; each with
``--streams 1`` and ``--streams 2``. Without ``--folder``, ``gem synth`` makes the photos (seed 5).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

VARIANTS = ("onnx-unfolded:1", "onnx:1", "onnx:2", "onnx-fast:2", "torch:1", "torch:2")


def gem(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "gemseg.cli.main", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def export_variants(work: Path, model) -> dict:
    from gemseg.inference.onnx_export import export_onnx
    from gemseg.inference.predictor import GlassSegmentor

    net = GlassSegmentor.from_pretrained(model, optimize=False).runner.model
    files = {"onnx-unfolded": export_onnx(net, work / "unfolded.onnx", exact_rewrites=False),
             "onnx": export_onnx(net, work / "exact.onnx"),
             "onnx-fast": export_onnx(net, work / "fast.onnx", head="fast")}
    return {k: str(v) for k, v in files.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, help="folder of photos (default: 96 synthesised 640×480 JPEGs)")
    ap.add_argument("--count", type=int, default=96)
    ap.add_argument("--model", default=None, help="model name or weights (default: the bundled model)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), help="NAME:STREAMS, e.g. onnx:2 torch:1")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gemseg-folder-bench-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> int:
    folder = args.folder
    if folder is None:
        gem("synth", "--num-images", str(args.count), "--output", str(work / "synth"), "--seed", "5",
            "--size", "640x480", "--val-fraction", "0")
        folder = work / "synth" / "images" / "training"
    n = sum(1 for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    files = export_variants(work, args.model)
    rates = {v: [] for v in args.variants}
    for r in range(args.rounds):
        for v in args.variants:
            name, streams = v.split(":")
            out = work / f"out_{r}_{name}_{streams}"
            src = ["--weights", files[name]] if name in files else (["--model", args.model] if args.model else [])
            gem("predict", str(folder), "-o", str(out), "-q", "--threads", str(args.threads), "--streams", streams,
                *src)
            rates[v].append(json.loads((out / "predict_summary.json").read_text())["images_per_s"])
    base = float(np.median(rates[args.variants[0]]))
    print(f"{n} photos from {folder}, {args.threads} threads, {args.rounds} interleaved rounds, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    print("| variant | streams | images/s (median) | runs | × first row |")
    print("|---|---|---|---|---|")
    for v in args.variants:
        name, streams = v.split(":")
        med = float(np.median(rates[v]))
        print(f"| {name} | {streams} | {med:.1f} | {', '.join(f'{x:.1f}' for x in rates[v])} | {med / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
