"""Backbones: official key/shape equality, numerical parity (official fixture, Meta's SAM code), pos-embed /
rel-pos adaptation, pyramid shapes, input validation."""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from functools import partial
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gemseg.modeling.backbones import (
    TinyViTBackbone,
    ViTBackbone,
    build_backbone,
    build_tiny_vit_backbone,
    build_vit_b_backbone,
)
from gemseg.modeling.backbones.common import DropPath
from gemseg.modeling.backbones.tiny_vit import attention_bias_index, attention_bias_index_reference
from tests.conftest import FIXTURES, shared_path

PIXEL_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
PIXEL_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
LEVELS = ("res2", "res3", "res4", "res5")
STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}

# Reduced ViT used wherever the full ViT-B is not needed (head_dim 32, one global block).
SMALL_VIT = dict(embed_dim=64, depth=3, num_heads=2, global_attn_indexes=(1,))


def official_backbone_shapes(which: str) -> Dict[str, Tuple[int, ...]]:
    """Parse ``official-gem-keys-<which>.txt`` (``key [shape] dtype`` per line) -> {backbone key: shape}."""
    path = shared_path("docs", f"official-gem-keys-{which}.txt")
    out: Dict[str, Tuple[int, ...]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("backbone."):
            continue
        key, rest = line.split(" ", 1)
        shape_txt = rest[rest.index("[") + 1 : rest.index("]")]
        out[key] = tuple(int(s) for s in shape_txt.split(",") if s.strip())
    assert out, f"no backbone keys parsed from {path}"
    return out


def prefixed_shapes(model: torch.nn.Module) -> Dict[str, Tuple[int, ...]]:
    return {f"backbone.{k}": tuple(v.shape) for k, v in model.state_dict().items()}


def randomize_(model: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """Perturb every floating parameter/buffer (rel_pos, pos_embed, BN stats included) reproducibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=g) * scale
            if name.endswith("running_var"):
                t.copy_(1.0 + noise.abs() * 4)
            else:
                t.add_(noise)


# ----------------------------------------------------------------------------------------------------------------
# 1. state-dict keys and shapes
# ----------------------------------------------------------------------------------------------------------------


def test_tiny_vit_state_dict_equals_official_keys():
    model = build_tiny_vit_backbone(384)
    assert prefixed_shapes(model) == official_backbone_shapes("tiny")
    sd = model.state_dict()
    # BN buffers are part of it; the attention-bias index tables (non-persistent) are not.
    assert "layers.0.blocks.0.conv1.bn.num_batches_tracked" in sd
    assert sd["layers.0.blocks.0.conv1.bn.num_batches_tracked"].dtype == torch.int64
    assert not any("attention_bias_idxs" in k or k.endswith(".ab") for k in sd)
    assert sum(p.numel() for p in model.parameters()) == 6_531_604  # official-gem.md §2.1


def test_vit_b_state_dict_equals_official_keys():
    model = build_vit_b_backbone(384)
    assert prefixed_shapes(model) == official_backbone_shapes("base")
    assert sum(p.numel() for p in model.parameters()) == 87_714_304  # official-gem.md §2.2


def test_vit_b_1024_size_dependent_shapes():
    # Full width/heads (the shapes depend on them) but only 3 blocks to stay cheap.
    model = build_vit_b_backbone(1024, depth=3, global_attn_indexes=(2,))
    sd = model.state_dict()
    assert tuple(sd["pos_embed"].shape) == (1, 64, 64, 768)
    assert tuple(sd["blocks.2.attn.rel_pos_h"].shape) == (127, 64)
    assert tuple(sd["blocks.2.attn.rel_pos_w"].shape) == (127, 64)
    assert tuple(sd["blocks.0.attn.rel_pos_h"].shape) == (27, 64)  # window blocks: 2*14-1


def test_tiny_vit_1024_has_same_keys_and_shapes_as_384():
    # TinyViT's weights do not depend on the input size (bias tables depend on the window) -> MobileSAM loads.
    assert prefixed_shapes(build_tiny_vit_backbone(1024, depths=(1, 1, 1, 1))) == prefixed_shapes(
        build_tiny_vit_backbone(384, depths=(1, 1, 1, 1))
    )


@pytest.mark.parametrize("window", [(7, 7), (14, 14), (3, 5), (1, 1)])
def test_attention_bias_index_equals_official_first_seen_numbering(window):
    fast, n_fast = attention_bias_index(window)
    ref, n_ref = attention_bias_index_reference(window)
    assert n_fast == n_ref == window[0] * window[1]
    assert torch.equal(fast, ref)


# ----------------------------------------------------------------------------------------------------------------
# 2. TinyViT parity with the official implementation (fixture produced by the official GEM code)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_fixture():
    ckpt = shared_path("fixtures", "official-gem-tiny-mini", "gem_tiny_mini_official.pth")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    sd = {k[len("backbone.") :]: (v.float() if v.is_floating_point() else v) for k, v in state.items()
          if k.startswith("backbone.")}
    rgb = np.load(shared_path("fixtures", "official-gem-tiny-mini", "matterport_input_rgb384.npy"))
    x = ((torch.from_numpy(rgb).float() - PIXEL_MEAN) / PIXEL_STD).unsqueeze(0)
    inter = np.load(FIXTURES / "official-gem-tiny-mini" / "matterport_intermediates.npz")
    refs = {k: inter[f"backbone.{k}"] for k in LEVELS}
    return sd, x, refs


def test_tiny_vit_matches_official_intermediates(tiny_fixture):
    sd, x, refs = tiny_fixture
    model = build_tiny_vit_backbone(384)
    model.eval()  # eval *before* loading: the official code's stale-bias bug must not exist here
    model.load_state_dict(sd, strict=True)
    with torch.inference_mode():
        out = model(x)
    errors = {}
    for k in LEVELS:
        ref16 = refs[k]
        ref = torch.from_numpy(ref16.astype(np.float32))
        assert out[k].shape == ref.shape
        diff = (out[k] - ref).abs()
        # The references are float16 roundings of float32 values: allow half an fp16 ulp of each reference value
        # plus a float32-level slack (a real mismatch shows up as errors of order 1e-2..1).
        half_ulp = torch.from_numpy(np.spacing(np.abs(ref16)).astype(np.float32)) / 2
        excess = (diff - half_ulp).max().item()
        errors[k] = (diff.max().item(), excess)
        assert excess <= 1e-4, f"{k}: max |diff| {diff.max().item():.3g} exceeds fp16 rounding by {excess:.3g}"
        assert diff.max().item() <= 2e-3 * ref.abs().max().item()
    print("TinyViT vs official (max |diff|, excess over fp16 half-ulp):", errors)


def test_tiny_vit_attention_bias_never_cached(tiny_fixture):
    sd, x, _ = tiny_fixture
    model = build_tiny_vit_backbone(384).eval()
    model.load_state_dict(sd)
    with torch.inference_mode():
        before = model.forward_features(x)
        # Change the biases in place after eval(), the way a late load_state_dict does.
        for layer in model.layers[1:]:
            for blk in layer.blocks:
                blk.attn.attention_biases.mul_(3.0)
        after = model.forward_features(x)
    fresh = build_tiny_vit_backbone(384).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.inference_mode():
        expected = fresh.forward_features(x)
    assert (before - after).abs().max() > 1e-3
    torch.testing.assert_close(after, expected, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------------
# 3. ViT parity with Meta's segment-anything code
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sam_image_encoder():
    """Meta's ``segment_anything/modeling/image_encoder.py`` loaded without the package ``__init__`` files (they
    import torchvision, which gemseg must not need). A private stub package makes the relative ``.common`` import
    resolve inside the real ``modeling`` folder."""
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("segment-anything not installed (pip install segment-anything==1.0, a test extra)")
    modeling_dir = Path(list(spec.submodule_search_locations)[0]) / "modeling"
    name = "_gemseg_test_sam_modeling"
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(modeling_dir)]
    saved = {k: sys.modules.get(k) for k in (name, f"{name}.common", f"{name}.image_encoder")}
    sys.modules[name] = pkg
    try:
        module = importlib.import_module(f"{name}.image_encoder")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


def make_sam_pair(ie, img_size: int, embed_dim: int, depth: int, num_heads: int, global_idx, seed: int):
    ref = ie.ImageEncoderViT(
        img_size=img_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=4.0, out_chans=256,
        qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=14,
        global_attn_indexes=tuple(global_idx),
    ).eval()
    randomize_(ref, seed)
    ours = build_vit_b_backbone(
        img_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads, global_attn_indexes=global_idx
    ).eval()
    result = ours.load_state_dict(ref.state_dict(), strict=False)
    # Only the pyramid's deconvolutions are GEM additions; every SAM key must load.
    assert result.unexpected_keys == []
    assert all(k.startswith(("transpose1.", "transpose2.")) for k in result.missing_keys)
    return ref, ours


def compare_with_sam(ref, ours, img_size: int, seed: int) -> float:
    x = torch.randn(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        expected = ref(x)
        got = ours(x)["res4"]  # res4 is the neck output itself
    assert got.shape == expected.shape
    return (got - expected).abs().max().item()


@pytest.mark.parametrize("img_size,global_idx", [(384, (1,)), (448, (0, 2)), (1024, (1,))])
def test_small_vit_matches_segment_anything(sam_image_encoder, img_size, global_idx):
    ref, ours = make_sam_pair(sam_image_encoder, img_size, 64, 3, 2, global_idx, seed=img_size)
    assert ref.blocks[global_idx[0]].attn.rel_pos_h.abs().sum() > 0  # rel-pos really exercised
    err = compare_with_sam(ref, ours, img_size, seed=1)
    print(f"small ViT vs segment_anything at {img_size}: max |diff| {err:.3g}")
    assert err <= 1e-4


def test_vit_b_matches_segment_anything_384(sam_image_encoder):
    ref, ours = make_sam_pair(sam_image_encoder, 384, 768, 12, 12, (2, 5, 8, 11), seed=7)
    err = compare_with_sam(ref, ours, 384, seed=2)
    print(f"ViT-B vs segment_anything at 384: max |diff| {err:.3g}")
    assert err <= 1e-4


def test_interpolated_rel_pos_equals_sam_runtime_interpolation(sam_image_encoder):
    """SAM's get_rel_pos resamples a too-long table at run time; adapting it at load time must give the same."""
    ie = sam_image_encoder
    ref, ours = make_sam_pair(ie, 384, 64, 3, 2, (1,), seed=5)
    g = torch.Generator().manual_seed(9)
    long_h, long_w = torch.randn(127, 32, generator=g), torch.randn(127, 32, generator=g)
    ref.blocks[1].attn.rel_pos_h = torch.nn.Parameter(long_h)  # 1024-sized tables in a 384 model
    ref.blocks[1].attn.rel_pos_w = torch.nn.Parameter(long_w)
    sd = ref.state_dict()
    ours.load_state_dict(ours.adapt_state_dict(sd, "interpolate"), strict=False)
    assert compare_with_sam(ref, ours, 384, seed=4) <= 1e-4


# ----------------------------------------------------------------------------------------------------------------
# 4. adapt_state_dict
# ----------------------------------------------------------------------------------------------------------------


def test_adapt_state_dict_interpolate_1024_to_384():
    src = build_vit_b_backbone(1024, **SMALL_VIT)
    randomize_(src, seed=3)
    sd = src.state_dict()
    dst = build_vit_b_backbone(384, **SMALL_VIT)
    adapted = dst.adapt_state_dict(sd, "interpolate")
    dst.load_state_dict(adapted, strict=True)
    expected_pos = F.interpolate(sd["pos_embed"].permute(0, 3, 1, 2), size=(24, 24), mode="bicubic",
                                 align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(adapted["pos_embed"], expected_pos, rtol=0, atol=1e-6)
    for axis in ("h", "w"):
        key = f"blocks.1.attn.rel_pos_{axis}"  # global block
        assert adapted[key].shape == (47, 32)
        expected = F.interpolate(sd[key].t()[None], size=47, mode="linear", align_corners=False)[0].t()
        torch.testing.assert_close(adapted[key], expected, rtol=0, atol=1e-6)
        assert adapted[f"blocks.0.attn.rel_pos_{axis}"] is sd[f"blocks.0.attn.rel_pos_{axis}"]  # fitting: untouched
    assert adapted["blocks.0.attn.qkv.weight"] is sd["blocks.0.attn.qkv.weight"]
    # fp16 checkpoints stay fp16 (interpolation is done in float32 internally)
    half = dst.adapt_state_dict({k: v.half() for k, v in sd.items()}, "interpolate")
    assert half["pos_embed"].dtype == torch.float16
    torch.testing.assert_close(half["pos_embed"].float(), expected_pos, rtol=0, atol=2e-3)


def test_adapt_state_dict_drop_removes_exactly_the_mismatching_keys():
    sd = build_vit_b_backbone(1024, **SMALL_VIT).state_dict()
    sd["extra.unknown"] = torch.zeros(1)  # keys the model lacks are passed through for the caller
    dst = build_vit_b_backbone(384, **SMALL_VIT)
    adapted = dst.adapt_state_dict(sd, "drop")
    assert set(sd) - set(adapted) == {"pos_embed", "blocks.1.attn.rel_pos_h", "blocks.1.attn.rel_pos_w"}
    assert "extra.unknown" in adapted
    del adapted["extra.unknown"]
    result = dst.load_state_dict(adapted, strict=False)
    assert set(result.missing_keys) == {"pos_embed", "blocks.1.attn.rel_pos_h", "blocks.1.attn.rel_pos_w"}
    assert dst.pos_embed.abs().sum() == 0  # keeps its zero init (official behaviour)


def test_adapt_state_dict_errors_and_noop():
    dst = build_vit_b_backbone(384, **SMALL_VIT)
    sd = dst.state_dict()
    same = dst.adapt_state_dict(sd)
    assert same.keys() == sd.keys() and all(same[k] is sd[k] for k in sd)
    with pytest.raises(ValueError, match="policy"):
        dst.adapt_state_dict(sd, "nearest")
    # A size-independent mismatch (another architecture) is left for the caller's strict load to report.
    bad = dict(sd, **{"blocks.0.attn.qkv.weight": torch.zeros(3, 3)})
    assert dst.adapt_state_dict(bad, "interpolate")["blocks.0.attn.qkv.weight"] is bad["blocks.0.attn.qkv.weight"]
    with pytest.raises(RuntimeError, match="size mismatch"):
        dst.load_state_dict(dst.adapt_state_dict(bad, "interpolate"))
    assert "blocks.0.attn.qkv.weight" not in dst.adapt_state_dict(bad, "drop")


def test_tiny_vit_adapt_state_dict_mobilesam_style():
    model = build_tiny_vit_backbone(256, depths=(1, 1, 1, 1))
    sd = build_tiny_vit_backbone(1024, depths=(1, 1, 1, 1)).state_dict()
    # MobileSAM's classifier keys have no counterpart: passed through, the caller drops them.
    sd["norm_head.weight"], sd["head.weight"] = torch.ones(320), torch.ones(1000, 320)
    adapted = model.adapt_state_dict(sd)
    assert adapted.keys() == sd.keys() and all(adapted[k] is sd[k] for k in sd)
    model.load_state_dict({k: v for k, v in adapted.items() if not k.startswith(("norm_head.", "head."))})
    bad = dict(sd, **{"neck.0.weight": torch.zeros(256, 448, 1, 1)})  # e.g. TinyViT-11M weights
    assert model.adapt_state_dict(bad, "interpolate")["neck.0.weight"] is bad["neck.0.weight"]
    dropped = model.adapt_state_dict(bad, "drop")
    assert set(bad) - set(dropped) == {"neck.0.weight"}
    with pytest.raises(ValueError, match="policy"):
        model.adapt_state_dict(sd, "bicubic")


# ----------------------------------------------------------------------------------------------------------------
# 5. pyramid shapes, attributes, input validation, builders
# ----------------------------------------------------------------------------------------------------------------


def check_pyramid(model, size: int) -> None:
    assert model.img_size == size and model.size_divisibility == 32 and model.out_channels == 256
    assert model.output_strides == STRIDES
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        out = model.eval()(x)
    assert list(out) == list(LEVELS)
    for k, s in STRIDES.items():
        assert out[k].shape == (2, 256, size // s, size // s), k
        assert torch.isfinite(out[k]).all()
    # batch elements are processed independently (no cross-talk through window reshapes)
    with torch.inference_mode():
        single = model(x[1:])
    for k in LEVELS:
        torch.testing.assert_close(single[k][0], out[k][1], rtol=1e-4, atol=1e-4)
    for bad in (torch.randn(1, 3, size, size + 32), torch.randn(1, 3, size - 32, size - 32),
                torch.randn(1, 4, size, size), torch.randn(3, size, size)):
        with pytest.raises(ValueError, match="img_size"):
            model(bad)


@pytest.mark.parametrize("size", [384, 256])
def test_tiny_vit_pyramid(size):
    model = build_tiny_vit_backbone(size, depths=(1, 1, 2, 1))
    randomize_(model, seed=size)
    check_pyramid(model, size)


def test_tiny_vit_pyramid_full_config_1024_grid():
    model = build_tiny_vit_backbone(1024, depths=(1, 1, 1, 1))
    assert model.grid_size == 64
    assert [layer.input_resolution for layer in model.layers] == [(256, 256), (128, 128), (64, 64), (64, 64)]


@pytest.mark.parametrize("size", [384, 448])
def test_vit_pyramid(size):
    model = build_vit_b_backbone(size, **SMALL_VIT)
    randomize_(model, seed=size)
    check_pyramid(model, size)


def test_build_backbone_by_official_name():
    tiny = build_backbone("D2TinyViT", 256, depths=(1, 1, 1, 1))
    assert isinstance(tiny, TinyViTBackbone) and tiny.img_size == 256
    base = build_backbone("D2BaseViT", 448, **SMALL_VIT)
    assert isinstance(base, ViTBackbone) and tuple(base.pos_embed.shape) == (1, 28, 28, 64)
    with pytest.raises(ValueError, match="D2BaseViT"):
        build_backbone("D2SwinTransformer", 384)
    for bad in (300, 0, -32, 384.0):
        with pytest.raises(ValueError, match="multiple of 32"):
            build_tiny_vit_backbone(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="multiple of 32"):
            build_vit_b_backbone(bad, **SMALL_VIT)  # type: ignore[arg-type]


def test_drop_path_rates_and_train_mode():
    model = build_tiny_vit_backbone(64, drop_path_rate=0.1, depths=(2, 1, 1, 1))
    rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    # linearly spaced over all 5 blocks, first one 0 (-> Identity)
    assert rates == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert build_vit_b_backbone(64, **SMALL_VIT).blocks[0].drop_path.__class__ is torch.nn.Identity
    dp = DropPath(0.5).train()
    y = dp(torch.ones(1000, 4))
    assert set(torch.unique(y).tolist()) <= {0.0, 2.0} and 300 < int((y[:, 0] > 0).sum()) < 700
    assert torch.equal(dp.eval()(torch.ones(3, 2)), torch.ones(3, 2))


def test_gradients_reach_attention_biases_and_rel_pos():
    tiny = build_tiny_vit_backbone(64, depths=(1, 1, 1, 1)).train()
    out = tiny(torch.randn(2, 3, 64, 64))
    sum(v.square().mean() for v in out.values()).backward()
    assert tiny.layers[1].blocks[0].attn.attention_biases.grad.abs().sum() > 0
    assert tiny.transpose1[0].weight.grad.abs().sum() > 0
    vit = build_vit_b_backbone(64, **SMALL_VIT).train()
    out = vit(torch.randn(2, 3, 64, 64))
    sum(v.square().mean() for v in out.values()).backward()
    assert vit.blocks[1].attn.rel_pos_h.grad.abs().sum() > 0
    assert vit.blocks[0].attn.rel_pos_w.grad.abs().sum() > 0
    assert vit.pos_embed.grad.abs().sum() > 0
