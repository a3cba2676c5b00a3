"""Run the metrics over a dataset: a model's predictions (model mode) or saved masks of any method (prediction mode).

Both modes stream: one image in memory at a time, per-image rows written to the CSV as they are computed, a bounded
heap of the worst images' thumbnails for the gallery. A pair that cannot be scored (unreadable file, undecodable
mask, missing prediction, size mismatch) is recorded as a :class:`Failure` and skipped — the summary counts it.
Ctrl-C stops the loop cleanly: the results so far are returned with ``interrupted=True`` and every file written is
complete (atomic writes).

The model is never imported here: :func:`evaluate_model` takes any object with a ``predict(image)`` method
returning ``.mask`` (H×W bool) and ``.probability`` (H×W float) — ``gemseg.load_model(...)`` or a stand-in.
"""
from __future__ import annotations

import contextlib
import csv
import heapq
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, TextIO, Tuple, Union

import numpy as np

from gemseg.data.layouts import Dataset, MaskDecodeError, Sample, load_mask_binary, _strip_mask_suffix
from gemseg.errors import GemsegError
from gemseg.evaluation.metrics import EMPTY_POLICIES, GlassMetrics, ImageScores
from gemseg.io import IMAGE_EXTENSIONS, ImageReadError, atomic_path, read_image, read_mask

PathLike = Union[str, os.PathLike]

OFFICIAL_KEYS = ("count", "IoU", "Fbeta", "MAE", "BER")
SIZE_POLICIES = ("skip", "resize", "strict")
PREDICTION_EXTENSIONS = tuple(sorted(set(IMAGE_EXTENSIONS) | {".npy"}))
PER_IMAGE_FIELDS = ("key", "IoU", "Fbeta05", "MAE", "BER", "accuracy", "adaptiveF", "TP", "FP", "FN", "TN",
                    "pixels", "ignored", "gt_fraction", "pred_fraction", "resized")
THUMB_WIDTH = 200


class EvaluationError(GemsegError):
    """Evaluation cannot proceed (e.g. a size mismatch under the strict policy, nothing to evaluate)."""


class PredictionReadError(GemsegError):
    """A saved prediction cannot be interpreted."""


@dataclass
class Failure:
    """A pair that was skipped, and why."""

    key: str
    reason: str


@dataclass
class WorstEntry:
    """One image of the worst-images gallery (thumbnails are small uint8 arrays)."""

    key: str
    iou: float
    image: Optional[np.ndarray]  # H×W×3 thumbnail, or None when the dataset has no images
    gt: np.ndarray  # H×W bool thumbnail
    pred: np.ndarray  # H×W bool thumbnail (prediction at 0.5)
    ignore: np.ndarray


@dataclass
class EvalResults:
    """Everything an evaluation produced. ``summary`` holds the dataset-level numbers (see
    :meth:`GlassMetrics.compute`); :meth:`official` the four paper numbers plus the count."""

    summary: Dict[str, float]
    curves: Dict[str, np.ndarray]
    metrics: GlassMetrics
    total: int  # pairs the run set out to score
    failures: List[Failure] = field(default_factory=list)
    unmatched_predictions: List[Path] = field(default_factory=list)
    interrupted: bool = False
    prediction_kind: str = "binary"  # "binary", "soft" or "mixed"
    source: str = ""  # what produced the predictions (model / folder)
    dataset: str = ""
    settings: Dict[str, object] = field(default_factory=dict)
    worst: List[WorstEntry] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def count(self) -> int:
        return int(self.summary.get("count", 0))

    def official(self) -> Dict[str, float]:
        """``{"count", "IoU", "Fbeta", "MAE", "BER"}`` exactly (BER in percent)."""
        return {k: self.summary[k] for k in OFFICIAL_KEYS}


# ----------------------------------------------------------------------------------------------------------------
# reading and resizing predictions


