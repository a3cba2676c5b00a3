"""Cross-check against pysodmetrics (``normalize=False``) where the definitions coincide.

pysodmetrics pins numpy < 2.3.5 and opencv < 5, which can clash with the project's environment, so it may live in a
separate interpreter: the test imports ``py_sod_metrics`` in-process when it can, otherwise it runs the reference
side in the Python named by ``$GEMSEG_PYSODMETRICS_PYTHON`` (e.g. a throwaway venv:
``python -m venv /tmp/sod && /tmp/sod/bin/pip install pysodmetrics``), and skips cleanly when neither exists.

Coinciding definitions: MAE; IoU and BER of the 0.5-binarised map (pysodmetrics binarises with ``> 0.5``, we with
``>= 0.5`` as the official code — random maps never hit 0.5 exactly); the mean P/R curves (pysodmetrics has no
1e-4 smoothing, so they agree to ~1e-8 on images whose counts are non-zero) and Fβ = max F of those curves;
adaptive F; mean-F; S-measure; E-measure (adaptive, mean, max). Excluded here because the definitions differ: empty-GT images (pysodmetrics returns 0 for
0/0) and thresholds that select no pixel (precision: official 1, pysodmetrics 0).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess

import numpy as np
import pytest

from gemseg.evaluation.metrics import GlassMetrics

REFERENCE_SCRIPT = r"""
import json, sys, warnings
import numpy as np
warnings.filterwarnings("ignore")
import py_sod_metrics as sod

def run(path):
    data = np.load(path)
    n = int(data["n"])
    fm, mae, sm, em = sod.Fmeasure(beta=0.3), sod.MAE(), sod.Smeasure(), sod.Emeasure()
    v2 = sod.FmeasureV2(metric_handlers={
        "iou": sod.IOUHandler(with_dynamic=False, with_adaptive=False, with_binary=True, sample_based=True),
        "ber": sod.BERHandler(with_dynamic=False, with_adaptive=False, with_binary=True, sample_based=True),
        "iou_pooled": sod.IOUHandler(with_dynamic=False, with_adaptive=False, with_binary=True, sample_based=False),
    })
    for i in range(n):
        p, g = data[f"pred{i}"].astype(np.float64), data[f"gt{i}"].astype(bool)
        fm.step(p, g, normalize=False); mae.step(p, g, normalize=False); v2.step(p, g, normalize=False)
        sm.step(p, g, normalize=False); em.step(p, g, normalize=False)
    f = fm.get_results(); r2 = v2.get_results(); e = em.get_results()["em"]
    return {
        "precision": f["pr"]["p"][::-1].tolist(), "recall": f["pr"]["r"][::-1].tolist(),  # index k = threshold k/255
        "adaptiveF": float(f["fm"]["adp"]), "meanF": float(f["fm"]["curve"].mean()),
        "MAE": float(mae.get_results()["mae"]),
        "IoU": float(r2["iou"]["binary"]), "BER": 100.0 * float(r2["ber"]["binary"]),
        "IoU_pooled": float(r2["iou_pooled"]["binary"]),
        "S": float(sm.get_results()["sm"]), "adaptiveE": float(e["adp"]),
        "meanE": float(e["curve"].mean()), "maxE": float(e["curve"].max()),
        "version": getattr(sod, "__version__", "?"),
    }

