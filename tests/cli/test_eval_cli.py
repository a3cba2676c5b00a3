"""``gem eval`` end to end: prediction mode on the real photographs, model mode with a stand-in and a tiny model."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gemseg
from gemseg.cli.main import main
from gemseg.data import load_mask_binary, masks_only
from gemseg.io import write_mask
from tests.conftest import FIXTURES, shared_path


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", ["curtainwall", "cleargrasp", "mirror3d_nyu"])
def test_gt_vs_gt_and_baselines_on_realdata(name, tmp_path, capsys):
    gt_dir = shared_path("realdata", name, "masks")
    rc = main(["eval", "--pred-dir", str(gt_dir), "--gt-dir", str(gt_dir), "--json", str(tmp_path / "gt.json"),
               "--no-progress"])
    assert rc == 0
    assert _json(tmp_path / "gt.json") == {"count": len(list(gt_dir.glob("*.png"))), "IoU": 1.0,
                                           "Fbeta": pytest.approx(1.0, abs=1e-9), "MAE": 0.0, "BER": 0.0}
    out = capsys.readouterr().out
    assert "| gt" not in out and "1.000 |  1.000 |  0.000 |   0.00 |" in out

    fractions = []
    for s in masks_only(gt_dir):
        g, _ = load_mask_binary(s)
        write_mask(tmp_path / "all" / f"{s.key}.png", np.ones_like(g))
        fractions.append(g.mean())
    rc = main(["eval", "--pred-dir", str(tmp_path / "all"), "--gt-dir", str(gt_dir),
               "--json", str(tmp_path / "all.json"), "--no-progress"])
    assert rc == 0
    res = _json(tmp_path / "all.json")
    assert res["IoU"] == pytest.approx(np.mean(fractions), abs=1e-12) and res["BER"] == pytest.approx(50.0)
    if name == "curtainwall":
        assert res["IoU"] == pytest.approx(0.59, abs=0.01)  # realdata/README.md: the trivial baseline


@pytest.mark.parametrize("name", ["curtainwall", "cleargrasp"])
def test_baseline_flag_equals_constant_prediction_folders(name, tmp_path, capsys):
    """`gem eval --baseline` scores exactly what constant 0/255 prediction folders score."""
    root = shared_path("realdata", name)
    for kind, value in (("all-glass", 1), ("no-glass", 0)):
        for s in masks_only(root / "masks"):
            g, _ = load_mask_binary(s)
            write_mask(tmp_path / kind / f"{s.key}.png", np.full_like(g, value))
        assert main(["eval", "--pred-dir", str(tmp_path / kind), "--gt-dir", str(root / "masks"),
                     "--json", str(tmp_path / f"{kind}-folder.json"), "--no-progress"]) == 0
        assert main(["eval", "--baseline", kind, "--dataset", str(root),
                     "--json", str(tmp_path / f"{kind}-flag.json"), "--no-progress"]) == 0
        assert _json(tmp_path / f"{kind}-flag.json") == _json(tmp_path / f"{kind}-folder.json")
    assert _json(tmp_path / "no-glass-flag.json")["IoU"] < _json(tmp_path / "all-glass-flag.json")["IoU"]
    out = capsys.readouterr().out
    assert "| all-glass " in out and "| no-glass " in out
    assert main(["eval", "--baseline", "all-glass", "--pred-dir", str(root / "masks"), "--dataset", str(root)]) == 2


def test_outputs_and_dataset_root_as_gt(tmp_path, capsys):
    root = shared_path("realdata", "cleargrasp")
    out = tmp_path / "o"
    rc = main(["eval", "--pred-dir", str(root / "masks"), "--dataset", str(root), "--name", "oracle",
               "--json", str(out / "r.json"), "--report-json", str(out / "full.json"), "--markdown", str(out / "t.md"),
               "--csv", str(out / "t.csv"), "--per-image-csv", str(out / "pi.csv"), "--plots", str(out / "plots"),
               "--worst", "2", "--no-progress"])
    assert rc == 0
    assert list(_json(out / "r.json")) == ["count", "IoU", "Fbeta", "MAE", "BER"]
    assert _json(out / "full.json")["official"]["count"] == 4
    assert "| oracle |" in (out / "t.md").read_text()
    assert len((out / "pi.csv").read_text().strip().splitlines()) == 1 + 4
    for png in ("curves.png", "worst.png"):
        with Image.open(out / "plots" / png) as im:
            assert im.width > 100
    assert "| oracle" in capsys.readouterr().out


def test_size_mismatch_flags(tmp_path, capsys):
    gt = np.zeros((8, 8), bool)
    gt[:, :4] = True
    write_mask(tmp_path / "gt" / "a.png", gt)
    write_mask(tmp_path / "gt" / "b.png", gt)
    write_mask(tmp_path / "pred" / "a.png", gt)
    write_mask(tmp_path / "pred" / "b.png", np.repeat(np.repeat(gt, 2, 0), 2, 1))
    base = ["eval", "--pred-dir", str(tmp_path / "pred"), "--gt-dir", str(tmp_path / "gt"), "--no-progress"]
    assert main(base + ["--json", str(tmp_path / "skip.json")]) == 0
    assert _json(tmp_path / "skip.json")["count"] == 1
    assert "--resize-pred" in capsys.readouterr().out
    assert main(base + ["--resize-pred", "--json", str(tmp_path / "rs.json")]) == 0
    assert _json(tmp_path / "rs.json")["count"] == 2
    assert main(base + ["--strict-size"]) == 2
    assert "strict" in capsys.readouterr().err


@pytest.mark.parametrize("argv, msg", [
    (["eval"], "no ground truth"),  # no model named: the default model, but no dataset
    (["eval", "--pred-dir", "x", "--config", "c.yaml", "--weights", "w.pth"], "choose one mode"),
    (["eval", "--pred-dir", "{tmp}"], "no ground truth"),
    (["eval", "--pred-dir", "{tmp}", "--gt-dir", "{tmp}/missing"], "not found"),
])
def test_usage_errors_exit_2(argv, msg, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    assert msg in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------- model mode


@dataclass
class _Result:
    scores: np.ndarray
    probability: np.ndarray
    mask: np.ndarray


class _OracleModel:
    """A stand-in for ``gemseg.load_model``: glass probability from the red channel (see the images written below)."""

    def eval(self):
        return self

    def predict(self, image):
        prob = image[..., 0].astype(np.float32) / 255.0
        scores = np.stack([1 - prob, prob])
        return _Result(scores, prob, scores.argmax(0) == 1)


def test_model_mode_with_stand_in(tmp_path, monkeypatch, capsys):
    calls = {}

    def fake_load_model(config, weights=None, device="cpu"):
        calls.update(config=config, weights=weights, device=device)
        return _OracleModel()

    monkeypatch.setattr(gemseg, "load_model", fake_load_model, raising=False)
    for i in range(3):
        img = np.zeros((12, 16, 3), np.uint8)
        img[:, :8, 0] = 200 + i  # glass on the left, confidently
        img[:, 8:, 0] = 60
        (tmp_path / "d" / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "d" / "images" / f"{i}.png")
        gt = np.zeros((12, 16), bool)
        gt[:, :8] = True
        write_mask(tmp_path / "d" / "masks" / f"{i}.png", gt)
    base = ["eval", "--config", "c.yaml", "--weights", "w.pth", "--dataset", str(tmp_path / "d"), "--no-progress"]
    assert main(base + ["--json", str(tmp_path / "bin.json")]) == 0
    assert calls == {"config": "c.yaml", "weights": "w.pth", "device": "cpu"}
    assert _json(tmp_path / "bin.json") == {"count": 3, "IoU": 1.0, "Fbeta": pytest.approx(1.0, abs=1e-9),
                                            "MAE": 0.0, "BER": 0.0}
    assert "argmax" in capsys.readouterr().out
    assert main(base + ["--soft", "--json", str(tmp_path / "soft.json")]) == 0
    soft = _json(tmp_path / "soft.json")
    assert soft["IoU"] == 1.0 and soft["MAE"] == pytest.approx(np.mean([(255 - 200 - i) / 255 / 2 + 60 / 255 / 2
                                                                          for i in range(3)]), abs=1e-6)
    assert "soft predictions" in capsys.readouterr().out


def _tiny_config() -> Path:
    return shared_path("fixtures", "official-gem-tiny-mini", "gem_tiny_mini.yaml")


@pytest.mark.slow
def test_model_mode_end_to_end_with_tiny_official_model(tmp_path, monkeypatch, capsys):
    """The real ``gemseg.load_model`` + ``predict`` on a real photograph (reduced official GEM-Tiny weights)."""
    cfg = _tiny_config()
    weights = FIXTURES / "official-gem-tiny-mini" / "gem_tiny_mini_official.pth"
    real_load = gemseg.load_model
    try:
        model = real_load(cfg, weights=weights, device="cpu")
    except (ImportError, AttributeError, NotImplementedError) as e:  # the model API is still being built
        pytest.skip(f"gemseg.load_model unavailable: {e}")
    if not hasattr(model, "predict"):
        pytest.skip("model.predict not available yet")

    class Recorder:
        """Wraps the loaded model (loaded once: CPU time is scarce) and keeps what predict returned."""

        masks = []

        def eval(self):
            return self

        def predict(self, image):
            res = model.predict(image)
            self.masks.append(np.asarray(res.mask).copy())
            return res

    seen = {}

    def load(config, weights=None, device="cpu"):
        seen.update(config=str(config), weights=str(weights), device=device)
        return Recorder()

    monkeypatch.setattr(gemseg, "load_model", load)
    src = shared_path("realdata", "mirror3d_nyu")
    rc = main(["eval", "--config", str(cfg), "--weights", str(weights), "--dataset", str(src), "--limit", "1",
               "--json", str(tmp_path / "r.json"), "--no-progress"])
    assert rc == 0 and seen == {"config": str(cfg), "weights": str(weights), "device": "cpu"}
    r = _json(tmp_path / "r.json")
    assert r["count"] == 1 and all(0.0 <= r[k] <= 1.0 for k in ("IoU", "Fbeta", "MAE")) and 0 <= r["BER"] <= 100
    # the CLI scores exactly model.predict(...).mask, at the GT resolution
    from gemseg.data import resolve_dataset
    from gemseg.evaluation import GlassMetrics

    sample = resolve_dataset(src).samples[0]
    glass, _ = load_mask_binary(sample)
    assert len(Recorder.masks) == 1 and Recorder.masks[0].shape == glass.shape
    m = GlassMetrics()
    m.update(Recorder.masks[0], glass)
    assert r["IoU"] == pytest.approx(m.compute()["IoU"], abs=1e-12)
    assert r["MAE"] == pytest.approx(m.compute()["MAE"], abs=1e-12)
    assert "argmax" in capsys.readouterr().out


class _InterruptingModel(_OracleModel):
    """Raises KeyboardInterrupt (as Ctrl-C would) on the third image."""

    def __init__(self):
        self.n = 0

    def predict(self, image):
        self.n += 1
        if self.n == 3:
            raise KeyboardInterrupt
        return super().predict(image)


def test_ctrl_c_in_model_mode_reports_partial_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gemseg, "load_model", lambda *a, **k: _InterruptingModel(), raising=False)
    for i in range(4):
        (tmp_path / "d" / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 8, 3), 200, np.uint8)).save(tmp_path / "d" / "images" / f"{i}.png")
        write_mask(tmp_path / "d" / "masks" / f"{i}.png", np.ones((6, 8), bool))
    rc = main(["eval", "--config", "c", "--weights", "w", "--dataset", str(tmp_path / "d"),
               "--json", str(tmp_path / "r.json"), "--per-image-csv", str(tmp_path / "pi.csv")])
    assert rc == 130
    captured = capsys.readouterr()
    assert "INTERRUPTED: partial results over the first 2 image(s)" in captured.out
    assert "--json not written" in captured.err and not (tmp_path / "r.json").exists()
    assert len((tmp_path / "pi.csv").read_text().strip().splitlines()) == 1 + 2
    assert "eval:" in captured.err and "%|" in captured.err  # the tqdm progress bar went to stderr


@pytest.mark.slow
def test_tta_scores_equal_gem_predict_tta_masks(tmp_path, capsys):
    """``gem eval --tta`` scores exactly the masks ``gem predict --tta`` writes (one predictor, one TTA), and they
    differ from the plain run's (the mirror really is averaged in)."""
    cfg = str(_tiny_config())
    weights = str(FIXTURES / "official-gem-tiny-mini" / "gem_tiny_mini_official.pth")
    src = shared_path("realdata", "mirror3d_nyu")
    model = ["--config", cfg, "--weights", weights]
    assert main(["predict", str(src / "images"), "-o", str(tmp_path / "pred"), "--tta", "-q", *model]) == 0
    assert main(["eval", "--pred-dir", str(tmp_path / "pred"), "--dataset", str(src), "--no-progress",
                 "--json", str(tmp_path / "saved.json")]) == 0
    assert main(["eval", *model, "--tta", "--dataset", str(src), "--no-progress",
                 "--json", str(tmp_path / "tta.json")]) == 0
    assert main(["eval", *model, "--dataset", str(src), "--no-progress", "--json", str(tmp_path / "plain.json")]) == 0
    tta, saved, plain = (_json(tmp_path / f"{n}.json") for n in ("tta", "saved", "plain"))
    assert tta["count"] == 3
    # gem predict runs 2 streams × 1 thread, eval one process: a different reduction order flips a handful of
    # near-tied argmax pixels of this (nearly untrained) mini model — far fewer than TTA itself changes
    for k, tol in (("IoU", 1e-5), ("Fbeta", 1e-5), ("MAE", 1e-5), ("BER", 2e-3)):
        assert tta[k] == pytest.approx(saved[k], abs=tol), k
    assert abs(tta["BER"] - plain["BER"]) > 5 * 2e-3 or abs(tta["MAE"] - plain["MAE"]) > 5e-4
    assert main(["eval", "--pred-dir", str(tmp_path / "pred"), "--dataset", str(src), "--tta"]) == 2
    assert "model mode only" in capsys.readouterr().err
