"""Paired bootstrap comparison of two models' per-image scores, and tools/compare_models.py end to end."""
from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

from gemseg.config import get_config
from gemseg.evaluation.paired import compare_per_image_csvs, paired_bootstrap, read_per_image_csv
from gemseg.modeling.build import build_model
from gemseg.modeling.checkpoint import save_checkpoint
from tests.conftest import REPO_ROOT


def test_a_consistent_gain_is_called_and_noise_is_not():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.3, 0.8, 30)
    gain = paired_bootstrap(a, a + 0.05 + rng.normal(0, 0.01, 30))
    assert gain.verdict == "B better" and 0 < gain.low < gain.diff < gain.high
    assert gain.b_better == 30 and gain.a_better == 0
    noise = paired_bootstrap(a, a + rng.normal(0, 0.05, 30))
    assert noise.verdict == "no clear difference" and noise.low < 0 < noise.high
    # BER: lower is better, so a lower B is the better model
    ber = paired_bootstrap(a * 50, a * 50 - 3, metric="BER", higher_is_better=False)
    assert ber.verdict == "B better" and ber.b_better == 30 and ber.diff == pytest.approx(-3)
    worse = paired_bootstrap(a, a - 0.05 + rng.normal(0, 0.01, 30))
    assert worse.verdict == "A better" and worse.a_better == 30
    # deterministic for a seed
    b = a + rng.normal(0, 0.05, 30)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)


def test_degenerate_inputs():
    same = paired_bootstrap([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert (same.diff, same.low, same.high, same.verdict) == (0.0, 0.0, 0.0, "no clear difference")
    one = paired_bootstrap([0.5], [0.7])
    assert one.count == 1 and one.low == one.high == pytest.approx(0.2)
    two = paired_bootstrap([0.5, 0.4], [0.7, 0.3])
    assert two.low <= two.diff <= two.high
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="no images"):
        paired_bootstrap([], [])


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["key", "IoU", "BER", "resized"])
        w.writeheader()
        for key, iou, ber in rows:
            w.writerow({"key": key, "IoU": iou, "BER": ber, "resized": 0})


def test_per_image_csvs_are_paired_by_key(tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    _write_csv(a, [("x", 0.5, 20), ("y", 0.6, 18), ("z", 0.7, 15)])
    _write_csv(b, [("z", 0.8, 12), ("x", 0.6, 17), ("y", 0.7, 15)])  # another order: paired by key, not row
    iou, ber = compare_per_image_csvs(a, b)
    assert iou.diff == pytest.approx(0.1) and iou.b_better == 3
    assert ber.diff == pytest.approx(-3) and ber.b_better == 3
    assert read_per_image_csv(a)["y"]["IoU"] == 0.6
    _write_csv(c, [("x", 0.5, 20), ("w", 0.6, 18), ("z", 0.7, 15)])
    with pytest.raises(ValueError, match="different images"):
        compare_per_image_csvs(a, c)
    with pytest.raises(ValueError, match="unknown metric"):
        compare_per_image_csvs(a, b, metrics=("IoU", "Sm"))
    (tmp_path / "bad.csv").write_text("name,IoU\nx,0.5\n")
    with pytest.raises(ValueError, match="not a gem eval per-image CSV"):
        read_per_image_csv(tmp_path / "bad.csv")


def _tool():
    spec = importlib.util.spec_from_file_location("compare_models", REPO_ROOT / "tools" / "compare_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_models_tool_end_to_end(tmp_path, capsys):
    """Two tiny random GEMs on a 3-image set: a model against itself is 'no clear difference' with a zero
    interval; against another model the table and the JSON carry one row per metric."""
    ds = tmp_path / "walls"
    for sub in ("images", "masks"):
        (ds / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(ds / "images" / f"p{i}.png")
        mask = np.zeros((64, 80), np.uint8)
        mask[10:50, 8 + i * 5:60] = 255
        Image.fromarray(mask).save(ds / "masks" / f"p{i}.png")
    cfg = get_config(None, ["INPUT.MIN_SIZE_TEST", "128", "MODEL.MaskDINO.DEC_LAYERS", "1",
                            "MODEL.MaskDINO.NUM_OBJECT_QUERIES", "5", "MODEL.MaskDINO.DIM_FEEDFORWARD", "32",
                            "MODEL.MaskDINO.TWO_STAGE", "False"])
    files = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        files.append(tmp_path / f"m{seed}.safetensors")
        save_checkpoint(build_model(cfg).eval(), files[-1])
    tool = _tool()
    out = tmp_path / "cmp.json"
    assert tool.main(["--a", str(files[0]), "--b", str(files[0]), "--realdata", str(tmp_path), "--json",
                      str(out), "--resamples", "200"]) == 0
    table = capsys.readouterr().out
    assert "| walls (3) | IoU |" in table and "no clear difference" in table
    rows = json.loads(out.read_text())["rows"]
    assert [r["metric"] for r in rows] == ["IoU", "BER"]
    assert all(r["diff"] == r["low"] == r["high"] == 0 for r in rows)
    assert tool.main(["--a", str(files[0]), "--b", str(files[1]), "--dataset", str(ds), "--metrics", "IoU,MAE",
                      "--json", str(out), "--resamples", "200"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["set"], r["metric"], r["count"]) for r in rows] == [("walls", "IoU", 3), ("walls", "MAE", 3)]
    assert rows[1]["higher_is_better"] is False
    with pytest.raises(SystemExit):
        tool.main(["--a", str(files[0]), "--b", str(files[1])])  # no set given
    with pytest.raises(SystemExit):
        tool.main(["--a", str(files[0]), "--b", str(files[1]), "--dataset", str(ds), "--metrics", "IoU,Sm"])
