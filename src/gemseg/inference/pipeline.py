"""Folder/video prediction with outputs on disk: the engine behind ``gem predict`` (usable from Python too).

Output naming (a contract): the binary mask (0/255 PNG, the input's resolution) of an input goes to
``OUTPUT/<rel>`` with the extension replaced by ``.png`` — ``rel`` is the file name for a single file and the path
relative to the folder (or the glob pattern's leading folder) otherwise. Other outputs add a suffix to the stem:
``<stem>_prob.png`` (8-bit probability), ``<stem>_prob.npy`` (float32 probability), ``<stem>_overlay.jpg``. A video
gives per-frame masks ``<stem>/<frame:06d>.png`` (0/255 PNG at the video's size; ``frame`` is the index in the
source video) and ``<stem>_overlay.mp4``, written last (so its presence marks a finished video). Every file is written
atomically (temporary file + rename), so an interrupted run leaves only complete files and ``skip_existing``
resumes it.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
from PIL import Image

from gemseg.errors import GemsegError
from gemseg.inference.loader import BackgroundWriter, batched, prefetch
from gemseg.inference.preprocess import load_rgb, load_rgb_for_size, resize_square
from gemseg.inference.sources import InputItem, find_collisions, input_paths
from gemseg.inference.visualize import overlay, probability_to_uint8
from gemseg.io.atomic import atomic_path
from gemseg.io.images import ImageReadError
from gemseg.io.masks import write_mask

SUMMARY_NAME = "predict_summary"
NOT_PROCESSED = "not processed"
FRAME_MASK_RE = re.compile(r"^\d{6}\.png$")  # a video's per-frame mask in OUTPUT/<stem>/


@dataclass
class PredictOptions:
    """What to write and how to run."""

    save_mask: bool = True
    save_prob: bool = False  # 8-bit PNG
    save_npy: bool = False  # float32 .npy
    save_overlay: bool = False
    save_frames: bool = True  # videos: per-frame masks OUTPUT/<stem>/<frame:06d>.png (the mask is the product)
    overwrite: bool = False
    skip_existing: bool = False
    workers: int = 2
    # network calls in flight at once (images only): on a CPU, 2 streams of 1 thread each keep both cores busier
    # than one call on 2 threads (the small layers do not split well); the runner's thread count is set to match
    streams: int = 1
    every: int = 1  # video frame stride
    max_frames: Optional[int] = None
    overlay_quality: int = 90


@dataclass
class ItemRecord:
    """One row of the run summary."""

    file: str
    output: str
    kind: str = "image"
    status: str = "ok"  # ok | skipped | failed | not processed (the run was interrupted before reaching it)
    width: Optional[int] = None
    height: Optional[int] = None
    glass_fraction: Optional[float] = None
    frames: Optional[int] = None
    decode_ms: Optional[float] = None
    infer_ms: Optional[float] = None
    error: str = ""


STATUSES = ("ok", "skipped", "failed", NOT_PROCESSED)


@dataclass
class RunSummary:
    """This run's records (one per input), plus ``earlier``: records of a previous summary in the same output
    folder (``skip_existing``) for inputs this run did not name, kept so that resuming never forgets earlier work."""

    records: List[ItemRecord] = field(default_factory=list)
    elapsed_s: float = 0.0
    interrupted: bool = False
    info: Dict[str, object] = field(default_factory=dict)
    earlier: List[ItemRecord] = field(default_factory=list)
    removed_stale: int = 0  # side outputs of an earlier run deleted by ``overwrite`` (not written by this run)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def processed_images(self) -> int:
        return sum(r.frames or 1 for r in self.records if r.status == "ok")

    @property
    def images_per_s(self) -> float:
        return self.processed_images / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> str:
        parts = [f"{self.count('ok')} done"]
        if self.count("skipped"):
            parts.append(f"{self.count('skipped')} skipped (existing)")
        parts.append(f"{self.count('failed')} failed")
        if self.count(NOT_PROCESSED):
            parts.append(f"{self.count(NOT_PROCESSED)} not processed")
        s = ", ".join(parts) + f" in {self.elapsed_s:.1f} s ({self.images_per_s:.2f} images/s)"
        if self.interrupted:
            s += " -- INTERRUPTED (resume with --skip-existing)"
        return s


def check_output_dir(out_dir: Path, overwrite: bool, skip_existing: bool) -> None:
    """Refuse a non-empty output folder unless overwriting or resuming."""
    if out_dir.exists() and not out_dir.is_dir():
        raise GemsegError(f"output {out_dir} exists and is not a folder")
    if out_dir.is_dir() and not (overwrite or skip_existing):
        with os.scandir(out_dir) as it:
            if any(True for _ in it):
                raise GemsegError(
                    f"output folder {out_dir} is not empty: pass --overwrite to replace files or --skip-existing "
                    f"to resume (only missing outputs are computed)"
                )


def item_outputs(item: InputItem, out_dir: Path, opts: PredictOptions) -> List[Path]:
    """Every file this item will produce (the first is the primary output)."""
    if item.kind in ("video", "camera"):
        paths = [item.output(out_dir, "_overlay", ".mp4")]
        return paths
    return list(image_output_paths(item, out_dir, opts).values())


def image_output_paths(item: InputItem, out_dir: Path, opts: PredictOptions) -> Dict[str, Path]:
    """The files of an image input by kind ("mask", "prob", "npy", "overlay"), in :func:`item_outputs` order."""
    paths = {}
    if opts.save_mask:
        paths["mask"] = item.output(out_dir, "", ".png")
    if opts.save_prob:
        paths["prob"] = item.output(out_dir, "_prob", ".png")
    if opts.save_npy:
        paths["npy"] = item.output(out_dir, "_prob", ".npy")
    if opts.save_overlay:
        paths["overlay"] = item.output(out_dir, "_overlay", ".jpg")
    return paths


def _save_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    with atomic_path(path, suffix=".jpg") as tmp:
        Image.fromarray(rgb).save(tmp, format="JPEG", quality=quality)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, arr)


def write_image_outputs(paths: Dict[str, Path], rgb: Optional[np.ndarray], pred, quality: int) -> None:
    """Write one prediction's files (``paths`` from :func:`image_output_paths`; ``rgb`` only for an overlay)."""
    if "mask" in paths:
        write_mask(paths["mask"], pred.mask)
    if "prob" in paths:
        write_mask(paths["prob"], probability_to_uint8(pred.probability))
    if "npy" in paths:
        _save_npy(paths["npy"], pred.probability.astype(np.float32))
    if "overlay" in paths:
        _save_jpeg(paths["overlay"], overlay(rgb, pred.mask), quality)


