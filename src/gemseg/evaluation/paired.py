"""Is model B really better than model A on this set? Paired per-image differences with a bootstrap interval.

Evaluation sets of real glass photos are small (``../shared/realdata``: 22, 4 and 3 images), and two training runs
of one recipe can differ by a few IoU points on them. A mean difference alone cannot tell a better model from a
lucky one; the paired bootstrap over images (both models scored on the *same* images, the image being the unit of
resampling) gives the interval the difference is known to. Input: the per-image CSVs that
``gem eval --per-image-csv`` writes (column ``key`` plus one column per metric).
"""
from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Union

import numpy as np

PathLike = Union[str, os.PathLike]
# direction of each per-image metric of gem eval's CSV
HIGHER_IS_BETTER = {"IoU": True, "Fbeta05": True, "accuracy": True, "adaptiveF": True, "MAE": False, "BER": False}


@dataclass
class PairedComparison:
    """B against A on one metric over the same images. ``diff`` = mean(B − A); ``low``/``high``: its bootstrap
    interval; ``b_better``/``a_better``: images on which each is strictly better."""

    metric: str
    higher_is_better: bool
    count: int
    mean_a: float
    mean_b: float
    diff: float
    low: float
    high: float
    confidence: float
    b_better: int
    a_better: int

    @property
    def verdict(self) -> str:
        """``"B better"``, ``"A better"`` or ``"no clear difference"`` (the interval contains 0)."""
        if self.low > 0 or self.high < 0:
            b_wins = (self.low > 0) == self.higher_is_better
            return "B better" if b_wins else "A better"
        return "no clear difference"

    def as_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], metric: str = "IoU", higher_is_better: bool = True,
                     n_resamples: int = 10000, confidence: float = 0.95, seed: int = 0) -> PairedComparison:
    """Compare per-image scores ``b`` against ``a`` (same images, same order).

    The interval is scipy's BCa bootstrap of the mean difference (percentile when BCa is degenerate, e.g. fewer
    than 3 images or all differences equal). Deterministic for a given ``seed``.
    """
    from scipy import stats

    a_arr, b_arr = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1:
        raise ValueError(f"need two 1-D score lists of one length, got {a_arr.shape} and {b_arr.shape}")
    if len(a_arr) == 0:
        raise ValueError("no images to compare")
    d = b_arr - a_arr
    if len(d) < 2 or np.all(d == d[0]):
        low = high = float(d.mean())  # nothing to resample: the difference is what it is
    else:
        # BCa needs 3+ values and can fail on very skewed tiny samples (non-finite ends): percentile then
        for method in (("BCa", "percentile") if len(d) >= 3 else ("percentile",)):
            with np.errstate(all="ignore"):
                res = stats.bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                                      method=method, random_state=np.random.default_rng(seed))
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
            if np.isfinite(low) and np.isfinite(high):
                break
    sign = 1.0 if higher_is_better else -1.0
    return PairedComparison(metric=metric, higher_is_better=higher_is_better, count=len(d),
                            mean_a=float(a_arr.mean()), mean_b=float(b_arr.mean()), diff=float(d.mean()),
                            low=low, high=high, confidence=confidence,
                            b_better=int((sign * d > 0).sum()), a_better=int((sign * d < 0).sum()))


def read_per_image_csv(path: PathLike) -> Dict[str, Dict[str, float]]:
    """``gem eval --per-image-csv`` output → {image key: {metric: value}} (numeric columns only)."""
    rows: Dict[str, Dict[str, float]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "key" not in reader.fieldnames:
            raise ValueError(f"{path}: not a gem eval per-image CSV (no 'key' column)")
        for r in reader:
            values = {}
            for k, v in r.items():
                if k == "key":
                    continue
                try:
                    values[k] = float(v)
                except (TypeError, ValueError):
                    pass
            rows[r["key"]] = values
    return rows


def compare_per_image_csvs(csv_a: PathLike, csv_b: PathLike, metrics: Sequence[str] = ("IoU", "BER"),
                           **bootstrap_kwargs) -> List[PairedComparison]:
    """Paired comparison of two ``gem eval --per-image-csv`` files of the same images, one row per metric.

    Raises ValueError when the two files do not score the same images (a paired comparison needs both).
    """
    a, b = read_per_image_csv(csv_a), read_per_image_csv(csv_b)
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ValueError(f"{Path(csv_a).name} and {Path(csv_b).name} score different images "
                         f"(only in A: {only_a[:3]}, only in B: {only_b[:3]})")
    keys = sorted(a)
    out = []
    for m in metrics:
        if m not in HIGHER_IS_BETTER:
            raise ValueError(f"unknown metric {m!r}; choose from {sorted(HIGHER_IS_BETTER)}")
        out.append(paired_bootstrap([a[k][m] for k in keys], [b[k][m] for k in keys], metric=m,
                                    higher_is_better=HIGHER_IS_BETTER[m], **bootstrap_kwargs))
    return out
