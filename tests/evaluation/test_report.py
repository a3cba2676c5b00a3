"""Reports: the paper table, exact JSON keys, Markdown/CSV, PNG curves and gallery."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from gemseg.evaluation import (GlassMetrics, format_table, plot_curves, save_gallery, write_csv, write_full_json,
                               write_json, write_markdown)
from gemseg.evaluation.evaluator import EvalResults, Failure, WorstEntry


def _results(empty: str = "guard", with_empty_image: bool = False) -> EvalResults:
    rng = np.random.default_rng(0)
    m = GlassMetrics(empty=empty)
    for _ in range(3):
        g = rng.random((20, 20)) < 0.4
        m.update(rng.random((20, 20)) < np.where(g, 0.9, 0.1), g)
    if with_empty_image:
        m.update(np.zeros((5, 5), bool), np.zeros((5, 5), bool))
    return EvalResults(summary=m.compute(), curves=m.curves(), metrics=m, total=m.count + 1,
                       failures=[Failure("broken", "cannot read image broken.png: empty file (0 bytes)")],
                       prediction_kind="binary", settings={"empty": empty})


def test_json_has_exactly_the_official_keys(tmp_path):
    r = _results()
    write_json(tmp_path / "r.json", r)
    data = json.loads((tmp_path / "r.json").read_text())
    assert list(data) == ["count", "IoU", "Fbeta", "MAE", "BER"]
    assert data["count"] == 3 and data["IoU"] == pytest.approx(r.summary["IoU"])
    assert data["BER"] == pytest.approx(r.summary["BER"]) and data["BER"] > 1  # percent, not a fraction


def test_json_writes_nan_as_null(tmp_path):
    r = _results(empty="official", with_empty_image=True)
    write_json(tmp_path / "r.json", r)
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert data["IoU"] is None and data["BER"] is None and data["MAE"] is not None


def test_table_is_formatted_as_the_paper(tmp_path):
    r = _results()
    t = format_table(r, name="mine")
    s = r.summary
    row = [line for line in t.splitlines() if line.startswith("| mine")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["mine", f"{s['IoU']:.3f}", f"{s['Fbeta']:.3f}", f"{s['MAE']:.3f}", f"{s['BER']:.2f}"]
    assert "images scored: 3 of 4" in t and "broken" in t and "argmax" in t


def test_full_json_markdown_csv(tmp_path):
    r = _results()
    write_full_json(tmp_path / "full.json", r)
    full = json.loads((tmp_path / "full.json").read_text())
    assert full["official"]["count"] == 3 and len(full["curves"]["precision"]) == 256
    assert full["failures"][0]["key"] == "broken" and "meanF" in full["extras"]
    write_markdown(tmp_path / "t.md", r, name="mine")
    md = (tmp_path / "t.md").read_text()
    assert f"| mine | {r.summary['IoU']:.3f} |" in md
    write_csv(tmp_path / "t.csv", r, name="mine")
    rows = list(csv.DictReader(open(tmp_path / "t.csv", newline="")))
    assert rows[0]["method"] == "mine" and float(rows[0]["IoU"]) == pytest.approx(r.summary["IoU"])


def test_png_curves_and_gallery(tmp_path):
    r = _results()
    plot_curves(tmp_path / "curves.png", r)
    with Image.open(tmp_path / "curves.png") as im:
        assert im.size == (1000, 440)
        arr = np.asarray(im.convert("RGB"))
    assert (arr[..., 0] > 150).sum() > 100 and ((arr[..., 2] > 150) & (arr[..., 0] < 100)).sum() > 50  # both curves
    g = np.zeros((30, 40), bool)
    g[:, :20] = True
    entries = [WorstEntry("a", 0.1, np.full((30, 40, 3), 77, np.uint8), g, ~g, np.zeros_like(g)),
               WorstEntry("b", 0.5, None, g, g, np.zeros_like(g))]
    save_gallery(tmp_path / "worst.png", entries)
    with Image.open(tmp_path / "worst.png") as im:
        assert im.width >= 4 * 40 and im.height >= 2 * 30
    save_gallery(tmp_path / "none.png", [])
    assert not (tmp_path / "none.png").exists()
