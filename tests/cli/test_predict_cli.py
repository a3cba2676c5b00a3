"""``gem predict`` end to end on a tiny model: folders, broken files, grayscale, video, resume, exit codes."""
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from gemseg.cli.main import main
from tests.inference.tiny import interrupt_at_call, photo, tiny_model, write_clip


@pytest.fixture()
def tree(tmp_path):
    """in/ a.jpg, b_gray.png (L), sub/c.png (RGBA), sub/deeper/d.JPG, broken.jpg (truncated), empty.png, notes.txt"""
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(photo(90, 120, seed=1)).save(root / "a.jpg", quality=95)
    Image.fromarray(photo(70, 50, seed=2)[:, :, 0]).save(root / "b_gray.png")
    rgba = np.dstack([photo(40, 64, seed=3), np.full((40, 64), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "sub" / "c.png")
    Image.fromarray(photo(33, 77, seed=4)).save(root / "sub" / "deeper" / "d.JPG")
    good = (root / "a.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(good[: len(good) // 3])
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    return root


def _run(capsys, *argv):
    code = main(["predict", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _snapshot(folder: Path):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


def test_folder_tree_masks_at_contract_paths(tree, weights, tmp_path, capsys):
    out = tmp_path / "out"
    inputs_before = _snapshot(tree)
    code, _, err = _run(capsys, tree, "--weights", weights, "-o", out, "-r", "--batch-size", "2", "-q")
    assert code == 1  # two bad files
    expected = {"a.png": (90, 120), "b_gray.png": (70, 50), "sub/c.png": (40, 64), "sub/deeper/d.png": (33, 77)}
    for rel, hw in expected.items():
        m = np.asarray(Image.open(out / rel))
        assert m.shape == hw and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(list(expected) + ["predict_summary.csv", "predict_summary.json"])
    assert "broken.jpg" in err and "empty.png" in err and "0 bytes" in err
    summary = json.loads((out / "predict_summary.json").read_text())
    status = {Path(r["file"]).name: r["status"] for r in summary["items"]}
    assert status == {"a.jpg": "ok", "b_gray.png": "ok", "c.png": "ok", "d.JPG": "ok", "broken.jpg": "failed",
                      "empty.png": "failed"}
    assert summary["counts"] == {"ok": 4, "skipped": 0, "failed": 2, "not processed": 0}
    row = next(r for r in summary["items"] if r["file"].endswith("a.jpg"))
    assert (row["width"], row["height"]) == (120, 90) and 0.0 <= row["glass_fraction"] <= 1.0
    assert "glass_fraction" in (out / "predict_summary.csv").read_text().splitlines()[0]
    assert _snapshot(tree) == inputs_before  # inputs untouched
    assert "done, 2 failed" in err


def test_batch_masks_equal_one_by_one_and_model_predict(tree, weights, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(capsys, tree / "a.jpg", tree / "sub" / "c.png", tree / "sub" / "deeper" / "d.JPG",
                "-w", weights, "-o", a, "-b", "3", "-q", "-j", "0")[0] == 0
    assert _run(capsys, tree / "a.jpg", tree / "sub" / "c.png", tree / "sub" / "deeper" / "d.JPG",
                "-w", weights, "-o", b, "-b", "1", "-q")[0] == 0
    for name, src in (("a.png", "a.jpg"), ("c.png", "sub/c.png"), ("d.png", "sub/deeper/d.JPG")):
        ma, mb = np.asarray(Image.open(a / name)), np.asarray(Image.open(b / name))
        assert np.array_equal(ma, mb)
        ref = tiny_model().predict(tree / src).mask
        assert np.array_equal(ma > 0, ref)


def test_single_file_with_extra_outputs(tree, weights, tmp_path, capsys):
    out = tmp_path / "o"
    code, _, _ = _run(capsys, tree / "sub" / "deeper" / "d.JPG", "-w", weights, "-o", out, "--overlay", "--prob",
                      "--npy", "--threshold", "0.6", "-q")
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["d.png", "d_overlay.jpg", "d_prob.npy", "d_prob.png", "predict_summary.csv",
                     "predict_summary.json"]
    prob = np.load(out / "d_prob.npy")
    mask = np.asarray(Image.open(out / "d.png"))
    assert prob.shape == (33, 77) and prob.dtype == np.float32
    assert np.array_equal(mask > 0, prob > 0.6)
    assert np.abs(np.asarray(Image.open(out / "d_prob.png")) / 255.0 - prob).max() <= 0.5 / 255 + 1e-6
    assert Image.open(out / "d_overlay.jpg").size == (77, 33)


def test_non_empty_output_refused_then_resume_with_skip_existing(tree, weights, tmp_path, capsys):
    out = tmp_path / "out"
    (tree / "broken.jpg").unlink()
    (tree / "empty.png").unlink()
    assert _run(capsys, tree, "-w", weights, "-o", out, "-r", "-q")[0] == 0
    code, _, err = _run(capsys, tree, "-w", weights, "-o", out, "-r", "-q")
    assert code == 2 and "not empty" in err and "--skip-existing" in err
    # simulate an interrupted run: one mask is missing
    (out / "sub" / "c.png").unlink()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    code, _, err = _run(capsys, tree, "-w", weights, "-o", out, "-r", "-q", "--skip-existing")
    assert code == 0
    assert (out / "sub" / "c.png").exists()
    assert {p: p.stat().st_mtime_ns for p in before} == before  # the others were not rewritten
    summary = json.loads((out / "predict_summary.json").read_text())
    assert summary["counts"] == {"ok": 1, "skipped": 3, "failed": 0, "not processed": 0}
    assert _run(capsys, tree, "-w", weights, "-o", out, "-r", "-q", "--overwrite")[0] == 0


def test_interrupted_run_leaves_complete_files_and_resumes(tree, weights, tmp_path):
    """Ctrl-C in the middle of a run: no partial/temporary file, summary written, --skip-existing completes."""
    from gemseg.inference.pipeline import PredictOptions, run_predict
    from gemseg.inference.predictor import GlassSegmentor
    from gemseg.inference.sources import expand_inputs

    (tree / "broken.jpg").unlink()
    (tree / "empty.png").unlink()
    seg = GlassSegmentor.from_pretrained(weights, device="cpu")
    real = interrupt_at_call(seg, 3)
    out = tmp_path / "out"
    items = expand_inputs([str(tree)], recursive=True)
    with pytest.raises(KeyboardInterrupt):
        run_predict(seg, items, out, PredictOptions(workers=2), progress=False, log=lambda s: None)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["a.png", "b_gray.png", "predict_summary.csv", "predict_summary.json"]  # no temp files
    summary = json.loads((out / "predict_summary.json").read_text())
    assert summary["interrupted"] is True
    seg.predict_resized = real
    res = run_predict(seg, items, out, PredictOptions(skip_existing=True), progress=False)
    assert (res.count("ok"), res.count("skipped"), res.count("failed")) == (2, 2, 0)
    assert (out / "sub" / "deeper" / "d.png").exists()


def test_never_overwrites_an_input(tmp_path, weights, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(photo(40, 40, seed=5)).save(folder / "x.png")
    Image.fromarray(photo(40, 40, seed=6)).save(folder / "y.jpg")
    before = (folder / "x.png").read_bytes()
    code, _, err = _run(capsys, folder, "-w", weights, "-o", folder, "--overwrite", "-q")
    assert code == 1 and "overwrite an input" in err
    assert (folder / "x.png").read_bytes() == before
    assert (folder / "y.png").exists()  # the other input was processed


def test_output_inside_input_folder_is_not_rescanned(tmp_path, weights, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(photo(40, 40, seed=5)).save(folder / "x.jpg")
    assert _run(capsys, folder, "-w", weights, "-o", folder / "masks", "-r", "-q")[0] == 0
    code, _, _ = _run(capsys, folder, "-w", weights, "-o", folder / "masks", "-r", "-q", "--skip-existing")
    assert code == 0
    assert sorted(p.name for p in (folder / "masks").rglob("*.png")) == ["x.png"]


def test_video_overlay_and_frames(tmp_path, weights, capsys):
    video = write_clip(tmp_path / "clip.avi", 10, 48, 64, seed=10)
    out = tmp_path / "out"
    code, _, err = _run(capsys, video, "-w", weights, "-o", out, "-b", "4", "-q")  # frame masks by default
    assert code == 0, err
    cap = cv2.VideoCapture(str(out / "clip_overlay.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 10
    frames = sorted((out / "clip").glob("*.png"))
    assert [f.name for f in frames] == [f"{i:06d}.png" for i in range(10)]
    assert np.asarray(Image.open(frames[0])).shape == (48, 64)
    summary = json.loads((out / "predict_summary.json").read_text())
    assert summary["items"][0]["frames"] == 10 and summary["items"][0]["kind"] == "video"
    # a video that cannot be decoded is reported, not fatal
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    code, _, err = _run(capsys, bad, video, "-w", weights, "-o", tmp_path / "o2", "-q", "--max-frames", "2")
    assert code == 1 and "bad.mp4" in err
    assert (tmp_path / "o2" / "clip_overlay.mp4").exists()


def test_random_init_warns_loudly(tmp_path, capsys):
    from tests.inference.tiny import TINY_OPTS

    img = tmp_path / "p.png"
    Image.fromarray(photo(40, 40)).save(img)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("MODEL:\n  BACKBONE:\n    NAME: D2TinyViT\n")
    opts = [o for o in TINY_OPTS if o not in ("MODEL.BACKBONE.NAME", "D2TinyViT")]
    code, _, err = _run(capsys, img, "--config", cfg, "-o", tmp_path / "o", "-q", "--opts", *opts)
    assert code == 0
    assert "RANDOMLY INITIALISED" in err and "MEANINGLESS" in err
    assert (tmp_path / "o" / "p.png").exists()
    assert json.loads((tmp_path / "o" / "predict_summary.json").read_text())["random_init"] is True


def test_user_errors_exit_2(tmp_path, weights, capsys):
    img = tmp_path / "p.png"
    Image.fromarray(photo(40, 40)).save(img)
    code, _, err = _run(capsys, img, "--model", "gem-does-not-exist", "-o", tmp_path / "o")
    assert code == 2 and "available models" in err
    code, _, err = _run(capsys, img, "--config", "gem-nope", "-o", tmp_path / "o")
    assert code == 2 and "gem-nope" in err
    code, _, err = _run(capsys, img, "-w", tmp_path / "nothing.pth", "-o", tmp_path / "o")
    assert code == 2 and "not found" in err
    code, _, err = _run(capsys, tmp_path / "nothing_here", "-w", weights, "-o", tmp_path / "o", "-q")
    assert code == 1 and "nothing_here" in err
    assert not os.path.exists(tmp_path / "o" / "nothing_here.png")


def test_exif_rotation_16bit_and_palette_inputs(tmp_path, weights, capsys):
    """Masks follow the displayed orientation (EXIF applied) and odd image modes are read, not rejected."""
    folder = tmp_path / "odd"
    folder.mkdir()
    raw = Image.fromarray(photo(30, 50, seed=8))  # stored 50 wide × 30 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display → 30 wide × 50 high
    raw.save(folder / "rotated.jpg", exif=exif.tobytes())
    Image.fromarray((photo(20, 24, seed=9)[:, :, 0].astype(np.uint16) * 257)).save(folder / "deep16.png")
    Image.fromarray(photo(22, 26, seed=10)).convert("P", palette=Image.ADAPTIVE).save(folder / "palette.png")
    code, _, err = _run(capsys, folder, "-w", weights, "-o", tmp_path / "o", "-q")
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "o" / "rotated.png")).shape == (50, 30)
    assert np.asarray(Image.open(tmp_path / "o" / "deep16.png")).shape == (20, 24)
    assert np.asarray(Image.open(tmp_path / "o" / "palette.png")).shape == (22, 26)
