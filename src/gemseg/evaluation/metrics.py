"""Glass-segmentation metrics exactly as the official GEM / GlassSemNet evaluators define them, streamed.

Official definitions (``Metrics`` class of GEM's ``sem_seg_evaluation.py``; see ``docs/evaluation.md``), per image
with the prediction ``p`` in [0, 1] and the GT binarised as ``g = gt > 0.5``:

* TP/FP/FN/TN at ``p >= 0.5``;
* IoU = TP / (TP + FP + FN);
* precision/recall at the 256 thresholds ``t_k = k/255`` (``p >= t_k``) with 1e-4 added to numerator and
  denominator: ``P_k = (TP_k + 1e-4) / (#(p >= t_k) + 1e-4)``, ``R_k = (TP_k + 1e-4) / (#g + 1e-4)``;
* MAE = mean |p − g|;
* BER = 100 · (1 − ½ (TP/(TP+FN) + TN/(TN+FP))) (percent).

Dataset level: mean IoU over images; **Fβ = max_k F(P̄_k, R̄_k)** with P̄/R̄ the per-threshold means over images and
β² = 0.3; mean MAE; mean BER.

Implementation: each image is reduced to a 512-bin histogram (256 prediction levels × {background, glass}) plus a
few counts, so the accumulator holds O(256) numbers however many images pass through it, and the 256-threshold
curves cost one ``bincount`` and two cumulative sums instead of 256 passes over the pixels.

Predictions may be

* ``bool`` — a binary mask (what official GEM feeds: the argmax map);
* integer arrays whose maximum is ≤ 1 — a 0/1 label map (e.g. ``argmax`` as uint8), treated as binary;
* ``uint8`` with larger values — an 8-bit map, ``p = v/255``;
* ``float`` in [0, 1] — a probability map; thresholds are applied to the float values exactly (``p >= k/255`` and
  ``p >= 0.5`` are evaluated as the official code does, not on a rounded copy).

Pixels flagged ``ignore`` (255 in 0/1/255 masks) are left out of every count. The official code instead maps 255
to 2 and so counts ignore pixels as glass; the GSD-S test masks contain no 255, so the numbers agree there.

Empty-mask edge cases (0/0) are resolved by ``empty=`` (see :data:`EMPTY_POLICIES` and ``docs/evaluation.md``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional

import numpy as np

BETA2 = 0.3
NUM_LEVELS = 256
SMOOTH = 1e-4
#: ``guard`` (default): an image whose GT and prediction are both empty has IoU 1; BER averages the error rates of
#: the classes present in the GT. ``official``: 0/0 gives NaN as in the official code, and one NaN image makes the
#: dataset mean NaN. ``skip``: images where a metric is 0/0 are left out of that metric's mean.
EMPTY_POLICIES = ("guard", "official", "skip")
# thresholds exactly as the official loop computes them: ``threshold / 255.`` in float64
_THRESHOLDS = np.arange(NUM_LEVELS, dtype=np.float64) / 255.0
_SPACING = float(np.spacing(1))  # the MATLAB ``eps`` the S-/E-measure reference code uses


@dataclass
class ImageScores:
    """Per-image scores (the row of the per-image CSV). NaN marks a 0/0 under ``empty='official'``/``'skip'``."""

    IoU: float
    MAE: float
    BER: float
    accuracy: float
    F05: float  # Fβ of the 0.5-thresholded prediction, from the smoothed per-image P/R
    adaptiveF: float
    TP: int
    FP: int
    FN: int
    TN: int
    pixels: int
    ignored: int
    gt_fraction: float
    pred_fraction: float

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


def _fbeta(p: np.ndarray, r: np.ndarray, beta2: float) -> np.ndarray:
    """F-measure; 0 where both P and R are 0 (cannot happen with the 1e-4 smoothing, kept for safety)."""
    num = (1.0 + beta2) * p * r
    den = beta2 * p + r
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _enhanced_alignment(tp, fp, n_fg: int, n: int) -> np.ndarray:
    """E-measure (Fan et al., IJCAI 2018) of binarised predictions from their counts, vectorised over thresholds.

    The enhanced-alignment matrix takes one value per (prediction, GT) pixel class, so its sum is a weighted sum of
    the four counts TP, FP, FN, TN; normalised by ``n − 1 + eps`` as the reference code does. An all-background
    GT scores the predicted-background fraction, an all-glass GT the predicted-glass fraction.
    """
    tp = np.asarray(tp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    pred_fg = tp + fp
    pred_bg = n - pred_fg
    if n_fg == 0:
        total = pred_bg
    elif n_fg == n:
        total = pred_fg
    else:
        fn = n_fg - tp
        tn = pred_bg - fn
        mp, mg = pred_fg / n, n_fg / n
        total = np.zeros_like(tp)
        for count, a, b in ((tp, 1 - mp, 1 - mg), (fp, 1 - mp, -mg), (fn, -mp, 1 - mg), (tn, -mp, -mg)):
            align = 2 * a * b / (a * a + b * b + _SPACING)
            total = total + count * (align + 1) ** 2 / 4
    return total / (n - 1 + _SPACING)


def _ssim_region(p: np.ndarray, g: np.ndarray) -> float:
    """The S-measure's region similarity of one quadrant (Fan et al., ICCV 2017 reference definition)."""
    n = p.size
    if n == 0:
        return 0.0
    x, y = float(p.mean()), float(g.mean())
    dp, dg = p - x, g - y
    sx = float(np.sum(dp * dp)) / (n - 1 + _SPACING)
    sy = float(np.sum(dg * dg)) / (n - 1 + _SPACING)
    sxy = float(np.sum(dp * dg)) / (n - 1 + _SPACING)
    a = 4 * x * y * sxy
    b = (x * x + y * y) * (sx + sy)
    if a != 0:
        return a / (b + _SPACING)
    return 1.0 if b == 0 else 0.0


