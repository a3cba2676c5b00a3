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
