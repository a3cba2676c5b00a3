"""Full-size ViT-B at 1024 against Meta's segment-anything code (heavy: ~1 min on 2 CPU cores, marked slow).

The reduced-width 1024 comparison in ``test_backbones.py`` covers the same code paths quickly; this one checks the
real SAM ViT-B configuration (64x64 grid, 127-row global rel-pos tables) end to end.
"""
from __future__ import annotations

import pytest

from tests.modeling.test_backbones import compare_with_sam, make_sam_pair, sam_image_encoder  # noqa: F401


@pytest.mark.slow
def test_vit_b_matches_segment_anything_1024(sam_image_encoder):  # noqa: F811
    ref, ours = make_sam_pair(sam_image_encoder, 1024, 768, 12, 12, (2, 5, 8, 11), seed=11)
    assert tuple(ours.blocks[2].attn.rel_pos_h.shape) == (127, 64)
    err = compare_with_sam(ref, ours, 1024, seed=3)
    print(f"ViT-B vs segment_anything at 1024: max |diff| {err:.3g}")
    assert err <= 1e-4
