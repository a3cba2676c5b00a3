"""``gem models``: table, --json, --download."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gemseg.cli.main import main
from tests.zoo.conftest import TINY_FILE, TINY_REPO, set_offline

pytest.importorskip("huggingface_hub")


def test_gem_models_json_and_table(hf_cache, capsys):
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cache"] == str(hf_cache)
    rows = {r["name"]: r for r in data["models"]}
    assert {"gem-tiny-gsds", "gem-base-gsds", "gem-base-sgsd-20k", "gem-base-sgsd-4k", "sam-vit-b", "mobile-sam",
            "gem-lite-synth"} <= set(rows)
    tiny = rows["gem-tiny-gsds"]
    assert tiny["status"] == "not downloaded" and tiny["path"] is None and tiny["metrics"]["iou"] == 0.770
    assert tiny["url"].endswith("/Bryceee/GEM-Glass-Segment-model/resolve/main/"
                                "GEM_Tiny_Finetune_GSD-S_pretrained_20xdata_IoU0.770.pth")
    lite = rows["gem-lite-synth"]
    assert lite["status"] == "bundled" and Path(lite["path"]).is_file() and lite["source"] == "bundled"
    assert rows["sam-vit-b"]["url"].split("/resolve/")[0].endswith("/datasets/Gourieff/ReActor")

    assert main(["models"]) == 0
    table = capsys.readouterr().out
    header = table.splitlines()[0].split()
    assert header == ["name", "architecture", "size", "source", "IoU", "Fβ", "MAE", "BER", "FPS", "licence", "status"]
    line = next(ln for ln in table.splitlines() if ln.startswith("gem-tiny-gsds "))
    for cell in ("260 MB", "hf:Bryceee/GEM-Glass-Segment-model", "0.770", "0.865", "0.032", "8.21", "16.09",
                 "Apache-2.0", "not downloaded"):
        assert cell in line
    assert "bundled" in next(ln for ln in table.splitlines() if ln.startswith("gem-lite-synth "))


def test_gem_models_download(fake_hub, tiny_entry, tiny_files, hf_cache, monkeypatch, capsys):
    fake_hub.add(TINY_REPO, TINY_FILE, tiny_files["official"].read_bytes())
    assert main(["models", "--download", "tiny-tst"]) == 2
    assert "did you mean 'tiny-test'" in capsys.readouterr().err
    assert main(["models", "--download", "tiny-test"]) == 0
    assert "tiny-test: " + str(hf_cache) in capsys.readouterr().err
    assert main(["models", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out)["models"] if r["name"] == "tiny-test")
    assert row["status"] == "cached" and Path(row["path"]).read_bytes() == tiny_files["official"].read_bytes()
    n = len(fake_hub.requests)
    assert main(["models", "--download", "tiny-test"]) == 0 and len(fake_hub.requests) == n  # already cached
    assert main(["models", "--download", "tiny-test", "--force"]) == 0 and len(fake_hub.requests) > n
    set_offline(monkeypatch)
    assert main(["models", "--download", "gem-tiny-gsds"]) == 2
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE=1" in err and "GEM_Tiny_Finetune_GSD-S_pretrained_20xdata_IoU0.770.pth" in err


def test_docs_table_is_the_command_output(hf_cache, capsys):
    """docs/model_zoo.md shows the table of a fresh install; it must not drift from the registry."""
    assert main(["models"]) == 0
    table = capsys.readouterr().out.split("\n\n")[0].strip()
    docs = (Path(__file__).resolve().parents[2] / "docs" / "model_zoo.md").read_text()
    assert table in docs
