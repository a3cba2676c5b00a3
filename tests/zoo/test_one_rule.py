"""One model rule for every command and API: zoo names, the default model, unknown names, the registry's facts."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gemseg.cli.main import main
from gemseg.errors import GemsegError
from gemseg.io.masks import write_mask

DEFAULT = "gem-lite-synth"


def test_registry_names_files_and_paper_numbers():
    from gemseg.config.loader import CONFIG_ALIASES, resolve_config_path
    from gemseg.zoo import get_entry, list_models

    tiny, base = get_entry("gem-tiny-gsds"), get_entry("gem-base-gsds")
    assert tiny.repo_id == base.repo_id == "Bryceee/GEM-Glass-Segment-model"
    assert tiny.filename == "GEM_Tiny_Finetune_GSD-S_pretrained_20xdata_IoU0.770.pth" and tiny.config == "gem-tiny"
    assert base.filename == "GEM_Base_Finetune_GSD-S_pretrained_20xdata_IoU0.774.pth" and base.config == "gem-base"
    m = tiny.metrics
    assert (m.iou, m.fbeta, m.mae, m.ber) == (0.770, 0.865, 0.032, 8.21)
    assert (base.metrics.iou, base.metrics.mae, base.metrics.ber) == (0.774, 0.029, 8.35)
    sam = get_entry("sam-vit-b")
    assert (sam.repo_id, sam.repo_type, sam.filename) == ("Gourieff/ReActor", "dataset",
                                                           "models/sams/sam_vit_b_01ec64.pth")
    assert get_entry("mobile-sam").kind == sam.kind == "backbone"
    names = list_models()
    assert DEFAULT in names and not set(names) & set(CONFIG_ALIASES)  # a name is never also a config name
    for name in names:
        entry = get_entry(name)
        assert entry.bundled or (entry.repo_id and entry.filename and entry.revision)
        assert entry.config is None or resolve_config_path(entry.config).is_file()
        assert entry.license and entry.size_bytes > 0 and entry.trained_on


def test_unknown_names_suggest_the_closest(tmp_path, capsys):
    from gemseg import zoo
    from gemseg.inference import GlassSegmentor

    with pytest.raises(GemsegError, match="did you mean 'gem-tiny-gsds'.*available models: gem-base-gsds"):
        zoo.get_entry("gem-tiny-gsd")
    with pytest.raises(GemsegError, match="did you mean 'gem-lite-synth'"):
        GlassSegmentor.from_pretrained("gem-lite-synt")
    img = tmp_path / "p.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(img)
    assert main(["predict", str(img), "--model", "gem-base-gsd", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'gem-base-gsds'" in err
    with pytest.raises(GemsegError, match="backbone initialisation for training"):
        GlassSegmentor.from_pretrained("mobile-sam")
    with pytest.raises(GemsegError, match="weights file not found"):
        zoo.resolve_model(weights="runs/missing.pth")


def test_python_apis_take_names_and_default_to_the_bundled_model():
    import gemseg
    from gemseg.zoo import resolve_model

    model = gemseg.load_model(DEFAULT)
    assert model.source == f"{DEFAULT} (bundled)" and model.img_size == 448
    assert gemseg.load_model().source == f"{DEFAULT} (bundled)"
    src = resolve_model()
    assert src.name == DEFAULT and not src.random_init and src.weights.name == f"{DEFAULT}.safetensors"
    src = resolve_model(config="gem-tiny")  # a config alone: random weights, flagged for the loud warning
    assert src.random_init and src.weights is None
    with pytest.raises(GemsegError, match="not both"):
        resolve_model(DEFAULT, weights="x.pth")


def _dataset(folder):
    for i in range(2):
        img = np.full((48, 64, 3), 90, np.uint8)
        img[:, :32] = 230
        (folder / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / "images" / f"{i}.png")
        gt = np.zeros((48, 64), bool)
        gt[:, :32] = True
        write_mask(folder / "masks" / f"{i}.png", gt)
    return folder


def test_eval_bench_export_without_a_model_use_the_default(tmp_path, capsys):
    assert main(["eval", "--dataset", str(_dataset(tmp_path / "d")), "--json", str(tmp_path / "e.json"),
                 "--no-progress"]) == 0
    assert f"| {DEFAULT}" in capsys.readouterr().out and json.loads((tmp_path / "e.json").read_text())["count"] == 2

    assert main(["bench", "--runs", "1", "--warmup", "0", "--network-only", "--in-process", "--threads", "1",
                 "--json", str(tmp_path / "b.json")]) == 0
    err = capsys.readouterr().err
    assert f"model {DEFAULT} (bundled)" in err and "randomly initialised" not in err
    (result,) = json.loads((tmp_path / "b.json").read_text())["results"]
    assert result["label"] == DEFAULT and result["random_init"] is False and result["size"] == 448

    pytest.importorskip("onnx")
    out = tmp_path / "m.onnx"
    assert main(["export", "-o", str(out), "--no-check", "--size", "96"]) == 0
    err = capsys.readouterr().err
    assert f"model {DEFAULT} (bundled)" in err and "RANDOMLY" not in err and out.stat().st_size > 1e6


def test_zoo_names_win_over_same_named_folders(tmp_path, monkeypatch):
    from gemseg.zoo import resolve_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / DEFAULT).mkdir()  # e.g. an earlier run's --output folder
    assert resolve_model(DEFAULT).label == f"{DEFAULT} (bundled)"
    (tmp_path / "other").mkdir()
    with pytest.raises(GemsegError, match="without model.safetensors"):  # any other folder is a path
        resolve_model(tmp_path / "other")
