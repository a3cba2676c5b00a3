"""Weight-space interpolation (WiSE-FT) of two GEM models: the mixing rule, its refusals, and the tool that writes
a loadable model file."""
from __future__ import annotations

import importlib.util
from collections import OrderedDict

import pytest
import torch

import gemseg
from gemseg.config import get_config
from gemseg.errors import CheckpointError
from gemseg.modeling.build import build_model
from gemseg.modeling.checkpoint import read_checkpoint, save_checkpoint
from gemseg.modeling.weight_space import interpolate_models, interpolate_state_dicts
from tests.conftest import REPO_ROOT

TINY_OPTS = ["INPUT.MIN_SIZE_TEST", "128", "MODEL.MaskDINO.DEC_LAYERS", "2", "MODEL.MaskDINO.NUM_OBJECT_QUERIES",
             "10", "MODEL.MaskDINO.DIM_FEEDFORWARD", "64", "MODEL.MaskDINO.TWO_STAGE", "False"]


def _sd(seed):
    g = torch.Generator().manual_seed(seed)
    return OrderedDict([
        ("w", torch.randn(3, 4, generator=g)),
        ("half", torch.randn(5, generator=g).half()),
        ("count", torch.tensor(seed, dtype=torch.long)),
    ])


def test_endpoints_are_exact_and_the_midpoint_is_the_mean():
    a, b = _sd(1), _sd(2)
    at0 = interpolate_state_dicts(a, b, 0.0)
    at1 = interpolate_state_dicts(a, b, 1.0)
    assert all(torch.equal(at0[k], a[k]) for k in a)
    assert torch.equal(at1["w"], b["w"]) and torch.equal(at1["half"], b["half"])
    mid = interpolate_state_dicts(a, b, 0.25)
    torch.testing.assert_close(mid["w"], 0.75 * a["w"] + 0.25 * b["w"])
    assert mid["half"].dtype == torch.float16 and list(mid) == list(a)
    # integer buffers cannot be mixed: the base's value is kept
    assert int(mid["count"]) == 1 and int(at1["count"]) == 1


def test_refuses_alpha_outside_the_segment_and_other_architectures():
    a, b = _sd(1), _sd(2)
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            interpolate_state_dicts(a, b, alpha)
    c = OrderedDict(b)
    c["w"] = torch.zeros(4, 3)
    c["extra"] = torch.zeros(1)
    del c["half"]
    with pytest.raises(CheckpointError) as e:
        interpolate_state_dicts(a, c, 0.5)
    msg = str(e.value)
    assert "only in the base: half" in msg and "only in the other: extra" in msg and "w: (3, 4)" in msg


@pytest.fixture(scope="module")
def two_tiny_models(tmp_path_factory):
    """Two tiny GEM files of one architecture with different weights (stand-ins for a model and its fine-tune)."""
    d = tmp_path_factory.mktemp("wise")
    cfg = get_config(None, TINY_OPTS)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(cfg).eval()
        p = d / f"m{seed}.safetensors"
        save_checkpoint(model, p, extra={"gemseg.model": f"tiny{seed}", "gemseg.training": f"seed {seed}"})
        paths.append(p)
    return paths


def test_interpolated_model_mixes_every_parameter_and_runs(two_tiny_models):
    p0, p1 = two_tiny_models
    m0, m1 = gemseg.load_model(None, weights=p0), gemseg.load_model(None, weights=p1)
    mid = interpolate_models(p0, p1, 0.5)
    s0, s1 = m0.state_dict(), m1.state_dict()
    for k, v in mid.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (s0[k] + s1[k]) / 2, rtol=0, atol=1e-6)
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        assert torch.equal(interpolate_models(p0, p1, 0.0).infer_scores(x), m0.infer_scores(x))
        scores = mid.infer_scores(x)
    assert torch.isfinite(scores).all()
    assert not torch.equal(scores, m0.infer_scores(x)) and not torch.equal(scores, m1.infer_scores(x))


def _tool():
    spec = importlib.util.spec_from_file_location("interpolate_weights", REPO_ROOT / "tools" / "interpolate_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_writes_a_loadable_self_describing_file_and_never_overwrites(two_tiny_models, tmp_path, capsys):
    p0, p1 = two_tiny_models
    out = tmp_path / "mixed.safetensors"
    tool = _tool()
    argv = ["--base", str(p0), "--other", str(p1), "--alpha", "0.25", "--output", str(out), "--name", "tiny-wise"]
    assert tool.main(argv) == 0
    meta = read_checkpoint(out).metadata
    assert meta["gemseg.model"] == "tiny-wise"
    assert meta["gemseg.interpolation"] == "alpha=0.25; base=tiny0; other=tiny1"
    assert meta["gemseg.training.base"] == "seed 0" and meta["gemseg.training.other"] == "seed 1"
    loaded = gemseg.load_model(None, weights=out)  # the config travels in the file
    expected = interpolate_models(p0, p1, 0.25)
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        torch.testing.assert_close(loaded.infer_scores(x), expected.infer_scores(x))
    before = out.read_bytes()
    assert tool.main(argv[:-2] + ["--name", "other"]) == 1
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert tool.main(argv + ["--force"]) == 0
    # a `gem train` checkpoint (.pth, official layout + config) works as either parent
    pth = tmp_path / "model_final.pth"
    save_checkpoint(gemseg.load_model(None, weights=p1), pth)
    out2 = tmp_path / "from_pth.safetensors"
    assert tool.main(["--base", str(p0), "--other", str(pth), "--alpha", "0.25", "--output", str(out2)]) == 0
    assert read_checkpoint(out2).metadata["gemseg.interpolation"] == "alpha=0.25; base=tiny0; other=model_final.pth"
    with torch.no_grad():
        torch.testing.assert_close(gemseg.load_model(None, weights=out2).infer_scores(x), expected.infer_scores(x))


def test_tool_reports_a_different_architecture_as_an_error(two_tiny_models, tmp_path, capsys):
    p0, _ = two_tiny_models
    torch.manual_seed(2)
    other = tmp_path / "deeper.safetensors"
    save_checkpoint(build_model(get_config(None, TINY_OPTS[:3] + ["3"] + TINY_OPTS[4:])).eval(), other)
    rc = _tool().main(["--base", str(p0), "--other", str(other), "--alpha", "0.5",
                       "--output", str(tmp_path / "x.safetensors")])
    assert rc == 1
    assert "cannot interpolate two different architectures" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
