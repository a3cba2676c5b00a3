"""Interrupted and repeated ``gem predict`` runs: 'not processed' inputs, resume bookkeeping, stale side outputs."""
import json

import pytest
from PIL import Image

from gemseg.cli.main import main
from gemseg.inference.predictor import GlassSegmentor
from tests.inference.tiny import photo, write_clip


@pytest.fixture()
def photos(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    for i in range(5):
        Image.fromarray(photo(40 + i, 56, seed=i)).save(root / f"p{i}.jpg", quality=95)
    return root


def _summary(out):
    return json.loads((out / "predict_summary.json").read_text())


def _interrupt_on_call(monkeypatch, n):
    real = GlassSegmentor.predict_resized
    calls = [0]

    def flaky(self, *a, **k):
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(GlassSegmentor, "predict_resized", flaky)


def test_ctrl_c_reports_not_processed_then_resume_merges_the_record(photos, weights, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    _interrupt_on_call(monkeypatch, 3)
    rc = main(["predict", str(photos), "-w", str(weights), "-o", str(out), "-q", "-j", "0"])
    err = capsys.readouterr().err
    assert rc == 130 and "Traceback" not in err
    assert "(2 done, 3 not processed)" in err and "interrupted" in err and "resume with --skip-existing" in err
    first = _summary(out)
    assert first["interrupted"] is True
    assert first["counts"] == {"ok": 2, "skipped": 0, "failed": 0, "not processed": 3}
    assert sorted(r["status"] for r in first["items"]) == ["not processed"] * 3 + ["ok"] * 2
    done_before = {r["file"]: r for r in first["items"] if r["status"] == "ok"}

    monkeypatch.undo()
    rc = main(["predict", str(photos), "-w", str(weights), "-o", str(out), "-q", "--skip-existing"])
    err = capsys.readouterr().err
    assert rc == 0 and "3 done, 2 skipped (existing), 0 failed" in err
    second = _summary(out)
    assert second["counts"] == {"ok": 3, "skipped": 2, "failed": 0, "not processed": 0}
    rows = {r["file"]: r for r in second["items"]}
    assert len(rows) == 5
    for file, old in done_before.items():  # the earlier run's measurements survive the resume
        assert rows[file]["status"] == "skipped"
        for key in ("width", "height", "glass_fraction", "decode_ms", "infer_ms"):
            assert rows[file][key] == old[key] and old[key] is not None

    # resuming with fewer inputs keeps the others' records (as earlier work), not erased
    rc = main(["predict", str(photos / "p0.jpg"), str(photos / "p1.jpg"), "-w", str(weights), "-o", str(out), "-q",
               "--skip-existing"])
    assert rc == 0
    third = _summary(out)
    assert len(third["items"]) == 5 and third["earlier_items"] == 3
    capsys.readouterr()


def test_overwrite_removes_stale_side_outputs(photos, weights, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(photos), "-w", str(weights), "-o", str(out), "-q", "--prob", "--npy",
                 "--overlay"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"p0.png", "p0_prob.png", "p0_prob.npy", "p0_overlay.jpg"} <= names
    (out / "notes.txt").write_text("mine")  # not ours: never touched
    assert main(["predict", str(photos), "-w", str(weights), "-o", str(out), "-q", "--overwrite", "--prob"]) == 0
    names = {p.name for p in out.iterdir()}
    expected = {f"p{i}{s}" for i in range(5) for s in (".png", "_prob.png")}
    assert names == expected | {"notes.txt", "predict_summary.json", "predict_summary.csv"}
    assert _summary(out)["removed_stale_outputs"] == 10
    capsys.readouterr()


def test_video_frame_masks_by_default_and_stale_frames_removed_on_overwrite(tmp_path, weights, capsys):
    import numpy as np

    video = write_clip(tmp_path / "clip.avi", 6, 40, 56, seed=20)
    out = tmp_path / "out"
    assert main(["predict", str(video), "-w", str(weights), "-o", str(out), "-q"]) == 0
    frames = sorted(p.name for p in (out / "clip").iterdir())
    assert frames == [f"{i:06d}.png" for i in range(6)] and (out / "clip_overlay.mp4").is_file()
    mask = np.asarray(Image.open(out / "clip" / "000000.png"))
    assert mask.shape == (40, 56) and set(np.unique(mask)) <= {0, 255}
    assert main(["predict", str(video), "-w", str(weights), "-o", str(out), "-q", "--overwrite", "--every", "2"]) == 0
    assert sorted(p.name for p in (out / "clip").iterdir()) == ["000000.png", "000002.png", "000004.png"]
    out2 = tmp_path / "out2"
    assert main(["predict", str(video), "-w", str(weights), "-o", str(out2), "-q", "--no-mask"]) == 0
    assert sorted(p.name for p in out2.iterdir()) == ["clip_overlay.mp4", "predict_summary.csv",
                                                       "predict_summary.json"]
    capsys.readouterr()
