"""MaskDINO "seg" denoising (DN) queries for training (``docs/official-gem.md`` §3.5).

During training, noised copies of the ground truth are prepended to the matching queries: ``scalar`` groups of
``single_pad = max #targets per image`` queries each (``scalar = dn_num // single_pad``, so ``pad_size =
scalar * single_pad <= dn_num``). Query content = ``label_enc(noisy label)``, query anchor =
``inverse_sigmoid(noisy box)``. The decoder must reconstruct the clean target from each DN query; the criterion
supervises DN query ``g * single_pad + i`` with target ``i`` of its image (no matching).

Device-agnostic re-implementation of ``MaskDINODecoder.prepare_for_dn`` / ``dn_post_process`` (the official
code hard-codes ``.cuda()``). Randomness: the global torch RNG unless a ``generator`` is given.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from gemseg.modeling.layers import inverse_sigmoid  # one definition, shared with the decoder

__all__ = ["inverse_sigmoid", "prepare_for_dn", "dn_post_process", "build_dn_attn_mask"]


def build_dn_attn_mask(pad_size: int, single_pad: int, num_queries: int, device: torch.device) -> Tensor:
    """Self-attention mask for ``[DN queries | matching queries]``; ``True`` = attention NOT allowed.

    * matching queries cannot see any DN query (they must not peek at the ground truth);
    * a DN group cannot see another DN group (each group is an independent reconstruction problem);
    * DN queries may see the matching queries and their own group.

    Returns:
        ``[pad_size + num_queries, pad_size + num_queries]`` bool.
    """
    size = pad_size + num_queries
    mask = torch.zeros(size, size, dtype=torch.bool, device=device)
    mask[pad_size:, :pad_size] = True
    scalar = pad_size // single_pad if single_pad > 0 else 0
    for g in range(scalar):
        lo, hi = single_pad * g, single_pad * (g + 1)
        mask[lo:hi, :lo] = True
        mask[lo:hi, hi:pad_size] = True
    return mask


def _batched(x: Optional[Tensor], batch_size: int) -> Optional[Tensor]:
    """``[Q, D]`` -> ``[B, Q, D]`` (a real copy, like the official ``repeat``, so callers may modify it in place);
    ``[B, Q, D]`` unchanged; None stays None."""
    if x is None:
        return None
    if x.dim() == 2:
        return x.unsqueeze(0).repeat(batch_size, 1, 1)
    if x.dim() != 3 or x.shape[0] != batch_size:
        raise ValueError(f"expected [Q, D] or [B={batch_size}, Q, D], got {tuple(x.shape)}")
    return x


def prepare_for_dn(
    targets: Optional[Sequence[dict]],
    tgt: Optional[Tensor],
    refpoint_emb: Optional[Tensor],
    batch_size: int,
    *,
    dn_num: int = 100,
    noise_scale: float = 0.4,
    num_queries: int,
    num_classes: int = 2,
    hidden_dim: int = 256,
    label_enc: nn.Embedding,
    training: bool,
    generator: Optional[torch.Generator] = None,
) -> tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor], Optional[dict[str, Any]]]:
    """Build the denoising queries and their attention mask.

    Args:
        targets: B dicts with ``"labels"`` ``[M_b]`` and ``"boxes"`` ``[M_b, 4]`` (normalised cxcywh).
        tgt: matching content queries ``[Q, D]`` or ``[B, Q, D]`` (GEM: the QueryProposal output), or ``None``.
        refpoint_emb: matching anchors ``[Q, 4]`` or ``[B, Q, 4]`` (unsigmoided; GEM: ``query_embed.weight``), or
            ``None``.
        batch_size: B.
        dn_num: total DN query budget (official 100).
        noise_scale: box noise scale (official 0.4); labels are re-drawn with probability ``noise_scale / 2``.
        num_queries: Q (matching queries; sizes the attention mask).
        num_classes: K, labels are re-drawn uniformly from ``{0..K-1}``.
        hidden_dim: D.
        label_enc: ``nn.Embedding(K, D)`` giving the DN query content.
        training: DN is only built in training.
        generator: optional RNG for the noise, on the same device as ``label_enc`` (global RNG when None).

    Returns:
        ``(input_query_label, input_query_bbox, attn_mask, dn_meta)``:

        * with DN: ``input_query_label`` ``[B, pad_size (+ Q), D]`` and ``input_query_bbox``
          ``[B, pad_size (+ Q), 4]`` -- the DN queries first, followed by ``tgt`` / ``refpoint_emb`` when those
          were given (when ``None``, only the DN part is returned, as the official decoder calls it);
          ``attn_mask`` ``[pad_size + Q, pad_size + Q]`` bool (True = blocked); ``dn_meta`` dict with
          ``pad_size``, ``scalar``, ``single_pad``, ``known_indice``, ``batch_idx``, ``map_known_indice``,
          ``known_lbs_bboxes`` (clean labels, clean boxes), ``known_lbs_bboxes_noised``, ``label_noise_mask``,
          ``know_idx``.
        * without DN (not training, no targets, or no image with a target): ``(tgt, refpoint_emb)`` batched to
          ``[B, Q, .]`` (or ``None`` when not given), ``None``, ``None``.
    """
    known_num = [int(t["labels"].numel()) for t in targets] if (training and targets is not None) else []
    single_pad = max(known_num) if known_num else 0
    # scalar 0: not training, no targets, or more targets in one image than the DN budget -> no DN this step
    scalar = dn_num // single_pad if single_pad > 0 and dn_num > 0 else 0
    if scalar == 0:
        return _batched(tgt, batch_size), _batched(refpoint_emb, batch_size), None, None

    device = label_enc.weight.device
    labels = torch.cat([t["labels"] for t in targets]).to(device=device, dtype=torch.int64)
    boxes = torch.cat([t["boxes"] for t in targets]).to(device=device, dtype=torch.float32)
    batch_idx = torch.cat(
        [torch.full((n,), b, dtype=torch.int64, device=device) for b, n in enumerate(known_num)]
    )
    n_total = labels.numel()
    # scalar copies, group-major: [group 0: all targets of all images, group 1: ..., ...]
    known_indice = torch.arange(n_total, device=device).repeat(scalar)
    known_labels = labels.repeat(scalar)
    known_bid = batch_idx.repeat(scalar)
    known_bboxs = boxes.repeat(scalar, 1)

    noisy_labels = known_labels.clone()
    noisy_boxes = known_bboxs.clone()
    label_noise_mask = torch.zeros_like(known_labels, dtype=torch.bool)
    if noise_scale > 0:
        p = torch.rand(noisy_labels.shape, device=device, generator=generator)
        # half the box noise probability; the new label is uniform over all classes, so it may equal the old one
        label_noise_mask = p < (noise_scale * 0.5)
        new_labels = torch.randint(0, num_classes, noisy_labels.shape, device=device, generator=generator)
        noisy_labels = torch.where(label_noise_mask, new_labels, noisy_labels)
        # centre moves by up to noise_scale * half the size, width/height change by up to noise_scale * size
        diff = torch.cat([noisy_boxes[:, 2:] / 2, noisy_boxes[:, 2:]], dim=1)
        u = torch.rand(noisy_boxes.shape, device=device, generator=generator) * 2 - 1.0
        noisy_boxes = (noisy_boxes + u * diff * noise_scale).clamp(min=0.0, max=1.0)

    input_label_embed = label_enc(noisy_labels)  # [scalar * n_total, D]
    input_bbox_embed = inverse_sigmoid(noisy_boxes)  # [scalar * n_total, 4]
    pad_size = single_pad * scalar

    # position of each DN query inside its image's padded DN block: target i of group g -> g * single_pad + i
    per_image = torch.cat([torch.arange(n, device=device) for n in known_num])
    map_known_indice = torch.cat([per_image + single_pad * g for g in range(scalar)]).long()

    dn_label = torch.zeros(batch_size, pad_size, hidden_dim, device=device, dtype=input_label_embed.dtype)
    dn_bbox = torch.zeros(batch_size, pad_size, 4, device=device, dtype=input_bbox_embed.dtype)
    # index_put keeps the autograd path into label_enc (the embedding is learned through the DN queries)
    dn_label = dn_label.index_put((known_bid, map_known_indice), input_label_embed)
    dn_bbox = dn_bbox.index_put((known_bid, map_known_indice), input_bbox_embed)

    tgt_b = _batched(tgt, batch_size)
    ref_b = _batched(refpoint_emb, batch_size)
    input_query_label = dn_label if tgt_b is None else torch.cat([dn_label.to(tgt_b.dtype), tgt_b], dim=1)
    input_query_bbox = dn_bbox if ref_b is None else torch.cat([dn_bbox.to(ref_b.dtype), ref_b], dim=1)

    attn_mask = build_dn_attn_mask(pad_size, single_pad, num_queries, device)
    dn_meta: dict[str, Any] = {
        "known_indice": known_indice,
        "batch_idx": batch_idx,
        "map_known_indice": map_known_indice,
        "known_lbs_bboxes": (known_labels, known_bboxs),
        "known_lbs_bboxes_noised": (noisy_labels, noisy_boxes),
        "label_noise_mask": label_noise_mask,
        "know_idx": [torch.arange(n, device=device)[:, None] for n in known_num],
        "pad_size": pad_size,
        "scalar": scalar,
        "single_pad": single_pad,
    }
    return input_query_label, input_query_bbox, attn_mask, dn_meta


def _aux_list(classes: Sequence[Tensor], coords: Sequence[Tensor], masks: Optional[Sequence[Tensor]]) -> list[dict]:
    out = []
    for i in range(len(classes) - 1):
        d = {"pred_logits": classes[i], "pred_boxes": coords[i]}
        if masks is not None:
            d["pred_masks"] = masks[i]
        out.append(d)
    return out


LayerOutputs = Union[Tensor, Sequence[Tensor]]


def dn_post_process(
    outputs_class: LayerOutputs,
    outputs_coord: LayerOutputs,
    dn_meta: dict[str, Any],
    outputs_mask: Optional[LayerOutputs],
) -> tuple[LayerOutputs, LayerOutputs, Optional[LayerOutputs]]:
    """Split the DN queries off the decoder outputs of every layer.

    Args:
        outputs_class: per-layer class logits, ``[L, B, pad_size + Q, K]`` or a list of L ``[B, pad+Q, K]``
            (L = initial prediction + decoder layers; the last is the final output).
        outputs_coord: per-layer boxes, ``[L, B, pad+Q, 4]`` or a list.
        dn_meta: from :func:`prepare_for_dn`; receives ``"output_known_lbs_bboxes"`` = ``{"pred_logits",
            "pred_boxes", "pred_masks" (when masks given): final-layer DN outputs, "aux_outputs": list of L-1 dicts
            for the earlier layers}``.
        outputs_mask: per-layer mask logits ``[L, B, pad+Q, h, w]`` or a list, or ``None``.

    Returns:
        ``(outputs_class, outputs_coord, outputs_mask)`` of the matching queries only (``[.., Q, ..]``), in the
        container type they came in (stacked tensor or list).
    """
    pad_size = int(dn_meta["pad_size"])
    if pad_size <= 0:
        raise ValueError("dn_meta has no DN queries (pad_size must be > 0)")

    def split(x: LayerOutputs) -> tuple[list[Tensor], LayerOutputs]:
        if isinstance(x, Tensor):
            return list(x[:, :, :pad_size].unbind(0)), x[:, :, pad_size:]
        return [t[:, :pad_size] for t in x], [t[:, pad_size:] for t in x]

    known_class, outputs_class = split(outputs_class)
    known_coord, outputs_coord = split(outputs_coord)
    known_mask: Optional[list[Tensor]] = None
    if outputs_mask is not None:
        known_mask, outputs_mask = split(outputs_mask)
    out: dict[str, Any] = {"pred_logits": known_class[-1], "pred_boxes": known_coord[-1]}
    if known_mask is not None:
        out["pred_masks"] = known_mask[-1]
    out["aux_outputs"] = _aux_list(known_class, known_coord, known_mask)
    dn_meta["output_known_lbs_bboxes"] = out
    return outputs_class, outputs_coord, outputs_mask
