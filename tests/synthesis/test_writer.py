"""Dataset writing: layout, determinism across runs and worker counts, resuming, safety checks, statistics."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gemseg.synthesis import SynthError, SynthOptions, WriteOptions, generate_dataset, split_of
from gemseg.synthesis.writer import estimate_bytes, images_for_scale

SIZE = (96, 72)


def make(out: Path, n: int, seed: int = 7, workers: int = 1, **kw):
    opts = SynthOptions(width=SIZE[0], height=SIZE[1])
    wo = WriteOptions(output=out, num_images=n, seed=seed, workers=workers, progress=False, **kw)
    return generate_dataset(("procedural", opts), wo, opts.to_json(), SIZE)


def tree_bytes(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_values_sizes_and_manifest(tmp_path):
    out = tmp_path / "ds"
    summary = make(out, 10, val_fraction=0.3, preview_masks=True)
    assert summary["generated"] == 10 and summary["validation"] == 3 and summary["training"] == 7
    recs = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in recs] == list(range(10))
    for r in recs:
        img = np.asarray(Image.open(out / r["image"]))
        with Image.open(out / r["mask"]) as m:
            assert m.mode == "L"  # single-channel 8-bit
            mask = np.asarray(m)
        assert img.shape == (SIZE[1], SIZE[0], 3) and mask.shape == (SIZE[1], SIZE[0])
        assert set(np.unique(mask)) <= {0, 1}
        assert r["glass_fraction"] == pytest.approx(mask.mean(), abs=1e-5)
        assert r["image"] == f"images/{r['split']}/{r['stem']}.jpg"
        assert r["mask"] == f"annotations_zero_one/{r['split']}/{r['stem']}.png"
        preview = np.asarray(Image.open(out / r["preview"]))
        np.testing.assert_array_equal(preview, mask * 255)
        assert isinstance(r["seed"], int) and "kind" in r["params"]
    assert not list(out.rglob("*.tmp*")) and not (out / ".manifest.partial.jsonl").exists()


def test_layout_is_read_by_the_dataset_readers(tmp_path):
    layouts = pytest.importorskip("gemseg.data.layouts", reason="gemseg.data.layouts not available")
    out = tmp_path / "ds"
    make(out, 6, val_fraction=0.34)
    for split, n in (("training", 4), ("validation", 2)):
        ds = layouts.resolve_dataset(out, split=split)
        assert len(ds) == n
        for s in ds:
            glass, ignore = ds.load_mask_binary(s)
            ref = np.asarray(Image.open(s.mask)) == 1
            np.testing.assert_array_equal(glass, ref)
            assert not ignore.any()


def test_deterministic_across_runs_and_worker_counts(tmp_path):
    make(tmp_path / "a", 6, workers=1, val_fraction=0.2)
    make(tmp_path / "b", 6, workers=1, val_fraction=0.2)
    make(tmp_path / "c", 6, workers=2, val_fraction=0.2)
    a, b, c = (tree_bytes(tmp_path / x) for x in "abc")
    assert a == b
    assert a == c
    make(tmp_path / "d", 6, seed=8, val_fraction=0.2)  # another seed gives other images
    d = tree_bytes(tmp_path / "d")
    assert d.keys() == a.keys() and all(d[k] != a[k] for k in a if k.endswith(".jpg"))


def test_skip_existing_regenerates_exactly_the_missing_files(tmp_path):
    out = tmp_path / "ds"
    make(out, 8)
    before = tree_bytes(out)
    victims = [out / "images/training/synth_0000002.jpg", out / "annotations_zero_one/training/synth_0000005.png",
               out / "images/training/synth_0000006.jpg"]
    for v in victims:
        v.unlink()
    # what a worker killed mid-write leaves behind: a hidden temp file that still ends in .jpg
    stale = out / "images/training/.synth_0000006.jpg.abc123.tmp.jpg"
    stale.write_bytes(b"half a jpeg")
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("synth_*.jpg")}
    stamps.update({p: p.stat().st_mtime_ns for p in out.rglob("synth_*.png")})
    summary = make(out, 8, skip_existing=True)
    assert summary["generated"] == 3 and summary["skipped"] == 5
    assert not stale.exists()
    assert tree_bytes(out) == before  # byte-identical, manifest included
    for p, t in stamps.items():  # untouched files were not rewritten (image 5's jpg is rewritten with its mask)
        if "0000002" not in p.name and "0000005" not in p.name and "0000006" not in p.name:
            assert p.stat().st_mtime_ns == t, p


def test_extending_a_run_equals_a_fresh_larger_run(tmp_path):
    make(tmp_path / "small", 3, val_fraction=0.25)
    make(tmp_path / "small", 6, val_fraction=0.25, skip_existing=True)
    make(tmp_path / "big", 6, val_fraction=0.25)
    assert tree_bytes(tmp_path / "small") == tree_bytes(tmp_path / "big")


def test_refuses_non_empty_output_and_mismatched_resume(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("user data")
    with pytest.raises(SynthError, match="not empty"):
        make(out, 2)
    make(out, 2, overwrite=True)
    assert (out / "notes.txt").read_text() == "user data"  # --overwrite removes only synthesis outputs
    with pytest.raises(SynthError, match="different seed"):
        make(out, 2, seed=99, skip_existing=True)
    with pytest.raises(SynthError, match="exclude"):
        make(out, 2, skip_existing=True, overwrite=True)


def test_overwrite_removes_stale_images_of_a_larger_run(tmp_path):
    out = tmp_path / "ds"
    make(out, 4)
    make(out, 2, seed=1, overwrite=True)
    assert sorted(p.name for p in (out / "images/training").iterdir()) == ["synth_0000000.jpg", "synth_0000001.jpg"]
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 2


def test_disk_space_check_fails_before_writing(tmp_path, monkeypatch):
    import gemseg.synthesis.writer as writer

    monkeypatch.setattr(writer.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    out = tmp_path / "ds"
    with pytest.raises(SynthError, match="not enough disk space"):
        make(out, 50)
    assert not list(out.rglob("*.jpg"))
    assert estimate_bytes(640, 480, 3911, False) > 3911 * 50_000  # ~0.1 MB per image, not a token amount


def test_scales_and_split_assignment():
    assert images_for_scale("1x") == 3911 and images_for_scale("20x") == 20 * 3911
    with pytest.raises(SynthError):
        images_for_scale("3x")
    splits = [split_of(i, 0.1) for i in range(1000)]
    assert splits.count("validation") == 100
    assert all(split_of(i, 0.0) == "training" for i in range(50))


def test_glass_fraction_statistics_are_sensible(tmp_path):
    """Over a few dozen images: mostly some glass, rarely none, rarely full; every structure kind appears."""
    from gemseg.synthesis import ProceduralEngine, image_seed
    from gemseg.synthesis.procedural import KINDS

    eng = ProceduralEngine(SynthOptions(width=128, height=96))
    fr, kinds = [], set()
    for i in range(40):
        _, label, params = eng.render(image_seed(0, i))
        fr.append(float((label == 1).mean()))
        kinds.add(params["kind"])
    fr = np.array(fr)
    assert 0.1 < fr.mean() < 0.6, fr
    assert (fr == 0).mean() <= 0.2  # hard negatives exist but are a minority
    assert (fr > 0.95).mean() <= 0.1
    assert (fr > 0.3).sum() >= 5 and ((fr > 0) & (fr < 0.15)).sum() >= 3  # both large and small glass
    assert kinds == set(KINDS)


def test_a_run_made_before_the_infill_knobs_still_resumes(tmp_path):
    """synth_info.json of a run made before --infill-style existed has no infill keys; the default engine renders
    the same images, so --skip-existing must accept the folder (and still refuse another style)."""
    import json

    from gemseg.cli.main import main

    out = tmp_path / "old"
    base = ["synth", "-n", "2", "-o", str(out), "--size", "64x48", "-q", "-j", "1"]
    assert main(base) == 0
    info = json.loads((out / "synth_info.json").read_text())
    assert "infill_style" not in info["options"]  # what an older engine wrote
    assert main(base[:2] + ["3"] + base[3:] + ["--skip-existing"]) == 0
    assert main(base + ["--skip-existing", "--infill-style", "material"]) == 2