def progress_bar(total: int, desc: str, enabled: bool, unit: str = "img"):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr, leave=True)


def write_summary(out_dir: Path, summary: RunSummary) -> Path:
    """``predict_summary.json`` and ``predict_summary.csv`` in ``out_dir`` (atomic); returns the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) for r in summary.records + summary.earlier]
    payload = dict(summary.info)
    payload.update(
        elapsed_s=round(summary.elapsed_s, 3), images_per_s=round(summary.images_per_s, 3),
        interrupted=summary.interrupted,
        counts={s: summary.count(s) for s in STATUSES}, items=rows,
    )
    if summary.earlier:
        payload["earlier_items"] = len(summary.earlier)
    if summary.removed_stale:
        payload["removed_stale_outputs"] = summary.removed_stale
    json_path = out_dir / f"{SUMMARY_NAME}.json"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, default=str))
    buf = io.StringIO()
    names = list(ItemRecord.__dataclass_fields__)
    w = csv.DictWriter(buf, fieldnames=names)
    w.writeheader()
    for r in rows:
        w.writerow(r)
    with atomic_path(out_dir / f"{SUMMARY_NAME}.csv") as tmp:
        tmp.write_text(buf.getvalue())
    return json_path


def read_previous_records(out_dir: Path) -> List[ItemRecord]:
    """The item records of ``out_dir``'s existing summary (empty when there is none or it is unreadable)."""
    try:
        items = json.loads((Path(out_dir) / f"{SUMMARY_NAME}.json").read_text()).get("items", [])
        names = set(ItemRecord.__dataclass_fields__)
        return [ItemRecord(**{k: v for k, v in row.items() if k in names}) for row in items]
    except (OSError, ValueError, TypeError, AttributeError):
        return []


