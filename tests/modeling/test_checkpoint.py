"""Checkpoint formats, conversion, strict loading reports and bad inputs."""
import pickle
import re

import numpy as np
import pytest
import torch

import gemseg
from gemseg.config import get_config
from gemseg.errors import CheckpointError
from gemseg.modeling.build import build_model
from gemseg.modeling.checkpoint import (load_checkpoint, official_state_dict, read_checkpoint, save_checkpoint)
from tests.conftest import shared_path

TINY_OPTS = ["INPUT.MIN_SIZE_TEST", "128", "MODEL.MaskDINO.DEC_LAYERS", "2", "MODEL.MaskDINO.NUM_OBJECT_QUERIES",
             "10", "MODEL.MaskDINO.DIM_FEEDFORWARD", "64", "MODEL.MaskDINO.TWO_STAGE", "False"]


def _parse_keys(path):
    keys = {}
    for line in path.read_text().splitlines():
        m = re.match(r"(\S+) \[([\d, ]*)\] (\w+)", line)
        if m:
            keys[m.group(1)] = tuple(int(x) for x in m.group(2).split(",") if x.strip())
    return keys


@pytest.mark.slow
@pytest.mark.parametrize("config, keyfile", [
    ("gem_sam_tiny_bs32_iter1w_steplr.yaml", "official-gem-keys-tiny.txt"),
    ("gem_sam_base_bs16_iter2w_steplr.yaml", "official-gem-keys-base.txt"),
])
def test_full_size_models_have_the_official_keys_and_shapes(config, keyfile):
    official = _parse_keys(shared_path("docs", keyfile))
    model = build_model(get_config(shared_path("fixtures", "official-configs", config)))
    ours = {k: tuple(v.shape) for k, v in official_state_dict(model).items()}
    assert set(ours) == set(official), (sorted(set(ours) ^ set(official))[:10])
    assert ours == official
    if "tiny" in keyfile:
        # unique parameters as documented (aliases of shared modules counted once)
        assert sum(p.numel() for p in model.parameters()) == 21_606_861


@pytest.fixture(scope="module")
def tiny_cfg():
    return get_config(None, TINY_OPTS)


def test_safetensors_roundtrip_carries_config(tmp_path, tiny_cfg):
    torch.manual_seed(0)
    model = build_model(tiny_cfg).eval()
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    loaded = gemseg.load_model(None, weights=path)  # the config comes from the file
    assert loaded.cfg == model.cfg
    x = torch.rand(1, 3, 128, 128) * 255
    assert torch.equal(model.infer_scores(x), loaded.infer_scores(x))


def test_official_pth_with_module_prefix_and_pkl(tmp_path, tiny_cfg):
    torch.manual_seed(1)
    model = build_model(tiny_cfg).eval()
    sd = official_state_dict(model)
    pth = tmp_path / "ddp.pth"
    torch.save({"model": {"module." + k: v.half() for k, v in sd.items()}, "iteration": 7}, pth)
    pkl = tmp_path / "d2.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in sd.items() if "num_batches_tracked" not in k},
                     "__author__": "gemseg-test", "matching_heuristics": True}, f)
    x = torch.rand(1, 3, 128, 128) * 255
    ref = model.infer_scores(x)
    for path in (pth, pkl):
        m2 = build_model(tiny_cfg).eval()
        report = load_checkpoint(m2, path)
        assert report.ok and report.loaded == report.expected - (0 if path == pth else sum(
            "num_batches_tracked" in k for k in m2.state_dict()))
        tol = 5e-2 if path == pth else 1e-6  # the .pth was stored in fp16
        assert (m2.infer_scores(x) - ref).abs().max() < tol
    assert read_checkpoint(pth).metadata["iteration"] == 7


def test_pkl_cannot_execute_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pkl"
    with open(bad, "wb") as f:
        pickle.dump({"model": {"backbone.x": Evil()}}, f)
    with pytest.raises(CheckpointError, match="refusing to unpickle io.open"):
        read_checkpoint(bad)
    assert not marker.exists()
    bad_pth = tmp_path / "evil.pth"
    torch.save({"model": {"backbone.x": torch.zeros(1)}, "payload": Evil()}, bad_pth)
    marker.unlink(missing_ok=True)
    with pytest.raises(CheckpointError):
        read_checkpoint(bad_pth)
    assert not marker.exists()