def read_prediction(path: PathLike) -> np.ndarray:
    """Read a saved prediction as the metrics expect it.

    * PNG/BMP/TIFF/JPEG: a map whose values are only {0, 1} or only {0, 255} is a **binary** mask (returned as
      bool; 1/255 = glass); any other 8-bit map is a soft map returned as uint8 (p = v/255); 16-bit maps are
      scaled by 1/65535 (float). Colour images are refused unless grey (R = G = B).
    * ``.npy``: bool (binary), integer 0/1 (binary), or float in [0, 1] (probability).
    """
    p = Path(path)
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise PredictionReadError(f"cannot read prediction {p}: {e}") from None
    else:
        arr = read_mask(p)
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise PredictionReadError(f"prediction {p} has shape {arr.shape}; expected a single-channel H×W map")
    if arr.dtype == np.bool_:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(np.nanmin(arr)) if arr.size else 0.0, float(np.nanmax(arr)) if arr.size else 0.0
        if not np.isfinite(arr).all() or lo < 0 or hi > 1:
            raise PredictionReadError(f"prediction {p}: float values must lie in [0, 1] (min {lo}, max {hi})")
        return arr
    if not np.issubdtype(arr.dtype, np.integer):
        raise PredictionReadError(f"prediction {p}: unsupported dtype {arr.dtype}")
    vmax = int(arr.max(initial=0))
    if int(arr.min(initial=0)) < 0:
        raise PredictionReadError(f"prediction {p}: negative values")
    if vmax <= 1:
        return arr.astype(bool)
    if vmax <= 255:
        if arr.dtype != np.uint8:
            arr = arr.astype(np.uint8)
        if vmax == 255 and np.count_nonzero((arr != 0) & (arr != 255)) == 0:
            return arr == 255
        return arr
    return (arr.astype(np.float64) / 65535.0).clip(0.0, 1.0)


def is_binary_prediction(pred: np.ndarray) -> bool:
    """True for bool maps and 0/1 integer maps (what official GEM evaluates)."""
    if pred.dtype == np.bool_:
        return True
    return bool(np.issubdtype(pred.dtype, np.integer) and int(pred.max(initial=0)) <= 1)


