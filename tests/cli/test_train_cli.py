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


@pytest.mark.slow  # two spawned processes importing torch: ~30-60 s on 2 shared cores
def test_num_gpus_2_on_cpu_runs_ddp_with_gloo(tmp_path):
    data = make_dataset(tmp_path / "data", n=4, size=64)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gemseg.cli.main", "train", "--num-gpus", "2", "--config-file", "gem-tiny",
           *tiny_opts(64), "OUTPUT_DIR", str(out), "DATASETS.TRAIN", f"('{data}',)", "TEST.EVAL_PERIOD", "0",
           "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1000"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    elapsed = time.time() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"DDP 2×gloo, 2 iterations: {elapsed:.1f}s")
    assert "2 process(es) × 1 micro-batch(es) × 1 image(s)" in proc.stderr
    assert "parameters identical on all 2 ranks" in proc.stderr
    assert sorted(p.name for p in out.glob("*.pth")) == ["model_final.pth"]
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1]  # rank 0 only writes
    assert all(r["total_loss"] > 0 for r in rows)