def merge_previous_records(summary: RunSummary, previous: List[ItemRecord]) -> None:
    """Resume bookkeeping: a skipped item keeps what the earlier run measured (size, glass fraction, timings),
    and earlier records of inputs this run did not name go to ``summary.earlier``."""
    def key(r: ItemRecord) -> str:
        return r.output or r.file

    by_key = {key(r): r for r in previous}
    for rec in summary.records:
        old = by_key.pop(key(rec), None)
        if old is not None and rec.status == "skipped" and old.status in ("ok", "skipped"):
            for name in ("width", "height", "glass_fraction", "frames", "decode_ms", "infer_ms"):
                setattr(rec, name, getattr(old, name))
    summary.earlier = list(by_key.values())


def stale_side_outputs(item: InputItem, out_dir: Path, opts: PredictOptions, claimed: set) -> List[Path]:
    """``_prob.png``/``_prob.npy``/``_overlay.jpg`` files of an earlier run beside this item's outputs that this
    run will not write (``overwrite``: they would no longer match the new mask). Paths another input of this run
    writes (``claimed``, real paths) are never listed."""
    if item.kind != "image":
        return []
    wanted = {("_prob", ".png"): opts.save_prob, ("_prob", ".npy"): opts.save_npy,
              ("_overlay", ".jpg"): opts.save_overlay}
    paths = [item.output(out_dir, suffix, ext) for (suffix, ext), written in wanted.items() if not written]
    return [p for p in paths if p.is_file() and os.path.realpath(p) not in claimed]


def remove_files(paths: List[Path]) -> None:
    """Delete files that may already be gone (stale side outputs)."""
    for p in paths:
        p.unlink(missing_ok=True)


def run_predict(segmentor, items: List[InputItem], out_dir, opts: Optional[PredictOptions] = None,
                progress: bool = True, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
                info: Optional[Dict[str, object]] = None) -> RunSummary:
    """Predict ``items`` into ``out_dir`` (see the module docstring for names). Bad inputs are recorded as failed
    and skipped; a KeyboardInterrupt stops the run after writing the summary (then re-raised)."""
    opts = opts or PredictOptions()
    out_dir = Path(out_dir)
    check_output_dir(out_dir, opts.overwrite, opts.skip_existing)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = RunSummary(info=dict(info or {}))
    t0 = time.perf_counter()
    todo, records, stale = plan_items(items, out_dir, opts, summary, log)

    images = [it for it in todo if it.kind == "image"]
    videos = [it for it in todo if it.kind in ("video", "camera")]
    writer = BackgroundWriter(workers=max(1, min(opts.workers, 4)))
    need_rgb = opts.save_overlay

    def fail(rec: ItemRecord, err: BaseException) -> None:
        mark_failed(rec, err)
        log(f"gem predict: FAILED {rec.file}: {rec.error}")

    def handle_done(done) -> None:
        for key, _, err in done:
            if err is not None:
                fail(records[key], err)

    def load(item: InputItem):
        return load_resized(item.source, segmentor.img_size, segmentor.resize, need_rgb)

    bar = progress_bar(len(images), "predict", progress and bool(images))
    try:
        loaded = prefetch(images, load, workers=opts.workers, window=max(8, 2 * segmentor.batch_size))

        def good():
            for item, res, err in loaded:
                if err is not None:
                    fail(records[id(item)], err)
                    if bar is not None:
                        bar.update(1)
                    continue
                yield item, res

        def infer(batch):
            t = time.perf_counter()
            preds = segmentor.predict_resized([r[2] for _, r in batch], [r[1] for _, r in batch])
            return preds, (time.perf_counter() - t) * 1000 / len(batch)

        streams = max(1, int(opts.streams))
        # streams > 1: that many batches run the network at once, on pool threads (ONNX Runtime and PyTorch
        # release the GIL); results still come back, and are written, in input order
        for batch, result, err in prefetch(batched(good(), segmentor.batch_size), infer,
                                           workers=streams if streams > 1 else 0, window=streams):
            if err is not None:  # e.g. out of memory: fail this batch, keep going
                for item, _ in batch:
                    fail(records[id(item)], err)
                if bar is not None:
                    bar.update(len(batch))
                continue
            preds, per = result
            for (item, (rgb, (h, w), _, dec_ms)), pred in zip(batch, preds):
                rec = records[id(item)]
                rec.width, rec.height = int(w), int(h)
                rec.glass_fraction = round(float(pred.mask.mean()), 6)
                rec.decode_ms, rec.infer_ms = round(dec_ms, 2), round(per, 2)
                paths = image_output_paths(item, out_dir, opts)
                old = stale.get(id(item), [])
                summary.removed_stale += len(old)
                handle_done(writer.submit(id(item), lambda p=paths, r=rgb, pr=pred, o=old: (write_image_outputs(
                    p, r, pr, opts.overlay_quality), remove_files(o))))
            if bar is not None:
                bar.update(len(batch))
        handle_done(writer.drain())
        if bar is not None:
            bar.close()
            bar = None
        for item in videos:
            _run_video(segmentor, item, out_dir, opts, records[id(item)], progress, fail)
    except KeyboardInterrupt:
        summary.interrupted = True
        handle_done(writer.drain())
        raise
    finally:
        if bar is not None:
            bar.close()
        writer.close()
        close_summary(summary, out_dir, t0, log)
    return summary


