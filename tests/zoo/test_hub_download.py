"""Zoo downloads through huggingface_hub against a loopback Hub: cache, offline, resume, verification, errors."""
from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
from PIL import Image

from gemseg.cli.main import main
from gemseg.errors import GemsegError
from tests.inference.tiny import TINY_OPTS, photo
from tests.zoo.conftest import TINY_FILE, TINY_REPO, cache_files, set_endpoint, set_offline

pytest.importorskip("huggingface_hub")


def _gets(hub):
    return [r for r in hub.requests if r[0] == "GET"]


def test_first_download_then_cached_without_server_then_offline(fake_hub, tiny_entry, tiny_files, hf_cache,
                                                                monkeypatch, capsys):
    from gemseg import zoo
    from gemseg.inference import GlassSegmentor

    data = tiny_files["official"].read_bytes()
    fake_hub.add(TINY_REPO, TINY_FILE, data)
    assert zoo.model_status("tiny-test") == "not downloaded" and "tiny-test" not in zoo.local_models()

    path = zoo.download("tiny-test")
    assert path.read_bytes() == data and hf_cache in path.parents
    assert path.name == TINY_FILE and f"models--{TINY_REPO.replace('/', '--')}" in str(path)
    assert "downloading tiny-test" in capsys.readouterr().err
    assert [m for m, _, _ in fake_hub.requests] == ["HEAD", "GET"]
    assert zoo.model_status("tiny-test") == "cached" and "tiny-test" in zoo.local_models()

    image = photo(70, 90, seed=1)
    ref = tiny_files["model"].predict(image).scores
    seg = GlassSegmentor.from_pretrained("tiny-test", device="cpu")
    assert seg.source == "tiny-test (Hugging Face cache)" and not seg.random_init
    np.testing.assert_allclose(seg.predict(image).scores, ref, atol=1e-4)

    fake_hub.stop()  # a second run needs no network at all
    n = len(fake_hub.requests)
    again = GlassSegmentor.from_pretrained("tiny-test", device="cpu")
    np.testing.assert_array_equal(again.predict(image).scores, seg.predict(image).scores)
    set_offline(monkeypatch)
    model = __import__("gemseg").load_model("tiny-test")
    assert model.source == "tiny-test (Hugging Face cache)"
    assert len(fake_hub.requests) == n


