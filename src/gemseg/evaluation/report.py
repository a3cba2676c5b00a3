"""Reports of an evaluation: the paper's table, JSON/Markdown/CSV files, curve plots and a worst-images gallery.

The paper (and the official README) prints IoU, Fβ and MAE as fractions with three decimals and BER in percent with
two decimals; :func:`format_table` does the same. :func:`write_json` writes exactly
``{"count", "IoU", "Fbeta", "MAE", "BER"}`` (scripts rely on those keys; BER in percent; NaN written as ``null``);
everything else goes to :func:`write_full_json`, :func:`write_markdown` and :func:`write_csv`. PNGs are drawn
with PIL only (no matplotlib dependency). Every file is written atomically.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gemseg.evaluation.evaluator import OFFICIAL_KEYS, EvalResults, WorstEntry
from gemseg.io import atomic_path, atomic_write_bytes

PathLike = Union[str, os.PathLike]

_EXTRA_ORDER = ("Fbeta_threshold", "meanF", "maxF_per_image_curve", "adaptiveF", "IoU_pooled", "mIoU_pooled",
                "accuracy", "accuracy_pooled", "meanE", "maxE", "adaptiveE", "S")


def _fmt(x: float, digits: int) -> str:
    return "nan" if x is None or x != x else f"{x:.{digits}f}"


def _json_num(x):
    """JSON-safe number: NaN/inf become null (strict JSON has no NaN)."""
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def scored_description(results: EvalResults) -> str:
    """What was scored, in words (printed under the table)."""
    kind = results.prediction_kind
    if kind == "binary":
        what = "binary predictions (as official GEM: the argmax mask)"
    elif kind == "soft":
        what = "soft predictions (probability maps; Fβ over 256 thresholds, MAE on the soft map)"
    else:
        what = "a mix of binary and soft predictions"
    return what


def format_table(results: EvalResults, name: str = "gemseg") -> str:
    """The four-number table as the paper prints it, plus a status block (count, skipped pairs, policies)."""
    s = results.summary
    header = f"| {'Method':<20} | {'IoU ↑':>6} | {'Fβ ↑':>6} | {'MAE ↓':>6} | {'BER ↓':>6} |"
    sep = f"|{'-' * 22}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 8}|"
    row = (f"| {name[:20]:<20} | {_fmt(s['IoU'], 3):>6} | {_fmt(s['Fbeta'], 3):>6} | {_fmt(s['MAE'], 3):>6} | "
           f"{_fmt(s['BER'], 2):>6} |")
    lines = [header, sep, row, ""]
    lines.append(f"images scored: {results.count} of {results.total}" +
                 (f"  ({len(results.failures)} skipped — see below)" if results.failures else ""))
    lines.append(f"scored: {scored_description(results)}")
    lines.append("IoU = mean per-image IoU at 0.5; Fβ = max over 256 thresholds of F(β²=0.3) of the mean P/R curves; "
                 "MAE = mean per-image MAE; BER in percent")
    extras = [f"{k}={_fmt(s[k], 4)}" for k in _EXTRA_ORDER if k in s]
    if extras:
        lines.append("extras: " + ", ".join(extras))
    notes = []
    if s.get("empty_gt_images"):
        notes.append(f"{s['empty_gt_images']} image(s) without glass in the GT "
                     f"(empty-mask policy: {results.settings.get('empty', 'guard')})")
    if s.get("IoU_undefined") or s.get("BER_undefined"):
        notes.append(f"0/0 cases: IoU {s.get('IoU_undefined', 0)}, BER {s.get('BER_undefined', 0)}")
    if s.get("ignored_pixels"):
        notes.append(f"{s['ignored_pixels']} ignore (255) pixels excluded")
    if notes:
        lines.append("notes: " + "; ".join(notes))
    if results.failures:
        lines.append(f"skipped pairs ({len(results.failures)}):")
        for f in results.failures[:10]:
            lines.append(f"  {f.key}: {f.reason}")
        if len(results.failures) > 10:
            lines.append(f"  … and {len(results.failures) - 10} more (see the full JSON report)")
    if results.unmatched_predictions:
        shown = ", ".join(p.name for p in results.unmatched_predictions[:5])
        lines.append(f"{len(results.unmatched_predictions)} prediction file(s) without a ground-truth mask (ignored): "
                     f"{shown}{' …' if len(results.unmatched_predictions) > 5 else ''}")
    if results.interrupted:
        lines.append(f"INTERRUPTED: partial results over the first {results.count} image(s) only")
    return "\n".join(lines)


def write_json(path: PathLike, results: EvalResults) -> None:
    """Write ``{"count", "IoU", "Fbeta", "MAE", "BER"}`` — exactly these keys, in this order."""
    data = {k: _json_num(v) for k, v in results.official().items()}
    assert tuple(data) == OFFICIAL_KEYS
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def full_report(results: EvalResults) -> Dict[str, object]:
    """Everything: official numbers, extras, settings, curves, skipped pairs."""
    return {
        "official": {k: _json_num(v) for k, v in results.official().items()},
        "extras": {k: _json_num(v) for k, v in results.summary.items() if k not in OFFICIAL_KEYS},
        "scored": scored_description(results),
        "prediction_kind": results.prediction_kind,
        "source": results.source,
        "dataset": results.dataset,
        "settings": {k: _json_num(v) if not isinstance(v, (str, bool)) else v for k, v in results.settings.items()},
        "total_pairs": results.total,
        "interrupted": results.interrupted,
        "elapsed_s": round(results.elapsed_s, 3),
        "failures": [{"key": f.key, "reason": f.reason} for f in results.failures],
        "unmatched_predictions": [str(p) for p in results.unmatched_predictions],
        "worst": [{"key": w.key, "IoU": _json_num(w.iou)} for w in results.worst],
        "curves": {k: [_json_num(x) for x in np.asarray(v).tolist()] for k, v in results.curves.items()},
    }


def write_full_json(path: PathLike, results: EvalResults) -> None:
    """The :func:`full_report` as JSON."""
    atomic_write_bytes(path, (json.dumps(full_report(results), indent=2) + "\n").encode("utf-8"))


def write_markdown(path: PathLike, results: EvalResults, name: str = "gemseg") -> None:
    """The paper table (Markdown) and the extras table."""
    s = results.summary
    lines = ["| Method | IoU ↑ | Fβ ↑ | MAE ↓ | BER ↓ |", "|---|---:|---:|---:|---:|",
             f"| {name} | {_fmt(s['IoU'], 3)} | {_fmt(s['Fbeta'], 3)} | {_fmt(s['MAE'], 3)} | {_fmt(s['BER'], 2)} |",
             "", f"{results.count} images scored of {results.total}; {scored_description(results)}.", ""]
    extras = [(k, s[k]) for k in _EXTRA_ORDER if k in s]
    if extras:
        lines += ["| extra | value |", "|---|---:|"] + [f"| {k} | {_fmt(v, 4)} |" for k, v in extras]
    if results.interrupted:
        lines += ["", f"**Interrupted**: partial results over {results.count} image(s)."]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def write_csv(path: PathLike, results: EvalResults, name: str = "gemseg") -> None:
    """One-row summary CSV: method, the official numbers, then the extras."""
    keys = list(OFFICIAL_KEYS) + [k for k in _EXTRA_ORDER if k in results.summary]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method"] + keys)
    w.writerow([name] + ["" if _json_num(results.summary[k]) is None else _json_num(results.summary[k])
                         for k in keys])
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


# ----------------------------------------------------------------------------------------------------------------
# PNG drawing (PIL only)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _plot_panel(draw: ImageDraw.ImageDraw, box: Tuple[int, int, int, int], series: Sequence[Tuple[np.ndarray,
                np.ndarray, Tuple[int, int, int]]], title: str, xlabel: str, ylabel: str,
                marker: Optional[Tuple[float, float]] = None) -> None:
    """Draw line series (x, y in [0, 1]) into ``box`` = (left, top, right, bottom) with axes, ticks and labels."""
    font, small = _font(15), _font(12)
    l, t, r, b = box
    ml, mb, mt = 52, 40, 28  # margins for tick labels / title
    x0, y0, x1, y1 = l + ml, t + mt, r - 12, b - mb
    draw.text(((l + r) // 2, t + 4), title, fill="black", font=font, anchor="mt")
    for i in range(6):
        v = i / 5
        px = x0 + v * (x1 - x0)
        py = y1 - v * (y1 - y0)
        draw.line([(px, y0), (px, y1)], fill=(225, 225, 225))
        draw.line([(x0, py), (x1, py)], fill=(225, 225, 225))
        draw.text((px, y1 + 4), f"{v:.1f}", fill="black", font=small, anchor="mt")
        draw.text((x0 - 4, py), f"{v:.1f}", fill="black", font=small, anchor="rm")
    draw.rectangle([x0, y0, x1, y1], outline="black")
    draw.text(((x0 + x1) // 2, b - 6), xlabel, fill="black", font=small, anchor="mb")
    draw.text((l + 2, y0 - 14), ylabel, fill="black", font=small, anchor="lm")
    for xs, ys, color in series:
        xs, ys = np.clip(np.asarray(xs, float), 0, 1), np.clip(np.asarray(ys, float), 0, 1)
        pts = [(x0 + x * (x1 - x0), y1 - y * (y1 - y0)) for x, y in zip(xs, ys)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        for p in pts if len(pts) <= 3 else []:
            draw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=color)
    if marker is not None:
        mx, my = x0 + marker[0] * (x1 - x0), y1 - marker[1] * (y1 - y0)
        draw.ellipse([mx - 5, my - 5, mx + 5, my + 5], outline=(200, 0, 0), width=2)


def plot_curves(path: PathLike, results: EvalResults, name: str = "gemseg") -> None:
    """PNG with the mean precision–recall curve and the Fβ-vs-threshold curve (max marked)."""
    c = results.curves
    img = Image.new("RGB", (1000, 440), "white")
    d = ImageDraw.Draw(img)
    p, r, f = np.asarray(c["precision"]), np.asarray(c["recall"]), np.asarray(c["fbeta"])
    th = np.asarray(c["threshold"])
    k = int(np.argmax(f)) if len(f) else 0
    _plot_panel(d, (0, 0, 500, 420), [(r, p, (31, 119, 180))], f"{name}: mean P/R over {results.count} images",
                "recall", "precision", marker=(float(r[k]), float(p[k])) if len(f) else None)
    # PNG text stays ASCII: PIL's built-in font has no Greek letters
    _plot_panel(d, (500, 0, 1000, 420), [(th, np.asarray(c["fbeta_per_image_mean"]), (150, 150, 150)),
                                         (th, f, (214, 39, 40))],
                f"F-beta (beta^2=0.3) vs threshold; max {float(f[k]):.3f} at {float(th[k]):.3f}", "threshold k/255",
                "F-beta",
                marker=(float(th[k]), float(f[k])) if len(f) else None)
    d.text((510, 425), "red: F of mean P/R (official)   grey: mean of per-image F", fill=(90, 90, 90),
           font=_font(12), anchor="lm")
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")


def _overlay(gt: np.ndarray, pred: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """Error map: green = true positive, red = false positive, blue = missed glass, grey = ignore."""
    out = np.zeros(gt.shape + (3,), np.uint8)
    out[gt & pred] = (40, 170, 40)
    out[~gt & pred] = (220, 40, 40)
    out[gt & ~pred] = (40, 90, 230)
    out[ignore] = (128, 128, 128)
    return out


def save_gallery(path: PathLike, worst: Sequence[WorstEntry], title: str = "worst images by IoU") -> None:
    """PNG grid, one row per image: photo (if any) | GT | prediction | error map, captioned with key and IoU."""
    if not worst:
        return
    cell_w = max(e.gt.shape[1] for e in worst)
    rows: List[Image.Image] = []
    font = _font(14)
    for e in worst:
        tiles = []
        if e.image is not None:
            tiles.append(e.image)
        tiles += [np.repeat((e.gt * 255).astype(np.uint8)[..., None], 3, 2),
                  np.repeat((e.pred * 255).astype(np.uint8)[..., None], 3, 2), _overlay(e.gt, e.pred, e.ignore)]
        h = max(t.shape[0] for t in tiles)
        row = Image.new("RGB", (len(tiles) * (cell_w + 6), h + 22), "white")
        for i, t in enumerate(tiles):
            row.paste(Image.fromarray(t), (i * (cell_w + 6), 22))
        ImageDraw.Draw(row).text((2, 3), f"{e.key}   IoU {_fmt(e.iou, 3)}", fill="black", font=font)
        rows.append(row)
    width = max(r.width for r in rows)
    legend = "columns: " + ("image | " if any(e.image is not None for e in worst) else "") + \
        "GT | prediction | errors (green TP, red FP, blue FN, grey ignore)"
    canvas = Image.new("RGB", (max(width, 640), sum(r.height for r in rows) + 30), "white")
    ImageDraw.Draw(canvas).text((4, 6), f"{title} - {legend}", fill="black", font=font)
    y = 30
    for r in rows:
        canvas.paste(r, (0, y))
        y += r.height
    with atomic_path(path, suffix=".png") as tmp:
        canvas.save(tmp, format="PNG")
