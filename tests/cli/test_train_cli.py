"""``gem train``: the official command shape, --eval-only, one-line errors, and --num-gpus 2 on CPU (gloo)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gemseg.cli.main import main
from gemseg.config import get_config
from gemseg.modeling.build import build_model
from gemseg.modeling.checkpoint import save_checkpoint

from ..engine.helpers import make_dataset, tiny_opts

REPO = Path(__file__).resolve().parents[2]


def _one_line_error(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    last = err.splitlines()[-1]
    assert last.startswith("gem train: error:") and match in last, err
    assert "Traceback" not in err
    return last


def test_missing_dataset_is_a_one_line_error(capsys, tmp_path):
    _one_line_error(capsys, ["train", "--config-file", "gem-tiny", "OUTPUT_DIR", str(tmp_path / "o"),
                             "DATASETS.TRAIN", f"('{tmp_path / 'nope'}',)"], "dataset not found")
    assert not (tmp_path / "o").exists()


def test_official_name_without_detectron2_datasets(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "absent"))
    _one_line_error(capsys, ["train", "--config-file", "gem-tiny"], "DETECTRON2_DATASETS")


def test_bad_overrides(capsys, tmp_path):
    _one_line_error(capsys, ["train", "--config-file", "gem-tiny", "SOLVER.MAX_ITER"], "KEY VALUE")
    _one_line_error(capsys, ["train", "--config-file", "gem-tiny", "SOLVER.NOT_A_KEY", "1"], "NOT_A_KEY")
    data = make_dataset(tmp_path / "d", n=1, size=32)
    _one_line_error(capsys, ["train", "--config-file", "gem-tiny", "DATASETS.TRAIN", f"('{data}',)",
                             "SOLVER.IMS_PER_BATCH", "6", "SOLVER.GRAD_ACCUM_STEPS", "4"], "multiple")
    _one_line_error(capsys, ["train", "--eval-only", "--config-file", "gem-tiny", "MODEL.WEIGHTS", ""],
                    "needs weights")


def test_eval_only_prints_the_four_number_table(capsys, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads per process spin against the other jobs on a shared 2-core box
    try:
        _eval_only_table(capsys, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _eval_only_table(capsys, tmp_path):
    data = make_dataset(tmp_path / "data", n=2, size=64, splits=("validation",))
    cfg = get_config("gem-tiny", tiny_opts(64))
    weights = tmp_path / "model_final.pth"
    save_checkpoint(build_model(cfg), weights)
    base = ["train", "--eval-only", "--config-file", "gem-tiny", *tiny_opts(64), "MODEL.WEIGHTS", str(weights)]
    # DATASETS.TEST resolution (a folder: its validation split) ...
    assert main(base + ["DATASETS.TEST", f"('{data}',)"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| Method"))
    for col in ("IoU", "Fβ", "MAE", "BER"):
        assert col in header
    assert "images scored: 2 of 2" in out
    # ... and --dataset
    assert main(base + ["--dataset", str(data)]) == 0
    assert "images scored: 2 of 2" in capsys.readouterr().out


def _ddp_cmd(data, out, *extra):
    return ["train", "--config-file", "gem-tiny", *tiny_opts(64), "OUTPUT_DIR", str(out),
            "DATASETS.TRAIN", f"('{data}',)", "TEST.EVAL_PERIOD", "0", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.CHECKPOINT_PERIOD", "1000", *extra]


def _run(cmd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, time.time() - t0


@pytest.mark.slow  # two spawned processes importing torch: ~25-60 s on 2 shared cores
def test_num_gpus_2_on_cpu_runs_ddp_with_gloo_and_learns(tmp_path):
    data = make_dataset(tmp_path / "data", n=4, size=64)
    out = tmp_path / "out"
    cmd = _ddp_cmd(data, out, "SOLVER.MAX_ITER", "6", "SOLVER.BASE_LR", "1e-3")
    proc, elapsed = _run([sys.executable, "-m", "gemseg.cli.main", "train", "--num-gpus", "2", *cmd[1:]])
    print(f"DDP 2×gloo, 6 iterations: {elapsed:.1f}s")
    assert "2 process(es) × 1 micro-batch(es) × 1 image(s)" in proc.stderr
    assert "parameters identical on all 2 ranks" in proc.stderr
    assert sorted(p.name for p in out.glob("*.pth")) == ["model_final.pth"]
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == list(range(6))  # rank 0 only writes
    first, last = rows[0]["total_loss"], (rows[-1]["total_loss"] + rows[-2]["total_loss"]) / 2
    print(f"DDP total_loss {first:.1f} -> {last:.1f}")
    assert last < 0.8 * first


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_launch(tmp_path):
    """The multi-node command of docs/training.md (c10d rendezvous) with one node of two CPU (gloo) processes."""
    data = make_dataset(tmp_path / "data", n=2, size=64)
    out = tmp_path / "out"
    proc, elapsed = _run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
                          "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}", "--rdzv-id=gemseg-test",
                          "-m", "gemseg.cli.main", *_ddp_cmd(data, out, "SOLVER.MAX_ITER", "2")])
    print(f"torchrun 2×gloo, 2 iterations: {elapsed:.1f}s")
    assert "2 process(es) × 1 micro-batch(es) × 1 image(s)" in proc.stderr
    assert "parameters identical on all 2 ranks" in proc.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1]  # rank 0 only writes
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    assert (out / "model_final.pth").is_file()


def test_missing_test_dataset_fails_before_training(capsys, tmp_path):
    data = make_dataset(tmp_path / "d", n=1, size=32)
    _one_line_error(capsys, ["train", "--config-file", "gem-tiny", "DATASETS.TRAIN", f"('{data}',)",
                             "DATASETS.TEST", f"('{tmp_path / 'nope'}',)", "OUTPUT_DIR", str(tmp_path / "o")],
                    "TEST.EVAL_PERIOD 0")
    assert not (tmp_path / "o").exists()
