#!/usr/bin/env python
"""Quality gate of the lower-precision paths: int8 (ONNX Runtime) and bf16 (PyTorch autocast) against fp32.

* ``lite``: the bundled model (gem-lite-synth at 448): on every image of ``../shared/realdata`` (curtainwall,
  cleargrasp, mirror3d_nyu) and on a synthetic validation set made here by the procedural engine (seeds disjoint
  from the int8 calibration images), per set: pooled pixel agreement of the masks with the PyTorch fp32 masks (at
  the photo's resolution), the worst image's agreement, max |Δ probability|, and the IoU against the ground truth
  of fp32 and of the candidate (ΔIoU). Target: int8 ≥ 99 % agreement and |ΔIoU| ≤ 0.01 on each realdata set.
* ``parity``: the official parity fixture (official-gem-tiny-mini: official GEM-Tiny weights of a reduced decoder,
  the official code's scores at 384): max |Δ scores| of ONNX fp32 / int8 against the official scores, and mask
  agreement.
* ``tiny`` / ``base``: full-size GEM-Tiny / GEM-Base at 384 with **random weights** (no trained official weights
  are available here): score deviation of int8 from fp32 on the realdata photos (max and mean |Δ scores|, relative
  to the score range) and mask agreement. Random-init masks are not meaningful; the score deviation is.

int8 models are calibrated like ``gem export --quantize int8`` without ``--calibration`` (synthesised images).

    python benchmarks/int8_quality.py                       # everything (~10 min on 2 busy cores)
    python benchmarks/int8_quality.py --parts lite --synth-count 16 --json int8_quality.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SHARED = REPO.parent / "shared"
REALDATA_SETS = ("curtainwall", "cleargrasp", "mirror3d_nyu")
VAL_SEED = 8_000_000  # synthetic validation images; calibration uses gemseg.inference.quantize's seed


def make_int8(model, folder: Path, name: str, count: int, int8_head: str = "fast") -> Dict[str, Path]:
    """fp32 ONNX files of ``model`` in ``folder`` (exact and fast head) and the int8 file (quantised from the fp32
    graph with ``int8_head``, as ``gem export --quantize int8 [--head]`` does)."""
    from gemseg.inference.onnx_export import export_onnx
    from gemseg.inference.quantize import quantize_onnx_int8

    fp32 = export_onnx(model, folder / f"{name}.onnx")
    fast = export_onnx(model, folder / f"{name}.fast.onnx", head="fast")
    t = time.perf_counter()
    quantize_onnx_int8(fast if int8_head == "fast" else fp32, folder / f"{name}.int8.onnx", count=count)
    print(f"  {name}: int8 ({int8_head} head) quantisation on {count} synthesised images took "
          f"{time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    return {"fp32": fp32, "fp32-fast": fast, "int8": folder / f"{name}.int8.onnx"}


def synthetic_validation_set(folder: Path, count: int, width: int = 640, height: int = 480):
    """``count`` procedural images + exact masks written in the realdata layout (images/, masks/)."""
    from PIL import Image

    from gemseg.data.layouts import resolve_dataset
    from gemseg.synthesis import ProceduralEngine, SynthOptions

    engine = ProceduralEngine(SynthOptions(width=width, height=height))
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(count):
        image, label, _ = engine.render(VAL_SEED + i)
        Image.fromarray(image).save(folder / "images" / f"val_{i:04d}.png")
        Image.fromarray(((label == 1) * 255).astype(np.uint8)).save(folder / "masks" / f"val_{i:04d}.png")
    return resolve_dataset(folder)


def compare_on_dataset(reference, candidates: Dict[str, object], dataset) -> Dict[str, Dict[str, float]]:
    """Per candidate: pooled / worst-image pixel agreement with ``reference``, max |Δ probability|, IoU vs GT."""
    from gemseg.data.layouts import load_mask_binary
    from gemseg.evaluation.metrics import GlassMetrics
    from gemseg.io.images import read_image

    metrics = {name: GlassMetrics() for name in ["fp32", *candidates]}
    stats = {name: {"same": 0, "pixels": 0, "worst": 1.0, "max_dp": 0.0} for name in candidates}
    for sample in dataset.samples:
        image = read_image(sample.image)
        glass, ignore = load_mask_binary(sample)
        ref = reference.predict(image)
        metrics["fp32"].update(ref.mask, glass, ignore)
        for name, seg in candidates.items():
            got = seg.predict(image)
            metrics[name].update(got.mask, glass, ignore)
            same = int((got.mask == ref.mask).sum())
            st = stats[name]
            st["same"] += same
            st["pixels"] += ref.mask.size
            st["worst"] = min(st["worst"], same / ref.mask.size)
            st["max_dp"] = max(st["max_dp"], float(np.abs(got.probability - ref.probability).max()))
    iou_ref = float(metrics["fp32"].compute()["IoU"])
    out = {}
    for name, st in stats.items():
        iou = float(metrics[name].compute()["IoU"])
        out[name] = {"images": len(dataset.samples), "pixel_agreement": st["same"] / st["pixels"],
                     "worst_image_agreement": st["worst"], "max_abs_prob": st["max_dp"], "iou_fp32": iou_ref,
                     "iou": iou, "delta_iou": iou - iou_ref}
    return out


def part_lite(args, tmp: Path) -> List[Dict]:
    from gemseg.inference.predictor import GlassSegmentor, resolve_model_name
    from gemseg.modeling.build import load_model

    weights = resolve_model_name("gem-lite-synth")
    files = make_int8(load_model(None, weights=weights, device="cpu"), tmp, "gem-lite-synth", args.calibration_count,
                      args.int8_head)
    reference = GlassSegmentor.from_pretrained(weights, device="cpu")
    candidates = {"onnxruntime fp32": GlassSegmentor.from_pretrained(files["fp32"], device="cpu"),
                  "onnxruntime fp32 fast head": GlassSegmentor.from_pretrained(files["fp32-fast"], device="cpu"),
                  f"onnxruntime int8 ({args.int8_head} head)": GlassSegmentor.from_pretrained(files["int8"],
                                                                                            device="cpu")}
    if not args.no_bf16:
        candidates["torch bf16"] = GlassSegmentor.from_pretrained(weights, device="cpu", precision="bf16")
    sets = {name: SHARED / "realdata" / name for name in REALDATA_SETS}
    rows = []
    from gemseg.data.layouts import resolve_dataset

    datasets = {name: resolve_dataset(path) for name, path in sets.items() if path.is_dir()}
    if len(datasets) < len(sets):
        print(f"  realdata sets missing under {SHARED / 'realdata'}: skipped", file=sys.stderr)
    datasets[f"synthetic val ({args.synth_count})"] = synthetic_validation_set(tmp / "synth_val", args.synth_count)
    for set_name, dataset in datasets.items():
        print(f"  gem-lite-synth on {set_name} ({len(dataset.samples)} images) ...", file=sys.stderr, flush=True)
        for cand, r in compare_on_dataset(reference, candidates, dataset).items():
            rows.append({"model": "gem-lite-synth@448", "set": set_name, "path": cand, **r})
    return rows


def _score_deviation(ref_session, session, inputs: List[np.ndarray], official: List[np.ndarray] = None) -> Dict:
    from gemseg.inference.export_check import compare_scores, match_size

    refs = official or [ref_session.run(None, {"image": x})[0][0] for x in inputs]
    # a fast-head graph's scores (S/4) are compared after the resize the post-processing does
    gots = [match_size(session.run(None, {"image": x})[0], refs[0].shape[-2:])[0] for x in inputs]
    diff = [np.abs(g - r) for g, r in zip(gots, refs)]
    score_range = float(max(r.max() for r in refs) - min(r.min() for r in refs))
    a = compare_scores(refs, gots)
    return {"images": len(inputs), "max_abs_scores": float(max(d.max() for d in diff)),
            "mean_abs_scores": float(np.mean([d.mean() for d in diff])), "score_range": score_range,
            "pixel_agreement": a.pixel_agreement, "max_abs_prob": a.max_abs_prob,
            "glass_fraction_fp32": float(np.mean([(r[1] > r[0]).mean() for r in refs]))}


def part_parity(args, tmp: Path) -> List[Dict]:
    from gemseg.inference.onnx_export import create_session
    from gemseg.modeling.build import load_model

    folder = SHARED / "fixtures" / "official-gem-tiny-mini"
    if not folder.is_dir():
        print(f"  {folder} missing: parity part skipped", file=sys.stderr)
        return []
    model = load_model(folder / "gem_tiny_mini.yaml", weights=folder / "gem_tiny_mini_official.pth", device="cpu")
    files = make_int8(model, tmp, "gem-tiny-mini", args.calibration_count, args.int8_head)
    names = ("matterport", "nyu_mirror")
    inputs = [np.load(folder / f"{n}_input_rgb384.npy")[None].astype(np.float32) for n in names]
    official = [np.load(folder / f"{n}_semseg_384.npy") for n in names]
    sessions = (("fp32", create_session(files["fp32"])), ("fp32 fast head", create_session(files["fp32-fast"])),
                (f"int8 ({args.int8_head} head)", create_session(files["int8"])))
    return [{"model": "GEM-Tiny-mini (official weights)", "set": "parity fixture vs official scores",
             "path": f"onnxruntime {p}", **_score_deviation(None, s, inputs, official)} for p, s in sessions]


def part_full_size(args, tmp: Path, name: str) -> List[Dict]:
    import torch

    from gemseg.inference.onnx_export import create_session
    from gemseg.inference.preprocess import preprocess_image
    from gemseg.modeling.build import input_size_overrides, load_model

    torch.manual_seed(0)
    model = load_model(name, device="cpu", opts=input_size_overrides(384))
    files = make_int8(model, tmp, name, args.calibration_count, args.int8_head)
    del model
    photos = sorted(p for s in REALDATA_SETS for p in (SHARED / "realdata" / s / "images").glob("*.jpg"))
    inputs = [preprocess_image(p, 384)[0].numpy()[None] for p in photos[: args.photos]]
    fp32 = create_session(files["fp32"])
    label = {"gem-tiny": "GEM-Tiny@384", "gem-base": "GEM-Base@384"}[name]
    return [{"model": f"{label} (random init)", "set": f"realdata photos ({len(inputs)})", "path": f"onnxruntime {p}",
             **_score_deviation(fp32, create_session(files[k]), inputs)}
            for p, k in (("fp32 fast head", "fp32-fast"), (f"int8 ({args.int8_head} head)", "int8"))]


def _markdown(header: List[str], cells: List[List[str]]) -> None:
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in cells:
        print("| " + " | ".join(row) + " |")


def print_tables(rows: List[Dict]) -> None:
    def pct(x: float, digits: int = 2) -> str:
        return f"{100 * x:.{digits}f} %"

    lite = [r for r in rows if "iou" in r]
    if lite:
        _markdown(["model", "set", "path", "images", "mask agreement with fp32", "worst image", "max abs Δ prob",
                   "IoU fp32", "IoU", "ΔIoU"],
                  [[r["model"], r["set"], r["path"], str(r["images"]), pct(r["pixel_agreement"]),
                    pct(r["worst_image_agreement"], 1), f"{r['max_abs_prob']:.2f}", f"{r['iou_fp32']:.4f}",
                    f"{r['iou']:.4f}", f"{r['delta_iou']:+.4f}"] for r in lite])
    dev = [r for r in rows if "max_abs_scores" in r]
    if dev:
        _markdown(["model", "inputs", "path", "images", "max abs Δ scores", "mean abs Δ scores", "score range",
                   "mask agreement", "glass fraction (fp32)"],
                  [[r["model"], r["set"], r["path"], str(r["images"]), f"{r['max_abs_scores']:.2e}",
                    f"{r['mean_abs_scores']:.2e}", f"{r['score_range']:.2f}", pct(r["pixel_agreement"]),
                    pct(r["glass_fraction_fp32"], 1)] for r in dev])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["lite", "parity", "tiny", "base"],
                    choices=["lite", "parity", "tiny", "base"])
    ap.add_argument("--synth-count", type=int, default=24, help="synthetic validation images for the bundled model")
    ap.add_argument("--calibration-count", type=int, default=32, help="synthesised calibration images (as gem export)")
    ap.add_argument("--photos", type=int, default=29, help="realdata photos for the random-init full-size models")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--int8-head", choices=("fast", "exact"), default="fast",
                    help="the head of the int8 graph (gem export's default for int8: fast)")
    ap.add_argument("--no-bf16", action="store_true", help="skip the PyTorch bf16 rows")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--workdir", help="keep the ONNX files (fp32 and int8) here instead of a temporary folder")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger("gemseg").setLevel(logging.ERROR)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    rows: List[Dict] = []
    with tempfile.TemporaryDirectory(prefix="gem-int8-quality-") as tmp_dir:
        tmp = Path(args.workdir or tmp_dir)
        tmp.mkdir(parents=True, exist_ok=True)
        for part in args.parts:
            print(f"[{time.strftime('%H:%M:%S')}] {part} ...", file=sys.stderr, flush=True)
            if part == "lite":
                rows += part_lite(args, tmp)
            elif part == "parity":
                rows += part_parity(args, tmp)
            else:
                rows += part_full_size(args, tmp, {"tiny": "gem-tiny", "base": "gem-base"}[part])
    print(f"\nint8 / bf16 vs fp32 (started {started}; calibration: {args.calibration_count} synthesised images)")
    print_tables(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