def plan_items(items: List[InputItem], out_dir: Path, opts: PredictOptions, summary: RunSummary,
               log: Callable[[str], None]):
    """One summary record per item (appended to ``summary``) and the items to compute: missing inputs, output
    collisions and outputs that would overwrite an input fail; with ``skip_existing`` items whose outputs all exist
    are skipped (and the previous summary's records are merged in). Returns ``(todo, records, stale)`` with
    ``records`` keyed by ``id(item)`` and ``stale`` (with ``overwrite``) the side outputs of an earlier run that this
    run will not write, per ``id(item)``: remove them once the item's new outputs are written."""
    protected = input_paths(items)
    todo: List[InputItem] = []
    claims = [(it, item_outputs(it, out_dir, opts)) for it in items]
    collisions = find_collisions(claims)
    claimed = protected | {os.path.realpath(p) for _, paths in claims for p in paths}
    stale: Dict[int, List[Path]] = {}
    records: Dict[int, ItemRecord] = {}
    for item, paths in claims:
        rec = ItemRecord(file=item.display, output=str(paths[0]) if paths else "", kind=item.kind)
        records[id(item)] = rec
        summary.records.append(rec)
        if item.kind == "missing":
            rec.status, rec.error = "failed", "no such file or folder (or no file matches the pattern)"
        elif id(item) in collisions:
            path, other = collisions[id(item)]
            rec.status, rec.error = "failed", f"output {path} is also the output of {other.display}; rename one"
        elif any(os.path.realpath(p) in protected for p in paths):
            rec.status, rec.error = "failed", "an output path is an input file; refusing to overwrite an input"
        elif opts.skip_existing and paths and all(p.exists() for p in paths):
            rec.status = "skipped"
        else:
            todo.append(item)
            if opts.overwrite:
                stale[id(item)] = stale_side_outputs(item, out_dir, opts, claimed)
            continue
        if rec.status == "failed":
            log(f"gem predict: FAILED {rec.file}: {rec.error}")
    if opts.skip_existing:
        merge_previous_records(summary, read_previous_records(out_dir))
    return todo, records, stale


