"""The optimised PyTorch path (GlassSegmentor defaults) still reproduces the official scores on the parity fixture."""
import numpy as np
import torch
import pytest

from tests.conftest import shared_path

TOL = 1e-3


@pytest.mark.parametrize("variant", ["official-gem-tiny-mini", "official-gem-tiny-mini-oldvariant"])
def test_optimised_segmentor_matches_official(variant):
    from gemseg.inference.predictor import GlassSegmentor

    base = shared_path("fixtures", "official-gem-tiny-mini")
    folder = shared_path("fixtures", variant)
    weights = next(folder.glob("*.pth"))
    seg = GlassSegmentor.from_pretrained(weights, config=base / "gem_tiny_mini.yaml", device="cpu", batch_size=2)
    assert seg.model.folded_batchnorms > 0 and seg.model.blocked_semantic and seg.model.channels_last
    assert seg.model.backbone.patch_embed.seq[0].weight.is_contiguous(memory_format=torch.channels_last)
    ref384 = [np.load(folder / f"{n}_semseg_384.npy") for n in ("matterport", "nyu_mirror")]
    rgbs = [np.load(base / f"{n}_input_rgb384.npy").transpose(1, 2, 0) for n in ("matterport", "nyu_mirror")]
    for pred, ref in zip(seg.predict(rgbs), ref384):  # one batch of two, already at the model size
        assert np.abs(pred.scores - ref).max() <= TOL
    orig = np.load(folder / "nyu_mirror_semseg_orig.npy")
    pred = seg.predict(base / "nyu_mirror_source.jpg")  # cv2 resize, resize back to 456×608
    assert pred.scores.shape == orig.shape
    assert np.abs(pred.scores - orig).max() <= TOL