def resize_prediction(pred: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Resize a prediction to ``shape`` (H, W) with bilinear interpolation (OpenCV ``INTER_LINEAR``, i.e.
    align_corners=False as the official resize-back of scores). Binary masks are interpolated as 0/1 floats and
    re-thresholded at 0.5, so they stay binary; soft maps stay soft (uint8 maps are rounded back to uint8)."""
    import cv2

    h, w = shape
    if pred.shape == (h, w):
        return pred
    if pred.dtype == np.bool_ or is_binary_prediction(pred):
        f = cv2.resize(pred.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return f >= 0.5
    if pred.dtype == np.uint8:
        f = cv2.resize(pred.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(np.rint(f), 0, 255).astype(np.uint8)
    f = cv2.resize(pred.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(f, 0.0, 1.0)


def match_predictions(samples: Sequence[Sample], pred_dir: PathLike) -> Tuple[Dict[str, Path], List[Path]]:
    """Map sample keys to prediction files in ``pred_dir`` (recursive).

    Matching: same relative path without extension; else the same stem (when unique); else the stem with a
    ``_mask``/``_gt`` suffix removed. Returns ``(key → file, unmatched prediction files)``.
    """
    pdir = Path(pred_dir)
    if not pdir.is_dir():
        raise EvaluationError(f"prediction folder not found: {pdir}")
    preds: Dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(pdir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith(".") or not fn.lower().endswith(PREDICTION_EXTENSIONS):
                continue
            f = Path(dirpath) / fn
            rel = f.relative_to(pdir).with_suffix("").as_posix()
            # prefer lossless files when a stem exists twice (x.png and x.jpg)
            if rel not in preds or preds[rel].suffix.lower() in (".jpg", ".jpeg"):
                preds[rel] = f
    out: Dict[str, Path] = {}
    left = dict(preds)
    for s in samples:
        if s.key in left:
            out[s.key] = left.pop(s.key)
    by_stem: Dict[str, List[str]] = {}
    for k in left:
        stem = k.rsplit("/", 1)[-1]
        by_stem.setdefault(stem, []).append(k)
        stripped = _strip_mask_suffix(stem)
        if stripped != stem:
            by_stem.setdefault(stripped, []).append(k)
    for s in samples:
        if s.key in out:
            continue
        stem = s.key.rsplit("/", 1)[-1]
        for cand in (stem, _strip_mask_suffix(stem)):
            c = [k for k in by_stem.get(cand, []) if k in left]
            if len(c) == 1:
                out[s.key] = left.pop(c[0])
                break
    return out, sorted(left.values())


# ----------------------------------------------------------------------------------------------------------------
# the loop


def _thumb(arr: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    """Nearest-neighbour thumbnail (keeps masks binary and costs nothing when arr is small)."""
    h, w = arr.shape[:2]
    if w <= width:
        return arr.copy()
    nh = max(1, round(h * width / w))
    ys = (np.arange(nh) * h // nh).astype(np.intp)
    xs = (np.arange(width) * w // width).astype(np.intp)
    return arr[ys][:, xs].copy()


class _WorstHeap:
    """Keeps the ``k`` lowest-IoU images (a max-heap on IoU, so memory is O(k) thumbnails)."""

    def __init__(self, k: int):
        self.k = k
        self._heap: List[Tuple[float, int, WorstEntry]] = []
        self._n = itertools.count()

    def wants(self, iou: float) -> bool:
        if self.k <= 0 or iou != iou:
            return False
        return len(self._heap) < self.k or iou < -self._heap[0][0]

    def push(self, entry: WorstEntry) -> None:
        item = (-entry.iou, next(self._n), entry)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def sorted(self) -> List[WorstEntry]:
        return [e for _, _, e in sorted(self._heap, key=lambda t: (-t[0], t[1]))]


PredictFn = Callable[[Sample], np.ndarray]


def _run(dataset: Dataset, predict: PredictFn, items: Sequence[Sample], *, source: str, empty: str,
         size_policy: str, per_image_csv: Optional[PathLike], worst_k: int, progress: bool, s_measure: bool,
         pre_failures: Sequence[Failure] = (), unmatched: Sequence[Path] = (), mode_hint: Optional[str] = None,
         settings: Optional[Dict[str, object]] = None) -> EvalResults:
    if empty not in EMPTY_POLICIES:
        raise EvaluationError(f"unknown empty-mask policy {empty!r}; expected one of {', '.join(EMPTY_POLICIES)}")
    if size_policy not in SIZE_POLICIES:
        raise EvaluationError(f"unknown size policy {size_policy!r}; expected one of {', '.join(SIZE_POLICIES)}")
    metrics = GlassMetrics(empty=empty, s_measure=s_measure)
    failures: List[Failure] = list(pre_failures)
    heap = _WorstHeap(worst_k)
    kinds = set()
    interrupted = False
    t0 = time.perf_counter()
    total = len(items) + len(pre_failures)

    csv_ctx = atomic_path(per_image_csv) if per_image_csv else contextlib.nullcontext(None)
    with csv_ctx as tmp_csv:
        fh: Optional[TextIO] = open(tmp_csv, "w", newline="", encoding="utf-8") if tmp_csv else None
        try:
            writer = csv.writer(fh) if fh else None
            if writer:
                writer.writerow(PER_IMAGE_FIELDS)
            bar = _progress(items, progress, desc="eval")
            try:
                for sample in bar:
                    try:
                        scores, resized, pred, glass, ignore = _score_one(sample, predict, metrics, size_policy)
                    except (ImageReadError, MaskDecodeError, PredictionReadError, _PairError) as e:
                        failures.append(Failure(sample.key, str(e)))
                        continue
                    kinds.add("binary" if is_binary_prediction(pred) else "soft")
                    if writer:
                        writer.writerow(_csv_row(sample.key, scores, resized))
                    if heap.wants(scores.IoU):
                        heap.push(_worst_entry(sample, scores.IoU, pred, glass, ignore))
            finally:
                if hasattr(bar, "close"):
                    bar.close()
        except KeyboardInterrupt:
            # stop cleanly: keep what was scored, finish the files (the CSV then holds the scored rows)
            interrupted = True
        finally:
            if fh:
                fh.close()
    kind = mode_hint or ("mixed" if len(kinds) > 1 else (kinds.pop() if kinds else "binary"))
    return EvalResults(summary=metrics.compute(), curves=metrics.curves(), metrics=metrics, total=total,
                       failures=failures, unmatched_predictions=list(unmatched), interrupted=interrupted,
                       prediction_kind=kind, source=source, dataset=dataset.describe(),
                       settings={"empty": empty, "size_policy": size_policy, **(settings or {})},
                       worst=heap.sorted(), elapsed_s=time.perf_counter() - t0)


class _PairError(Exception):
    """Internal: this pair cannot be scored (message says why)."""


def _score_one(sample: Sample, predict: PredictFn, metrics: GlassMetrics, size_policy: str):
    glass, ignore = load_mask_binary(sample)
    pred = predict(sample)
    resized = False
    if pred.shape != glass.shape:
        msg = (f"prediction size {pred.shape[1]}×{pred.shape[0]} ≠ ground-truth size "
               f"{glass.shape[1]}×{glass.shape[0]} (W×H)")
        if size_policy == "strict":
            raise EvaluationError(f"{sample.key}: {msg}; stopped (strict size policy)")
        if size_policy == "skip":
            raise _PairError(msg + "; skipped (use --resize-pred to resize predictions)")
        pred = resize_prediction(pred, glass.shape)
        resized = True
    if not ignore.any():
        ignore_arg = None
    else:
        ignore_arg = ignore
        if ignore.all():
            raise _PairError("every ground-truth pixel is 'ignore' (255)")
    scores = metrics.update(pred, glass, ignore_arg)
    return scores, resized, pred, glass, ignore


def _csv_row(key: str, s: ImageScores, resized: bool) -> List[object]:
    def f(x: float) -> str:
        return "nan" if x != x else f"{x:.6f}"

    return [key, f(s.IoU), f(s.F05), f(s.MAE), f(s.BER), f(s.accuracy), f(s.adaptiveF), s.TP, s.FP, s.FN, s.TN,
            s.pixels, s.ignored, f(s.gt_fraction), f(s.pred_fraction), int(resized)]


def _worst_entry(sample: Sample, iou: float, pred: np.ndarray, glass: np.ndarray, ignore: np.ndarray) -> WorstEntry:
    if pred.dtype == np.bool_:
        pb = pred
    elif np.issubdtype(pred.dtype, np.floating):
        pb = pred >= 0.5
    elif int(pred.max(initial=0)) <= 1:
        pb = pred.astype(bool)
    else:
        pb = pred >= 128
    img = None
    if sample.image is not None:
        try:
            img = _thumb(read_image(sample.image))
        except ImageReadError:
            img = None
    return WorstEntry(sample.key, float(iou), img, _thumb(glass), _thumb(pb), _thumb(ignore))


def _progress(items: Sequence[Sample], enabled: bool, desc: str) -> Iterable[Sample]:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency, but a missing progress bar must not stop an evaluation
        return items
    return tqdm(items, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True, leave=False)


# ----------------------------------------------------------------------------------------------------------------
# public entry points


def evaluate_predictions(pred_dir: PathLike, dataset: Dataset, *, empty: str = "guard", size_policy: str = "skip",
                         per_image_csv: Optional[PathLike] = None, worst_k: int = 0, progress: bool = True,
                         limit: Optional[int] = None, s_measure: bool = False) -> EvalResults:
    """Score saved prediction masks in ``pred_dir`` against ``dataset``'s masks.

    Predictions are matched to GT by relative path/stem (:func:`match_predictions`) and read with
    :func:`read_prediction`. GT masks without a prediction are failures ("missing prediction") — they are
    listed and counted, not scored as empty. ``size_policy``: ``skip`` (default; mismatched pairs are skipped and
    reported), ``resize`` (bilinear, :func:`resize_prediction`) or ``strict`` (stop with an error).
    ``s_measure=True`` adds the (slower, spatial) S-measure to the extras.
    """
    samples = list(dataset.samples)
    if limit is not None:
        samples = samples[:limit]
    if not samples:
        raise EvaluationError(f"no ground-truth masks found in {dataset.name}")
    mapping, unmatched = match_predictions(samples, pred_dir)
    failures = [Failure(s.key, "missing prediction") for s in samples if s.key not in mapping]
    items = [s for s in samples if s.key in mapping]
    if not items:
        raise EvaluationError(f"no prediction in {pred_dir} matches a ground-truth mask of {dataset.name} "
                              f"(first GT keys: {', '.join(s.key for s in samples[:3])})")

    def predict(sample: Sample) -> np.ndarray:
        return read_prediction(mapping[sample.key])

    return _run(dataset, predict, items, source=f"predictions in {pred_dir}", empty=empty, size_policy=size_policy,
                per_image_csv=per_image_csv, worst_k=worst_k, progress=progress, s_measure=s_measure,
                pre_failures=failures, unmatched=unmatched, settings={"pred_dir": str(pred_dir)})


def evaluate_model(model, dataset: Union[Dataset, Sequence[Sample]], *, soft: bool = False, empty: str = "guard",
                   size_policy: str = "skip", per_image_csv: Optional[PathLike] = None, worst_k: int = 0,
                   progress: bool = True, limit: Optional[int] = None, source: str = "model",
                   s_measure: bool = False) -> EvalResults:
    """Run ``model.predict`` on every image of ``dataset`` and score it.

    By default the **binary mask** (``result.mask`` = argmax of the two-class scores) is scored, exactly what
    the official GEM evaluator feeds its ``Metrics``; ``soft=True`` scores ``result.probability`` instead (then Fβ
    and MAE use the soft map, as GlassSemNet's evaluator does). ``model`` is anything with
    ``predict(image: H×W×3 uint8 RGB) -> result``; images are decoded with :func:`gemseg.io.read_image` (EXIF
    applied). Samples without an image are failures.
    """
    if not isinstance(dataset, Dataset):
        dataset = Dataset("samples", "generic", None, None, list(dataset))
    samples = list(dataset.samples)
    if limit is not None:
        samples = samples[:limit]
    if not samples:
        raise EvaluationError(f"dataset {dataset.name} has no image/mask pairs")
    failures = [Failure(s.key, "no image for this mask") for s in samples if s.image is None]
    items = [s for s in samples if s.image is not None]

    def predict(sample: Sample) -> np.ndarray:
        image = read_image(sample.image)
        result = model.predict(image)
        out = result.probability if soft else result.mask
        out = _to_numpy(out)
        if soft:
            out = out.astype(np.float32, copy=False)
            # clamp tiny numerical excursions (e.g. 1.0000001) that would otherwise fail the [0, 1] check
            out = np.clip(out, 0.0, 1.0)
        else:
            out = out.astype(bool, copy=False)
        return out

    with _no_grad():
        return _run(dataset, predict, items, source=source, empty=empty, size_policy=size_policy,
                    per_image_csv=per_image_csv, worst_k=worst_k, progress=progress, s_measure=s_measure,
                    pre_failures=failures, mode_hint="soft" if soft else "binary",
                    settings={"soft": soft, "scored": "probability" if soft else "binary mask (argmax)"})


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


@contextlib.contextmanager
def _no_grad() -> Iterator[None]:
    """``torch.no_grad()`` when torch is importable (it is in model mode); a no-op otherwise."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        yield
        return
    with torch.no_grad():
        yield
