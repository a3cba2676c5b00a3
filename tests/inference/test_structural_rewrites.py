"""Exact structural rewrites: GEM-Lite's res2 fold and GEM-Tiny/Base's pyramid transposed convs."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from gemseg.config import get_config
from gemseg.inference.optimize import (NormalizedProjection, can_fold_lateral_layernorm, fold_lateral_layernorm,
                                       optimize_for_inference)
from gemseg.modeling.backbones.pyramid import LayerNorm2d
from gemseg.modeling.build import build_model
from tests.conftest import REPO_ROOT

LITE_CONFIG = REPO_ROOT / "src" / "gemseg" / "configs" / "gem_lite_effnet.yaml"
SMALL_LITE = ["INPUT.MIN_SIZE_TEST", "128", "MODEL.MaskDINO.DEC_LAYERS", "1", "MODEL.MaskDINO.NUM_OBJECT_QUERIES",
              "10", "MODEL.MaskDINO.DIM_FEEDFORWARD", "64", "MODEL.MaskDINO.DN_NUM", "8"]


@pytest.fixture(scope="module")
def lite():
    torch.manual_seed(0)
    model = build_model(get_config(LITE_CONFIG, SMALL_LITE)).eval()
    with torch.no_grad():  # non-trivial LayerNorm affine, so a wrong fold of gamma/beta would show
        norm = model.backbone.lateral["res2"][1]
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return model


def test_projection_equals_the_three_layers_in_float64():
    torch.manual_seed(1)
    conv = nn.Conv2d(24, 64, 1, bias=False).double()
    norm = LayerNorm2d(64).double()
    head = nn.Conv2d(64, 32, 1).double()
    with torch.no_grad():
        norm.weight.uniform_(-2, 2)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 24, 9, 7, dtype=torch.float64) * 3 + 0.5
    ref = head(norm(conv(x)))
    folded = NormalizedProjection(conv, norm, head).double()
    assert folded(x).shape == ref.shape == (2, 32, 9, 7)
    torch.testing.assert_close(folded(x), ref, rtol=1e-10, atol=1e-10)


def test_fold_keeps_the_scores_and_changes_the_structure(lite):
    folded = copy.deepcopy(lite)
    assert can_fold_lateral_layernorm(folded)
    assert fold_lateral_layernorm(folded) == 3  # res2 -> mask_features, res3/res4 -> input_proj
    decoder = folded.sem_seg_head.pixel_decoder
    for name in ("res2", "res3", "res4"):
        assert isinstance(folded.backbone.lateral[name], nn.Identity)
    assert isinstance(decoder.mask_features, NormalizedProjection)
    assert isinstance(decoder.input_proj[1][0], NormalizedProjection)  # res4 (the list runs res5, res4, res3)
    assert isinstance(decoder.input_proj[2][0], NormalizedProjection)
    assert isinstance(decoder.input_proj[2][1], nn.GroupNorm)  # the GroupNorm after it stays
    # res5's tap has 320 channels: c·c + c·out > c·256 + 256·out, folding would cost more than it saves
    assert isinstance(folded.backbone.lateral["res5"], nn.Sequential)
    assert type(decoder.input_proj[0][0]) is nn.Conv2d
    assert not can_fold_lateral_layernorm(folded)  # a second call finds nothing left to fold
    assert fold_lateral_layernorm(folded) == 0
    torch.manual_seed(2)
    x = torch.rand(2, 3, 128, 128) * 255
    ref, got = lite.infer_scores(x), folded.infer_scores(x)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_optimize_for_inference_applies_it_and_can_skip_it(lite):
    assert optimize_for_inference(lite).folded_lateral_norm == 3
    kept = optimize_for_inference(lite, fold_lateral_norm=False)
    assert not hasattr(kept, "folded_lateral_norm")
    assert isinstance(kept.sem_seg_head.pixel_decoder.mask_features, nn.Conv2d)
    assert isinstance(lite.sem_seg_head.pixel_decoder.mask_features, nn.Conv2d)  # the original is untouched


def test_models_without_the_path_are_left_alone():
    from tests.inference.tiny import tiny_model

    model = copy.deepcopy(tiny_model()).eval()  # TinyViT + simple pyramid: res2 is a transposed conv
    assert not can_fold_lateral_layernorm(model)
    assert fold_lateral_layernorm(model) == 0


def test_fold_needs_eval_mode(lite):
    model = copy.deepcopy(lite).train()
    with pytest.raises(ValueError, match="eval mode"):
        fold_lateral_layernorm(model)


def test_onnx_export_folds_and_matches_the_unfolded_model(lite, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from gemseg.inference.onnx_export import create_session, export_onnx, read_metadata

    folded_path = export_onnx(lite, tmp_path / "folded.onnx")
    plain_path = export_onnx(lite, tmp_path / "plain.onnx", exact_rewrites=False)
    assert read_metadata(folded_path)["gemseg.rewrites"] == "lateral-layernorm-fold"
    assert read_metadata(plain_path)["gemseg.rewrites"] == "none"
    assert isinstance(lite.sem_seg_head.pixel_decoder.mask_features, nn.Conv2d)  # export worked on a copy
    x = (np.random.default_rng(3).random((1, 3, 128, 128)) * 255).astype(np.float32)
    a = create_session(folded_path, threads=1).run(None, {"image": x})[0]
    b = create_session(plain_path, threads=1).run(None, {"image": x})[0]
    ref = lite.infer_scores(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(a, ref, atol=1e-4)
    np.testing.assert_allclose(b, ref, atol=1e-4)


# -- GEM-Tiny/Base: the simple pyramid's transposed convs ---------------------------------------------------------
def test_pixel_shuffle_deconv_and_composition_equal_the_originals_in_float64():
    from gemseg.inference.optimize import PixelShuffleConvTranspose, compose_deconv_conv1x1

    torch.manual_seed(4)
    deconv = nn.ConvTranspose2d(8, 6, 2, stride=2).double()
    head = nn.Conv2d(6, 5, 1).double()
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    ref = deconv(x)
    got = PixelShuffleConvTranspose(deconv)(x)
    assert got.shape == ref.shape == (2, 6, 10, 14)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(compose_deconv_conv1x1(deconv, head)(x), head(ref), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="kernel_size=2, stride=2"):
        PixelShuffleConvTranspose(nn.ConvTranspose2d(8, 6, 3, stride=2))


def test_pyramid_fold_keeps_the_scores():
    from gemseg.inference.optimize import (PixelShuffleConvTranspose, fold_pyramid_convtranspose,
                                           has_pyramid_deconvs)
    from tests.inference.tiny import tiny_model

    ref_model = tiny_model().eval()
    model = copy.deepcopy(ref_model)
    assert has_pyramid_deconvs(model)
    assert fold_pyramid_convtranspose(model) == 3  # transpose1.0, transpose1.3 (composed), transpose2.0
    assert isinstance(model.sem_seg_head.pixel_decoder.mask_features, nn.Identity)
    assert isinstance(model.backbone.transpose1[3], PixelShuffleConvTranspose)
    assert not has_pyramid_deconvs(model) and fold_pyramid_convtranspose(model) == 0
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * 255
    torch.testing.assert_close(model.infer_scores(x), ref_model.infer_scores(x), rtol=0, atol=1e-4)


def test_lite_has_no_pyramid(lite):
    from gemseg.inference.optimize import fold_pyramid_convtranspose, structural_rewrites

    assert fold_pyramid_convtranspose(copy.deepcopy(lite)) == 0
    assert structural_rewrites(lite)[1] == ["lateral-layernorm-fold"]


def test_tiny_export_records_the_pyramid_rewrite(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from gemseg.inference.onnx_export import create_session, export_onnx, read_metadata
    from tests.inference.tiny import tiny_model

    model = tiny_model().eval()
    path = export_onnx(model, tmp_path / "tiny.onnx")
    assert read_metadata(path)["gemseg.rewrites"] == "pyramid-deconv-fold"
    assert isinstance(model.sem_seg_head.pixel_decoder.mask_features, nn.Conv2d)
    x = (np.random.default_rng(6).random((1, 3, 64, 64)) * 255).astype(np.float32)
    got = create_session(path, threads=1).run(None, {"image": x})[0]
    np.testing.assert_allclose(got, model.infer_scores(torch.from_numpy(x)).numpy(), atol=1e-3)


def test_a_lateral_read_twice_is_not_folded():
    """Encoder inputs res3, res4 and 3 levels: the extra level is made from res4's lateral output too, so res4 has
    two readers and must keep its lateral; res3 and res2 still fold."""
    from gemseg.inference.optimize import _lateral_fold_sites

    torch.manual_seed(7)
    opts = SMALL_LITE + ["MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES", "['res3', 'res4']"]
    model = build_model(get_config(LITE_CONFIG, opts)).eval()
    assert sorted(name for name, _, _ in _lateral_fold_sites(model)) == ["res2", "res3"]
    folded = copy.deepcopy(model)
    assert fold_lateral_layernorm(folded) == 2
    assert isinstance(folded.backbone.lateral["res4"], nn.Sequential)
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(8)) * 255
    torch.testing.assert_close(folded.infer_scores(x), model.infer_scores(x), rtol=0, atol=1e-5)
