"""Pure-PyTorch deformable attention against a naive reference with explicit bilinear sampling loops."""
import math

import torch

from gemseg.modeling.ms_deform_attn import MSDeformAttn, ms_deform_attn_core


def _bilinear(v, x, y):
    """Sample v [D, H, W] at continuous pixel coords (x, y) with zero padding (align_corners=False grid)."""
    d, h, w = v.shape
    x0, y0 = math.floor(x), math.floor(y)
    out = torch.zeros(d, dtype=v.dtype)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * v[:, yy, xx]
    return out


def naive_core(value, shapes, loc, attn):
    n, s, m, d = value.shape
    _, lq, _, nl, npnt, _ = loc.shape
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(n, lq, m, d, dtype=value.dtype)
    for b in range(n):
        for q in range(lq):
            for head in range(m):
                for lvl, (h, w) in enumerate(shapes):
                    v = value[b, starts[lvl]:starts[lvl] + h * w, head].T.reshape(d, h, w)
                    for p in range(npnt):
                        # normalised [0,1] location → pixel coordinate with pixel centres at +0.5
                        x = loc[b, q, head, lvl, p, 0].item() * w - 0.5
                        y = loc[b, q, head, lvl, p, 1].item() * h - 0.5
                        out[b, q, head] += attn[b, q, head, lvl, p] * _bilinear(v, x, y)
    return out.reshape(n, lq, m * d)


def test_core_matches_naive_reference_including_outside_points():
    g = torch.Generator().manual_seed(0)
    shapes = [(6, 5), (3, 4), (2, 2)]
    n, m, d, lq, p = 2, 2, 3, 4, 3
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, generator=g, dtype=torch.float64)
    # locations in [-0.3, 1.3]: some fall outside the map (zero padding) or straddle the border
    loc = torch.rand(n, lq, m, len(shapes), p, 2, generator=g, dtype=torch.float64) * 1.6 - 0.3
    attn = torch.rand(n, lq, m, len(shapes), p, generator=g, dtype=torch.float64)
    attn = attn / attn.sum((-1, -2), keepdim=True)
    fast = ms_deform_attn_core(value, shapes, loc, attn)
    ref = naive_core(value, shapes, loc, attn)
    assert (fast - ref).abs().max() < 1e-10
    assert (loc < 0).any() and (loc > 1).any()


def test_module_point_and_box_references():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2)
    for prm in attn.parameters():
        torch.nn.init.normal_(prm, std=0.3)
    shapes = [(4, 4), (2, 2)]
    mem = torch.randn(1, 20, 16)
    q = torch.randn(1, 3, 16)
    ref2 = torch.rand(1, 3, 2, 2)
    out = attn(q, ref2, mem, shapes)
    assert out.shape == (1, 3, 16)
    # a zero-size box samples every point exactly at the box centre: equals a 2-d reference with zero offsets
    ref4 = torch.cat([ref2, torch.zeros_like(ref2)], -1)
    out4 = attn(q, ref4, mem, shapes)
    with torch.no_grad():
        attn.sampling_offsets.weight.zero_()
        attn.sampling_offsets.bias.zero_()
    out2_zero_offsets = attn(q, ref2, mem, shapes)
    assert torch.allclose(out4, out2_zero_offsets, atol=1e-6)
    # padding mask zeroes values: masking everything leaves only the output bias
    masked = attn(q, ref2, mem, shapes, torch.ones(1, 20, dtype=torch.bool))
    assert torch.allclose(masked, attn.output_proj.bias.expand_as(masked), atol=1e-6)


def test_default_init_offsets_ring():
    a = MSDeformAttn(d_model=32, n_levels=3, n_heads=8, n_points=4)
    bias = a.sampling_offsets.bias.view(8, 3, 4, 2)
    # point i of every head lies (i + 1) steps along that head's direction
    assert torch.allclose(bias[:, :, 3], 4 * bias[:, :, 0])
    assert torch.allclose(bias[0, 0, 0], torch.tensor([1.0, 0.0]))
