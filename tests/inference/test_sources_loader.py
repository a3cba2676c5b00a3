"""Input discovery (output naming contract), ordered prefetching, overlays."""
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gemseg.inference.loader import BackgroundWriter, batched, prefetch
from gemseg.inference.sources import expand_inputs, find_collisions
from gemseg.inference.visualize import overlay, probability_to_uint8


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_folder_single_file_glob_and_camera_naming(tmp_path):
    root = tmp_path / "in"
    for rel in ["a.jpg", "b.PNG", "sub/c.jpeg", "sub/deep/d.tif", "notes.txt", ".hidden.jpg", ".cache/e.jpg",
                "out/own.png"]:
        _touch(root / rel)
    flat = expand_inputs([str(root)], recursive=False)
    assert [str(i.rel) for i in flat] == ["a.jpg", "b.PNG"]  # no sub-folders, no hidden files, no .txt
    rec = expand_inputs([str(root)], recursive=True, exclude=root / "out")
    assert [str(i.rel) for i in rec] == ["a.jpg", "b.PNG", "sub/c.jpeg", "sub/deep/d.tif"]
    out = tmp_path / "masks"
    assert rec[2].output(out) == out / "sub" / "c.png"
    assert rec[3].output(out, "_overlay", ".jpg") == out / "sub" / "deep" / "d_overlay.jpg"
    single = expand_inputs([str(root / "sub" / "c.jpeg")])
    assert single[0].output(out) == out / "c.png" and single[0].kind == "image"
    globbed = expand_inputs([str(root / "**" / "*.jp*g")])
    assert sorted(str(i.rel) for i in globbed) == ["a.jpg", "sub/c.jpeg"]
    assert expand_inputs([str(tmp_path / "nope*.jpg")])[0].kind == "missing"
    assert expand_inputs([str(tmp_path / "missing.jpg")])[0].kind == "missing"
    cam = expand_inputs(["0", "camera:1"])
    assert [(c.kind, c.source, str(c.rel)) for c in cam] == [("camera", 0, "camera0"), ("camera", 1, "camera1")]
    video = expand_inputs([str(_touch(tmp_path / "clip.MP4"))])
    assert video[0].kind == "video"


def test_collisions_are_detected(tmp_path):
    root = tmp_path / "in"
    _touch(root / "x.jpg")
    _touch(root / "x.png")
    items = expand_inputs([str(root)])
    claims = [(i, [i.output(tmp_path / "o")]) for i in items]
    bad = find_collisions(claims)
    assert list(bad) == [id(items[1])]


def test_prefetch_keeps_order_runs_in_parallel_and_returns_errors():
    active, peak = [0], [0]
    lock = threading.Lock()

    def work(i):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02 * (5 - i % 5))
        with lock:
            active[0] -= 1
        if i == 3:
            raise OSError("bad file")
        return i * i

    out = list(prefetch(range(10), work, workers=3))
    assert [i for i, _, _ in out] == list(range(10))
    assert [r for i, r, e in out if e is None] == [i * i for i in range(10) if i != 3]
    assert isinstance(out[3][2], OSError) and out[3][1] is None
    assert peak[0] > 1
    inline = list(prefetch(range(4), work, workers=0))
    assert [r for _, r, _ in inline] == [0, 1, 4, None]
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_background_writer_reports_errors():
    w = BackgroundWriter(workers=2)
    done = []
    for k in range(5):
        done += w.submit(k, (lambda k=k: 1 / (k - 2)))
    done += w.drain()
    w.close()
    assert sorted(k for k, _, _ in done) == list(range(5))
    assert [k for k, _, e in done if e is not None] == [2]


def test_overlay_tints_glass_and_draws_contour():
    rgb = np.full((60, 80, 3), 100, np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[20:40, 30:60] = True
    ov = overlay(rgb, mask)
    assert ov.shape == rgb.shape and ov.dtype == np.uint8
    assert np.array_equal(ov[0, 0], rgb[0, 0])  # background untouched
    assert not np.array_equal(ov[30, 45], rgb[30, 45])  # glass tinted
    assert np.array_equal(overlay(rgb, np.zeros_like(mask)), rgb)
    with pytest.raises(ValueError):
        overlay(rgb, mask[:10])
    assert probability_to_uint8(np.array([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]
