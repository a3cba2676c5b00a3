"""gem predict --streams: several network calls in flight on a folder, same files, input order kept."""
import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gemseg.cli.main import main
from gemseg.cli.predict import network_streams
from gemseg.inference.pipeline import PredictOptions, run_predict
from gemseg.inference.predictor import GlassSegmentor
from gemseg.inference.sources import InputItem, expand_inputs
from tests.inference.tiny import interrupt_at_call, photo


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    for i in range(7):
        Image.fromarray(photo(60 + 4 * i, 80, seed=10 + i)).save(root / f"p{i}.jpg", quality=95)
    return root


def _masks(out: Path):
    return {p.name: np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))}


def test_streams_write_the_same_masks_in_input_order(folder, weights, tmp_path):
    seg = GlassSegmentor.from_pretrained(weights, device="cpu", batch_size=2)
    items = expand_inputs([str(folder)])
    one = run_predict(seg, items, tmp_path / "one", PredictOptions(streams=1), progress=False)
    three = run_predict(seg, items, tmp_path / "three", PredictOptions(streams=3), progress=False)
    assert one.count("ok") == three.count("ok") == 7
    a, b = _masks(tmp_path / "one"), _masks(tmp_path / "three")
    assert sorted(a) == sorted(b) == [f"p{i}.png" for i in range(7)]
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    rows = json.loads((tmp_path / "three" / "predict_summary.json").read_text())["items"]
    assert [Path(r["file"]).name for r in rows] == [f"p{i}.jpg" for i in range(7)]
    assert all(r["infer_ms"] > 0 for r in rows)


def test_a_failing_call_fails_only_its_batch(folder, weights, tmp_path):
    seg = GlassSegmentor.from_pretrained(weights, device="cpu", batch_size=1)
    real = seg.predict_resized

    def flaky(squares, sizes):
        if tuple(sizes[0]) == (68, 80):  # p2.jpg
            raise RuntimeError("simulated out of memory")
        return real(squares, sizes)

    seg.predict_resized = flaky
    res = run_predict(seg, expand_inputs([str(folder)]), tmp_path / "out", PredictOptions(streams=2),
                      progress=False, log=lambda s: None)
    assert (res.count("ok"), res.count("failed")) == (6, 1)
    assert not (tmp_path / "out" / "p2.png").exists() and (tmp_path / "out" / "p3.png").exists()
    rows = json.loads((tmp_path / "out" / "predict_summary.json").read_text())["items"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert [Path(r["file"]).name for r in failed] == ["p2.jpg"] and "simulated" in failed[0]["error"]


def test_ctrl_c_inside_a_stream_stops_cleanly(folder, weights, tmp_path):
    seg = GlassSegmentor.from_pretrained(weights, device="cpu")
    interrupt_at_call(seg, 4)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_predict(seg, expand_inputs([str(folder)]), out, PredictOptions(streams=2), progress=False,
                    log=lambda s: None)
    assert not [p for p in out.iterdir() if p.name.startswith(".") or "tmp" in p.name]
    assert json.loads((out / "predict_summary.json").read_text())["interrupted"] is True


def _args(**kw):
    base = dict(streams="auto", threads=None, engine="local", device="cpu")
    base.update(kw)
    return argparse.Namespace(**base)


def _images(n):
    return [InputItem(source=Path(f"{i}.jpg"), kind="image", rel=Path(f"{i}.png")) for i in range(n)]


def test_the_streams_rule():
    args = _args(threads=2)
    assert network_streams(args, _images(5)) == 2 and args.threads == 1
    args = _args(threads=4)
    assert network_streams(args, _images(5)) == 2 and args.threads == 2
    args = _args(threads=1)
    assert network_streams(args, _images(5)) == 1 and args.threads == 1
    args = _args(threads=2)
    assert network_streams(args, _images(1)) == 1 and args.threads == 2  # a single photo: one call, all threads
    args = _args(threads=2, engine="ray")
    assert network_streams(args, _images(5)) == 1
    args = _args(threads=6, streams="3")
    assert network_streams(args, _images(5)) == 3 and args.threads == 2
    for bad in ("0", "-1", "two"):
        with pytest.raises(Exception, match="--streams"):
            network_streams(_args(streams=bad), _images(3))
    with pytest.raises(Exception, match="local engine"):
        network_streams(_args(streams="2", engine="ray"), _images(3))


def test_cli_records_the_streams(folder, weights, tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    out = tmp_path / "out"
    assert main(["predict", str(folder), "-w", str(weights), "-o", str(out), "-q", "--streams", "2",
                 "--threads", "2"]) == 0
    assert "2 streams x 1 thread(s)" in capsys.readouterr().err
    assert json.loads((out / "predict_summary.json").read_text())["streams"] == 2
    assert torch.get_num_threads() == threads  # the per-stream count does not leak to the caller
    assert main(["predict", str(folder), "-w", str(weights), "-o", str(tmp_path / "x"), "--streams", "0"]) == 2