if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1])))
"""


def _reference(npz_path: str) -> dict:
    if importlib.util.find_spec("py_sod_metrics") is None:
        py = os.environ.get("GEMSEG_PYSODMETRICS_PYTHON")
        if not py:
            pytest.skip("pysodmetrics not installed (pip install pysodmetrics, or set GEMSEG_PYSODMETRICS_PYTHON to "
                        "an interpreter that has it)")
        out = subprocess.run([py, "-c", REFERENCE_SCRIPT, npz_path], capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            pytest.fail(f"pysodmetrics reference failed:\n{out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    ns: dict = {}
    exec(compile(REFERENCE_SCRIPT.replace('if __name__ == "__main__":', "if False:"), "<ref>", "exec"), ns)
    return ns["run"](npz_path)


def _random_pairs(kind: str, n: int, seed: int):
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(n):
        h, w = rng.integers(40, 120, 2)
        # blobby GT with 10–80 % glass, never empty or full
        gt = rng.random((h, w)) < rng.uniform(0.1, 0.8)
        gt[0, 0], gt[-1, -1] = True, False
        if kind == "soft":
            pred = np.clip(gt * rng.uniform(0.1, 0.6) + rng.random((h, w)) * rng.uniform(0.3, 0.9), 0, 1)
            # one certain glass pixel: every threshold selects >= 1 pixel. (Where a threshold selects nothing the
            # definitions differ: the official 1e-4 smoothing gives precision 1, pysodmetrics gives 0.)
            pred[0, 0] = 1.0
        else:
            pred = (rng.random((h, w)) < np.where(gt, 0.8, 0.25))
            pred[0, 1], pred[1, 0] = True, False
        preds.append(pred)
        gts.append(gt)
    return preds, gts


@pytest.mark.parametrize("kind", ["soft", "binary"])
def test_agrees_with_pysodmetrics(kind, tmp_path):
    preds, gts = _random_pairs(kind, n=12, seed=7 if kind == "soft" else 8)
    path = tmp_path / "pairs.npz"
    np.savez(path, n=len(preds), **{f"pred{i}": p.astype(np.float64) for i, p in enumerate(preds)},
             **{f"gt{i}": g for i, g in enumerate(gts)})
    ref = _reference(str(path))

    m = GlassMetrics(s_measure=True)
    for p, g in zip(preds, gts):
        m.update(p, g)
    ours, curves = m.compute(), m.curves()

    assert ours["MAE"] == pytest.approx(ref["MAE"], abs=1e-12)
    assert ours["IoU"] == pytest.approx(ref["IoU"], abs=1e-12)
    assert ours["BER"] == pytest.approx(ref["BER"], abs=1e-10)
    assert ours["IoU_pooled"] == pytest.approx(ref["IoU_pooled"], abs=1e-12)
    # P/R curves differ only by the official 1e-4 smoothing
    np.testing.assert_allclose(curves["precision"], ref["precision"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(curves["recall"], ref["recall"], rtol=0, atol=1e-6)
    p, r = np.asarray(ref["precision"]), np.asarray(ref["recall"])
    with np.errstate(invalid="ignore", divide="ignore"):
        f_ref = np.nan_to_num(1.3 * p * r / (0.3 * p + r))
    assert ours["Fbeta"] == pytest.approx(float(f_ref.max()), abs=1e-6)
    assert ours["adaptiveF"] == pytest.approx(ref["adaptiveF"], abs=1e-12)
    assert ours["meanF"] == pytest.approx(ref["meanF"], abs=1e-6)
    # structure and enhanced-alignment measures: same reference definitions, no smoothing difference
    assert ours["S"] == pytest.approx(ref["S"], abs=1e-12)
    for k in ("adaptiveE", "meanE", "maxE"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-12), k


def _save(path, preds, gts) -> str:
    np.savez(path, n=len(preds), **{f"pred{i}": np.asarray(p, np.float64) for i, p in enumerate(preds)},
             **{f"gt{i}": g for i, g in enumerate(gts)})
    return str(path)


def test_s_and_e_measure_edge_cases_agree(tmp_path):
    """All-background and all-glass GTs, binary and soft maps, a tiny image."""
    rng = np.random.default_rng(9)
    preds = [rng.random((7, 9)), rng.random((7, 9)) < 0.5, rng.random((6, 6))]
    gts = [np.zeros((7, 9), bool), np.ones((7, 9), bool), rng.random((6, 6)) < 0.5]
    ref = _reference(_save(tmp_path / "edge.npz", preds, gts))
    m = GlassMetrics(s_measure=True)
    for p, g in zip(preds, gts):
        m.update(p, g)
    ours = m.compute()
    for k in ("S", "adaptiveE", "meanE", "maxE", "MAE"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-12), k


def test_s_measure_zero_area_quadrant(tmp_path):
    """GT centroid on the last column: the reference code's right quadrants are empty and give NaN (0 · NaN);
    ours lets a zero-area quadrant contribute 0, i.e. the weighted sum of the non-empty quadrants."""
    pred = np.random.default_rng(3).random((5, 4))
    gt = np.zeros((5, 4), bool)
    gt[1:4, 3] = True
    ref = _reference(_save(tmp_path / "q.npz", [pred], [gt]))
    assert np.isnan(ref["S"])
    m = GlassMetrics(s_measure=True)
    m.update(pred, gt)
    ours = m.compute()["S"]
    assert np.isfinite(ours) and 0.0 <= ours <= 1.0
    assert m.compute()["meanE"] == pytest.approx(ref["meanE"], abs=1e-12)
