"""point_sample against an explicit bilinear reference; importance sampling picks uncertain points."""
from __future__ import annotations

import math

import torch

from gemseg.losses.point_sampling import (
    calculate_uncertainty,
    get_uncertain_point_coords_with_randomness,
    point_sample,
)


def _bilinear_reference(img: torch.Tensor, x: float, y: float) -> float:
    """Sample img [H, W] at normalised (x, y), align_corners=False, zero outside (pixel centres at i + 0.5)."""
    h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    fx, fy = px - x0, py - y0

    def at(r: int, c: int) -> float:
        return float(img[r, c]) if 0 <= r < h and 0 <= c < w else 0.0

    return (
        at(y0, x0) * (1 - fx) * (1 - fy)
        + at(y0, x0 + 1) * fx * (1 - fy)
        + at(y0 + 1, x0) * (1 - fx) * fy
        + at(y0 + 1, x0 + 1) * fx * fy
    )


def test_point_sample_matches_explicit_bilinear():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(5, 7, generator=g, dtype=torch.float64)
    pts = torch.rand(1, 50, 2, generator=g, dtype=torch.float64)
    # include exact pixel centres and the border (half a pixel of zero padding mixes in there)
    pts[0, 0] = torch.tensor([0.5 / 7, 0.5 / 5])
    pts[0, 1] = torch.tensor([0.0, 0.0])
    pts[0, 2] = torch.tensor([1.0, 1.0])
    out = point_sample(img[None, None], pts, align_corners=False)
    assert out.shape == (1, 1, 50)
    ref = torch.tensor([_bilinear_reference(img, float(x), float(y)) for x, y in pts[0]], dtype=torch.float64)
    torch.testing.assert_close(out[0, 0], ref, rtol=1e-9, atol=1e-9)
    assert math.isclose(float(out[0, 0, 0]), float(img[0, 0]), rel_tol=1e-6)  # pixel centre -> exact value
    assert math.isclose(float(out[0, 0, 1]), 0.25 * float(img[0, 0]), rel_tol=1e-6)  # corner: 3/4 zero padding


def test_point_sample_grid_shape_and_channels():
    img = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    pts = torch.rand(2, 6, 5, 2)
    assert point_sample(img, pts).shape == (2, 3, 6, 5)


def test_uncertainty_is_minus_abs():
    x = torch.tensor([[[-3.0, 0.5, 0.0, 2.0]]])
    assert torch.equal(calculate_uncertainty(x), torch.tensor([[[-3.0, -0.5, 0.0, -2.0]]]))


def test_importance_sampling_picks_most_uncertain_points():
    # logits = 20 |x - 0.5|: the vertical line x = 0.5 is the uncertain region
    h = w = 96
    xs = (torch.arange(w) + 0.5) / w
    logits = ((xs - 0.5).abs() * 20.0)[None, :].expand(h, w).clone()[None, None]
    num_points, over, ratio = 12544, 3.0, 0.75
    gen = torch.Generator().manual_seed(123)
    coords = get_uncertain_point_coords_with_randomness(
        logits, calculate_uncertainty, num_points, over, ratio, generator=gen
    )
    assert coords.shape == (1, num_points, 2)
    assert float(coords.min()) >= 0.0 and float(coords.max()) <= 1.0
    n_unc = int(ratio * num_points)

    # replay the generator: the candidates are the first draw; the kept points must be exactly the n_unc
    # candidates with the smallest |logit|
    gen2 = torch.Generator().manual_seed(123)
    cand = torch.rand(1, int(num_points * over), 2, generator=gen2)
    cand_unc = calculate_uncertainty(point_sample(logits, cand))[0, 0]
    top = torch.topk(cand_unc, n_unc).indices
    expected = {tuple(p) for p in cand[0, top].tolist()}
    assert {tuple(p) for p in coords[0, :n_unc].tolist()} == expected  # same set (order is irrelevant)
    kept_unc = calculate_uncertainty(point_sample(logits, coords[:, :n_unc]))[0, 0]
    assert float(kept_unc.min()) >= float(cand_unc.sort(descending=True).values[n_unc - 1]) - 1e-6
    # the kept quarter of the candidates clusters at the boundary x = 0.5 (|x - 0.5| < ~0.125); a few come from
    # the top/bottom rows, where half a pixel of zero padding shrinks |logit|
    dist = (coords[0, :n_unc, 0] - 0.5).abs()
    assert float((dist < 0.13).float().mean()) > 0.95
    # the random remainder is spread over the whole square
    rest = coords[0, n_unc:]
    assert rest.shape[0] == num_points - n_unc
    assert float((rest[:, 0] - 0.5).abs().max()) > 0.4

    # same seed -> same points
    again = get_uncertain_point_coords_with_randomness(
        logits, calculate_uncertainty, num_points, over, ratio, generator=torch.Generator().manual_seed(123)
    )
    assert torch.equal(coords, again)