def _object_similarity(x: np.ndarray) -> float:
    mean = float(x.mean())
    std = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    return 2 * mean / (mean * mean + 1 + std + _SPACING)


def s_measure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure S_α (Fan et al., ICCV 2017) of a prediction in [0, 1] against a bool GT (2-D arrays).

    Follows the reference MATLAB code (as pysodmetrics does): object term from mean and sample std of the
    prediction inside / outside the GT, region term from SSIM-like scores of the four quadrants around the rounded
    GT centroid (plus one, as MATLAB's 1-based ranges), ``eps = 2.2e-16``; an all-background GT scores
    ``1 − mean(p)``, an all-glass GT ``mean(p)``.
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=bool)
    y = float(g.mean())
    if y == 0:
        return 1.0 - float(p.mean())
    if y == 1:
        return float(p.mean())
    obj = y * _object_similarity(p[g]) + (1 - y) * _object_similarity(1.0 - p[~g])
    h, w = g.shape
    rows, cols = np.count_nonzero(g, axis=1), np.count_nonzero(g, axis=0)
    n_fg = int(rows.sum())
    # centroid = mean of foreground coordinates (exact integer sums), rounded half-to-even like np.round
    cy = int(np.round(float(np.arange(h) @ rows) / n_fg)) + 1
    cx = int(np.round(float(np.arange(w) @ cols) / n_fg)) + 1
    area = h * w
    w_lt, w_rt, w_lb = cx * cy / area, cy * (w - cx) / area, (h - cy) * cx / area
    w_rb = 1 - w_lt - w_rt - w_lb
    gf = g.astype(np.float64)
    region = (_ssim_region(p[:cy, :cx], gf[:cy, :cx]) * w_lt + _ssim_region(p[:cy, cx:], gf[:cy, cx:]) * w_rt
              + _ssim_region(p[cy:, :cx], gf[cy:, :cx]) * w_lb + _ssim_region(p[cy:, cx:], gf[cy:, cx:]) * w_rb)
    return max(0.0, alpha * obj + (1 - alpha) * region)


