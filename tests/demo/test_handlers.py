"""The demo's framework-free handlers and model cache, on a tiny model (no server, no Gradio needed)."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from gemseg.demo.handlers import (
    DemoInputError, OutputStore, example_images, heat_map, mask_image, read_upload, save_result, segment,
    segment_files, segment_video, side_by_side,
)
from gemseg.demo.models import ModelSpec, SegmentorCache, load_segmentor, model_menu, with_options
from gemseg.inference import GlassSegmentor
from gemseg.inference.pipeline import PredictOptions, run_predict
from gemseg.inference.sources import expand_inputs
from gemseg.io.video import VideoWriter
from tests.inference.tiny import photo, tiny_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def seg(weights):
    return GlassSegmentor.from_pretrained(weights)


# -- reading uploads ---------------------------------------------------------------------------------------------
def test_read_upload_converts_gray_rgba_16bit_and_says_so(tmp_path):
    rgb = photo(40, 60, seed=1)
    gray = tmp_path / "gray.png"
    Image.fromarray(rgb[:, :, 0]).save(gray)
    rgba = tmp_path / "rgba.png"
    alpha = np.zeros((40, 60), np.uint8)
    alpha[:, 30:] = 255
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(rgba)
    deep = tmp_path / "deep.png"
    Image.fromarray(rgb[:, :, 1].astype(np.uint16) * 257).save(deep)
    assert Image.open(deep).mode == "I;16"

    g = read_upload(gray)
    assert g.rgb.shape == (40, 60, 3) and np.array_equal(g.rgb[..., 2], rgb[..., 0])
    assert any("grayscale" in n for n in g.notes)
    a = read_upload(rgba)
    assert a.rgb[:, :30].max() == 0 and np.array_equal(a.rgb[:, 30:], rgb[:, 30:])
    assert any("transparent" in n for n in a.notes)
    d = read_upload(deep)
    assert np.array_equal(d.rgb[..., 0], rgb[:, :, 1])  # x*257 scaled back to x exactly
    assert any("16-bit" in n for n in d.notes)
    plain = tmp_path / "plain.png"
    Image.fromarray(rgb).save(plain)
    assert read_upload(plain).notes == []


def test_read_upload_rejects_bad_files_with_readable_messages(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(photo(64, 64)).save(good, quality=95)
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases = {None: "No image", tmp_path / "empty.png": "empty (0 bytes)",
             tmp_path / "notes.png": "not an image", tmp_path / "cut.jpg": "Cannot read 'cut.jpg'",
             tmp_path / "gone.png": "did not arrive"}
    for path, phrase in cases.items():
        with pytest.raises(DemoInputError, match=re.escape(phrase)):
            read_upload(path)


def test_resize_guard_checks_the_header_before_decoding(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    Image.new("1", (300, 200)).save(big)
    decoded = []
    monkeypatch.setattr("gemseg.demo.handlers.read_image", lambda p: decoded.append(p))
    with pytest.raises(DemoInputError, match=r"300×200 px .* limit of 256 px per side"):
        read_upload(big, max_side=256)
    with pytest.raises(DemoInputError, match=r"\(0.1 megapixels\).* and 0.05 megapixels"):
        read_upload(big, max_megapixels=0.05)
    assert decoded == []  # refused on the header alone


# -- segmentation, views and downloads ---------------------------------------------------------------------------
def test_downloaded_mask_is_the_file_gem_predict_writes(seg, tmp_path):
    src = tmp_path / "room.jpg"
    Image.fromarray(photo(90, 120, seed=3)).save(src, quality=95)
    result = segment(seg, read_upload(src), opacity=0.6)
    saved = save_result(result, tmp_path / "demo")
    assert saved.mask.name == "room.png" and saved.probability.name == "room_prob.png"

    run_predict(seg, expand_inputs([str(src)]), tmp_path / "predict", PredictOptions(save_prob=True),
                progress=False, log=lambda s: None)
    assert saved.mask.read_bytes() == (tmp_path / "predict" / "room.png").read_bytes()
    assert saved.probability.read_bytes() == (tmp_path / "predict" / "room_prob.png").read_bytes()
    mask = np.asarray(Image.open(saved.mask))
    assert mask.shape == (90, 120) and set(np.unique(mask)) <= {0, 255}
    assert 0 < result.glass_fraction < 1  # the tiny model's masks are mixed: a real test of the views
    assert np.array_equal(np.asarray(Image.open(saved.overlay)), result.overlay)
    assert "room.jpg: glass" in result.summary() and "tiny_gem.safetensors" in result.summary()


def test_views_mask_heat_map_side_by_side():
    m = np.zeros((4, 6), bool)
    m[1:3, 2:5] = True
    assert np.array_equal(np.unique(mask_image(m)), [0, 255]) and mask_image(m)[1, 2] == 255
    prob = np.linspace(0, 1, 24, dtype=np.float32).reshape(4, 6)
    heat = heat_map(prob)
    assert heat.shape == (4, 6, 3) and heat.dtype == np.uint8
    assert heat[0, 0].sum() < 30 and heat[-1, -1].sum() > 400  # inferno: black for 0, pale yellow for 1
    sbs = side_by_side(np.zeros((4, 6, 3), np.uint8), np.ones((4, 6, 3), np.uint8), gap=2)
    assert sbs.shape == (4, 14, 3) and (sbs[:, 6:8] == 255).all() and (sbs[:, 8:] == 1).all()


def test_opacity_changes_the_overlay_only(seg, tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(photo(50, 70, seed=3)).save(src)
    image = read_upload(src)
    faint, strong = segment(seg, image, 0.1), segment(seg, image, 0.9)
    assert np.array_equal(faint.prediction.mask, strong.prediction.mask)
    assert not np.array_equal(faint.overlay, strong.overlay)
    with pytest.raises(DemoInputError, match="opacity"):
        segment(seg, image, 1.5)


def test_gallery_skips_bad_files_and_reports_them(seg, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(photo(40, 40, seed=3)).save(good)
    (tmp_path / "bad.png").write_bytes(b"")
    errors = []
    store = OutputStore(tmp_path / "store")
    results, saved = segment_files(seg, [good, tmp_path / "bad.png"], store, on_error=errors.append)
    assert [r.image.name for r in results] == ["good.png"] and saved[0].mask.is_file()
    assert len(errors) == 1 and "bad.png" in errors[0] and "empty" in errors[0]


def test_output_store_keeps_only_the_newest_folders(tmp_path):
    store = OutputStore(tmp_path / "store", keep=2)
    dirs = [store.new_dir() for _ in range(4)]
    assert [d.exists() for d in dirs] == [False, False, True, True]
    store.cleanup()
    assert not (tmp_path / "store").exists()


def _clip(path: Path, frames: int) -> Path:
    with VideoWriter(path, 10.0) as w:
        for i in range(frames):
            w.write(photo(48, 64, seed=i))
    return path


def test_video_overlay_frame_by_frame_with_progress(seg, tmp_path):
    clip = _clip(tmp_path / "clip.mp4", 4)
    calls = []
    result = segment_video(seg, clip, tmp_path / "out", progress=lambda done, total: calls.append((done, total)))
    assert result.path.name == "clip_overlay.webm" and result.frames == 4
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    cap = cv2.VideoCapture(str(result.path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 4
    with pytest.raises(DemoInputError, match="has 4 frames; .* up to 3"):
        segment_video(seg, clip, tmp_path / "out2", max_frames=3)
    (tmp_path / "junk.mp4").write_text("no video")
    with pytest.raises(DemoInputError, match="Cannot read the video 'junk.mp4'"):
        segment_video(seg, tmp_path / "junk.mp4", tmp_path / "out3")
    with pytest.raises(DemoInputError, match="No video"):
        segment_video(seg, None, tmp_path / "out4")


def test_examples_are_bundled_photos():
    paths = example_images()
    assert paths[0].name == "glass_room.jpg" and len(paths) >= 2
    assert all(p.is_file() for p in paths)


# -- models -------------------------------------------------------------------------------------------------------
def test_options_share_the_loaded_network(seg, tmp_path):
    fast = with_options(seg, tta=False, threshold=0.5)
    assert fast.runner is seg.runner and fast.threshold is None  # 0.5 = the official argmax
    strict = with_options(seg, tta=True, threshold=0.9)
    assert strict.runner is seg.runner and strict.tta and strict.threshold == 0.9
    img = photo(90, 120, seed=3)
    assert strict.predict(img).mask.sum() < fast.predict(img).mask.sum()


def test_cache_loads_each_model_once_under_concurrency(weights):
    loads = []

    def slow_loader(spec, device="auto"):
        loads.append(spec.label)
        time.sleep(0.2)  # a window in which a second user could start a second load
        return load_segmentor(spec, device=device)

    specs = model_menu(ModelSpec(weights=str(weights)))
    label = "tiny_gem.safetensors"
    assert list(specs)[0] == label and "gem-lite-synth" in specs  # the bundled model is always offered
    cache = SegmentorCache(specs, device="cpu", capacity=1, loader=slow_loader)
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(label))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == [label] and all(g is got[0] for g in got)
    with pytest.raises(DemoInputError, match="Unknown model 'nope'"):
        cache.get("nope")


def test_cache_drops_the_least_recently_used_model():
    cache = SegmentorCache({n: ModelSpec(name=n) for n in "abc"}, capacity=2,
                           loader=lambda spec, device: object())
    a = cache.get("a")
    cache.get("b")
    assert cache.get("a") is a  # reused, and now the most recent
    cache.get("c")
    assert cache.loaded() == ["a", "c"]
