"""``gem bench``: latency, FPS and peak memory per model/size/device/backend/precision/batch size.

    gem bench --config gem_sam_tiny.yaml --weights model.pth --sizes 384 1024 --batch-sizes 1 4 --runs 20
    gem bench --config gem_sam_tiny.yaml --backends torch onnxruntime --threads 2 --json bench.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from gemseg.cli.predict import MODEL_HELP
from gemseg.errors import GemsegError


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_text,
        description=help_text + ". Network-only and end-to-end (decode → resize → model → resize back → PNG encode) "
        "latency: warm-up, then median and p90 of N runs; every case runs in its own subprocess so that the peak "
        "memory is per case. See docs/inference.md for exactly what FPS means.",
    )
    g = p.add_argument_group("model")
    g.add_argument("--config", "-c", help="official GEM YAML config or shipped name (gem-tiny, gem-base, ...); "
                   "alone: that architecture with random weights (same cost as trained ones)")
    g.add_argument("--weights", "-w", help="weights (.pth/.pkl/.safetensors/.onnx)")
    g.add_argument("--model", "-m", metavar="NAME", help=MODEL_HELP)
    g.add_argument("--opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                   help="config overrides (must come last)")
    c = p.add_argument_group("cases (every combination is measured)")
    c.add_argument("--sizes", type=int, nargs="+", default=[None], help="network input sizes (default: config's)")
    c.add_argument("--batch-sizes", type=int, nargs="+", default=[1], metavar="B",
                   help="images per network call; latency is reported per image (call time / B) and FPS = B / time")
    c.add_argument("--devices", nargs="+", default=["auto"], help="auto | cpu | cuda | mps")
    c.add_argument("--precisions", nargs="+", default=["fp32"], choices=("fp32", "fp16", "bf16", "int8"),
                   metavar="P",
                   help="fp32; bf16 (PyTorch autocast, CPU with AVX-512 BF16/AMX or CUDA); fp16 (CUDA/MPS); int8 "
                        "(ONNX Runtime, quantised on synthesised images or --calibration). fp16/bf16 run with the "
                        "torch backend, int8 with onnxruntime; every row reports its mask agreement with the fp32 row "
                        "of the same size and device")
    c.add_argument("--calibration", metavar="DIR", help="photos to calibrate int8 on; without it, synthesised images")
    c.add_argument("--backends", nargs="+", default=["torch"], choices=("torch", "onnxruntime"),
                   help="inference engines to time: PyTorch and/or ONNX Runtime (the model is exported first)")
    c.add_argument("--no-optimize", action="store_true", help="also measure the unoptimised PyTorch model")
    m = p.add_argument_group("measurement")
    m.add_argument("--runs", type=int, default=10, help="timed runs per case")
    m.add_argument("--warmup", type=int, default=2, help="discarded runs before timing")
    m.add_argument("--threads", type=int, default=None, help="CPU threads (torch and onnxruntime)")
    m.add_argument("--image", help="image for the end-to-end path (default: the bundled example)")
    m.add_argument("--network-only", action="store_true", help="skip the end-to-end measurement")
    m.add_argument("--in-process", action="store_true", help="no subprocess per case (peak memory is cumulative)")
    m.add_argument("--omp-passive", action="store_true",
                   help="run cases with OMP_WAIT_POLICY=PASSIVE (idle threads sleep: far faster on a busy CPU)")
    m.add_argument("--json", dest="json_out", help="write the results to this JSON file")
    return p


BACKEND_PRECISIONS = {"torch": ("fp32", "fp16", "bf16"), "onnxruntime": ("fp32", "int8")}


def _config_arg(config):
    """Absolute path for files (the subprocess may run elsewhere); shipped names stay names."""
    if config is None:
        return None
    return str(Path(config).resolve()) if Path(config).exists() else str(config)


def run(args) -> int:
    import shutil

    from gemseg.inference.bench import add_agreement, format_table, run_case, run_case_subprocess

    if args.runs < 1 or args.warmup < 0:
        raise GemsegError("--runs must be >= 1 and --warmup >= 0")
    from gemseg.zoo import resolve_model

    src = resolve_model(args.model, args.weights, args.config)  # downloads once here, not in every case
    weights = str(src.weights.resolve()) if src.weights is not None else None
    config = src.config
    if args.image and not Path(args.image).is_file():
        raise GemsegError(f"image not found: {args.image}")
    variants = [(b, True) for b in args.backends]
    if args.no_optimize and "torch" in args.backends:
        variants.insert(args.backends.index("torch"), ("torch", False))
    results = []
    cases = list(itertools.product(args.sizes, args.devices, args.precisions, variants, args.batch_sizes))
    if src.random_init:
        print("gem bench: no weights: timing a randomly initialised model (same cost as a trained one)",
              file=sys.stderr)
    print(f"gem bench: model {src.label}", file=sys.stderr)
    if "int8" in args.precisions and "onnxruntime" not in args.backends:
        raise GemsegError("--precisions int8 needs --backends onnxruntime (int8 runs in ONNX Runtime)")
    if args.calibration and not Path(args.calibration).is_dir():
        raise GemsegError(f"calibration folder not found: {args.calibration}")
    import tempfile

    scores_dir = Path(tempfile.mkdtemp(prefix="gem-bench-scores-"))
    for i, (size, device, precision, (backend, optimize), batch) in enumerate(cases):
        if precision not in BACKEND_PRECISIONS[backend]:
            continue  # fp16/bf16 are PyTorch autocast; int8 is ONNX Runtime
        spec = {
            "weights": weights, "config": _config_arg(config),
            "opts": args.opts or None, "size": size, "device": device, "precision": precision, "backend": backend,
            "optimize": optimize, "batch": batch, "runs": args.runs, "warmup": args.warmup, "threads": args.threads,
            "image": str(Path(args.image).resolve()) if args.image else None, "e2e": not args.network_only,
            "label": src.name, "omp_passive": args.omp_passive,
            "save_scores": str(scores_dir / f"case{i}.npy"),
            "calibration": str(Path(args.calibration).resolve()) if args.calibration else None,
        }
        print(f"gem bench: {backend}{'' if optimize else ' (plain)'} {device} {precision} size={size or 'cfg'} "
              f"batch={batch} ...", file=sys.stderr, flush=True)
        res = run_case(spec) if args.in_process else run_case_subprocess(spec)
        if "error" in res:
            print(f"gem bench: case failed: {res['error']}", file=sys.stderr)
        results.append(res)
    add_agreement(results)
    shutil.rmtree(scores_dir, ignore_errors=True)
    for r in results:
        r.pop("scores_file", None)
    print(format_table(results))
    if args.json_out:
        from gemseg.io.atomic import atomic_path

        with atomic_path(args.json_out) as tmp:
            Path(tmp).write_text(json.dumps({"results": results}, indent=1))
        print(f"gem bench: results written to {args.json_out}", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0
