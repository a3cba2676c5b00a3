"""``gem predict --engine ray``, ``gemseg.distributed.predict_dataset`` and ``gem synth --executor ray`` on a local
Ray (2 CPUs, started once for the module).

The reference is the local engine run with one network thread (a Ray replica gets one CPU, hence one thread): then
every output file, float32 ``.npy`` included, must be byte-identical.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gemseg.cli.main import main
from tests.inference.tiny import photo, tiny_weights

OUTPUT_FLAGS = ["--prob", "--npy", "--overlay"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """in/ a.jpg, broken.jpg (truncated), notes.txt, sub/gray.png (L), sub/deeper/rgba.png, sub/deeper/e.JPG"""
    root = tmp_path_factory.mktemp("messy") / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(photo(90, 120, seed=1)).save(root / "a.jpg", quality=95)
    Image.fromarray(photo(70, 50, seed=2)[:, :, 0]).save(root / "sub" / "gray.png")
    rgba = np.dstack([photo(40, 64, seed=3), np.full((40, 64), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "sub" / "deeper" / "rgba.png")
    Image.fromarray(photo(33, 77, seed=4)).save(root / "sub" / "deeper" / "e.JPG")
    good = (root / "a.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(good[: len(good) // 3])
    (root / "notes.txt").write_text("not an image")
    return root


def _predict(*argv) -> int:
    return main(["predict", *map(str, argv)])


def _local(inputs, out, weights, *extra):
    import torch

    threads = torch.get_num_threads()
    try:
        return _predict(inputs, "-r", "--weights", weights, "--output", out, "--threads", "1", "-q", *extra)
    finally:
        torch.set_num_threads(threads)


def _ray(inputs, out, weights, *extra):
    return _predict(inputs, "-r", "--weights", weights, "--output", out, "--engine", "ray", "--workers", "2", "-q",
                    *extra)


def _files(root: Path) -> dict:
    """Every file under ``root`` (hidden ones included) except the summaries → its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("predict_summary")}


def _statuses(out: Path) -> dict:
    items = json.loads((out / "predict_summary.json").read_text())["items"]
    return {Path(r["file"]).name: r["status"] for r in items}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, messy, weights):
    out = tmp_path_factory.mktemp("ref") / "local"
    assert _local(messy, out, weights, *OUTPUT_FLAGS) == 1  # broken.jpg fails
    return out


def test_ray_engine_writes_the_local_engines_files(ray_session, tmp_path, messy, weights, reference):
    out = tmp_path / "ray"
    assert _ray(messy, out, weights, *OUTPUT_FLAGS) == 1
    ref, got = _files(reference), _files(out)
    assert len(ref) == 4 * 4  # 4 good images × (mask, prob png, npy, overlay)
    assert got.keys() == ref.keys()
    assert [k for k in ref if ref[k] != got[k]] == []
    assert _statuses(out) == _statuses(reference)
    summary = json.loads((out / "predict_summary.json").read_text())
    assert summary["engine"] == "ray"
    assert summary["counts"] == {"ok": 4, "skipped": 0, "failed": 1, "not processed": 0}
    broken = next(r for r in summary["items"] if r["file"].endswith("broken.jpg"))
    assert broken["error"]  # reported, not fatal


def test_skip_existing_resumes_a_killed_run(ray_session, tmp_path, messy, weights, reference):
    out = tmp_path / "ray"
    assert _ray(messy, out, weights, *OUTPUT_FLAGS) == 1
    # what an interrupted run leaves: two images without outputs, one of them with a temporary file of a killed write
    for stem in ("a", "sub/deeper/e"):
        for p in out.glob(f"{stem}*"):
            p.unlink()
    stale = out / ".a.png.k1ll3d.tmp.png"
    stale.write_bytes(b"half a png")
    assert _ray(messy, out, weights, *OUTPUT_FLAGS) == 2  # not empty: refused without --skip-existing
    assert _ray(messy, out, weights, *OUTPUT_FLAGS, "--skip-existing") == 1
    counts = json.loads((out / "predict_summary.json").read_text())["counts"]
    assert counts == {"ok": 2, "skipped": 2, "failed": 1, "not processed": 0}
    assert not stale.exists()
    ref, got = _files(reference), _files(out)
    assert got.keys() == ref.keys() and all(ref[k] == got[k] for k in ref)


