"""GlassSegmentor: batching = one-by-one = model.predict, TTA, threshold, BN folding, video, devices, names."""
import numpy as np
import pytest
import torch

from gemseg.errors import GemsegError
from gemseg.inference.devices import autocast_context, resolve_device, resolve_precision
from gemseg.inference.optimize import fold_batchnorm, optimize_for_inference
from gemseg.inference.predictor import GlassSegmentor, available_models, resolve_model_name
from gemseg.io.images import read_image
from tests.inference.tiny import photo, tiny_model, tiny_weights

EXAMPLE = "src/gemseg/assets/examples/glass_room.jpg"


@pytest.fixture(scope="module")
def images():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    return [photo(200, 100, seed=3), read_image(root / EXAMPLE), photo(64, 64, seed=7), photo(31, 257, seed=2)]


@pytest.fixture(scope="module")
def seg():
    return GlassSegmentor(tiny_model(), device="cpu", batch_size=4)


def test_batched_equals_one_by_one_equals_model_predict(seg, images):
    model = tiny_model()
    batched = seg.predict(images)  # one network call with 4 images of different sizes
    assert len(batched) == 4
    assert any(0.05 < p.mask.mean() < 0.95 for p in batched)  # masks are not trivially full/empty
    for img, p in zip(images, batched):
        ref = model.predict(img)  # the official single-image path
        assert p.scores.shape == (2,) + img.shape[:2] and p.mask.shape == img.shape[:2]
        assert p.scores.dtype == np.float32 and p.probability.dtype == np.float32 and p.mask.dtype == bool
        np.testing.assert_allclose(p.scores, ref.scores, atol=1e-4, rtol=0)
        assert np.array_equal(p.mask, ref.mask)
        single = seg.predict(img)
        assert np.array_equal(single.mask, p.mask)


def test_predict_accepts_paths_pil_and_lists(seg, tmp_path):
    from PIL import Image

    img = photo(50, 70, seed=4)
    Image.fromarray(img).save(tmp_path / "a.png")
    a = seg.predict(tmp_path / "a.png")
    b = seg.predict(Image.fromarray(img))
    c = seg.predict(str(tmp_path / "a.png"))
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.scores, c.scores)
    assert isinstance(seg.predict([img, img]), list)


def test_flip_tta_is_flip_equivariant_and_averages(images):
    model = tiny_model()
    plain = GlassSegmentor(model, device="cpu")
    tta = GlassSegmentor(model, device="cpu", tta=True)
    img = images[0]
    p = tta.predict(img)
    q = tta.predict(np.ascontiguousarray(img[:, ::-1]))
    np.testing.assert_allclose(q.scores, p.scores[:, :, ::-1], atol=1e-4)
    # the TTA scores are the mean of the plain scores of the image and the mirrored scores of its mirror
    s1 = plain.predict(img).scores
    s2 = plain.predict(np.ascontiguousarray(img[:, ::-1])).scores[:, :, ::-1]
    np.testing.assert_allclose(p.scores, (s1 + s2) / 2, atol=1e-4)
    assert not np.allclose(s1, s2, atol=1e-3)  # the model is not flip-invariant by itself: the test means something


def test_threshold_on_probability(images):
    model = tiny_model()
    p = GlassSegmentor(model, device="cpu", threshold=0.8).predict(images[1])
    assert np.array_equal(p.mask, p.probability > 0.8)
    default = GlassSegmentor(model, device="cpu").predict(images[1])
    assert not np.array_equal(p.mask, default.mask)
    with pytest.raises(GemsegError):
        GlassSegmentor(model, device="cpu", threshold=1.5)


def test_batchnorm_folding_is_exact():
    model = tiny_model()
    fast = optimize_for_inference(model)
    assert fast is not model and fast.folded_batchnorms > 10
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.from_numpy(photo(64, 64, seed=9).transpose(2, 0, 1)).float()[None]
    torch.testing.assert_close(fast.infer_scores(x), model.infer_scores(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError):
        fold_batchnorm(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)).train())


def test_from_pretrained_safetensors_and_size(tmp_path, images):
    w = tiny_weights(tmp_path)
    seg = GlassSegmentor.from_pretrained(w, device="cpu")
    assert seg.img_size == 64 and not seg.random_init and seg.model.folded_batchnorms > 0
    ref = tiny_model().predict(images[0])
    np.testing.assert_allclose(seg.predict(images[0]).scores, ref.scores, atol=1e-4)
    seg96 = GlassSegmentor.from_pretrained(w, device="cpu", size=96)
    assert seg96.img_size == 96 and seg96.predict(images[0]).mask.shape == images[0].shape[:2]


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(GemsegError, match="available models"):
        GlassSegmentor.from_pretrained("no_such_model_name")
    with pytest.raises(GemsegError, match="not found"):
        GlassSegmentor.from_pretrained(str(tmp_path / "missing.pth"))
    assert GlassSegmentor.from_pretrained(None, device="cpu").model_name == "gem-lite-synth"  # the default
    with pytest.raises(GemsegError, match="available models"):
        resolve_model_name("gem-nothing")
    assert isinstance(available_models(), list)


def test_devices_and_precision():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(GemsegError, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(GemsegError):
        resolve_device("tpu")
    cpu = torch.device("cpu")
    assert resolve_precision("half", torch.device("cuda")) == "fp16"
    with pytest.raises(GemsegError, match="CPU"):
        resolve_precision("fp16", cpu)
    with pytest.raises(GemsegError):
        resolve_precision("int4", cpu)
    with autocast_context("bf16", cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_bf16_on_cpu_runs_and_stays_close(images):
    model = tiny_model()
    p = GlassSegmentor(model, device="cpu", precision="bf16").predict(images[0])
    ref = model.predict(images[0])
    assert p.scores.dtype == np.float32
    assert np.abs(p.probability - ref.probability).mean() < 0.05


def test_predict_video_matches_frames(tmp_path):
    from gemseg.io.video import VideoWriter, iter_frames

    path = tmp_path / "clip.avi"
    with VideoWriter(path, fps=10) as vw:
        for i in range(10):
            vw.write(photo(48, 80, seed=i))
    assert path.exists() and not list(tmp_path.glob(".*"))
    seg = GlassSegmentor(tiny_model(), device="cpu", batch_size=3)
    frames = list(seg.predict_video(path))
    assert [f.index for f in frames] == list(range(10))
    decoded = [rgb for _, rgb in iter_frames(path)]
    for f, rgb in zip(frames, decoded):
        assert f.prediction.mask.shape == (48, 80)
        assert np.array_equal(f.image, rgb)
        np.testing.assert_allclose(f.prediction.scores, seg.predict(rgb).scores, atol=1e-4)
    assert [f.index for f in seg.predict_video(path, every=3, max_frames=3)] == [0, 3, 6]


def test_video_writer_is_atomic(tmp_path):
    from gemseg.io.video import VideoWriter

    target = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(target, fps=5) as vw:
            vw.write(photo(32, 32))
            raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape,out", [((1, 10, 16, 16), (64, 64)), ((2, 7, 24, 24), (96, 96)),
                                       ((1, 5, 16, 16), (40, 40))])
def test_blocked_semantic_scores_equal_reference(shape, out):
    from gemseg.inference.optimize import semantic_scores_blocked
    from gemseg.modeling.gem import semantic_scores

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(shape[0], shape[1], 3, generator=g)
    masks = torch.randn(*shape, generator=g) * 4
    ref = semantic_scores(logits, masks, out)
    for block in (1, 3000, 1 << 22):  # 1 row per block .. all rows in one block
        got = semantic_scores_blocked(logits, masks, out, block_bytes=block)
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)