def test_offline_and_not_cached_names_the_file_its_url_and_weights(hf_cache, tiny_entry, monkeypatch, tmp_path,
                                                                   capsys):
    set_endpoint(monkeypatch, "http://127.0.0.1:9")
    set_offline(monkeypatch)
    from gemseg import zoo

    with pytest.raises(GemsegError) as e:
        zoo.download("tiny-test")
    msg = str(e.value)
    assert "\n" not in msg and TINY_FILE in msg and "HF_HUB_OFFLINE=1" in msg and "--weights PATH" in msg
    assert f"http://127.0.0.1:9/{TINY_REPO}/resolve/main/{TINY_FILE}" in msg
    assert "gem models --download tiny-test" in msg
    img = tmp_path / "p.png"
    Image.fromarray(photo(40, 40)).save(img)
    assert main(["predict", str(img), "--model", "tiny-test", "-o", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gem predict: error: tiny-test:" in err and "Traceback" not in err
    assert cache_files(hf_cache) == []


def test_unreachable_hub_and_not_cached(fake_hub, tiny_entry, hf_cache, monkeypatch):
    import huggingface_hub.file_download as fd

    from gemseg import zoo

    if hasattr(fd, "_DEFAULT_RETRY_ON_EXCEPTIONS"):  # huggingface_hub retries for ~20 s; the message is the same
        monkeypatch.setattr(fd, "_DEFAULT_RETRY_ON_EXCEPTIONS", ())
    fake_hub.stop()
    with pytest.raises(GemsegError, match="cannot be reached.*--weights PATH"):
        zoo.download("tiny-test")


def test_dropped_connection_is_resumed_with_a_range_request(fake_hub, tiny_entry, tiny_files):
    from gemseg import zoo

    data = tiny_files["official"].read_bytes()
    fake_hub.add(TINY_REPO, TINY_FILE, data)
    cut = len(data) * 2 // 3  # past huggingface_hub's 10 MB write chunk, so that some bytes were kept
    assert cut > 10 * 2**20
    fake_hub.drop_once[TINY_FILE] = cut
    path = zoo.download("tiny-test")
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
    gets = _gets(fake_hub)
    assert len(gets) == 2 and gets[0][2] == ""
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", gets[1][2]).group(1))  # only the missing part was asked for
    assert 0 < resumed_at <= cut


def _other_architecture_checkpoint(folder):
    """A valid official-layout checkpoint of a different (narrower) tiny GEM."""
    import gemseg
    from gemseg.modeling.checkpoint import save_checkpoint

    opts = list(TINY_OPTS)
    for key in ("MODEL.MaskDINO.HIDDEN_DIM", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "MODEL.SEM_SEG_HEAD.MASK_DIM"):
        opts[opts.index(key) + 1] = "32"
    path = folder / "other.pth"
    save_checkpoint(gemseg.load_model(gemseg.get_config(None, opts)), path)
    return path.read_bytes()


@pytest.mark.parametrize("bad", ["html", "truncated", "wrong-architecture"])
def test_bad_downloads_are_rejected_and_leave_the_cache_clean(bad, fake_hub, tiny_entry, tiny_files, hf_cache,
                                                              tmp_path):
    from gemseg import zoo

    good = tiny_files["official"].read_bytes()
    payload = {
        "html": b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>proxy login</body></html>",
        "truncated": good[: len(good) // 2],
        "wrong-architecture": _other_architecture_checkpoint(tmp_path) if bad == "wrong-architecture" else b"",
    }[bad]
    fake_hub.add(TINY_REPO, TINY_FILE, payload)
    with pytest.raises(GemsegError) as e:
        zoo.download("tiny-test")
    msg = str(e.value)
    assert "\n" not in msg and "removed from the cache" in msg and "next run downloads it again" in msg
    if bad == "wrong-architecture":
        assert "do not fit" in msg
    assert cache_files(hf_cache) == []  # neither the blob nor the snapshot link is left behind
    assert zoo.model_status("tiny-test") == "not downloaded"

    fake_hub.add(TINY_REPO, TINY_FILE, good)  # the file is fixed upstream: the next run downloads it again
    assert zoo.download("tiny-test").read_bytes() == good


def test_missing_file_and_unknown_repo(fake_hub, tiny_entry, tiny_files, monkeypatch):
    import dataclasses

    from gemseg import zoo
    from gemseg.zoo.registry import REGISTRY

    fake_hub.add(TINY_REPO, "other.pth", b"x")
    with pytest.raises(GemsegError, match=f"has no file {TINY_FILE} in {TINY_REPO}"):
        zoo.download("tiny-test")
    monkeypatch.setitem(REGISTRY, "tiny-test", dataclasses.replace(tiny_entry, repo_id="nobody/nothing"))
    with pytest.raises(GemsegError, match="repository nobody/nothing not found"):
        zoo.download("tiny-test")


def test_dataset_repos_are_reached_under_datasets(fake_hub, tiny_entry, tiny_files, monkeypatch):
    """The sam-vit-b entry lives in a dataset repo (Gourieff/ReActor): the URL carries the datasets/ prefix."""
    import dataclasses

    from gemseg import zoo
    from gemseg.zoo.registry import REGISTRY

    entry = dataclasses.replace(tiny_entry, repo_id="someone/assets", repo_type="dataset",
                                filename="models/sub/" + TINY_FILE)
    monkeypatch.setitem(REGISTRY, "tiny-test", entry)
    fake_hub.add("someone/assets", "models/sub/" + TINY_FILE, tiny_files["official"].read_bytes(), "dataset")
    path = zoo.download("tiny-test")
    assert "datasets--someone--assets" in str(path) and path.parts[-3:] == ("models", "sub", TINY_FILE)
    assert fake_hub.requests[-1][1] == f"/datasets/someone/assets/resolve/main/models/sub/{TINY_FILE}"
    assert zoo.model_status("tiny-test") == "cached"


def test_train_model_weights_takes_a_zoo_name(fake_hub, tiny_entry, tiny_files):
    import gemseg
    from gemseg.engine.train_loop import read_initial_weights

    fake_hub.add(TINY_REPO, TINY_FILE, tiny_files["official"].read_bytes())
    cfg = gemseg.get_config(None, TINY_OPTS + ["MODEL.WEIGHTS", "tiny-test"], freeze=False)
    ckpt = read_initial_weights(cfg)
    assert ckpt.kind == "gem" and TINY_FILE in ckpt.path and "hf-home" in ckpt.path


def test_backbone_entries_verify_as_encoders_and_feed_training(fake_hub, tiny_entry, tiny_files, monkeypatch,
                                                               tmp_path):
    """A MobileSAM-style file (``image_encoder.*``) under a backbone entry: verified as an encoder, refused for
    prediction, accepted as MODEL.WEIGHTS; a full GEM file under a backbone entry is rejected."""
    import dataclasses

    import torch

    import gemseg
    from gemseg import zoo
    from gemseg.engine.train_loop import read_initial_weights
    from gemseg.zoo.registry import REGISTRY

    sd = {"image_encoder." + k[len("backbone."):]: v for k, v in tiny_files["model"].state_dict().items()
          if k.startswith("backbone.") and not k.startswith(("backbone.transpose", "backbone.conv"))}
    sam_like = tmp_path / "mobile_sam.pt"
    torch.save(sd, sam_like)
    entry = dataclasses.replace(tiny_entry, name="tiny-encoder", kind="backbone", filename="mobile_sam.pt")
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    fake_hub.add(TINY_REPO, "mobile_sam.pt", tiny_files["official"].read_bytes())  # a full GEM: wrong kind
    with pytest.raises(GemsegError, match="not a backbone.*removed from the cache"):
        zoo.download("tiny-encoder")
    fake_hub.add(TINY_REPO, "mobile_sam.pt", sam_like.read_bytes())
    assert zoo.download("tiny-encoder").read_bytes() == sam_like.read_bytes()
    assert "tiny-encoder" not in zoo.local_models()  # not a segmentation model
    cfg = gemseg.get_config(None, TINY_OPTS + ["MODEL.WEIGHTS", "tiny-encoder"], freeze=False)
    assert read_initial_weights(cfg).kind == "sam"