def _actor_pids(name: str):
    """Process ids of Ray actors whose process title names ``name``."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::") and name in cmd:
                pids.append(int(d.name))
    return pids


N_MANY = 24


@pytest.fixture(scope="module")
def many(tmp_path_factory, weights):
    """(folder of 24 photos, the local engine's outputs): big enough that writing overlays and .npy files keeps the
    workers busy for a few seconds."""
    src = tmp_path_factory.mktemp("many") / "in"
    src.mkdir()
    for i in range(N_MANY):
        Image.fromarray(photo(480, 640, seed=i)).save(src / f"img_{i:02d}.jpg", quality=90)
    ref = src.parent / "local"
    assert _local(src, ref, weights, *OUTPUT_FLAGS) == 0
    return src, ref


def test_skip_existing_finishes_a_run_stopped_with_ctrl_c(ray_session, tmp_path, weights, many):
    import _thread

    src, ref = many
    out = tmp_path / "ray"

    def ctrl_c_after_the_first_output():
        deadline = time.time() + 120
        while time.time() < deadline and not (out.is_dir() and any(out.glob("*_overlay.jpg"))):
            time.sleep(0.02)
        _thread.interrupt_main()

    threading.Thread(target=ctrl_c_after_the_first_output, daemon=True).start()
    assert _ray(src, out, weights, *OUTPUT_FLAGS) == 130
    summary = json.loads((out / "predict_summary.json").read_text())
    assert summary["interrupted"] and summary["counts"]["ok"] < N_MANY
    assert _ray(src, out, weights, *OUTPUT_FLAGS, "--skip-existing") == 0
    counts = json.loads((out / "predict_summary.json").read_text())["counts"]
    assert counts["skipped"] >= 1 and counts["skipped"] + counts["ok"] == N_MANY and counts["failed"] == 0
    expected, got = _files(ref), _files(out)
    assert got.keys() == expected.keys() and all(expected[k] == got[k] for k in expected)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's worker processes through /proc")
def test_a_worker_killed_mid_run_is_replaced_and_nothing_is_half_written(ray_session, tmp_path, weights, many):
    src, ref = many
    n = N_MANY
    out = tmp_path / "ray"
    killed = {}

    def kill_one_worker():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            done = len(list(out.glob("*_overlay.jpg"))) if out.is_dir() else 0
            pids = _actor_pids("_FileWorker")
            if done >= 1 and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.update(pid=pids[0], done=done)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_one_worker, daemon=True)
    watcher.start()
    assert _ray(src, out, weights, *OUTPUT_FLAGS) == 0  # the lost worker's batch was retried on a new one
    watcher.join()
    assert killed and killed["done"] < n, f"the worker was not killed mid-run: {killed}"
    summary = json.loads((out / "predict_summary.json").read_text())
    assert summary["counts"] == {"ok": n, "skipped": 0, "failed": 0, "not processed": 0}
    expected, got = _files(ref), _files(out)
    assert got.keys() == expected.keys()  # no temporary file left by the killed write
    assert all(expected[k] == got[k] for k in expected)


def test_predict_dataset_returns_masks_for_ray_pipelines(ray_session, tmp_path, messy, weights, reference):
    from gemseg.distributed import predict_dataset
    from gemseg.io.masks import read_mask

    rows = predict_dataset(messy, model=weights, workers=1, probability=True, threads=1).take_all()
    by_name = {Path(r["path"]).name: r for r in rows}
    assert set(by_name) == {"a.jpg", "broken.jpg", "gray.png", "rgba.png", "e.JPG"}
    assert by_name["broken.jpg"]["error"] and by_name["broken.jpg"]["mask"].size == 0
    for name, rel in (("a.jpg", "a"), ("gray.png", "sub/gray"), ("rgba.png", "sub/deeper/rgba")):
        want = read_mask(reference / f"{rel}.png") > 0
        assert np.array_equal(by_name[name]["mask"].astype(bool), want), name
        np.testing.assert_array_equal(by_name[name]["probability"], np.load(reference / f"{rel}_prob.npy"))
    # bytes read through Ray's file-system layer (the route for s3:// or gs:// inputs)
    ds = ray_session.data.read_binary_files(str(messy / "a.jpg"), include_paths=True)
    (row,) = predict_dataset(ds, model=weights, workers=1, threads=1).take_all()
    assert row["error"] == "" and np.array_equal(row["mask"].astype(bool), read_mask(reference / "a.png") > 0)


def test_ray_flags_need_the_ray_engine(capsys, tmp_path, messy, weights):
    assert _predict(messy, "--weights", weights, "--output", tmp_path / "o", "--ray-address", "auto") == 2
    assert "need --engine ray" in capsys.readouterr().err.strip().splitlines()[-1]


def test_synth_shards_as_ray_tasks_make_the_unsharded_set(ray_session, tmp_path, capsys):
    from tests.synthesis.test_sharding import ARGS, tree

    full, on_ray = tmp_path / "full", tmp_path / "ray"
    assert main(["synth", *ARGS, "--output", str(full)]) == 0
    args = [a for a in ARGS if a not in ("--workers", "1")]
    assert main(["synth", *args, "--executor", "ray", "--workers", "3", "--output", str(on_ray)]) == 0
    assert "7 new" in capsys.readouterr().out
    assert tree(on_ray) == tree(full)
    assert main(["synth", *args, "--executor", "ray", "--workers", "2", "--output", str(on_ray)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_without_ray_the_engines_say_how_to_install_it(capsys, monkeypatch, tmp_path, messy, weights):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    assert _ray(messy, tmp_path / "o", weights) == 2
    assert "pip install 'gemseg[ray]'" in capsys.readouterr().err.strip().splitlines()[-1]
    assert main(["synth", "-n", "2", "-o", str(tmp_path / "s"), "--executor", "ray", "-q"]) == 2
    assert "pip install 'gemseg[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "s").exists()