def quantize_prediction(pred: np.ndarray):
    """Reduce a prediction to ``(levels, at_half, soft)``.

    ``levels`` (uint8) satisfies ``levels >= k  ⇔  p >= k/255`` for every k, so histogram cumulative sums give the
    official 256-threshold counts exactly; ``at_half`` is ``p >= 0.5`` (bool) or ``None`` when it equals
    ``levels >= 128`` (binary and 8-bit inputs); ``soft`` is the float64 map for MAE / adaptive-F (``None`` when the
    levels represent the values exactly).
    """
    pred = np.asarray(pred)
    if pred.dtype == np.bool_:
        return pred.view(np.uint8) * np.uint8(255), None, None
    if np.issubdtype(pred.dtype, np.integer):
        vmin, vmax = int(pred.min(initial=0)), int(pred.max(initial=0))
        if vmin < 0:
            raise ValueError("integer predictions must be non-negative")
        if vmax <= 1:  # 0/1 label map (argmax), as official GEM feeds it
            return pred.astype(np.uint8) * np.uint8(255), None, None
        if pred.dtype != np.uint8:
            if vmax > 255:
                raise ValueError("integer predictions must be 0/1 labels or 8-bit (0..255) maps")
            pred = pred.astype(np.uint8)
        return pred, None, None
    if not np.issubdtype(pred.dtype, np.floating):
        raise TypeError(f"unsupported prediction dtype {pred.dtype}")
    p = pred.astype(np.float64, copy=False)
    lo, hi = float(p.min(initial=0.0)), float(p.max(initial=0.0))
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
        raise ValueError(f"float predictions must lie in [0, 1] (got min {lo}, max {hi})")
    q = np.floor(p * 255.0)
    # p*255 may round across an integer: correct so that q is the largest k with p >= k/255 (the exact official
    # test). ``q / 255.0`` is bit-identical to the official ``k / 255.`` (same IEEE division), and arithmetic on
    # the whole array is much cheaper than a table lookup.
    q -= p < q / 255.0
    q += (q < 255.0) & (p >= (q + 1.0) / 255.0)
    return q.astype(np.uint8), p >= 0.5, p


