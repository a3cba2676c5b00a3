import math

import torch

from gemseg.modeling.position_encoding import PositionEmbeddingSine, box_sine_embedding


def _reference(pos, num_feats=128):
    """DINO's gen_sineembed_for_position written out coordinate by coordinate."""
    dim_t = torch.arange(num_feats, dtype=torch.float32)
    dim_t = 10000 ** (2 * (dim_t // 2) / num_feats)

    def one(c):
        e = c[..., None] * 2 * math.pi / dim_t
        return torch.stack((e[..., 0::2].sin(), e[..., 1::2].cos()), dim=-1).flatten(-2)

    parts = [one(pos[..., 1]), one(pos[..., 0])]
    if pos.shape[-1] == 4:
        parts += [one(pos[..., 2]), one(pos[..., 3])]
    return torch.cat(parts, -1)


def test_box_embedding_matches_reference_order():
    boxes = torch.rand(2, 5, 4)
    out = box_sine_embedding(boxes)
    assert out.shape == (2, 5, 512)
    assert torch.allclose(out, _reference(boxes), atol=1e-6)
    # the first feature is sin(2π·y): y comes first
    assert torch.allclose(out[..., 0], torch.sin(2 * math.pi * boxes[..., 1]), atol=1e-6)
    pts = torch.rand(3, 2)
    assert torch.allclose(box_sine_embedding(pts), _reference(pts), atol=1e-6)


def test_2d_sine_embedding_shape_and_range():
    pe = PositionEmbeddingSine(16)(torch.zeros(1, 3, 4, 5))
    assert pe.shape == (1, 32, 4, 5)
    assert pe.abs().max() <= 1.0
    assert not torch.allclose(pe[..., 0, 0], pe[..., 3, 4])