def mark_failed(rec: ItemRecord, err: BaseException) -> None:
    """Record ``err`` as the reason ``rec`` failed (an unreadable image gives its one-line reason)."""
    rec.status = "failed"
    rec.error = err.reason if isinstance(err, ImageReadError) else f"{type(err).__name__}: {err}"
    rec.glass_fraction = None


def load_resized(source, img_size: int, resize: str, keep_rgb: bool):
    """Decode an image and square-resize it for the network: ``(rgb or None, (H, W), square, decode_ms)``."""
    t = time.perf_counter()
    if keep_rgb:  # the overlay is drawn on the full-resolution image
        rgb = load_rgb(source)
        size = rgb.shape[:2]
    else:  # only the network input is needed: huge JPEGs decode at a reduced scale
        rgb, size = load_rgb_for_size(source, img_size)
    square = resize_square(rgb, img_size, resize)
    return (rgb if keep_rgb else None), size, square, (time.perf_counter() - t) * 1000


def close_summary(summary: RunSummary, out_dir: Path, t0: float, log: Callable[[str], None]) -> None:
    """End of a run (finished or not): items never reached are marked, the elapsed time set, the summary
    written."""
    for rec in summary.records:
        if rec.status == "ok" and rec.width is None and rec.frames is None:
            rec.status, rec.error = NOT_PROCESSED, "the run was interrupted before this input"
    summary.elapsed_s = time.perf_counter() - t0
    try:
        write_summary(out_dir, summary)
    except OSError as e:  # pragma: no cover
        log(f"gem predict: cannot write the summary: {e}")


def _run_video(segmentor, item: InputItem, out_dir: Path, opts: PredictOptions, rec: ItemRecord, progress: bool,
               fail) -> None:
    """Per-frame masks (unless ``save_frames`` is off) and the overlay video for a video file or a camera (stopped by
    Ctrl-C). With ``overwrite``, frame masks of an earlier run that this run did not write are removed."""
    from gemseg.io.video import VideoWriter, open_video, video_info

    try:
        cap = open_video(item.source)
        fps, count, w, h = video_info(cap)
        cap.release()
    except ImageReadError as e:
        fail(rec, e)
        return
    out_fps = fps / max(1, opts.every)
    total = None
    if count > 0:
        total = (count + opts.every - 1) // opts.every
        if opts.max_frames is not None:
            total = min(total, opts.max_frames)
    bar = progress_bar(total or 0, Path(str(item.rel)).name, progress, unit="frame")
    frames_dir = out_dir / item.rel.parent / item.rel.stem
    fractions = []
    written = set()
    t0 = time.perf_counter()
    camera = item.kind == "camera"
    try:
        with VideoWriter(item.output(out_dir, "_overlay", ".mp4"), out_fps) as vw:
            try:
                for frame in segmentor.predict_video(item.source, every=opts.every, max_frames=opts.max_frames):
                    vw.write(overlay(frame.image, frame.prediction.mask))
                    if opts.save_frames:
                        name = f"{frame.index:06d}.png"
                        write_mask(frames_dir / name, frame.prediction.mask)
                        written.add(name)
                    fractions.append(float(frame.prediction.mask.mean()))
                    if bar is not None:
                        bar.update(1)
            except KeyboardInterrupt:
                if not camera:
                    raise
                # a camera stream ends with Ctrl-C: keep what was recorded
    except ImageReadError as e:
        fail(rec, e)
        return
    except (OSError, RuntimeError, ValueError) as e:
        fail(rec, e)
        return
    finally:
        if bar is not None:
            bar.close()
    if not fractions:
        fail(rec, ImageReadError(item.display, "no decodable frame"))
        return
    if opts.overwrite and frames_dir.is_dir():
        remove_files([f for f in frames_dir.iterdir() if FRAME_MASK_RE.match(f.name) and f.name not in written])
    rec.width, rec.height = w, h
    rec.frames = len(fractions)
    rec.glass_fraction = round(float(np.mean(fractions)), 6)
    rec.infer_ms = round((time.perf_counter() - t0) * 1000 / len(fractions), 2)
