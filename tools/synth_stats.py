#!/usr/bin/env python
"""Compare the statistics of glass datasets (synthetic vs real), and where a model's errors fall.

    python tools/synth_stats.py SET [SET ...] [--pred NAME=DIR ...] [--json out.json]

A SET is a folder in one of two layouts: a `gem synth` dataset (``images/<split>/*.jpg`` +
``annotations_zero_one/<split>/*.png``, 0/1 labels; ``--split``, default ``validation``) or a realdata folder
(``images/*.jpg`` + ``masks/*.png``, 0/255). For each set it prints one Markdown row:

* glass fraction per image (mean, median, 10th/90th percentile), share of images with no glass / > 50 % glass;
* glass regions: connected components (8-connected, ≥ 0.2 % of the frame) per image and the largest one's share;
* "bright flat" pixels — luminance ≥ 0.75 and a local (7×7) standard deviation < 0.03: white walls, ceilings,
  overexposed sky — as a share of the non-glass and of the glass pixels (the surfaces the model confuses).

With ``--pred NAME=DIR`` (a folder of ``<stem>.png`` 0/255 masks, as `gem predict` writes) it also splits the
model's false positives over bright-flat / other non-glass pixels and its misses over bright-flat / other glass,
and lists the per-image IoU. Real photos are only ever *measured* here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np


def pairs(root: Path, split: str) -> Iterator[Tuple[str, Path, Path, int]]:
    """``(stem, image path, mask path, glass value)`` of every pair in ``root``."""
    if (root / "masks").is_dir():
        img_dir, mask_dir, glass = root / "images", root / "masks", 255
    else:
        img_dir, mask_dir, glass = root / "images" / split, root / "annotations_zero_one" / split, 1
    for m in sorted(mask_dir.glob("*.png")):
        for ext in (".jpg", ".png", ".jpeg"):
            p = img_dir / (m.stem + ext)
            if p.exists():
                yield m.stem, p, m, glass
                break


def bright_flat(rgb: np.ndarray) -> np.ndarray:
    """Pixels that are bright and texture-free (luminance ≥ 0.75, 7×7 local std < 0.03)."""
    lum = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    mean = cv2.blur(lum, (7, 7))
    var = cv2.blur(lum * lum, (7, 7)) - mean * mean
    return (lum >= 0.75) & (np.sqrt(np.maximum(var, 0)) < 0.03)


def measure(root: Path, split: str, pred: Optional[Path], max_side: int = 512) -> Dict:
    frac, ncomp, largest, bf_bg, bf_glass = [], [], [], [], []
    err = {"fp_bright": 0, "n_bright_bg": 0, "fp_other": 0, "n_other_bg": 0,
           "fn_bright": 0, "n_bright_glass": 0, "fn_other": 0, "n_other_glass": 0}
    per_image: List[Tuple[str, float, float, float]] = []
    for stem, ip, mp, gval in pairs(root, split):
        img = cv2.cvtColor(cv2.imread(str(ip), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        raw = cv2.imread(str(mp), cv2.IMREAD_UNCHANGED)
        gt = raw == gval
        valid = raw != (128 if gval == 255 else 255) if gval == 1 else np.ones_like(gt)
        s = max_side / max(gt.shape)
        if s < 1:  # statistics at a common scale (real photos are 1024 px, synthetic 384 px)
            size = (round(gt.shape[1] * s), round(gt.shape[0] * s))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            gt = cv2.resize(gt.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
            valid = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
        frac.append(float(gt[valid].mean()) if valid.any() else 0.0)
        n, lab, st, _ = cv2.connectedComponentsWithStats(gt.astype(np.uint8), connectivity=8)
        areas = st[1:, cv2.CC_STAT_AREA] / gt.size
        big = areas[areas >= 0.002]
        ncomp.append(len(big))
        largest.append(float(big.max()) if len(big) else 0.0)
        bf = bright_flat(img)
        bg = valid & ~gt
        bf_bg.append(float(bf[bg].mean()) if bg.any() else 0.0)
        if gt.any():
            bf_glass.append(float(bf[gt].mean()))
        if pred is not None:
            pm = cv2.imread(str(pred / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
            if pm is None:
                continue
            pm = cv2.resize(pm, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_NEAREST) >= 128
            err["fp_bright"] += int((pm & bg & bf).sum()); err["n_bright_bg"] += int((bg & bf).sum())
            err["fp_other"] += int((pm & bg & ~bf).sum()); err["n_other_bg"] += int((bg & ~bf).sum())
            err["fn_bright"] += int((~pm & gt & bf).sum()); err["n_bright_glass"] += int((gt & bf).sum())
            err["fn_other"] += int((~pm & gt & ~bf).sum()); err["n_other_glass"] += int((gt & ~bf).sum())
            inter, union = (pm & gt & valid).sum(), ((pm | gt) & valid).sum()
            iou = float(inter / union) if union else 1.0
            fpr = float((pm & bg).sum() / max(bg.sum(), 1))
            fnr = float((~pm & gt).sum() / max(gt.sum(), 1))
            per_image.append((stem, iou, fpr, fnr))
    f = np.asarray(frac)
    out = {
        "images": len(f), "glass_mean": float(f.mean()), "glass_median": float(np.median(f)),
        "glass_p10": float(np.percentile(f, 10)), "glass_p90": float(np.percentile(f, 90)),
        "no_glass_share": float((f == 0).mean()), "over_half_share": float((f > 0.5).mean()),
        "regions_mean": float(np.mean(ncomp)), "largest_region_mean": float(np.mean(largest)),
        "bright_flat_in_background": float(np.mean(bf_bg)),
        "bright_flat_in_glass": float(np.mean(bf_glass)) if bf_glass else 0.0,
    }
    if pred is not None and per_image:
        def rate(a, b):
            return err[a] / max(err[b], 1)
        out.update({"fp_rate_bright_flat_bg": rate("fp_bright", "n_bright_bg"),
                    "fp_rate_other_bg": rate("fp_other", "n_other_bg"),
                    "miss_rate_bright_flat_glass": rate("fn_bright", "n_bright_glass"),
                    "miss_rate_other_glass": rate("fn_other", "n_other_glass"),
                    "per_image": [{"stem": s, "IoU": round(i, 4), "fp_rate": round(a, 4), "miss_rate": round(b, 4)}
                                  for s, i, a, b in per_image]})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="+", type=Path, help="dataset folders")
    ap.add_argument("--split", default="validation", help="split of gem synth datasets")
    ap.add_argument("--pred", action="append", default=[], metavar="SET=DIR",
                    help="predicted 0/255 masks for the set whose folder name is SET")
    ap.add_argument("--json", type=Path, help="write all numbers here")
    args = ap.parse_args()
    preds = dict(p.split("=", 1) for p in args.pred)
    rows = {}
    for root in args.sets:
        name = root.name
        rows[str(root)] = measure(root, args.split, Path(preds[name]) if name in preds else None)
    print("| set | images | glass mean / median (p10–p90) | no glass / >50 % | regions / largest | "
          "bright-flat share: non-glass / glass |")
    print("|---|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {Path(k).name} | {r['images']} | {r['glass_mean']:.2f} / {r['glass_median']:.2f} "
              f"({r['glass_p10']:.2f}–{r['glass_p90']:.2f}) | {r['no_glass_share']:.2f} / {r['over_half_share']:.2f} "
              f"| {r['regions_mean']:.1f} / {r['largest_region_mean']:.2f} | "
              f"{r['bright_flat_in_background']:.3f} / {r['bright_flat_in_glass']:.3f} |")
    for k, r in rows.items():
        if "fp_rate_other_bg" in r:
            print(f"{Path(k).name}: false-positive rate on bright-flat non-glass {r['fp_rate_bright_flat_bg']:.3f} "
                  f"vs other non-glass {r['fp_rate_other_bg']:.3f}; miss rate on bright-flat glass "
                  f"{r['miss_rate_bright_flat_glass']:.3f} vs other glass {r['miss_rate_other_glass']:.3f}")
            worst = sorted(r["per_image"], key=lambda d: d["IoU"])[:5]
            print("  worst: " + ", ".join(f"{d['stem']} IoU {d['IoU']:.2f} (fp {d['fp_rate']:.2f}, "
                                          f"miss {d['miss_rate']:.2f})" for d in worst))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
