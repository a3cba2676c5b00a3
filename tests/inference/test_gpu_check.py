"""benchmarks/gpu_check.sh runs end to end in its CPU dry mode (the same steps, tiny)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # five short Python processes (bench ×3, synth, train): ~30-60 s on 2 shared cores
def test_gpu_check_dry_run_writes_one_results_file(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "results.md"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--output", str(out)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    text = out.read_text()
    assert proc.returncode == 0, text + proc.stderr[-2000:]
    for section in ("## 1. Inference FPS", "### gem-tiny", "### gem-base", "## 2. gem train", "## 3. ONNX Runtime"):
        assert section in text
    assert text.count("| torch ") >= 4 and "bf16" in text and "| onnxruntime |" in text
    train_row = next(line for line in text.splitlines() if line.startswith("| 30 |"))
    assert "| yes |" in train_row  # the loss fell
    assert text.rstrip().endswith("result: PASS")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.md"]  # nothing else left behind
