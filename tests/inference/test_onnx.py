"""ONNX export: onnxruntime reproduces PyTorch (and the official scores) on the parity fixture."""
import numpy as np
import pytest
import torch

import gemseg
from tests.conftest import shared_path

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from gemseg.inference.onnx_export import export_onnx

    folder = shared_path("fixtures", "official-gem-tiny-mini")
    model = gemseg.load_model(folder / "gem_tiny_mini.yaml", weights=folder / "gem_tiny_mini_official.pth")
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "gem_tiny_mini.onnx")
    return folder, model, path


def test_onnxruntime_matches_pytorch_and_official(exported):
    from gemseg.inference.onnx_export import create_session, read_metadata

    folder, model, path = exported
    import onnx

    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert any(n.op_type == "GridSample" for n in proto.graph.node)  # deformable attention exported
    meta = read_metadata(path)
    assert meta["gemseg.img_size"] == "384" and meta["gemseg.random_init"] == "0"
    sess = create_session(path)
    # batch of two different images through the dynamic batch axis
    rgbs = [np.load(folder / f"{n}_input_rgb384.npy") for n in ("matterport", "nyu_mirror")]
    x = torch.from_numpy(np.stack(rgbs)).float()
    got = sess.run(None, {"image": x.numpy()})[0]
    ref = model.infer_scores(x).numpy()
    assert got.shape == (2, 2, 384, 384)
    err = np.abs(got - ref).max()
    assert err <= TOL, f"onnxruntime vs PyTorch: max |Δ| = {err}"
    for i, name in enumerate(("matterport", "nyu_mirror")):
        official = np.load(folder / f"{name}_semseg_384.npy")
        assert np.abs(got[i] - official).max() <= TOL


def test_onnx_backend_predicts_like_torch(exported):
    from gemseg.inference.predictor import GlassSegmentor

    folder, model, path = exported
    seg = GlassSegmentor.from_pretrained(path, device="cpu", batch_size=2)
    assert seg.runner.backend == "onnxruntime" and seg.img_size == 384
    src = folder / "nyu_mirror_source.jpg"
    got = seg.predict(src)
    ref = model.predict(src)
    assert got.mask.shape == (456, 608)
    assert np.abs(got.scores - ref.scores).max() <= TOL
    differ = got.mask != ref.mask
    assert np.all(np.abs(ref.scores[1] - ref.scores[0])[differ] < 2 * TOL)


def test_vit_window_padding_exports_and_matches(tmp_path):
    """ViT window attention pads the token grid (24×24 → 28×28 at 384) with the qkv bias: the exported graph must
    run in ONNX Runtime and agree with PyTorch (an `expand(..., -1)` once exported to an invalid Expand)."""
    import torch.nn as nn

    from gemseg.modeling.backbones.vit import build_vit_b_backbone

    torch.manual_seed(0)
    vit = build_vit_b_backbone(384, embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(1,)).eval()
    with torch.no_grad():
        for blk in vit.blocks:
            blk.attn.qkv.bias.normal_()  # a non-zero bias: padded keys differ from zero tokens

    class Res4(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)["res4"]

    x = torch.randn(1, 3, 384, 384)
    path = tmp_path / "vit.onnx"
    torch.onnx.export(Res4(vit), (x,), str(path), opset_version=17, dynamo=False, input_names=["x"])
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.inference_mode():
        ref = vit(x)["res4"].numpy()
    assert np.abs(got - ref).max() <= 1e-4
