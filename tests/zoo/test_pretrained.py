"""save_pretrained → (loopback) Hub → from_pretrained, and gem push / push_to_hub with a recording HfApi."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from gemseg.cli.main import main
from gemseg.errors import GemsegError
from tests.inference.tiny import photo
from tests.zoo.conftest import cache_files

pytest.importorskip("huggingface_hub")

METRICS = {"count": 608, "IoU": 0.7712, "Fbeta": 0.8655, "MAE": 0.0321, "BER": 8.2, "dataset": "GSD-S test"}


def test_save_pretrained_serve_from_pretrained_round_trip(fake_hub, tiny_files, hf_cache, tmp_path, capsys):
    import gemseg
    from gemseg.inference import GlassSegmentor
    from gemseg.zoo import save_pretrained

    folder = save_pretrained(tiny_files["model"], tmp_path / "tiny-glass", repo_id="me/tiny-glass",
                             metrics=METRICS, trained_on="GSD-S")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "model.safetensors"]
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: gemseg\n") and "pipeline_tag: image-segmentation" in card
    assert "| 0.7712 | 0.8655 | 0.0321 | 8.20 |" in card and "GSD-S test (608 images)" in card
    assert "--model me/tiny-glass" in card and 'from_pretrained("me/tiny-glass")' in card
    with pytest.raises(GemsegError, match="overwrite"):
        save_pretrained(tiny_files["model"], folder)

    for p in folder.iterdir():
        fake_hub.add("me/tiny-glass", p.name, p.read_bytes())
    image = photo(80, 60, seed=4)
    local = GlassSegmentor.from_pretrained(folder, device="cpu").predict(image)
    seg = GlassSegmentor.from_pretrained("me/tiny-glass", device="cpu")
    assert seg.source == "me/tiny-glass (Hugging Face Hub)" and seg.model_name == "me/tiny-glass"
    remote = seg.predict(image)
    np.testing.assert_array_equal(remote.scores, local.scores)  # identical scores
    np.testing.assert_allclose(remote.scores, tiny_files["model"].predict(image).scores, atol=1e-4)
    assert [m for m, _, _ in fake_hub.requests] == ["HEAD", "GET"]  # model.safetensors only, once

    fake_hub.stop()  # cached now: the CLI and gemseg.load_model work without the server
    img = tmp_path / "p.png"
    Image.fromarray(image).save(img)
    assert main(["predict", str(img), "--model", "me/tiny-glass", "-o", str(tmp_path / "o"), "--npy", "-q"]) == 0
    prob = np.load(tmp_path / "o" / "p_prob.npy")
    np.testing.assert_allclose(prob, remote.probability, atol=1e-6)
    assert gemseg.load_model("me/tiny-glass").source == "me/tiny-glass (Hugging Face Hub)"


@pytest.mark.parametrize("case", ["no-config", "not-safetensors"])
def test_from_pretrained_rejects_repo_files_that_are_not_save_pretrained(case, fake_hub, tiny_files, hf_cache,
                                                                          tmp_path):
    import torch
    from safetensors.torch import save_file

    from gemseg.inference import GlassSegmentor

    if case == "no-config":  # weights without the config in the metadata
        path = tmp_path / "model.safetensors"
        save_file({k: v.contiguous() for k, v in tiny_files["model"].state_dict().items()
                   if k.startswith("sem_seg_head.pixel_decoder.")} | {"x": torch.zeros(1)}, str(path))
        data = path.read_bytes()
    else:  # an official .pth renamed model.safetensors
        data = tiny_files["official"].read_bytes()
    fake_hub.add("me/broken", "model.safetensors", data)
    with pytest.raises(GemsegError, match="removed from the cache") as e:
        GlassSegmentor.from_pretrained("me/broken", device="cpu")
    assert "\n" not in str(e.value)
    if case == "no-config":
        assert "carries no config" in str(e.value)
    assert cache_files(hf_cache) == []


class RecordingApi:
    """Stands in for huggingface_hub.HfApi: records calls and keeps a copy of the uploaded folder."""

    calls = []

    def __init__(self, *args, **kwargs):
        pass

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://hf.example/{repo_id}"

    def upload_folder(self, **kwargs):
        kept = RecordingApi.keep / kwargs["repo_id"].replace("/", "--")
        shutil.copytree(kwargs["folder_path"], kept)
        self.calls.append(("upload_folder", kwargs["repo_id"], dict(kwargs, kept=kept)))

        class Info:
            commit_url = f"https://hf.example/{kwargs['repo_id']}/commit/abc"

        return Info()


@pytest.fixture
def recording_api(monkeypatch, tmp_path):
    import huggingface_hub

    RecordingApi.calls = []
    RecordingApi.keep = tmp_path / "uploaded"
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    return RecordingApi


def test_gem_push_run_dir_uploads_the_save_pretrained_folder(recording_api, tiny_files, tmp_path, capsys):
    from gemseg.inference import GlassSegmentor

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_files["official"], run / "model_final.pth")  # official layout: the config is beside it
    shutil.copy(tiny_files["config"], run / "config.yaml")
    (tmp_path / "eval.json").write_text(json.dumps(METRICS))
    code = main(["push", str(run), "--repo-id", "me/tiny-office", "--metrics", str(tmp_path / "eval.json"),
                 "--private", "--message", "first model"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "uploaded to me/tiny-office: https://hf.example/me/tiny-office/commit/abc" in err
    (c1, repo1, kw1), (c2, repo2, kw2) = recording_api.calls
    assert (c1, repo1, kw1["exist_ok"], kw1["private"]) == ("create_repo", "me/tiny-office", True, True)
    assert (c2, repo2, kw2["commit_message"]) == ("upload_folder", "me/tiny-office", "first model")
    assert kw2["allow_patterns"] == ["model.safetensors", "README.md"]
    uploaded = kw2["kept"]
    assert sorted(p.name for p in uploaded.iterdir()) == ["README.md", "model.safetensors"]
    assert "| 0.7712 |" in (uploaded / "README.md").read_text()
    # what was uploaded is self-describing: no config needed, same predictions as the run's weights
    image = photo(50, 70, seed=2)
    a = GlassSegmentor.from_pretrained(uploaded, device="cpu").predict(image).scores
    b = GlassSegmentor.from_pretrained(run / "model_final.pth", config=run / "config.yaml",
                                       device="cpu").predict(image).scores
    np.testing.assert_array_equal(a, b)


def test_gem_push_dry_run_and_errors(recording_api, tiny_files, tmp_path, capsys):
    out = tmp_path / "share"
    assert main(["push", str(tiny_files["official"]), "--config", str(tiny_files["config"]), "--repo-id", "me/x",
                 "--save-dir", str(out), "--dry-run"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model.safetensors"]
    assert recording_api.calls == []
    capsys.readouterr()
    for argv, msg in [
        (["push", str(tiny_files["official"]), "--repo-id", "me/x", "--dry-run"], "--dry-run needs --save-dir"),
        (["push", str(tiny_files["official"]), "--repo-id", "nobody"], "owner/name"),
        (["push", str(tmp_path), "--repo-id", "me/x"], "not a finished gem train run"),
        (["push", str(tiny_files["official"]), "--repo-id", "me/x"], "no config given"),
        (["push", str(tiny_files["official"]), "--config", str(tiny_files["config"]), "--repo-id", "me/x",
          "--save-dir", str(out)], "overwrite"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, (argv, err)
    assert recording_api.calls == []
