"""The issue's proof: a GEM-Tiny checkpoint in the official key layout, placed in the standard Hub cache under the
real file name of ``gem-tiny-gsds``, is what ``gem predict --model gem-tiny-gsds`` uses offline — with the same
scores as ``--config gem-tiny --weights <that file>``."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gemseg.cli.main import main
from tests.inference.tiny import photo
from tests.zoo.conftest import set_endpoint, set_offline

pytest.importorskip("huggingface_hub")
COMMIT = "c0ffee0000000000000000000000000000000001"


@pytest.mark.slow
def test_cached_official_gem_tiny_is_used_offline_by_name(hf_cache, tmp_path, monkeypatch, capsys):
    import torch

    import gemseg
    from gemseg.modeling.checkpoint import official_state_dict
    from gemseg.zoo import get_entry, model_status

    entry = get_entry("gem-tiny-gsds")
    # a randomly initialised full-size GEM-Tiny in the official detectron2 layout, stored fp16 to stay small
    torch.manual_seed(0)
    model = gemseg.load_model("gem-tiny")
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in official_state_dict(model).items()}
    # the standard Hub cache layout: models--owner--name/{snapshots/<commit>/<file>, refs/main}
    repo_dir = hf_cache / ("models--" + entry.repo_id.replace("/", "--"))
    cached = repo_dir / "snapshots" / COMMIT / entry.filename
    cached.parent.mkdir(parents=True)
    torch.save({"model": sd, "iteration": 9999}, cached)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)

    set_endpoint(monkeypatch, "http://127.0.0.1:9")  # nothing listens there: any network call would fail
    set_offline(monkeypatch)
    assert model_status("gem-tiny-gsds") == "cached"
    img = tmp_path / "in" / "room.png"
    img.parent.mkdir()
    Image.fromarray(photo(120, 160, seed=5)).save(img)
    assert main(["predict", str(img), "--model", "gem-tiny-gsds", "--output", str(tmp_path / "by-name"),
                 "--npy", "-q"]) == 0
    err = capsys.readouterr().err
    assert "gem-tiny-gsds (Hugging Face cache)" in err and "RANDOMLY" not in err
    assert main(["predict", str(img), "--config", "gem-tiny", "--weights", str(cached),
                 "--output", str(tmp_path / "by-file"), "--npy", "-q"]) == 0
    by_name = np.load(tmp_path / "by-name" / "room_prob.npy")
    by_file = np.load(tmp_path / "by-file" / "room_prob.npy")
    np.testing.assert_array_equal(by_name, by_file)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "by-name" / "room.png")),
                                  np.asarray(Image.open(tmp_path / "by-file" / "room.png")))
    assert 0.0 < by_name.std()  # a real, non-constant output
