"""Training logs: console progress line, ``metrics.jsonl`` (+ ``metrics.csv``), TensorBoard, loss-curve PNG.

``OUTPUT_DIR/metrics.jsonl`` holds one JSON object per logged iteration, detectron2 style: ``iteration`` (0-based
index of the last completed iteration), ``total_loss``, ``lr``, every weighted loss term (``loss_ce`` …),
``grad_norm``, ``time`` / ``data_time`` (seconds per iteration) and ``eta_seconds``; evaluation rows add
``eval/IoU``, ``eval/Fbeta``, ``eval/MAE``, ``eval/BER``. On resume the lines beyond the resumed iteration (written
after the last checkpoint by a run that was then killed) are removed, so the file reads as one uninterrupted run.
Only rank 0 writes.
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TextIO

from gemseg.io.atomic import atomic_path, atomic_write_bytes

TIMING_KEYS = ("time", "data_time", "eta_seconds")


def format_seconds(s: float) -> str:
    """``3725`` → ``1:02:05``."""
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def read_metrics(path: Path) -> List[Dict[str, Any]]:
    """All JSON rows of a ``metrics.jsonl`` (a torn last line from a killed run is skipped)."""
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class TrainLogger:
    """Rank-0 training logger.

    Args:
        output_dir: where ``metrics.jsonl`` / ``metrics.csv`` / ``loss_curve.png`` / ``tb/`` go.
        max_iter: total iterations (for the ETA and the bar).
        start_iter: first iteration of this run (> 0 on resume: later rows are dropped from the JSONL).
        enabled: False on ranks other than 0 (everything becomes a no-op).
        stream: console stream (default: ``sys.stderr`` at construction).
        tensorboard: write TensorBoard events when the ``tensorboard`` package is installed.
    """

    def __init__(self, output_dir: Path, max_iter: int, start_iter: int = 0, enabled: bool = True,
                 stream: Optional[TextIO] = None, tensorboard: bool = True) -> None:
        self.dir = Path(output_dir)
        self.max_iter = max_iter
        self.start_iter = start_iter
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr  # looked up now: callers may redirect it
        self.jsonl = self.dir / "metrics.jsonl"
        self._t0 = time.perf_counter()
        self._iters_timed = 0
        self._tb = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        # keep the rows of iterations before start_iter only (a killed run may have logged past its checkpoint)
        kept = [r for r in read_metrics(self.jsonl) if int(r.get("iteration", -1)) < start_iter]
        atomic_write_bytes(self.jsonl, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self._fh = open(self.jsonl, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.dir / "tb"))
            except ImportError:  # tensorboard is optional
                self._tb = None

    def log(self, row: Dict[str, Any]) -> None:
        """Append one row (must hold ``iteration``) to the JSONL and TensorBoard."""
        if not self.enabled:
            return
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()
        if self._tb is not None:
            it = int(row["iteration"])
            for k, v in row.items():
                if k != "iteration" and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, it)

    def progress(self, iteration: int, total_loss: float, lr: float, sec_per_iter: float,
                 extra: Optional[Dict[str, float]] = None) -> float:
        """Print the progress line; returns the ETA in seconds."""
        done = iteration + 1
        eta = (self.max_iter - done) * sec_per_iter
        if not self.enabled:
            return eta
        width = 24
        filled = int(width * done / max(1, self.max_iter))
        bar = "#" * filled + "-" * (width - filled)
        parts = [f"[{bar}] {done}/{self.max_iter}", f"eta {format_seconds(eta)}", f"loss {total_loss:.4g}"]
        parts += [f"{k} {v:.3g}" for k, v in (extra or {}).items()]
        parts += [f"lr {lr:.3g}", f"{sec_per_iter:.2f}s/it"]
        line = "  ".join(parts)
        if self.stream.isatty():
            self.stream.write("\r" + line + "\033[K")
            if done >= self.max_iter:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        return eta

    def message(self, text: str) -> None:
        """A line of its own (evaluation results, checkpoints)."""
        if self.enabled:
            if self.stream.isatty():
                self.stream.write("\r\033[K")
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Flush and write ``metrics.csv`` and ``loss_curve.png`` from the JSONL."""
        if not self.enabled:
            return
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
        rows = read_metrics(self.jsonl)
        write_csv(self.dir / "metrics.csv", rows)
        train_rows = [r for r in rows if "total_loss" in r]
        if len(train_rows) >= 2:
            plot_loss_curve(self.dir / "loss_curve.png", train_rows)


def write_csv(path: Path, rows: Sequence[Dict[str, Any]]) -> None:
    """All rows as a CSV (union of the keys; ``iteration`` first)."""
    keys: List[str] = ["iteration"]
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow(r)
    atomic_write_bytes(path, buf.getvalue().encode())


def _smooth(values: Sequence[float], window: int) -> List[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def plot_loss_curve(path: Path, rows: Sequence[Dict[str, Any]], size: tuple = (900, 420)) -> None:
    """Draw ``total_loss`` (raw and smoothed) and the LR against the iteration, with PIL only."""
    from PIL import Image, ImageDraw

    its = [int(r["iteration"]) for r in rows]
    loss = [float(r["total_loss"]) for r in rows]
    lrs = [float(r.get("lr", float("nan"))) for r in rows]
    pts = [(i, l_, lr) for i, l_, lr in zip(its, loss, lrs) if math.isfinite(l_)]
    if len(pts) < 2:
        return
    its, loss, lrs = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
    w, h = size
    left, right, top, bottom = 70, 20, 30, 40
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    x0, x1 = min(its), max(its)
    lo, hi = min(loss), max(loss)
    if hi <= lo:
        hi = lo + 1.0

    def px(i: float) -> float:
        return left + (i - x0) / max(1, x1 - x0) * (w - left - right)

    def py(v: float, a: float, b: float) -> float:
        return top + (1 - (v - a) / (b - a)) * (h - top - bottom)

    d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    for k in range(5):  # y grid and labels
        v = lo + (hi - lo) * k / 4
        y = py(v, lo, hi)
        d.line([left, y, w - right, y], fill=(230, 230, 230))
        d.text((5, y - 6), f"{v:.3g}", fill=(0, 0, 0))
    for k in range(5):
        i = x0 + (x1 - x0) * k / 4
        d.text((px(i) - 10, h - bottom + 8), f"{int(i)}", fill=(0, 0, 0))
    fin_lr = [v for v in lrs if math.isfinite(v)]
    if fin_lr and max(fin_lr) > 0:
        a, b = 0.0, max(fin_lr) * 1.05
        d.line([(px(i), py(v, a, b)) for i, v in zip(its, lrs) if math.isfinite(v)], fill=(120, 180, 120), width=1)
    d.line([(px(i), py(v, lo, hi)) for i, v in zip(its, loss)], fill=(170, 190, 230), width=1)
    d.line([(px(i), py(v, lo, hi)) for i, v in zip(its, _smooth(loss, max(1, len(loss) // 20)))],
           fill=(20, 60, 180), width=2)
    d.text((left, 8), "total_loss (blue: smoothed)   lr (green, own scale)   x: iteration", fill=(0, 0, 0))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
