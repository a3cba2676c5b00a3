"""Hungarian matcher: obvious optimum, brute force on small random cases, hand-computed cost values."""
from __future__ import annotations

import itertools
import math

import torch

from gemseg.losses.matcher import HungarianMatcher


def _two_class_targets(h: int = 16, w: int = 16) -> dict:
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    masks[0, :, : w // 2] = True  # background: left half
    masks[1, :, w // 2 :] = True  # glass: right half
    boxes = torch.tensor([[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0]])
    return {"labels": torch.tensor([0, 1]), "masks": masks, "boxes": boxes}


def test_obvious_assignment():
    tgt = _two_class_targets()
    q = 4
    logits = torch.full((1, q, 3), -4.0)
    logits[0, :, 2] = 4.0  # "no object" everywhere ...
    logits[0, 3, 0] = 6.0  # ... except query 3 = background
    logits[0, 1, 1] = 6.0  # and query 1 = glass
    masks = torch.full((1, q, 4, 4), -8.0)
    masks[0, 3, :, :2] = 8.0
    masks[0, 1, :, 2:] = 8.0
    boxes = torch.tensor([[[0.5, 0.5, 0.1, 0.1], [0.75, 0.5, 0.5, 1.0], [0.1, 0.1, 0.1, 0.1], [0.25, 0.5, 0.5, 1.0]]])
    matcher = HungarianMatcher(num_points=256)
    (qi, ti), = matcher({"pred_logits": logits, "pred_masks": masks, "pred_boxes": boxes}, [tgt])
    assert dict(zip(ti.tolist(), qi.tolist())) == {0: 3, 1: 1}
    assert qi.dtype == torch.int64 and ti.dtype == torch.int64


def test_matches_brute_force_on_random_cases():
    matcher = HungarianMatcher(num_points=64)
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        q, m = 4, 3
        logits = torch.randn(1, q, 3, generator=g)
        masks = torch.randn(1, q, 6, 6, generator=g) * 3
        boxes = torch.rand(1, q, 4, generator=g) * 0.5 + 0.25
        tgt = {
            "labels": torch.randint(0, 2, (m,), generator=g),
            "masks": torch.rand(m, 12, 12, generator=g) > 0.5,
            "boxes": torch.rand(m, 4, generator=g) * 0.5 + 0.25,
        }
        outputs = {"pred_logits": logits, "pred_masks": masks, "pred_boxes": boxes}
        torch.manual_seed(100 + seed)
        (qi, ti), = matcher(outputs, [tgt])
        # replay the matcher's point draw to get the very same cost matrix
        torch.manual_seed(100 + seed)
        points = torch.rand(matcher.num_points, 2)
        terms = matcher.cost_terms(logits[0], boxes[0], masks[0], tgt, point_coords=points)
        cost = matcher.total_cost(terms)
        best = min(
            sum(float(cost[perm[j], j]) for j in range(m)) for perm in itertools.permutations(range(q), m)
        )
        got = sum(float(cost[a, b]) for a, b in zip(qi.tolist(), ti.tolist()))
        assert len(qi) == m
        assert math.isclose(got, best, rel_tol=1e-5, abs_tol=1e-5)


def test_cost_values_by_hand():
    matcher = HungarianMatcher()  # official weights 4 / 5 / 5 / 5 / 2
    logits = torch.tensor([[0.3, -1.2, 2.0]])
    pred_boxes = torch.tensor([[0.5, 0.5, 0.4, 0.4]])
    # 4x4 prediction logits; target 8x8 made of 2x2 blocks so that sampling at the prediction's pixel centres
    # reads exact values from both maps
    pred_masks = torch.tensor([[[2.0, -1.0, 0.5, -3.0], [1.0, 1.0, -2.0, 0.0], [4.0, -4.0, 0.25, 1.5], [-0.5, 3.0, -1.0, 2.5]]])
    block = torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0], [1, 0, 0, 1], [0, 1, 0, 1]], dtype=torch.bool)
    tgt_mask = block.repeat_interleave(2, 0).repeat_interleave(2, 1)[None]
    target = {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.6, 0.5, 0.2, 0.6]]), "masks": tgt_mask}
    ys, xs = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    points = torch.stack([(xs.flatten() + 0.5) / 4, (ys.flatten() + 0.5) / 4], dim=1).double()

    terms = matcher.cost_terms(logits, pred_boxes, pred_masks, target, point_coords=points)

    p = 1 / (1 + math.exp(1.2))  # sigmoid(-1.2): the target class column
    cls = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-8) - 0.75 * p**2 * -math.log(1 - p + 1e-8)
    l1 = 0.1 + 0.0 + 0.2 + 0.2
    # xyxy: pred (0.3, 0.3, 0.7, 0.7), target (0.5, 0.2, 0.7, 0.8): inter 0.08, union 0.2, enclosing 0.24
    giou = 0.08 / (0.2 + 1e-6) - (0.24 - 0.2) / (0.24 + 1e-6)
    x = pred_masks[0].flatten().tolist()
    t = block.flatten().float().tolist()
    sig = [1 / (1 + math.exp(-v)) for v in x]
    bce = sum(-(ti * math.log(s) + (1 - ti) * math.log(1 - s)) for s, ti in zip(sig, t)) / 16
    dice = 1 - (2 * sum(s * ti for s, ti in zip(sig, t)) + 1) / (sum(sig) + sum(t) + 1)

    for name, value in {"class": cls, "bbox": l1, "giou": -giou, "mask": bce, "dice": dice}.items():
        assert terms[name].shape == (1, 1)
        assert math.isclose(float(terms[name]), value, rel_tol=1e-5, abs_tol=1e-6), name
    total = 4 * cls + 5 * l1 + 2 * -giou + 5 * bce + 5 * dice
    assert math.isclose(float(matcher.total_cost(terms)), total, rel_tol=1e-5)


def test_image_without_targets_gets_empty_match():
    matcher = HungarianMatcher(num_points=16)
    outputs = {
        "pred_logits": torch.randn(1, 3, 3),
        "pred_masks": torch.randn(1, 3, 4, 4),
        "pred_boxes": torch.rand(1, 3, 4),
    }
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 8, 8, dtype=torch.bool),
             "boxes": torch.zeros(0, 4)}
    (qi, ti), = matcher(outputs, [empty])
    assert qi.numel() == 0 and ti.numel() == 0
