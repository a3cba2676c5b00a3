"""SetCriterion: loss values, gradients, CE class weights, proposal targets, DN losses, weight dict."""
from __future__ import annotations

import math
import os
import tempfile
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gemseg.errors import ConfigError
from gemseg.losses.criterion import (
    SetCriterion,
    average_num_masks,
    build_criterion,
    build_weight_dict,
    weighted_total,
)
from gemseg.losses.denoising import dn_post_process, prepare_for_dn
from gemseg.losses.matcher import HungarianMatcher

H = W = 32
Q = 4


def _criterion(**kw) -> SetCriterion:
    args = dict(num_points=1024)
    args.update(kw)
    num_points = args.pop("num_points")
    matcher = HungarianMatcher(num_points=num_points)
    return SetCriterion(2, matcher, build_weight_dict(dec_layers=2), num_points=num_points, **args)


def _targets() -> list[dict]:
    masks = torch.zeros(2, H, W, dtype=torch.bool)
    masks[0, :, : W // 2] = True
    masks[1, :, W // 2 :] = True
    return [{"labels": torch.tensor([0, 1]), "masks": masks,
             "boxes": torch.tensor([[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0]])}]


def _perfect() -> dict:
    logits = torch.full((1, Q, 3), -20.0)
    logits[0, 0, 0] = 20.0
    logits[0, 1, 1] = 20.0
    logits[0, 2:, 2] = 20.0
    masks = torch.full((1, Q, H // 4, W // 4), -30.0)
    masks[0, 0, :, : W // 8] = 30.0
    masks[0, 1, :, W // 8 :] = 30.0
    boxes = torch.tensor([[[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0], [0.5, 0.5, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1]]])
    proposal = torch.zeros(1, 2, H // 16, W // 16)
    proposal[0, 0, :, 0] = 20.0  # left column of cells: background
    proposal[0, 1, :, 1] = 20.0  # right column: glass
    return {"pred_logits": logits, "pred_masks": masks, "pred_boxes": boxes, "proposal_cls_logits": proposal}


def _wrong() -> dict:
    """Wrong for every query, whatever the matching: no-object everywhere, a top/bottom mask split (the targets
    are left/right), boxes elsewhere, proposal classes swapped."""
    out = _perfect()
    logits = torch.full((1, Q, 3), -20.0)
    logits[0, :, 2] = 20.0
    masks = torch.full((1, Q, H // 4, W // 4), -30.0)
    masks[0, :, : H // 8] = 30.0
    out["pred_logits"] = logits
    out["pred_masks"] = masks
    out["pred_boxes"] = torch.tensor([[[0.5, 0.25, 1.0, 0.5]] * Q])
    out["proposal_cls_logits"] = out["proposal_cls_logits"].flip(1)
    return out


def test_perfect_prediction_is_near_zero():
    torch.manual_seed(0)
    # uniform points (no importance sampling): few points fall in the 1-pixel band where the bilinearly sampled
    # target and the 4x coarser prediction disagree, or at the zero-padded image border
    crit = _criterion(dn="no", importance_sample_ratio=0.0)
    good = crit(_perfect(), _targets())
    assert set(good) == {"loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou", "loss_proposal"}
    for key in ("loss_ce", "loss_bbox", "loss_giou", "loss_proposal"):
        assert float(good[key]) < 1e-4, key
    assert float(good["loss_dice"]) < 0.03
    assert float(good["loss_mask"]) < 0.3


def test_wrong_prediction_is_larger_for_every_term():
    torch.manual_seed(0)
    crit = _criterion(dn="no")  # official importance sampling
    good = crit(_perfect(), _targets())
    bad = crit(_wrong(), _targets())
    for key in good:
        assert float(bad[key]) > float(good[key]) + 0.1, key
    assert float(bad["loss_mask"]) > 10 * float(good["loss_mask"])
    assert float(bad["loss_dice"]) > 5 * float(good["loss_dice"])


def test_gradients_flow_to_every_output():
    torch.manual_seed(0)
    crit = _criterion(dn="no")
    out = _wrong()
    out = {k: v.clone().requires_grad_(True) for k, v in out.items()}
    aux = [{k: v.clone().requires_grad_(True) for k, v in _wrong().items() if k != "proposal_cls_logits"}]
    losses = crit({**out, "aux_outputs": aux}, _targets())
    assert {"loss_ce_0", "loss_mask_0", "loss_dice_0", "loss_bbox_0", "loss_giou_0"} <= set(losses)
    total = weighted_total(losses, crit.weight_dict)
    total.backward()
    for name, t in list(out.items()) + [(f"aux.{k}", v) for k, v in aux[0].items()]:
        assert t.grad is not None and float(t.grad.abs().sum()) > 0, name


def test_ce_uses_empty_weight():
    crit = _criterion(dn="no", eos_coef=0.1)
    assert crit.empty_weight.tolist() == pytest.approx([1.0, 1.0, 0.1])
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(1, Q, 3, generator=g)
    indices = [(torch.tensor([2, 0]), torch.tensor([1, 0]))]  # query 2 <- glass, query 0 <- background
    loss = crit.loss_labels({"pred_logits": logits}, _targets(), indices, 1.0)["loss_ce"]
    classes = [0, 2, 1, 2]
    weights = [1.0, 0.1, 1.0, 0.1]
    logp = F.log_softmax(logits[0], dim=-1)
    expected = sum(-w * float(logp[q, c]) for q, (c, w) in enumerate(zip(classes, weights))) / sum(weights)
    assert math.isclose(float(loss), expected, rel_tol=1e-5)
    unweighted = sum(-float(logp[q, c]) for q, c in enumerate(classes)) / Q
    assert not math.isclose(float(loss), unweighted, rel_tol=1e-3)


def _proposal_images() -> list[torch.Tensor]:
    """8 x 12 label maps -> 2 x 3 proposal cells of 4 x 4 pixels."""
    a = torch.zeros(8, 12, dtype=torch.uint8)
    a[0:4, 4:12] = 1  # cells (0,1), (0,2): glass
    a[0, 8] = 255  # ... (0,2) with one ignored pixel
    a[4:8, 0:4] = 1
    a[7, 0] = 0  # cell (1,0): glass with one background pixel
    a[4:8, 4:8] = 255  # cell (1,1): all ignored
    a[4:8, 10:12] = 255  # cell (1,2): background + ignored
    b = torch.ones(8, 12, dtype=torch.uint8)  # no background at all
    b[0, 0] = 255
    b[4:8, 4:8] = 255
    return [a, b]


def _targets_from_label(label: torch.Tensor) -> dict:
    classes = [c for c in (0, 1) if bool((label == c).any())]
    masks = torch.stack([label == c for c in classes]) if classes else torch.zeros(0, *label.shape, dtype=torch.bool)
    return {"labels": torch.tensor(classes, dtype=torch.int64), "masks": masks, "boxes": torch.zeros(len(classes), 4)}


def test_proposal_targets_official_and_fixed():
    targets = [_targets_from_label(x) for x in _proposal_images()]
    official = _criterion(proposal_target="official").proposal_targets(targets, (2, 3))
    fixed = _criterion(proposal_target="fixed").proposal_targets(targets, (2, 3))
    # official: NOT(first mask), average-pooled, truncated; image b has no background -> inverted
    assert official.tolist() == [[0, 1, 1, 0, 1, 0], [0, 0, 0, 0, 1, 0]]
    # fixed: background chosen by label; cells without any labelled pixel ignored (-1)
    assert fixed.tolist() == [[0, 1, 1, 0, -1, 0], [1, 1, 1, 1, -1, 1]]


def test_proposal_loss_value_ignores_cells():
    targets = [_targets_from_label(x) for x in _proposal_images()]
    logits = torch.randn(2, 2, 2, 3, generator=torch.Generator().manual_seed(5))
    crit = _criterion(proposal_target="fixed")
    loss = crit.loss_proposals({"proposal_cls_logits": logits}, targets)["loss_proposal"]
    tgt = crit.proposal_targets(targets, (2, 3))
    logp = F.log_softmax(logits.flatten(2), dim=1)  # [B, 2, 6]
    terms = [-float(logp[b, int(tgt[b, i]), i]) for b in range(2) for i in range(6) if int(tgt[b, i]) >= 0]
    assert len(terms) == 10
    assert math.isclose(float(loss), sum(terms) / len(terms), rel_tol=1e-5)
    # every cell ignored -> a zero loss, not NaN
    all_ignored = [_targets_from_label(torch.full((8, 12), 255, dtype=torch.uint8))]
    zero = crit.loss_proposals({"proposal_cls_logits": logits[:1]}, all_ignored)["loss_proposal"]
    assert float(zero) == 0.0


def _dn_setup():
    """Two images (2 and 1 targets), DN budget 6 -> single_pad 2, scalar 3; 3 decoder outputs (initial + 2)."""
    t0 = _targets()[0]
    m1 = torch.zeros(1, H, W, dtype=torch.bool)
    m1[0, 8:24, 8:24] = True
    t1 = {"labels": torch.tensor([1]), "masks": m1, "boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5]])}
    targets = [t0, t1]
    torch.manual_seed(0)
    _, _, _, meta = prepare_for_dn(targets, None, None, 2, dn_num=6, noise_scale=0.4, num_queries=Q, num_classes=2,
                                   hidden_dim=8, label_enc=nn.Embedding(2, 8), training=True)
    pad = meta["pad_size"]
    g = torch.Generator().manual_seed(1)
    layers = 3
    cls = torch.randn(layers, 2, pad + Q, 3, generator=g).requires_grad_(True)
    box = (torch.rand(layers, 2, pad + Q, 4, generator=g) * 0.4 + 0.3).requires_grad_(True)
    msk = torch.randn(layers, 2, pad + Q, H // 4, W // 4, generator=g).requires_grad_(True)
    out_cls, out_box, out_msk = dn_post_process(cls, box, meta, msk)
    outputs = {
        "pred_logits": out_cls[-1], "pred_boxes": out_box[-1], "pred_masks": out_msk[-1],
        "aux_outputs": [{"pred_logits": out_cls[i], "pred_boxes": out_box[i], "pred_masks": out_msk[i]}
                        for i in range(layers - 1)],
    }
    return targets, meta, outputs, (cls, box, msk)


def test_dn_losses_fixed_assignment_and_normalisation():
    targets, meta, outputs, (cls, box, msk) = _dn_setup()
    assert meta["scalar"] == 3 and meta["pad_size"] == 6
    crit = _criterion()
    losses = crit(outputs, targets, meta)
    for k in ("loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou"):
        assert f"{k}_dn" in losses and f"{k}_dn_1" in losses
        assert f"{k}_dn_0" not in losses  # the initial prediction's DN part is not supervised
        assert f"{k}_0" in losses and f"{k}_1" in losses
    # DN query g * 2 + i <-> target i; normaliser num_masks (3) * scalar (3)
    dn_box = box[-1, :, :6].detach()
    l1 = 0.0
    for g_ in range(3):
        for i in range(2):
            l1 += float((dn_box[0, 2 * g_ + i] - targets[0]["boxes"][i]).abs().sum())
        l1 += float((dn_box[1, 2 * g_] - targets[1]["boxes"][0]).abs().sum())
    assert math.isclose(float(losses["loss_bbox_dn"].detach()), l1 / 9, rel_tol=1e-5)
    # DN classification: padded DN slots of image 1 (1, 3, 5) are "no object"
    logp = F.log_softmax(cls[-1, :, :6].detach(), dim=-1)
    classes = [[0, 1, 0, 1, 0, 1], [1, 2, 1, 2, 1, 2]]
    w = [1.0, 1.0, 0.1]
    num = sum(-w[c] * float(logp[b, q, c]) for b in range(2) for q, c in enumerate(classes[b]))
    den = sum(w[c] for b in range(2) for c in classes[b])
    assert math.isclose(float(losses["loss_ce_dn"].detach()), num / den, rel_tol=1e-5)
    weighted_total(losses, crit.weight_dict).backward()
    # DN supervision reaches the DN part of the final and aux layer 1, not of the initial prediction
    assert float(box.grad[2, :, :6].abs().sum()) > 0 and float(box.grad[1, :, :6].abs().sum()) > 0
    assert float(box.grad[0, :, :6].abs().sum()) == 0


def test_zero_dn_losses_without_dn_meta():
    crit = _criterion()
    out = _perfect()
    out["aux_outputs"] = [{k: v for k, v in _perfect().items() if k != "proposal_cls_logits"} for _ in range(2)]
    losses = crit(out, _targets(), None)
    for k in ("loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou"):
        assert float(losses[f"{k}_dn"]) == 0.0 and float(losses[f"{k}_dn_1"]) == 0.0
        assert f"{k}_dn_0" not in losses


def test_weight_dict_official_keys_dec_layers_9():
    wd = build_weight_dict(class_weight=5.0, dec_layers=9, dn="seg", deep_supervision=True, two_stage=False)
    base = ["loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou", "loss_proposal"]
    first = base + [b + "_dn" for b in base]
    expected = list(first)
    for i in range(9):
        expected += [f"{k}_{i}" for k in first]
    assert list(wd) == expected
    assert len(wd) == 120
    assert wd["loss_ce"] == 5.0 and wd["loss_ce_dn_8"] == 5.0 and wd["loss_proposal_3"] == 80.0
    assert wd["loss_mask"] == 5.0 and wd["loss_dice_dn"] == 5.0 and wd["loss_bbox_4"] == 5.0
    assert wd["loss_giou_dn_0"] == 2.0
    standard = build_weight_dict(dn="standard", deep_supervision=False)
    assert "loss_mask_dn" not in standard and "loss_bbox_dn" in standard


def _cfg(**over):
    m = dict(SEMANTIC_CE_LOSS=True, TEST=SimpleNamespace(SEMANTIC_ON=True, PANOPTIC_ON=False), PANO_BOX_LOSS=False,
             PROPOSAL_TARGET="official", PROPOSAL_WEIGHT=80.0, DN="seg", COST_CLASS_WEIGHT=4.0,
             COST_MASK_WEIGHT=5.0, COST_DICE_WEIGHT=5.0, COST_BOX_WEIGHT=5.0, COST_GIOU_WEIGHT=2.0,
             TRAIN_NUM_POINTS=12544, CLASS_WEIGHT=5.0, MASK_WEIGHT=5.0, DICE_WEIGHT=5.0, BOX_WEIGHT=5.0,
             GIOU_WEIGHT=2.0, DEEP_SUPERVISION=True, DEC_LAYERS=9, TWO_STAGE=False, BOX_LOSS=True,
             NO_OBJECT_WEIGHT=0.1, OVERSAMPLE_RATIO=3.0, IMPORTANCE_SAMPLE_RATIO=0.75)
    m.update(over)
    return SimpleNamespace(MODEL=SimpleNamespace(MaskDINO=SimpleNamespace(**m),
                                                 SEM_SEG_HEAD=SimpleNamespace(NUM_CLASSES=2)))


def test_build_criterion_from_config():
    crit = build_criterion(_cfg())
    assert crit.weight_dict == build_weight_dict(class_weight=5.0)
    assert crit.proposal_target == "official" and crit.dn == "seg" and crit.num_points == 12544
    assert crit.losses == ("labels", "masks", "boxes") and crit.matcher.cost_class == 4.0
    with pytest.raises(ConfigError):
        build_criterion(_cfg(SEMANTIC_CE_LOSS=False))
    with pytest.raises(ConfigError):
        build_criterion(_cfg(PROPOSAL_TARGET="sometimes"))


def _num_masks_worker(rank: int, init_file: str, result_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        n = 1 if rank == 0 else 4  # rank 0 has 1 target, rank 1 has 4
        targets = [{"labels": torch.zeros(n, dtype=torch.int64)}]
        value = average_num_masks(targets, torch.device("cpu"))
        with open(os.path.join(result_dir, f"{rank}.txt"), "w") as f:
            f.write(repr(value))
    finally:
        dist.destroy_process_group()


def test_num_masks_all_reduced_across_ranks():
    assert average_num_masks([{"labels": torch.zeros(0, dtype=torch.int64)}], torch.device("cpu")) == 1.0
    with tempfile.TemporaryDirectory() as tmp:
        torch.multiprocessing.spawn(_num_masks_worker, args=(os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        values = [float(open(os.path.join(tmp, f"{r}.txt")).read()) for r in range(2)]
    assert values == [2.5, 2.5]


def test_target_sampling_matches_per_row_reference():
    from gemseg.losses.criterion import _sample_target_masks
    from gemseg.losses.point_sampling import point_sample

    g = torch.Generator().manual_seed(2)
    # images of different sizes: masks are zero-padded to the largest (12 x 16) before sampling
    targets = [{"masks": torch.rand(2, 12, 10, generator=g) > 0.5}, {"masks": torch.rand(1, 8, 16, generator=g) > 0.5}]
    tb = torch.tensor([0, 1, 0, 0, 1])
    ti = torch.tensor([1, 0, 0, 1, 0])
    coords = torch.rand(5, 40, 2, generator=g)
    got = _sample_target_masks(targets, tb, ti, coords)
    for r in range(5):
        canvas = torch.zeros(12, 16)
        m = targets[int(tb[r])]["masks"][int(ti[r])].float()
        canvas[: m.shape[0], : m.shape[1]] = m
        ref = point_sample(canvas[None, None], coords[r : r + 1])[0, 0]
        torch.testing.assert_close(got[r], ref)


def test_build_criterion_from_shipped_gem_configs():
    from gemseg.config import get_config

    tiny = build_criterion(get_config("gem-tiny"))
    assert tiny.weight_dict == build_weight_dict(class_weight=5.0, dec_layers=9)  # CLASS_WEIGHT 5 in Tiny-384
    assert tiny.empty_weight.tolist() == pytest.approx([1.0, 1.0, 0.1])
    assert (tiny.num_points, tiny.oversample_ratio, tiny.importance_sample_ratio) == (12544, 3.0, 0.75)
    m = tiny.matcher
    assert (m.cost_class, m.cost_mask, m.cost_dice, m.cost_box, m.cost_giou) == (4.0, 5.0, 5.0, 5.0, 2.0)
    base = build_criterion(get_config("gem-base"))
    assert base.weight_dict["loss_ce"] == 4.0 and len(base.weight_dict) == 120


def test_batch_without_any_target_is_finite():
    # an all-ignore crop: no labels, no DN queries; every loss must stay finite (no NaN from empty means)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, H, W, dtype=torch.bool),
              "boxes": torch.zeros(0, 4)}]
    _, _, _, meta = prepare_for_dn(empty, None, None, 1, num_queries=Q, hidden_dim=8, label_enc=nn.Embedding(2, 8),
                                   training=True)
    assert meta is None
    out = {k: v.clone().requires_grad_(True) for k, v in _perfect().items()}
    for proposal_target in ("fixed", "official"):
        losses = _criterion(proposal_target=proposal_target)(out, empty, meta)
        values = {k: float(v.detach()) for k, v in losses.items()}
        assert all(torch.isfinite(torch.tensor(list(values.values()))))
        assert values["loss_mask"] == 0.0 and values["loss_bbox_dn"] == 0.0
        # every query is "no object": queries 2, 3 predict it, queries 0, 1 do not
        assert values["loss_ce"] > 1.0
        weighted_total(losses, build_weight_dict(dec_layers=2)).backward()
