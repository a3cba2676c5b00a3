"""Denoising queries: shapes, content, attention mask, noise bounds and rates, dn_post_process."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gemseg.losses.denoising import build_dn_attn_mask, dn_post_process, inverse_sigmoid, prepare_for_dn

D = 8
Q = 4


def _targets() -> list[dict]:
    return [
        {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.4, 0.5]])},
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.6, 0.8]])},
    ]


def _call(targets, tgt=None, ref=None, **kw):
    torch.manual_seed(0)
    label_enc = kw.pop("label_enc", None) or nn.Embedding(2, D)
    args = dict(dn_num=10, noise_scale=0.4, num_queries=Q, num_classes=2, hidden_dim=D, label_enc=label_enc,
                training=True)
    args.update(kw)
    return prepare_for_dn(targets, tgt, ref, len(targets), **args), label_enc


def test_shapes_and_concatenation():
    tgt = torch.randn(2, Q, D)
    ref = torch.randn(Q, 4)
    (label, bbox, attn, meta), _ = _call(_targets(), tgt, ref)
    # max 2 targets per image -> single_pad 2, scalar 10 // 2 = 5, pad_size 10
    assert meta["single_pad"] == 2 and meta["scalar"] == 5 and meta["pad_size"] == 10
    assert label.shape == (2, 10 + Q, D) and bbox.shape == (2, 10 + Q, 4) and attn.shape == (14, 14)
    assert attn.dtype == torch.bool
    torch.testing.assert_close(label[:, 10:], tgt)
    torch.testing.assert_close(bbox[:, 10:], ref.expand(2, -1, -1))
    # without tgt / refpoints only the DN part comes back (the official decoder's call)
    (label_only, bbox_only, _, _), _ = _call(_targets())
    assert label_only.shape == (2, 10, D) and bbox_only.shape == (2, 10, 4)
    assert meta["known_indice"].tolist() == [0, 1, 2] * 5
    assert meta["map_known_indice"].tolist() == [0, 1, 0, 2, 3, 2, 4, 5, 4, 6, 7, 6, 8, 9, 8]


def test_query_content_without_noise():
    label_enc = nn.Embedding(2, D)
    (label, bbox, _, meta), _ = _call(_targets(), noise_scale=0.0, label_enc=label_enc)
    t = _targets()
    for g in range(meta["scalar"]):
        # image 0: targets 0 and 1 at slots 2g, 2g+1
        torch.testing.assert_close(label[0, 2 * g], label_enc.weight[0])
        torch.testing.assert_close(label[0, 2 * g + 1], label_enc.weight[1])
        torch.testing.assert_close(bbox[0, 2 * g : 2 * g + 2], inverse_sigmoid(t[0]["boxes"]))
        # image 1 has one target: slot 2g is the target, slot 2g+1 is padding (zeros)
        torch.testing.assert_close(label[1, 2 * g], label_enc.weight[1])
        torch.testing.assert_close(bbox[1, 2 * g], inverse_sigmoid(t[1]["boxes"][0]))
        assert torch.count_nonzero(label[1, 2 * g + 1]) == 0 and torch.count_nonzero(bbox[1, 2 * g + 1]) == 0


def test_attention_mask_structure():
    (_, _, attn, meta), _ = _call(_targets())
    pad, sp = meta["pad_size"], meta["single_pad"]
    for i in range(pad + Q):
        for j in range(pad + Q):
            if i >= pad:  # matching query: sees matching queries only
                expected = j < pad
            elif j >= pad:  # DN query may see the matching queries
                expected = False
            else:  # DN query: only its own group
                expected = i // sp != j // sp
            assert bool(attn[i, j]) == expected, (i, j)
    assert torch.equal(build_dn_attn_mask(pad, sp, Q, torch.device("cpu")), attn)


def test_box_noise_bounds_and_label_noise_rate():
    n_img = 400
    g = torch.Generator().manual_seed(1)
    targets = []
    for _ in range(n_img):
        wh = torch.rand(2, 2, generator=g) * 0.5 + 0.05
        c = wh / 2 + torch.rand(2, 2, generator=g) * (1 - wh)
        targets.append({"labels": torch.randint(0, 2, (2,), generator=g), "boxes": torch.cat([c, wh], dim=1)})
    label_enc = nn.Embedding(2, D)
    _, _, _, meta = prepare_for_dn(targets, None, None, n_img, dn_num=100, noise_scale=0.4, num_queries=Q,
                                   num_classes=2, hidden_dim=D, label_enc=label_enc, training=True,
                                   generator=torch.Generator().manual_seed(7))
    clean_labels, clean_boxes = meta["known_lbs_bboxes"]
    noisy_labels, noisy_boxes = meta["known_lbs_bboxes_noised"]
    n = clean_labels.numel()
    assert n == n_img * 2 * 50
    assert float(noisy_boxes.min()) >= 0.0 and float(noisy_boxes.max()) <= 1.0
    diff = (noisy_boxes - clean_boxes).abs()
    w, h = clean_boxes[:, 2], clean_boxes[:, 3]
    eps = 1e-6
    assert bool((diff[:, 0] <= 0.4 * w / 2 + eps).all()) and bool((diff[:, 1] <= 0.4 * h / 2 + eps).all())
    assert bool((diff[:, 2] <= 0.4 * w + eps).all()) and bool((diff[:, 3] <= 0.4 * h + eps).all())
    assert float(diff.mean()) > 0.01  # the noise is really applied
    # labels re-drawn with p = noise_scale / 2 = 0.2; half of the re-draws land on the same class (K = 2)
    redraw = meta["label_noise_mask"].float().mean()
    changed = (noisy_labels != clean_labels).float().mean()
    assert abs(float(redraw) - 0.2) < 0.01
    assert abs(float(changed) - 0.1) < 0.01
    assert bool((noisy_labels[~meta["label_noise_mask"]] == clean_labels[~meta["label_noise_mask"]]).all())


def test_no_dn_cases():
    tgt = torch.randn(2, Q, D)
    ref = torch.randn(Q, 4)
    (label, bbox, attn, meta), _ = _call(_targets(), tgt, ref, training=False)
    assert attn is None and meta is None
    assert torch.equal(label, tgt) and bbox.shape == (2, Q, 4)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    (label, bbox, attn, meta), _ = _call(empty, tgt, ref)
    assert attn is None and meta is None and label.shape == (2, Q, D)
    (label, bbox, attn, meta), _ = _call(_targets())
    assert meta is not None


def test_gradient_reaches_label_enc():
    (label, _, _, _), label_enc = _call(_targets())
    label.sum().backward()
    assert label_enc.weight.grad is not None and float(label_enc.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("as_list", [False, True])
def test_dn_post_process_splits(as_list):
    (_, _, _, meta), _ = _call(_targets())
    pad = meta["pad_size"]
    layers, b, k, hm = 3, 2, 3, 5
    cls = torch.randn(layers, b, pad + Q, k)
    box = torch.rand(layers, b, pad + Q, 4)
    msk = torch.randn(layers, b, pad + Q, hm, hm)
    args = (list(cls), list(box), meta, list(msk)) if as_list else (cls, box, meta, msk)
    out_cls, out_box, out_msk = dn_post_process(*args)
    if as_list:
        assert isinstance(out_cls, list) and len(out_cls) == layers
        out_cls, out_box, out_msk = torch.stack(out_cls), torch.stack(out_box), torch.stack(out_msk)
    assert torch.equal(out_cls, cls[:, :, pad:]) and torch.equal(out_box, box[:, :, pad:])
    assert torch.equal(out_msk, msk[:, :, pad:])
    known = meta["output_known_lbs_bboxes"]
    assert torch.equal(known["pred_logits"], cls[-1, :, :pad])
    assert torch.equal(known["pred_boxes"], box[-1, :, :pad])
    assert torch.equal(known["pred_masks"], msk[-1, :, :pad])
    assert len(known["aux_outputs"]) == layers - 1
    for i, aux in enumerate(known["aux_outputs"]):
        assert torch.equal(aux["pred_logits"], cls[i, :, :pad])
        assert torch.equal(aux["pred_masks"], msk[i, :, :pad])
