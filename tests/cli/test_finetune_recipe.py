"""docs/training.md's "fine-tune the bundled model on your own images" recipe, run as written (tiny sizes appended),
and self-describing ``gem train`` checkpoints: ``--weights model_final.pth`` alone works, at the config's test size."""
import json
import re
import shlex
from pathlib import Path

import pytest
import torch
from PIL import Image

from gemseg.cli.main import main
from gemseg.config import get_config
from gemseg.config.loader import resolve_config_path
from gemseg.modeling.checkpoint import CONFIG_METADATA_KEY, TEST_SIZE_KEY, config_from_checkpoint, read_checkpoint

REPO = Path(__file__).resolve().parents[2]

# appended to each documented command: later options / KEY VALUE pairs win, so the recipe runs in seconds.
# Training crops (64) differ from the test size (96) on purpose: inference must use the test size.
TINY = {
    "synth": ["--num-images", "4", "--size", "96x64", "--val-fraction", "0.5", "-q", "-j", "1"],
    "train": ["SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "(1,)", "SOLVER.IMS_PER_BATCH", "1", "SOLVER.CHECKPOINT_PERIOD",
              "1", "TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "0", "INPUT.CROP.SIZE", "(64, 64)",
              "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "96",
              "INPUT.SIZE_DIVISIBILITY", "96", "SOLVER.WARMUP_ITERS", "1"],
    "predict": ["-q"],
    "eval": ["--no-progress"],
}


def recipe_commands():
    """The ``gem ...`` commands of the recipe block in docs/training.md, as argument lists."""
    text = (REPO / "docs" / "training.md").read_text()
    block = re.search(r"<!-- recipe:finetune[^\n]*\n```bash\n(.*?)```", text, re.S)
    assert block, "the fine-tune recipe block is missing from docs/training.md"
    joined = block.group(1).replace("\\\n", " ")
    return [shlex.split(line)[1:] for line in joined.splitlines() if line.startswith("gem ")]


def test_gem_lite_is_a_shipped_config_name():
    assert resolve_config_path("gem-lite").name == "gem_lite_effnet.yaml"
    assert get_config("gem-lite").MODEL.BACKBONE.NAME == "EfficientNetLite0"


@pytest.mark.slow
def test_finetune_recipe_runs_as_documented(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    commands = recipe_commands()
    assert [c[0] for c in commands] == ["synth", "train", "predict", "eval"]
    for argv in commands:
        rc = main(argv + TINY[argv[0]])
        err = capsys.readouterr().err
        assert rc == 0, (argv, err[-2000:])
        assert "Traceback" not in err
        if argv[0] == "predict":
            # --weights alone: the checkpoint's own config, at its test size (96), not the training crop (64)
            assert "| size 96 |" in err and "model_final.pth" in err
    run = tmp_path / "output" / "my_glass"
    for name in ("model_0000000.pth", "model_final.pth"):  # periodic checkpoints are self-describing too
        payload = torch.load(run / name, map_location="cpu", weights_only=True)
        assert set(payload) >= {"model", "optimizer", "scheduler", "iteration", "trainer"}  # detectron2 layout
        assert payload[TEST_SIZE_KEY] == 96 and "EfficientNetLite0" in payload[CONFIG_METADATA_KEY]
    summary = json.loads((tmp_path / "my_masks" / "predict_summary.json").read_text())
    assert summary["size"] == 96 and summary["counts"]["ok"] == 2
    for item in summary["items"]:  # masks at the images' own size
        assert Image.open(item["output"]).size == Image.open(item["file"]).size == (96, 64)


def test_checkpoint_config_round_trip_and_legacy_trainer_config(tmp_path):
    """A .pth written by save_checkpoint carries the config; older gem train files keep it under trainer.config."""
    from gemseg.modeling.build import build_model
    from gemseg.modeling.checkpoint import save_checkpoint
    from tests.engine.helpers import tiny_opts

    cfg = get_config("gem-tiny", tiny_opts(64))
    model = build_model(cfg)
    save_checkpoint(model, tmp_path / "new.pth")
    got = config_from_checkpoint(read_checkpoint(tmp_path / "new.pth"))
    assert got is not None and got.INPUT.MIN_SIZE_TEST == 64 and got.MODEL.MaskDINO.DEC_LAYERS == 2
    legacy = {"model": torch.load(tmp_path / "new.pth", weights_only=True)["model"],
              "trainer": {"config": cfg.dump(), "seed": 7}}
    torch.save(legacy, tmp_path / "legacy.pth")
    assert config_from_checkpoint(read_checkpoint(tmp_path / "legacy.pth")).MODEL.MaskDINO.DEC_LAYERS == 2
    torch.save({"model": legacy["model"]}, tmp_path / "bare.pth")
    assert config_from_checkpoint(read_checkpoint(tmp_path / "bare.pth")) is None
