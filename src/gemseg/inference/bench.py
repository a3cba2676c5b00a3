"""Latency/FPS/memory measurement shared by ``gem bench`` and ``benchmarks/latency.py``.

What is measured (per model, size, device, backend, precision and batch size B):

* **network**: one call of the network on a ready [B, 3, S, S] float tensor (normalisation inside the model,
  semantic inference = mask logits upsampled to S, sigmoid, Σ over queries), including the host→device copy and
  a device synchronisation; ``network ms/img`` = median call time / B.
* **end-to-end**: for each of B images: read + decode the file (our one image reader, EXIF applied), square resize,
  then the network call on the batch, then per image: scores resized back to the original size, probability,
  argmax mask, and PNG encoding of the mask in memory (no disk write); ``e2e ms/img`` = median time / B and
  ``FPS`` = B / median end-to-end time.

Warm-up runs are discarded; we report the median and the 90th percentile of ``runs`` timed runs, and the CPU time
per image (user+system of the process; less sensitive than wall time to other processes on a shared machine).
Peak memory is the process's peak resident set size (``resource.getrusage``) — each case runs in its own
subprocess, so it is per case and includes the model weights — and, on CUDA, ``torch.cuda.max_memory_allocated``.
**Agreement with fp32** (:func:`add_agreement`): each case's mask and probability on the benchmark image at the
network resolution against the fp32 case of the same size and device (pixel agreement, max |Δ probability|), so
that a faster precision (bf16, int8) is never reported without what it costs.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

EXAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "glass_room.jpg"
RESULT_TAG = "GEMSEG_BENCH_RESULT "


def peak_rss_bytes() -> Optional[int]:
    """Peak resident set size of this process in bytes (None where ``resource`` is unavailable)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _stats(times: List[float], per: int) -> Dict[str, float]:
    arr = np.asarray(times, dtype=np.float64) * 1000.0
    return {"median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)),
            "min_ms": float(arr.min()), "per_image_ms": float(np.median(arr) / per),
            "fps": float(per * 1000.0 / np.median(arr))}


def count_gemm_flops(model: Any, size: int) -> Dict[str, float]:
    """Floating-point operations of one [1, 3, S, S] inference (network + semantic inference) in the ops that
    :class:`torch.utils.flop_counter.FlopCounterMode` counts: matmuls, convolutions and attention (1 multiply-add =
    2 FLOPs). Elementwise ops, resampling and ``grid_sample`` are not counted, so ``flops / peak`` is a strict lower
    bound of the run time. Returns {"total": FLOPs, "<top-level module>": FLOPs, ...}.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from gemseg.modeling.gem import semantic_scores

    model = model.eval()
    x = torch.rand(1, 3, size, size, device=model.device) * 255.0
    # counted with autograd recording (FlopCounterMode's module tracker rejects inference/no-grad tensors);
    # the counts are identical, only memory is spent
    counter = FlopCounterMode(display=False, depth=2)
    with counter:
        out, _ = model(x)
        semantic_scores(out["pred_logits"], out["pred_masks"], (size, size))
    result = {"total": float(counter.get_total_flops())}
    for name, per_op in counter.get_flop_counts().items():
        parts = name.split(".")
        if len(parts) == 2:  # "GEM.backbone", "GEM.sem_seg_head"
            result[parts[1]] = float(sum(per_op.values()))
    return result


def gemm_peak_flops(threads: int, dtype: str = "float32", n: int = 2048, runs: int = 10) -> float:
    """Measured matrix-multiply throughput (FLOP/s) of this machine with ``threads`` threads: the best of
    ``runs`` n×n @ n×n products — the ceiling any GEMM-bound network can reach here."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        dt = getattr(torch, dtype)
        a, b = torch.randn(n, n).to(dt), torch.randn(n, n).to(dt)
        for _ in range(3):
            a @ b
        best = float("inf")
        for _ in range(runs):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
        return 2.0 * n**3 / best
    finally:
        torch.set_num_threads(previous)


