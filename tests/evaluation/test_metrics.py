"""Metrics against hand-computed values and against a literal transcription of the official ``Metrics`` class."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gemseg.evaluation.metrics import GlassMetrics, quantize_prediction

EPS = 1e-4


def official_reference(preds, gts):
    """Literal per-pixel transcription of GEM's ``Metrics.update``/``compute_*`` (256 Python-level thresholds).

    Slow on purpose: it is the independent definition our histogram implementation must reproduce exactly.
    """
    tp, tn, fp, fn, precs, recs, maes = [], [], [], [], [], [], []
    for pred, target in zip(preds, gts):
        pred = np.asarray(pred, dtype=np.float64).reshape(-1)
        target = np.asarray(target, dtype=np.float64).reshape(-1)
        b, t = pred >= 0.5, target > 0.5
        tp.append(np.sum(b & t)); tn.append(np.sum(~b & ~t)); fp.append(np.sum(b & ~t)); fn.append(np.sum(~b & t))
        pr, rc = [], []
        for k in range(256):
            th = k / 255.0
            x = np.sum((pred >= th) & t) + EPS
            pr.append(x / (np.sum(pred >= th) + EPS))
            rc.append(x / (np.sum(t) + EPS))
        precs.append(pr); recs.append(rc)
        maes.append(np.mean(np.abs(pred - target)))
    with np.errstate(all="ignore"):
        iou = np.mean([tp[i] / (tp[i] + fp[i] + fn[i]) for i in range(len(tp))])
        p, r = np.array(precs).mean(0), np.array(recs).mean(0)
        fb = max(1.3 * a * c / (0.3 * a + c) for a, c in zip(p, r))
        ber = np.mean([100 * (1 - 0.5 * (tp[i] / (tp[i] + fn[i]) + tn[i] / (tn[i] + fp[i]))) for i in range(len(tp))])
    return {"IoU": iou, "Fbeta": fb, "MAE": np.mean(maes), "BER": ber, "precision": p, "recall": r}


def _accumulate(preds, gts, **kw):
    m = GlassMetrics(**kw)
    for p, g in zip(preds, gts):
        m.update(p, g)
    return m


# ---------------------------------------------------------------------------------------------------------- by hand


def test_hand_computed_binary_2x3():
    gt = np.array([[1, 1, 0], [0, 0, 0]], bool)
    pred = np.array([[1, 0, 1], [0, 0, 0]], bool)
    m = GlassMetrics()
    s = m.update(pred, gt)
    assert (s.TP, s.FP, s.FN, s.TN) == (1, 1, 1, 3)
    assert s.IoU == pytest.approx(1 / 3)
    assert s.MAE == pytest.approx(2 / 6)
    assert s.BER == pytest.approx(100 * (1 - 0.5 * (1 / 2 + 3 / 4)))  # 37.5
    r = m.compute()
    # threshold k=0 marks all 6 pixels positive; k>=1 gives the binary prediction itself
    p0, r0 = (2 + EPS) / (6 + EPS), 1.0
    p1, r1 = (1 + EPS) / (2 + EPS), (1 + EPS) / (2 + EPS)
    f = lambda p, r: 1.3 * p * r / (0.3 * p + r)  # noqa: E731
    assert r["Fbeta"] == pytest.approx(max(f(p0, r0), f(p1, r1)), abs=1e-15)
    assert r["Fbeta"] == pytest.approx(0.500025, abs=1e-6)
    assert r["Fbeta_threshold"] == pytest.approx(1 / 255)
    assert r["BER"] == pytest.approx(37.5) and r["IoU"] == pytest.approx(1 / 3) and r["count"] == 1
    assert r["accuracy"] == pytest.approx(4 / 6)


def test_hand_computed_soft_thresholds_are_exact():
    # p >= k/255 must be evaluated on the float value: k/255 itself is in, the next float below it is out
    k = 77
    at = k / 255.0
    below = np.nextafter(at, 0.0)
    pred = np.array([[at, below, 0.5, np.nextafter(0.5, 0.0)]], dtype=np.float64)
    gt = np.array([[1, 1, 1, 0]], bool)
    levels, half, soft = quantize_prediction(pred)
    assert levels.tolist() == [[k, k - 1, 127, 127]]
    assert half.tolist() == [[False, False, True, False]]
    s = GlassMetrics().update(pred, gt)
    assert (s.TP, s.FP, s.FN, s.TN) == (1, 0, 2, 1)  # only the exact 0.5 counts at the 0.5 threshold
    assert s.MAE == pytest.approx(((1 - at) + (1 - below) + 0.5 + float(np.nextafter(0.5, 0.0))) / 4)


def test_two_images_dataset_means():
    gts = [np.array([[1, 0], [0, 0]], bool), np.array([[1, 1], [1, 0]], bool)]
    preds = [np.array([[1, 1], [0, 0]], bool), np.array([[1, 1], [1, 1]], bool)]
    r = _accumulate(preds, gts).compute()
    assert r["IoU"] == pytest.approx((1 / 2 + 3 / 4) / 2)
    assert r["MAE"] == pytest.approx((1 / 4 + 1 / 4) / 2)
    # image 1: TPR 1, TNR 2/3 ; image 2: TPR 1, TNR 0
    assert r["BER"] == pytest.approx((100 * (1 - 0.5 * (1 + 2 / 3)) + 100 * (1 - 0.5 * (1 + 0))) / 2)
    assert r["IoU_pooled"] == pytest.approx(4 / 6)  # TP 4, FP 2, FN 0
    assert r["accuracy_pooled"] == pytest.approx(6 / 8)


# ------------------------------------------------------------------------------------------------------- edge cases


def test_empty_gt_and_empty_prediction_policies():
    empty = np.zeros((3, 3), bool)
    other_gt = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0]], bool)
    other_pred = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0]], bool)  # IoU 1/2, BER 100*(1-.5*(.5+1)) = 25

    # the official code: 0/0 -> NaN for IoU and for BER's recall term, and NaN poisons the dataset mean
    ref = official_reference([empty, other_pred], [empty, other_gt])
    assert math.isnan(ref["IoU"]) and math.isnan(ref["BER"])
    off = _accumulate([empty, other_pred], [empty, other_gt], empty="official").compute()
    assert math.isnan(off["IoU"]) and math.isnan(off["BER"])
    assert off["MAE"] == pytest.approx(ref["MAE"]) and off["Fbeta"] == pytest.approx(ref["Fbeta"], abs=1e-12)
    assert off["IoU_undefined"] == 1 and off["BER_undefined"] == 1

    # ours (default): nothing to find and nothing predicted is a perfect image
    g = GlassMetrics()
    s = g.update(empty, empty)
    assert s.IoU == 1.0 and s.BER == 0.0 and s.MAE == 0.0
    g.update(other_pred, other_gt)
    r = g.compute()
    assert r["IoU"] == pytest.approx((1.0 + 0.5) / 2)
    assert r["BER"] == pytest.approx((0.0 + 25.0) / 2)
    assert r["empty_gt_images"] == 1 and r["IoU_undefined"] == 0

    # skip: the 0/0 image is left out of IoU/BER means (but counted for MAE/Fβ)
    sk = _accumulate([empty, other_pred], [empty, other_gt], empty="skip").compute()
    assert sk["IoU"] == pytest.approx(0.5) and sk["BER"] == pytest.approx(25.0) and sk["count"] == 2
    assert sk["IoU_undefined"] == 1


def test_empty_gt_with_false_positives():
    gt = np.zeros((2, 2), bool)
    pred = np.array([[1, 0], [0, 0]], bool)
    s = GlassMetrics().update(pred, gt)
    assert s.IoU == 0.0  # 0 / (0 + 1 + 0), defined and 0 as in the official code
    assert s.BER == pytest.approx(100 * 1 / 4)  # only the background class exists: its error rate FP/(TN+FP)
    assert math.isnan(GlassMetrics(empty="official").update(pred, gt).BER)


def test_all_glass_gt():
    gt = np.ones((2, 2), bool)
    pred = np.array([[1, 1], [1, 0]], bool)
    s = GlassMetrics().update(pred, gt)
    assert s.IoU == pytest.approx(3 / 4)
    assert s.BER == pytest.approx(100 * 1 / 4)  # only glass exists: FN/(TP+FN)
    assert math.isnan(GlassMetrics(empty="official").update(pred, gt).BER)  # TN/(TN+FP) = 0/0


def test_ignore_pixels_are_left_out():
    rng = np.random.default_rng(1)
    gt = rng.random((20, 30)) < 0.4
    pred = rng.random((20, 30))
    ignore = np.zeros_like(gt)
    ignore[:, 20:] = True
    a = GlassMetrics()
    a.update(pred, gt, ignore)
    b = GlassMetrics()
    b.update(pred[:, :20].copy(), gt[:, :20].copy())
    ra, rb = a.compute(), b.compute()
    for k in ("IoU", "Fbeta", "MAE", "BER", "meanF", "adaptiveF"):
        assert ra[k] == pytest.approx(rb[k], abs=1e-12), k
    assert ra["ignored_pixels"] == 200


def test_input_conventions_agree():
    rng = np.random.default_rng(2)
    gt = rng.random((16, 16)) < 0.5
    binary = rng.random((16, 16)) < 0.5
    # bool, 0/1 uint8 (argmax map) and 0/1 int64 are the same binary prediction
    ref = GlassMetrics().update(binary, gt)
    for arr in (binary.astype(np.uint8), binary.astype(np.int64), binary.astype(np.float32)):
        s = GlassMetrics().update(arr, gt)
        assert (s.TP, s.FP, s.MAE) == (ref.TP, ref.FP, ref.MAE)
    # 8-bit maps equal their /255 float version
    u8 = rng.integers(0, 256, (16, 16)).astype(np.uint8)
    a, b = _accumulate([u8], [gt]).compute(), _accumulate([u8 / 255.0], [gt]).compute()
    for k in ("IoU", "Fbeta", "MAE", "BER", "adaptiveF", "meanF"):
        assert a[k] == pytest.approx(b[k], abs=1e-12), k


@pytest.mark.parametrize("bad", [np.full((2, 2), 1.5), np.full((2, 2), -0.1), np.full((2, 2), np.nan)])
def test_out_of_range_float_rejected(bad):
    with pytest.raises(ValueError):
        GlassMetrics().update(bad, np.zeros((2, 2), bool))


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError, match="shape"):
        GlassMetrics().update(np.zeros((2, 3)), np.zeros((3, 2), bool))


# ---------------------------------------------------------------------------------- against the official transcription


@pytest.mark.parametrize("kind", ["soft", "uint8", "binary", "grid"])
def test_matches_official_transcription(kind):
    rng = np.random.default_rng({"soft": 10, "uint8": 11, "binary": 12, "grid": 13}[kind])
    preds, gts = [], []
    for _ in range(4):
        h, w = rng.integers(8, 40, 2)
        gt = rng.random((h, w)) < rng.uniform(0.1, 0.9)
        if kind == "soft":
            p = np.clip(gt * rng.uniform(0.2, 0.7) + rng.random((h, w)) * 0.6, 0, 1)
        elif kind == "uint8":
            p = rng.integers(0, 256, (h, w)).astype(np.uint8)
        elif kind == "binary":
            p = rng.random((h, w)) < 0.5
        else:  # float32 values sitting exactly on the threshold grid, plus 0.5 itself
            p = (rng.integers(0, 256, (h, w)) / 255.0).astype(np.float32)
            p.flat[0] = 0.5
        preds.append(p)
        gts.append(gt)
    ours = _accumulate(preds, gts).compute()
    curves = _accumulate(preds, gts).curves()
    ref = official_reference([p / 255.0 if p.dtype == np.uint8 else p for p in preds], gts)
    for k in ("IoU", "Fbeta", "MAE", "BER"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-12), k
    np.testing.assert_allclose(curves["precision"], ref["precision"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(curves["recall"], ref["recall"], rtol=0, atol=1e-13)


# ------------------------------------------------------------------------------------------------ streaming & merging


def test_state_is_constant_size():
    rng = np.random.default_rng(3)
    m = GlassMetrics()
    m.update(rng.random((50, 50)), rng.random((50, 50)) < 0.5)
    size_after_one = m.state_size()
    for _ in range(100):
        m.update(rng.random((50, 50)), rng.random((50, 50)) < 0.5)
    assert m.state_size() == size_after_one
    assert size_after_one < 2000  # a few 256-vectors and counters, no per-pixel or per-image arrays
    assert m.count == 101


def test_merge_equals_sequential():
    rng = np.random.default_rng(4)
    data = [(rng.random((12, 9)), rng.random((12, 9)) < 0.3) for _ in range(6)]
    seq = _accumulate([p for p, _ in data], [g for _, g in data]).compute()
    a = _accumulate([p for p, _ in data[:2]], [g for _, g in data[:2]])
    b = _accumulate([p for p, _ in data[2:]], [g for _, g in data[2:]])
    merged = a.merge(b).compute()
    for k, v in seq.items():
        assert merged[k] == pytest.approx(v, abs=1e-12), k


def test_s_and_e_measure_of_a_perfect_prediction():
    gt = np.zeros((12, 10), bool)
    gt[3:9, 2:6] = True
    m = GlassMetrics(s_measure=True)
    m.update(gt, gt)
    r = m.compute()
    assert r["S"] == pytest.approx(1.0, abs=1e-12)
    n = gt.size
    assert r["maxE"] == pytest.approx(n / (n - 1), abs=1e-12)  # the reference normalises by N − 1
    assert r["adaptiveE"] == pytest.approx(n / (n - 1), abs=1e-12)
    # all-background GT: S = 1 − mean(p); E at a threshold = predicted-background fraction · N/(N − 1)
    m = GlassMetrics(s_measure=True)
    p = np.zeros((4, 5))
    p[0, :2] = 0.8
    m.update(p, np.zeros((4, 5), bool))
    r = m.compute()
    assert r["S"] == pytest.approx(1 - 1.6 / 20)
    assert r["maxE"] == pytest.approx(20 / 19)  # thresholds above 0.8 select nothing
    # S is spatial: an image with ignore pixels is skipped for S and counted
    ig = np.zeros((4, 5), bool)
    ig[0, 0] = True
    m.update(p, np.zeros((4, 5), bool), ig)
    assert m.compute()["S_skipped"] == 1


def test_empty_accumulator_reports_nan():
    r = GlassMetrics().compute()
    assert r["count"] == 0 and math.isnan(r["IoU"])