def test_truncated_empty_missing_and_foreign_files(tmp_path, tiny_cfg):
    model = build_model(tiny_cfg)
    good = tmp_path / "good.pth"
    save_checkpoint(model, good)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a checkpoint"):
        read_checkpoint(trunc)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(empty)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pth")
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1), "fc.bias": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="not a GEM, SAM or MobileSAM checkpoint"):
        read_checkpoint(foreign)


def test_wrong_model_gives_a_readable_strict_report(tmp_path, tiny_cfg):
    model = build_model(tiny_cfg)
    path = tmp_path / "m.pth"
    save_checkpoint(model, path)
    other = build_model(get_config(None, TINY_OPTS[:-4] + ["MODEL.MaskDINO.NUM_OBJECT_QUERIES", "12",
                                                           "MODEL.MaskDINO.DIM_FEEDFORWARD", "64"]))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(other, path)
    msg = str(e.value)
    assert "shape mismatches" in msg and "query_embed.weight checkpoint [10, 4] vs model [12, 4]" in msg
    base_like = build_model(get_config(None, TINY_OPTS + ["MODEL.BACKBONE.NAME", "D2BaseViT"]))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(base_like, path)
    assert "missing in checkpoint" in str(e.value) and "not in model" in str(e.value)
    assert "holds a D2TinyViT backbone but the config builds D2BaseViT" in str(e.value)


def test_alias_keys_are_filled_from_the_canonical_name(tmp_path, tiny_cfg):
    model = build_model(tiny_cfg)
    sd = official_state_dict(model)
    only_canonical = {k: v for k, v in sd.items()
                      if not k.startswith(("sem_seg_head.predictor.bbox_embed.",
                                           "sem_seg_head.predictor.decoder.bbox_embed.",
                                           "sem_seg_head.predictor.decoder.norm."))}
    assert len(only_canonical) < len(sd)
    path = tmp_path / "canon.pth"
    torch.save({"model": only_canonical}, path)
    assert load_checkpoint(build_model(tiny_cfg), path).ok


def _sam_style(backbone_sd, prefix="image_encoder."):
    sd = {prefix + k: v for k, v in backbone_sd.items() if not k.startswith("transpose")}
    sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.zeros(2, 128)
    sd["mask_decoder.iou_token.weight"] = torch.zeros(1, 256)
    return sd


def test_mobile_sam_checkpoint_initialises_the_backbone(tmp_path, tiny_cfg):
    torch.manual_seed(2)
    donor = build_model(tiny_cfg)
    sd = _sam_style(donor.backbone.state_dict())
    sd["image_encoder.norm_head.weight"] = torch.ones(320)  # MobileSAM's classifier, not part of GEM
    sd["image_encoder.head.weight"] = torch.ones(1000, 320)
    path = tmp_path / "mobile_sam.pt"
    torch.save(sd, path)
    model = build_model(tiny_cfg)
    report = load_checkpoint(model, path)
    assert report.kind == "sam" and report.ok
    assert any("classifier" in n for n in report.notes) and any("prompt-encoder" in n for n in report.notes)
    assert report.random_init and all(k.startswith(("sem_seg_head.", "backbone.transpose")) for k in report.random_init)
    for k, v in donor.backbone.state_dict().items():
        if not k.startswith("transpose"):
            assert torch.equal(model.backbone.state_dict()[k], v), k


def test_sam_vit_b_1024_into_smaller_model_interpolates_or_drops(tmp_path):
    cfg_big = get_config(None, TINY_OPTS[2:] + ["INPUT.MIN_SIZE_TEST", "256", "MODEL.BACKBONE.NAME", "D2BaseViT"])
    cfg_small = get_config(None, TINY_OPTS + ["MODEL.BACKBONE.NAME", "D2BaseViT"])
    torch.manual_seed(3)
    big = build_model(cfg_big)
    with torch.no_grad():
        big.backbone.pos_embed.normal_()
    path = tmp_path / "sam_vit_b.pth"
    torch.save(_sam_style(big.backbone.state_dict()), path)
    small = build_model(cfg_small)
    report = load_checkpoint(small, path, pos_embed_policy="interpolate")
    assert report.ok and any("resized" in n for n in report.notes)
    assert small.backbone.pos_embed.shape == (1, 8, 8, 768) and small.backbone.pos_embed.abs().sum() > 0
    small2 = build_model(cfg_small)
    report = load_checkpoint(small2, path, pos_embed_policy="drop")
    assert report.ok and any("dropped" in n for n in report.notes)
    assert small2.backbone.pos_embed.abs().sum() == 0  # official behaviour: stays at its zero init