def run_case(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Measure one case in this process. ``spec`` keys: weights, config, opts, size, device, backend, precision
    (fp32, fp16, bf16; int8 with the onnxruntime backend: calibration, calibration_count),
    batch, runs, warmup, image, threads, optimize, seed, save_scores (path for the network scores of the first
    image, to compare backends/optimisations across subprocesses), e2e (bool), omp_passive (subprocess only:
    ``OMP_WAIT_POLICY=PASSIVE``)."""
    import torch

    from gemseg.inference.devices import synchronize
    from gemseg.inference.predictor import GlassSegmentor
    from gemseg.inference.preprocess import resize_square
    from gemseg.io.images import read_image

    threads = spec.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(int(spec.get("seed", 0)))  # random-init models are the same in every subprocess
    t = time.perf_counter()
    if spec.get("precision") == "int8" and not str(spec.get("weights") or "").endswith(".onnx"):
        # in-process int8 case: export + quantise here (with the case's calibration images), then time the file
        import atexit
        import shutil
        import tempfile

        tmpdir = Path(tempfile.mkdtemp(prefix="gem-bench-int8-"))
        atexit.register(shutil.rmtree, tmpdir, True)
        export_for_case(spec, tmpdir / "model.int8.onnx")
        spec = dict(spec, weights=str(tmpdir / "model.int8.onnx"), config=None, size=None, opts=None)
    seg = GlassSegmentor.from_pretrained(
        spec.get("weights"), config=spec.get("config"), device=spec.get("device", "auto"),
        precision=spec.get("precision", "fp32"), size=spec.get("size"), backend=spec.get("backend", "torch"),
        batch_size=int(spec.get("batch", 1)), optimize=bool(spec.get("optimize", True)), opts=spec.get("opts"),
        threads=threads,
    )
    load_s = time.perf_counter() - t
    dev = seg.device
    b = int(spec.get("batch", 1))
    runs, warmup = int(spec.get("runs", 10)), int(spec.get("warmup", 2))
    image_path = Path(spec.get("image") or EXAMPLE_IMAGE)
    rgb = read_image(image_path)
    square = resize_square(rgb, seg.img_size, seg.resize)
    x = torch.from_numpy(np.ascontiguousarray(np.stack([square] * b).transpose(0, 3, 1, 2))).float()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def net():
        out = seg.infer_scores(x)
        synchronize(seg.runner.device)
        return out

    def e2e():
        from PIL import Image

        imgs = [read_image(image_path) for _ in range(b)]
        squares = [resize_square(im, seg.img_size, seg.resize) for im in imgs]
        preds = seg.predict_resized(squares, [im.shape[:2] for im in imgs])
        for p in preds:
            buf = io.BytesIO()
            Image.fromarray(p.mask.astype(np.uint8) * 255, mode="L").save(buf, format="PNG")
        return preds

    result: Dict[str, Any] = {
        "backend": seg.runner.backend, "device": str(dev), "precision": seg.runner.precision,
        "size": seg.img_size, "batch": b, "runs": runs, "warmup": warmup, "threads": torch.get_num_threads(),
        "optimize": bool(spec.get("optimize", True)) and seg.runner.backend == "torch",
        "image": str(image_path), "image_hw": list(rgb.shape[:2]), "load_s": round(load_s, 2),
        "random_init": seg.random_init, "label": spec.get("label", ""),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
    }
    for name, fn in (("network", net), ("e2e", e2e)):
        if name == "e2e" and not spec.get("e2e", True):
            continue
        for _ in range(warmup):
            out = fn()
        times, cpu = [], []
        for _ in range(runs):
            c0, t0 = time.process_time(), time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        st = _stats(times, b)
        st["cpu_ms_per_image"] = float(np.median(cpu) * 1000.0 / b)
        result[name] = st
        if name == "network" and spec.get("save_scores"):
            np.save(spec["save_scores"], out[0].float().cpu().numpy())
            result["scores_file"] = str(spec["save_scores"])
    result["peak_rss_mib"] = round(peak_rss_bytes() / 2**20, 1) if peak_rss_bytes() else None
    if dev.type == "cuda":
        result["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    return result


def export_for_case(spec: Dict[str, Any], onnx_path: Path) -> None:
    """Export the case's model (same seed, so the same random weights) to ``onnx_path``, in this process; an
    ``int8`` case is then quantised (calibrated on ``spec["calibration"]`` or on synthesised images)."""
    import torch

    from gemseg.inference.onnx_export import default_head, export_onnx
    from gemseg.modeling.build import input_size_overrides, load_model

    torch.manual_seed(int(spec.get("seed", 0)))
    opts = list(spec.get("opts") or [])
    if spec.get("size"):
        opts += input_size_overrides(spec["size"])
    model = load_model(spec.get("config"), weights=spec.get("weights"), device="cpu", opts=opts or None)
    if spec.get("precision") != "int8":
        export_onnx(model, onnx_path, random_init=spec.get("weights") is None, head=default_head("fp32"))
        return
    from gemseg.inference.quantize import DEFAULT_CALIBRATION_COUNT, quantize_onnx_int8

    fp32 = onnx_path.with_name(onnx_path.stem + ".fp32.onnx")
    export_onnx(model, fp32, random_init=spec.get("weights") is None, head=default_head("int8"))
    quantize_onnx_int8(fp32, onnx_path, calibration=spec.get("calibration"),
                       count=int(spec.get("calibration_count") or DEFAULT_CALIBRATION_COUNT))
    fp32.unlink()


def run_case_subprocess(spec: Dict[str, Any], timeout: Optional[float] = None) -> Dict[str, Any]:
    """Run :func:`run_case` in a fresh Python process (so peak memory is per case).

    For the ONNX Runtime backend the model is first exported in another subprocess, so that the measured process
    holds only the ONNX Runtime session (not the PyTorch model and the exporter's memory).
    """
    weights = spec.get("weights")
    if spec.get("backend") == "onnxruntime" and not str(weights or "").endswith(".onnx"):
        import tempfile

        tmpdir = Path(tempfile.mkdtemp(prefix="gem-bench-onnx-"))
        onnx_path = tmpdir / "model.onnx"
        try:
            proc = subprocess.run([sys.executable, "-m", "gemseg.inference.bench", "--export", json.dumps(spec),
                                   str(onnx_path)], capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0 or not onnx_path.exists():
                err = (proc.stderr or "").strip().splitlines()
                return {"error": "export: " + (err[-1] if err else f"exit code {proc.returncode}"),
                        "label": spec.get("label", "")}
            child = dict(spec, weights=str(onnx_path), config=None, size=None, opts=None)
            result = run_case_subprocess(child, timeout)
            if "random_init" in result:
                result["random_init"] = weights is None
            return result
        finally:
            import shutil

            shutil.rmtree(tmpdir, ignore_errors=True)
    cmd = [sys.executable, "-m", "gemseg.inference.bench", json.dumps(spec)]
    env = dict(os.environ)
    if spec.get("threads"):
        env.setdefault("OMP_NUM_THREADS", str(spec["threads"]))
    if spec.get("omp_passive"):
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # read by libgomp at start-up: only a fresh process can apply it
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    err = (proc.stderr or "").strip().splitlines()
    return {"error": err[-1] if err else f"exit code {proc.returncode}", "label": spec.get("label", "")}


def add_agreement(results: List[Dict[str, Any]]) -> None:
    """Add ``result["agreement"]`` to every case that saved its scores (``scores_file``): the agreement of its
    mask and probability on the benchmark image with the fp32 case of the same size and device (PyTorch fp32
    preferred, else ONNX Runtime fp32): ``pixel_agreement`` (fraction of equal mask pixels at the network
    resolution) and ``max_abs_prob`` (max |Δ probability|)."""
    from gemseg.inference.export_check import compare_scores

    def key(r):
        return r.get("size"), r.get("device")

    ok = [r for r in results if "error" not in r and r.get("scores_file") and Path(r["scores_file"]).is_file()]
    refs: Dict[Any, Dict[str, Any]] = {}
    for r in ok:
        if r["precision"] != "fp32":
            continue
        rank = 0 if r["backend"] == "torch" and r.get("optimize") else 1 if r["backend"] == "torch" else 2
        if key(r) not in refs or rank < refs[key(r)][0]:
            refs[key(r)] = (rank, r)
    for r in ok:
        if key(r) not in refs:
            continue
        ref = refs[key(r)][1]
        a = compare_scores([np.load(ref["scores_file"])], [np.load(r["scores_file"])])
        r["agreement"] = {"reference": f"{ref['backend']} {ref['precision']}", "pixel_agreement": a.pixel_agreement,
                          "max_abs_prob": a.max_abs_prob, "mean_abs_prob": a.mean_abs_prob}


def format_table(results: List[Dict[str, Any]], columns: Optional[List[str]] = None) -> str:
    """A Markdown table of results (one row per case)."""
    header = ["case", "backend", "device", "prec", "size", "B", "net ms/img (med)", "net p90", "e2e ms/img (med)",
              "e2e p90", "e2e FPS", "CPU ms/img", "peak RSS MiB", "mask agree vs fp32 %", "max Δ prob"]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r.get("label", "")] + ["error: " + r["error"]] + [""] * (len(header) - 2))
            continue
        n, e = r.get("network", {}), r.get("e2e")
        b = r["batch"]
        rows.append([
            r.get("label", ""), r["backend"] + ("" if r["backend"] != "torch" or r.get("optimize") else " (plain)"),
            r["device"], r["precision"], str(r["size"]), str(b),
            f"{n['per_image_ms']:.1f}", f"{n['p90_ms'] / b:.1f}",
            f"{e['per_image_ms']:.1f}" if e else "-", f"{e['p90_ms'] / b:.1f}" if e else "-",
            f"{e['fps']:.2f}" if e else f"{n['fps']:.2f}*",
            f"{(e or n)['cpu_ms_per_image']:.0f}",
            f"{r['peak_rss_mib']:.0f}" if r.get("peak_rss_mib") else "-",
        ])
        if r.get("cuda_peak_mib") is not None:
            rows[-1][-1] += f" (CUDA {r['cuda_peak_mib']:.0f})"
        agree = r.get("agreement")
        rows[-1] += ([f"{100 * agree['pixel_agreement']:.2f}", f"{agree['max_abs_prob']:.1e}"] if agree else ["-", "-"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    return "\n".join(lines)


def _main(argv: List[str]) -> int:  # python -m gemseg.inference.bench '<json spec>'
    import logging

    logging.getLogger("gemseg").setLevel(logging.ERROR)
    if argv and argv[0] == "--export":  # python -m gemseg.inference.bench --export '<spec>' out.onnx
        try:
            export_for_case(json.loads(argv[1]), Path(argv[2]))
        except Exception as e:  # noqa: BLE001
            print(f"{type(e).__name__}: {e}", file=sys.stderr)
            return 1
        return 0
    spec = json.loads(argv[0])
    try:
        result = run_case(spec)
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