class GlassMetrics:
    """Streaming accumulator of the official glass metrics plus common extras.

    >>> m = GlassMetrics()
    >>> scores = m.update(pred, glass, ignore)   # per image; returns ImageScores
    >>> summary = m.compute()                    # dataset-level dict

    State is O(256) numbers; :meth:`merge` combines accumulators (e.g. across data-parallel ranks).
    """

    def __init__(self, beta2: float = BETA2, empty: str = "guard", s_measure: bool = False):
        if empty not in EMPTY_POLICIES:
            raise ValueError(f"empty must be one of {EMPTY_POLICIES}, got {empty!r}")
        self.beta2 = float(beta2)
        self.empty = empty
        # S-measure needs a few extra passes over the 2-D map, so it is opt-in; E-measure comes from the histogram
        self.with_s_measure = bool(s_measure)
        self.reset()

    def reset(self) -> None:
        """Forget every image."""
        self.count = 0
        self.sum_precision = np.zeros(NUM_LEVELS, dtype=np.float64)
        self.sum_recall = np.zeros(NUM_LEVELS, dtype=np.float64)
        self.sum_fcurve = np.zeros(NUM_LEVELS, dtype=np.float64)  # per-image F curves (SOD-style mean-F)
        # [sum of defined values, number of defined values, number of undefined (0/0) images]
        self.iou = np.zeros(3, dtype=np.float64)
        self.ber = np.zeros(3, dtype=np.float64)
        self.sum_mae = 0.0
        self.sum_accuracy = 0.0
        self.sum_adaptive_f = 0.0
        self.sum_ecurve = np.zeros(NUM_LEVELS, dtype=np.float64)  # per-image E-measure curves
        self.sum_adaptive_e = 0.0
        self.s = np.zeros(3, dtype=np.float64)  # S-measure [sum, n defined, n skipped (ignore pixels)]
        self.confusion = np.zeros(4, dtype=np.int64)  # pooled TP, FP, FN, TN at 0.5
        self.empty_gt = 0  # images without any glass pixel
        self.ignored = 0  # ignored pixels over all images

    # ------------------------------------------------------------------------------------------------------------
    def update(self, pred: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray] = None) -> ImageScores:
        """Add one image. ``pred``: prediction (see module docstring); ``gt``: bool glass mask (other dtypes:
        ``> 0.5``); ``ignore``: optional bool mask of pixels to leave out. Shapes must match."""
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if gt.dtype != np.bool_:
            gt = gt > 0.5
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
        levels, at_half, soft = quantize_prediction(pred)
        n_ignored = 0
        s_value = float("nan")
        if self.with_s_measure and (ignore is None or not np.any(ignore)):
            s_value = s_measure(soft if soft is not None else levels / 255.0, gt)
        if ignore is not None:
            ignore = np.asarray(ignore, dtype=bool)
            if ignore.shape != gt.shape:
                raise ValueError(f"ignore shape {ignore.shape} != ground-truth shape {gt.shape}")
            n_ignored = int(np.count_nonzero(ignore))
            if n_ignored:
                valid = ~ignore
                levels, gt = levels[valid], gt[valid]
                at_half = at_half[valid] if at_half is not None else None
                soft = soft[valid] if soft is not None else None
        levels = levels.ravel()
        gt_flat = gt.ravel()
        n = levels.size
        if n == 0:
            raise ValueError("no valid (non-ignored) pixels in this image")

        # one pass: histogram of levels split by GT class
        code = levels.astype(np.uint16)
        code |= gt_flat.view(np.uint8).astype(np.uint16) << 8
        hist = np.bincount(code, minlength=2 * NUM_LEVELS).astype(np.int64)
        bg_hist, fg_hist = hist[:NUM_LEVELS], hist[NUM_LEVELS:]
        # counts with level >= k, for k = 0..255 (reverse cumulative sums)
        tp_k = np.cumsum(fg_hist[::-1])[::-1]
        fp_k = np.cumsum(bg_hist[::-1])[::-1]
        n_fg = int(tp_k[0])
        n_bg = n - n_fg

        if at_half is None:
            tp, fp = int(tp_k[128]), int(fp_k[128])
        else:
            a = at_half.ravel()
            tp = int(np.count_nonzero(a & gt_flat))
            fp = int(np.count_nonzero(a)) - tp
        fn, tn = n_fg - tp, n_bg - fp

        precision = (tp_k + SMOOTH) / (tp_k + fp_k + SMOOTH)
        recall = (tp_k + SMOOTH) / (n_fg + SMOOTH)
        fcurve = _fbeta(precision, recall, self.beta2)

        # MAE and mean prediction (for adaptive F)
        if soft is None:
            k = np.arange(NUM_LEVELS, dtype=np.float64)
            abs_err = float(k @ bg_hist + (255.0 - k) @ fg_hist) / 255.0
            pred_sum = float(k @ (bg_hist + fg_hist)) / 255.0
        else:
            s = soft.ravel()
            pred_sum = float(s.sum())
            fg_sum = float(s[gt_flat].sum()) if n_fg else 0.0
            abs_err = pred_sum - 2.0 * fg_sum + n_fg  # Σ_bg p + Σ_fg (1 − p)
        mae = abs_err / n

        # adaptive F (SOD convention): threshold min(2·mean(p), 1), no smoothing, 0 when nothing overlaps
        thr = min(2.0 * pred_sum / n, 1.0)
        if soft is None:
            sel = _THRESHOLDS >= thr
            a_tp = int(fg_hist[sel].sum())
            a_pos = a_tp + int(bg_hist[sel].sum())
        else:
            ab = s >= thr
            a_tp, a_pos = int(np.count_nonzero(ab & gt_flat)), int(np.count_nonzero(ab))
        ecurve = _enhanced_alignment(tp_k, fp_k, n_fg, n)
        adaptive_e = float(_enhanced_alignment(a_tp, a_pos - a_tp, n_fg, n))
        if a_tp == 0:
            adaptive_f = 0.0
        else:
            ap, ar = a_tp / a_pos, a_tp / n_fg
            adaptive_f = (1 + self.beta2) * ap * ar / (self.beta2 * ap + ar)

        # IoU and BER with the 0/0 policy
        union = tp + fp + fn
        iou_raw = tp / union if union else float("nan")
        tpr = tp / n_fg if n_fg else float("nan")
        tnr = tn / n_bg if n_bg else float("nan")
        ber_raw = 100.0 * (1.0 - 0.5 * (tpr + tnr))  # NaN when either class is absent, as in the official code
        if self.empty == "guard":
            iou = iou_raw if union else 1.0  # nothing to find and nothing predicted: perfect agreement
            rates = [r for r in (tpr, tnr) if r == r]
            ber = 100.0 * (1.0 - sum(rates) / len(rates))
        else:
            iou, ber = iou_raw, ber_raw
        for acc, v in ((self.iou, iou), (self.ber, ber)):
            if v == v:
                acc[0] += v
                acc[1] += 1
            else:
                acc[2] += 1

        p05 = (tp + SMOOTH) / (tp + fp + SMOOTH)
        r05 = (tp + SMOOTH) / (n_fg + SMOOTH)
        f05 = float(_fbeta(np.float64(p05), np.float64(r05), self.beta2))

        self.count += 1
        self.sum_precision += precision
        self.sum_recall += recall
        self.sum_fcurve += fcurve
        self.sum_mae += mae
        accuracy = (tp + tn) / n
        self.sum_accuracy += accuracy
        self.sum_adaptive_f += adaptive_f
        self.sum_ecurve += ecurve
        self.sum_adaptive_e += adaptive_e
        if self.with_s_measure:
            if s_value == s_value:
                self.s[0] += s_value
                self.s[1] += 1
            else:
                self.s[2] += 1
        self.confusion += np.array([tp, fp, fn, tn], dtype=np.int64)
        self.empty_gt += int(n_fg == 0)
        self.ignored += n_ignored
        return ImageScores(IoU=float(iou), MAE=float(mae), BER=float(ber), accuracy=float(accuracy), F05=f05,
                           adaptiveF=float(adaptive_f), TP=tp, FP=fp, FN=fn, TN=tn, pixels=n, ignored=n_ignored,
                           gt_fraction=n_fg / n, pred_fraction=(tp + fp) / n)

    # ------------------------------------------------------------------------------------------------------------
    def merge(self, other: "GlassMetrics") -> "GlassMetrics":
        """Add another accumulator's images to this one (same β² and policy required)."""
        if (other.beta2, other.empty, other.with_s_measure) != (self.beta2, self.empty, self.with_s_measure):
            raise ValueError("cannot merge accumulators with different beta2/empty settings")
        self.count += other.count
        for name in ("sum_precision", "sum_recall", "sum_fcurve", "iou", "ber", "confusion"):
            getattr(self, name).__iadd__(getattr(other, name))
        self.sum_mae += other.sum_mae
        self.sum_accuracy += other.sum_accuracy
        self.sum_adaptive_f += other.sum_adaptive_f
        self.sum_ecurve += other.sum_ecurve
        self.sum_adaptive_e += other.sum_adaptive_e
        self.s += other.s
        self.empty_gt += other.empty_gt
        self.ignored += other.ignored
        return self

    def _mean(self, acc: np.ndarray) -> float:
        if self.empty == "official" and acc[2] > 0:
            return float("nan")  # the official np.mean over a list containing NaN
        return float(acc[0] / acc[1]) if acc[1] else float("nan")

    def curves(self) -> Dict[str, np.ndarray]:
        """Mean precision and recall per threshold k/255 (index k), and the F curve of those means."""
        n = max(self.count, 1)
        p, r = self.sum_precision / n, self.sum_recall / n
        return {"threshold": _THRESHOLDS.copy(), "precision": p, "recall": r, "fbeta": _fbeta(p, r, self.beta2),
                "fbeta_per_image_mean": self.sum_fcurve / n, "emeasure": self.sum_ecurve / n}

    def compute(self) -> Dict[str, float]:
        """Dataset-level numbers.

        Official (as the paper prints them): ``count``, ``IoU`` (mean per-image IoU), ``Fbeta`` (max F of the mean
        P/R curves), ``MAE`` (mean), ``BER`` (mean, percent). Extras: ``Fbeta_threshold`` (the k/255 achieving
        ``Fbeta``), ``meanF`` (SOD convention: mean over thresholds of the per-image F curves averaged over images),
        ``maxF_per_image_curve`` (max of that curve), ``adaptiveF`` (threshold 2·mean, averaged), ``F05`` (F of the
        mean P/R at threshold 0.5), ``IoU_pooled`` (glass IoU of the dataset-wide confusion matrix), ``mIoU_pooled``
        (mean of glass and background pooled IoU, as detectron2's ``sem_seg`` mIoU), ``accuracy`` (mean per-image
        pixel accuracy), ``accuracy_pooled``, ``meanE`` / ``maxE`` (mean / max over thresholds of the
        per-image E-measure curves averaged over images), ``adaptiveE`` (E-measure at 2·mean), ``IoU_undefined`` /
        ``BER_undefined`` (images with 0/0), ``empty_gt_images``, ``ignored_pixels``; with ``s_measure=True`` also
        ``S`` (mean S-measure, α = 0.5) and ``S_skipped`` (images with ignore pixels, where the spatial S-measure is
        not defined).
        """
        if self.count == 0:
            nan = float("nan")
            return {"count": 0, "IoU": nan, "Fbeta": nan, "MAE": nan, "BER": nan}
        c = self.curves()
        k_best = int(np.argmax(c["fbeta"]))
        tp, fp, fn, tn = (int(v) for v in self.confusion)
        iou_pooled = tp / (tp + fp + fn) if tp + fp + fn else float("nan")
        iou_bg = tn / (tn + fp + fn) if tn + fp + fn else float("nan")
        return {
            "count": self.count,
            "IoU": self._mean(self.iou),
            "Fbeta": float(c["fbeta"][k_best]),
            "MAE": self.sum_mae / self.count,
            "BER": self._mean(self.ber),
            "Fbeta_threshold": float(_THRESHOLDS[k_best]),
            "meanF": float(c["fbeta_per_image_mean"].mean()),
            "maxF_per_image_curve": float(c["fbeta_per_image_mean"].max()),
            "adaptiveF": self.sum_adaptive_f / self.count,
            "meanE": float((self.sum_ecurve / self.count).mean()),
            "maxE": float((self.sum_ecurve / self.count).max()),
            "adaptiveE": self.sum_adaptive_e / self.count,
            "IoU_pooled": iou_pooled,
            "mIoU_pooled": float(np.nanmean([iou_pooled, iou_bg])),
            "accuracy": self.sum_accuracy / self.count,
            "accuracy_pooled": (tp + tn) / max(tp + fp + fn + tn, 1),
            "IoU_undefined": int(self.iou[2]),
            "BER_undefined": int(self.ber[2]),
            "empty_gt_images": self.empty_gt,
            "ignored_pixels": self.ignored,
            **({"S": float(self.s[0] / self.s[1]) if self.s[1] else float("nan"), "S_skipped": int(self.s[2])}
               if self.with_s_measure else {}),
        }

    def state_size(self) -> int:
        """Number of scalars held (constant: the accumulator never grows with the number of images)."""
        return sum(int(np.size(v)) for v in vars(self).values() if isinstance(v, (np.ndarray, int, float)))
