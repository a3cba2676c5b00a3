"""``gem synth`` end to end on a handful of small images."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gemseg.cli.main import main


def test_gem_synth_end_to_end(tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["synth", "--num-images", "5", "--output", str(out), "--seed", "3", "--size", "160x120",
               "--val-fraction", "0.4", "--preview-masks", "--workers", "1", "--quiet"])
    assert rc == 0
    msg = capsys.readouterr().out
    assert "5 new" in msg and "training 3, validation 2" in msg
    assert len(list((out / "images/training").glob("*.jpg"))) == 3
    assert len(list((out / "annotations_zero_one/validation").glob("*.png"))) == 2
    assert len(list((out / "preview").rglob("*.png"))) == 5
    recs = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(recs) == 5
    for r in recs:
        im = Image.open(out / r["image"])
        mask = np.asarray(Image.open(out / r["mask"]))
        assert im.size == (160, 120) and mask.shape == (120, 160) and set(np.unique(mask)) <= {0, 1}
    info = json.loads((out / "synth_info.json").read_text())
    assert info["seed"] == 3 and info["width"] == 160 and info["num_images"] == 5

    # a second run into the same folder is refused (exit 2, one-line error) ...
    assert main(["synth", "-n", "5", "-o", str(out), "--size", "160x120", "--seed", "3", "-q"]) == 2
    assert "not empty" in capsys.readouterr().err
    # ... resuming with --skip-existing makes nothing new
    before = (out / "manifest.jsonl").read_bytes()
    assert main(["synth", "-n", "5", "-o", str(out), "--size", "160x120", "--seed", "3", "--val-fraction", "0.4",
                 "--preview-masks", "--skip-existing", "-q"]) == 0
    assert "0 new, 5 kept" in capsys.readouterr().out
    assert (out / "manifest.jsonl").read_bytes() == before


def test_gem_synth_user_backgrounds_and_kinds(tmp_path):
    bg = tmp_path / "bg"
    bg.mkdir()
    Image.fromarray(np.full((50, 70, 3), (10, 200, 30), np.uint8)).save(bg / "green.png")
    out = tmp_path / "ds"
    rc = main(["synth", "-n", "3", "-o", str(out), "--size", "96x72", "--backgrounds", str(bg),
               "--no-bundled-backgrounds", "--photo-prob", "1", "--kinds", "door,partition", "-j", "1", "-q"])
    assert rc == 0
    recs = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["params"]["kind"] for r in recs} <= {"door", "partition"}
    assert all(r["params"]["background"]["source"] == "photo" for r in recs)
    assert all(r["params"]["background"]["photo"].endswith("green.png") for r in recs)


@pytest.mark.parametrize("argv,err", [
    (["--kinds", "igloo"], "unknown --kinds"),
    (["--backgrounds", "/nonexistent/dir"], "not a folder"),
    (["--engine", "diffusion"], "needs --model-dir"),
])
def test_gem_synth_user_errors(tmp_path, capsys, argv, err):
    rc = main(["synth", "-n", "1", "-o", str(tmp_path / "x"), "-q"] + argv)
    assert rc == 2
    assert err in capsys.readouterr().err


def test_gem_synth_bad_size_is_an_argument_error(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["synth", "-n", "1", "-o", str(tmp_path / "x"), "--size", "big"])
    assert e.value.code == 2
