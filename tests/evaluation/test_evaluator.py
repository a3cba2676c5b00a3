"""Evaluator: model mode with a stand-in predictor, prediction mode on files, bad pairs, Ctrl-C, streaming memory."""
from __future__ import annotations

import csv
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gemseg.data import Dataset, Sample, load_mask_binary, masks_only, resolve_dataset
from gemseg.evaluation import (EvaluationError, GlassMetrics, evaluate_model, evaluate_predictions, read_prediction,
                               resize_prediction)
from gemseg.evaluation.evaluator import PredictionReadError
from gemseg.io import write_mask
from tests.conftest import shared_path


@dataclass
class FakeResult:
    scores: np.ndarray
    probability: np.ndarray
    mask: np.ndarray


class FakePredictor:
    """Same ``predict`` interface as ``gemseg.load_model(...)``: glass probability = red channel / 255."""

    def __init__(self, interrupt_at: int = -1):
        self.calls = 0
        self.interrupt_at = interrupt_at

    def predict(self, image):
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls += 1
        prob = image[..., 0].astype(np.float32) / 255.0
        scores = np.stack([1.0 - prob, prob])
        return FakeResult(scores=scores, probability=prob, mask=scores.argmax(0) == 1)


def _toy_dataset(root: Path, n: int = 4, size=(24, 16)) -> Dataset:
    """Images whose red channel encodes a soft glass score; GT = left half glass."""
    rng = np.random.default_rng(0)
    w, h = size
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = rng.integers(0, 256, (h, w))
        img[:, : w // 2, 0] = np.maximum(img[:, : w // 2, 0], 100 + 30 * i)
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "images" / f"im{i}.png")  # lossless so the red channel is exact
        gt = np.zeros((h, w), bool)
        gt[:, : w // 2] = True
        write_mask(root / "masks" / f"im{i}.png", gt)
    return resolve_dataset(root)


def _direct(ds: Dataset, soft: bool) -> dict:
    m = GlassMetrics()
    for s in ds:
        img = np.asarray(Image.open(s.image).convert("RGB"))
        prob = img[..., 0].astype(np.float32) / 255.0
        pred = prob if soft else (np.stack([1 - prob, prob]).argmax(0) == 1)
        m.update(pred, load_mask_binary(s)[0])
    return m.compute()


@pytest.mark.parametrize("soft", [False, True])
def test_evaluate_model_scores_mask_by_default_and_probability_with_soft(tmp_path, soft):
    ds = _toy_dataset(tmp_path / "d")
    model = FakePredictor()
    res = evaluate_model(model, ds, soft=soft, progress=False)
    assert model.calls == 4 and res.count == 4 and not res.failures
    assert res.prediction_kind == ("soft" if soft else "binary")
    ref = _direct(ds, soft)
    for k in ("IoU", "Fbeta", "MAE", "BER"):
        assert res.summary[k] == pytest.approx(ref[k], abs=1e-12), k
    assert set(res.official()) == {"count", "IoU", "Fbeta", "MAE", "BER"}


def test_soft_and_binary_differ(tmp_path):
    ds = _toy_dataset(tmp_path / "d")
    a = evaluate_model(FakePredictor(), ds, progress=False).summary
    b = evaluate_model(FakePredictor(), ds, soft=True, progress=False).summary
    assert a["MAE"] != pytest.approx(b["MAE"])  # the soft map has non-zero error everywhere


def test_ctrl_c_keeps_partial_results_and_complete_csv(tmp_path):
    ds = _toy_dataset(tmp_path / "d", n=5)
    csv_path = tmp_path / "out" / "per_image.csv"
    res = evaluate_model(FakePredictor(interrupt_at=3), ds, per_image_csv=csv_path, progress=False)
    assert res.interrupted and res.count == 3 and res.total == 5
    rows = list(csv.DictReader(open(csv_path, newline="")))
    assert [r["key"] for r in rows] == ["im0", "im1", "im2"]
    assert [p.name for p in csv_path.parent.iterdir()] == ["per_image.csv"]  # no temp files left behind


def test_prediction_mode_gt_vs_gt_and_trivial_baselines_on_curtainwall(tmp_path):
    gt_dir = shared_path("realdata", "curtainwall", "masks")
    gt = masks_only(gt_dir)
    same = evaluate_predictions(gt_dir, gt, progress=False)
    assert same.count == 22 and same.summary["IoU"] == 1.0 and same.summary["Fbeta"] == pytest.approx(1.0, abs=1e-9)
    assert same.summary["MAE"] == 0.0 and same.summary["BER"] == 0.0

    fractions = []
    for s in gt:
        g, _ = load_mask_binary(s)
        write_mask(tmp_path / "all" / f"{s.key}.png", np.ones_like(g))
        write_mask(tmp_path / "none" / f"{s.key}.png", np.zeros_like(g))
        fractions.append(g.mean())
    allg = evaluate_predictions(tmp_path / "all", gt, progress=False).summary
    assert allg["IoU"] == pytest.approx(np.mean(fractions), abs=1e-12)  # IoU of all-glass = glass fraction
    assert allg["IoU"] == pytest.approx(0.59, abs=0.01)  # the trivial baseline quoted in realdata/README.md
    assert allg["BER"] == pytest.approx(50.0) and allg["MAE"] == pytest.approx(1 - np.mean(fractions), abs=1e-12)
    none = evaluate_predictions(tmp_path / "none", gt, progress=False).summary
    assert none["IoU"] == 0.0 and none["BER"] == pytest.approx(50.0)
    # the official Fβ includes threshold 0 (every pixel positive), so even "no glass" scores the all-glass F
    assert none["Fbeta"] == pytest.approx(allg["Fbeta"], abs=1e-12)


def _pred_fixture(tmp_path: Path):
    gt = np.zeros((10, 12), bool)
    gt[:, :6] = True
    for k in ("a", "b", "c", "d", "e"):
        write_mask(tmp_path / "gt" / f"{k}.png", gt)
    write_mask(tmp_path / "pred" / "a.png", gt)  # perfect
    write_mask(tmp_path / "pred" / "b.png", np.repeat(np.repeat(gt, 2, axis=0), 2, axis=1))  # 2× the GT size
    (tmp_path / "pred" / "c.png").write_bytes(b"")  # unreadable
    write_mask(tmp_path / "pred" / "e_mask.png", ~gt)  # pairs by stem with the _mask suffix removed
    write_mask(tmp_path / "pred" / "extra.png", gt)  # no GT: reported, not scored
    return masks_only(tmp_path / "gt")


def test_bad_pairs_are_reported_and_skipped(tmp_path):
    gt = _pred_fixture(tmp_path)
    res = evaluate_predictions(tmp_path / "pred", gt, progress=False)
    reasons = {f.key: f.reason for f in res.failures}
    assert set(reasons) == {"b", "c", "d"}
    assert "size" in reasons["b"] and "--resize-pred" in reasons["b"]
    assert "empty file" in reasons["c"]
    assert reasons["d"] == "missing prediction"
    assert res.count == 2 and res.total == 5
    assert [p.name for p in res.unmatched_predictions] == ["extra.png"]
    assert res.summary["IoU"] == pytest.approx((1.0 + 0.0) / 2)


def test_size_policies(tmp_path):
    gt = _pred_fixture(tmp_path)
    res = evaluate_predictions(tmp_path / "pred", gt, size_policy="resize", progress=False)
    assert "b" not in {f.key for f in res.failures} and res.count == 3
    assert res.summary["IoU"] == pytest.approx((1.0 + 1.0 + 0.0) / 3)  # a 2× upscaled mask resizes back exactly
    with pytest.raises(EvaluationError, match="strict"):
        evaluate_predictions(tmp_path / "pred", gt, size_policy="strict", progress=False)


def test_nothing_matches_is_an_error(tmp_path):
    write_mask(tmp_path / "gt" / "a.png", np.zeros((4, 4), bool))
    write_mask(tmp_path / "pred" / "zzz.png", np.zeros((4, 4), bool))
    with pytest.raises(EvaluationError, match="no prediction"):
        evaluate_predictions(tmp_path / "pred", masks_only(tmp_path / "gt"), progress=False)


def test_read_prediction_rules(tmp_path):
    from PIL import Image as PILImage

    z1 = np.array([[0, 1], [1, 0]], np.uint8)
    PILImage.fromarray(z1).save(tmp_path / "z1.png")
    assert read_prediction(tmp_path / "z1.png").dtype == np.bool_
    PILImage.fromarray(z1 * 255).save(tmp_path / "z255.png")
    assert read_prediction(tmp_path / "z255.png").tolist() == [[False, True], [True, False]]
    soft = np.array([[0, 128], [255, 7]], np.uint8)
    PILImage.fromarray(soft).save(tmp_path / "soft.png")
    r = read_prediction(tmp_path / "soft.png")
    assert r.dtype == np.uint8 and r.tolist() == soft.tolist()
    np.save(tmp_path / "p.npy", np.array([[0.2, 0.9]], np.float32))
    assert read_prediction(tmp_path / "p.npy").dtype == np.float32
    np.save(tmp_path / "bad.npy", np.array([[0.2, 1.9]], np.float32))
    with pytest.raises(PredictionReadError, match=r"\[0, 1\]"):
        read_prediction(tmp_path / "bad.npy")
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    PILImage.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(PredictionReadError, match="single-channel"):
        read_prediction(tmp_path / "rgb.png")


def test_resize_prediction_keeps_kind():
    b = np.zeros((4, 4), bool)
    b[:, :2] = True
    r = resize_prediction(b, (8, 8))
    assert r.dtype == np.bool_ and r[:, :4].all() and not r[:, 4:].any()
    u = resize_prediction(np.full((4, 4), 200, np.uint8), (3, 5))
    assert u.dtype == np.uint8 and u.shape == (3, 5) and (u == 200).all()
    f = resize_prediction(np.full((4, 4), 0.25, np.float32), (2, 2))
    assert f.dtype == np.float32 and np.allclose(f, 0.25)


def test_worst_images_heap(tmp_path):
    ds = _toy_dataset(tmp_path / "d", n=5)
    res = evaluate_model(FakePredictor(), ds, worst_k=2, progress=False, per_image_csv=tmp_path / "pi.csv")
    rows = list(csv.DictReader(open(tmp_path / "pi.csv", newline="")))
    by_iou = sorted(rows, key=lambda r: float(r["IoU"]))
    assert [w.key for w in res.worst] == [r["key"] for r in by_iou[:2]]
    assert res.worst[0].image is not None and res.worst[0].gt.shape == res.worst[0].pred.shape


def test_memory_stays_flat_over_many_images(tmp_path):
    """Peak traced memory does not grow with the number of images (streaming, no per-image arrays kept)."""
    h, w = 120, 160
    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(tmp_path / "img" / "x.png")
    gt = np.zeros((h, w), bool)
    gt[:, : w // 3] = True
    write_mask(tmp_path / "gt.png", gt)

    def dataset(n: int) -> Dataset:
        samples = [Sample(f"k{i:04d}", tmp_path / "img" / "x.png", tmp_path / "gt.png") for i in range(n)]
        return Dataset("synthetic", "generic", None, None, samples)

    def peak(n: int) -> int:
        tracemalloc.start()
        try:
            evaluate_model(FakePredictor(), dataset(n), soft=True, worst_k=3, progress=False,
                           per_image_csv=tmp_path / f"pi{n}.csv")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(10), peak(80)
    assert large < small * 1.3 + 200_000, (small, large)
