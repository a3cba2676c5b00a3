"""``gem export`` and ``gem bench`` on the tiny model."""
import json

import numpy as np
import pytest
from PIL import Image

from gemseg.cli.main import main
from tests.inference.tiny import photo, tiny_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights(tmp_path_factory.mktemp("weights"))


def test_export_then_predict_with_onnxruntime(weights, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "tiny.onnx"
    assert main(["export", "-w", str(weights), "-o", str(onnx_path)]) == 0
    err = capsys.readouterr().err
    assert onnx_path.exists() and "check vs PyTorch fp32" in err and "flipped" in err
    assert main(["export", "-w", str(weights), "-o", str(onnx_path)]) == 2  # exists, no --overwrite
    assert "exists" in capsys.readouterr().err
    assert main(["export", "-w", str(weights), "-o", str(tmp_path / "x.onx")]) == 2
    capsys.readouterr()

    img = tmp_path / "in" / "p.png"
    img.parent.mkdir()
    Image.fromarray(photo(200, 100, seed=3)).save(img)
    assert main(["predict", str(img), "-w", str(onnx_path), "-o", str(tmp_path / "ort"), "-q"]) == 0
    assert "onnxruntime" in capsys.readouterr().err
    assert main(["predict", str(img), "-w", str(weights), "-o", str(tmp_path / "pt"), "-q"]) == 0
    a = np.asarray(Image.open(tmp_path / "ort" / "p.png"))
    b = np.asarray(Image.open(tmp_path / "pt" / "p.png"))
    assert a.shape == (200, 100) and 0 < (b > 0).mean() < 1
    assert (a != b).mean() < 1e-3  # identical up to ties within float noise


def test_bench_in_process_table_and_json(weights, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "-w", str(weights), "--runs", "2", "--warmup", "1", "--batch-sizes", "1", "2",
                 "--in-process", "--threads", "2", "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "e2e FPS" in table and table.count("\n") >= 3
    results = json.loads(out.read_text())["results"]
    assert [r["batch"] for r in results] == [1, 2]
    for r in results:
        for part in ("network", "e2e"):
            st = r[part]
            assert 0 < st["min_ms"] <= st["median_ms"] <= st["p90_ms"]
            assert st["per_image_ms"] == pytest.approx(st["median_ms"] / r["batch"])
        assert r["size"] == 64 and r["precision"] == "fp32" and r["peak_rss_mib"] > 50


def test_bench_subprocess_case_and_errors(weights, tmp_path, capsys):
    code = main(["bench", "-w", str(weights), "--runs", "1", "--warmup", "0", "--network-only", "--threads", "1"])
    assert code == 0
    assert "torch" in capsys.readouterr().out
    assert main(["bench", "-w", str(weights), "--runs", "0"]) == 2
    assert "--runs" in capsys.readouterr().err
    from gemseg.inference.bench import run_case_subprocess

    res = run_case_subprocess({"weights": str(tmp_path / "missing.safetensors"), "runs": 1})
    assert "error" in res
