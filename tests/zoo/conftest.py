"""Fixtures: a private Hugging Face cache, a loopback Hub (HF_ENDPOINT), and a zoo entry with a tiny architecture."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.zoo.hubserver import FakeHub

TINY_REPO = "gemseg-test/tiny-gem"
TINY_FILE = "tiny_official.pth"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """HF_HOME / HF_HUB_CACHE in tmp (env and the constants huggingface_hub read at import), online, no token."""
    constants = pytest.importorskip("huggingface_hub.constants")
    home = tmp_path / "hf-home"
    cache = home / "hub"
    old_home = constants.HF_HOME
    for name, value in vars(constants).copy().items():  # token, xet, agent-harness files... derived at import
        if name.isupper() and isinstance(value, str) and value.startswith(old_home):
            monkeypatch.setattr(constants, name, str(home) + value[len(old_home):])
    for var, value in (("HF_HOME", home), ("HF_HUB_CACHE", cache)):
        monkeypatch.setenv(var, str(value))
        monkeypatch.setattr(constants, var, str(value))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return cache


def set_endpoint(monkeypatch, url: str) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")


def set_offline(monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def fake_hub(hf_cache, monkeypatch):
    """A started loopback Hub that ``huggingface_hub`` reaches through HF_ENDPOINT."""
    hub = FakeHub().start()
    set_endpoint(monkeypatch, hub.url)
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    """The tiny GEM: its config as a YAML file, its weights in the official detectron2 layout (.pth, no config
    inside) and as a gemseg .safetensors."""
    import gemseg
    import torch

    from gemseg.modeling.checkpoint import official_state_dict
    from tests.inference.tiny import TINY_OPTS, tiny_model

    folder = tmp_path_factory.mktemp("tiny-zoo")
    cfg_path = folder / "tiny.yaml"
    cfg_path.write_text(gemseg.get_config(None, TINY_OPTS).dump())
    official = folder / TINY_FILE
    torch.save({"model": official_state_dict(tiny_model())}, official)  # as the official tools write it
    return {"config": cfg_path, "official": official, "model": tiny_model()}


@pytest.fixture
def tiny_entry(tiny_files, monkeypatch):
    """A zoo entry ``tiny-test`` (tiny architecture) whose file lives in the loopback Hub's ``TINY_REPO``."""
    from gemseg.zoo.registry import REGISTRY, ZooEntry

    entry = ZooEntry(name="tiny-test", architecture="tiny GEM", config=str(tiny_files["config"]), kind="model",
                     trained_on="nothing (random)", license="Apache-2.0",
                     size_bytes=tiny_files["official"].stat().st_size, repo_id=TINY_REPO, filename=TINY_FILE)
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    return entry


def cache_files(cache: Path):
    """Every file and link under the Hub cache (locks and the CACHEDIR tag aside)."""
    if not cache.exists():
        return []
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")
                  if (p.is_file() or p.is_symlink()) and ".locks" not in p.parts and p.name != "CACHEDIR.TAG"
                  and "refs" not in p.parts)
