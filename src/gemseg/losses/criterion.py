"""GEM's set criterion: MaskDINO's SetCriterion (semantic CE variant) plus GEM's proposal loss.

``docs/official-gem.md`` §3 describes the official terms; this module computes, for the final decoder output and
every auxiliary output (deep supervision):

* ``loss_ce``: softmax cross-entropy over K + 1 classes for all queries; unmatched queries -> no-object (class K);
  class weights ``empty_weight = [1, ..., 1, eos_coef]`` (GEM: ``[1, 1, 0.1]``); weighted mean;
* ``loss_mask`` / ``loss_dice``: point-sampled BCE and dice of the matched masks (12544 points chosen by
  uncertainty-based importance sampling), summed over masks and divided by ``num_masks``;
* ``loss_bbox`` / ``loss_giou``: L1 and 1 - GIoU of the matched normalised cxcywh boxes, / ``num_masks``;
* the same three groups for the denoising queries (suffix ``_dn``) with the fixed assignment
  (DN query ``g * single_pad + i`` <-> target ``i``), normalised by ``num_masks * scalar``;
* ``loss_proposal`` (GEM): 2-class cross-entropy of the query-proposal map ``proposal_cls_logits`` (stride 16).

Aux outputs add the suffix ``_{i}`` (and ``_dn_{i}`` for i >= 1: the initial prediction's DN part is not
supervised, as in the official code). The returned losses are *unweighted*; the total is
``sum(weight_dict[k] * losses[k] for k in losses if k in weight_dict)`` (:func:`weighted_total`).

Proposal-loss target (``proposal_target``):

* ``"official"``: ``NOT targets[b]["masks"][0]`` average-pooled to the proposal map and truncated to int64 -- a cell
  is 1 only if *none* of its pixels is in the first target mask. The first mask is the background when the image
  has background pixels, but in an image without background it is the glass mask, so the target is inverted
  (all 0 where there is glass). Ignored (255) and padded pixels count as positive.
* ``"fixed"`` (default): the background mask is selected by its label (``background_label``, 0) instead of by
  position, so images without background get the right (all-positive) target; and cells containing no labelled
  pixel at all (pure padding / ignore) are ignored (target -1) instead of being taught "glass". On every cell
  that has a labelled pixel the target equals the official one when the image has background.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from .matcher import HungarianMatcher
from .point_sampling import calculate_uncertainty, get_uncertain_point_coords_with_randomness, point_sample

__all__ = [
    "SetCriterion",
    "build_weight_dict",
    "build_criterion",
    "weighted_total",
    "average_num_masks",
    "dice_loss",
    "sigmoid_ce_loss",
    "PROPOSAL_TARGETS",
]

PROPOSAL_TARGETS = ("fixed", "official")

# loss-group name -> the keys it produces (before suffixes)
_GROUP_KEYS = {
    "labels": ("loss_ce",),
    "masks": ("loss_mask", "loss_dice"),
    "boxes": ("loss_bbox", "loss_giou"),
}


def dice_loss(inputs: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Dice loss of point logits, summed over masks / num_masks.

    Args:
        inputs: ``[N, P]`` logits.
        targets: ``[N, P]`` targets in [0, 1].
    """
    probs = inputs.sigmoid().flatten(1)
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    loss = 1 - (numerator + 1) / (denominator + 1)
    return loss.sum() / num_masks


def sigmoid_ce_loss(inputs: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """BCE-with-logits averaged over points, summed over masks / num_masks.

    Args:
        inputs: ``[N, P]`` logits.
        targets: ``[N, P]`` targets in [0, 1].
    """
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def _sample_target_masks(targets: Sequence[dict], tb: Tensor, ti: Tensor, coords: Tensor) -> Tensor:
    """Sample target masks at per-row points.

    Row ``r`` reads mask ``targets[tb[r]]["masks"][ti[r]]`` at ``coords[r]``. Masks of different sizes are
    zero-padded bottom/right to the largest one first (the official ``nested_tensor_from_tensor_list``), so the
    normalised coordinates refer to the padded batch canvas.

    The DN losses use every target ``scalar`` times (~50x); instead of materialising one float copy of the
    full-resolution mask per row (the official way), each distinct mask is converted once and sampled at the points
    of all its rows in one ``grid_sample`` call -- the same values, far less memory traffic.

    Args:
        tb, ti: ``[N]`` image and target indices.
        coords: ``[N, P, 2]`` points in [0, 1].

    Returns:
        ``[N, P]`` float32 sampled target values.
    """
    max_h = max(int(t["masks"].shape[-2]) for t in targets)
    max_w = max(int(t["masks"].shape[-1]) for t in targets)
    out = coords.new_zeros(coords.shape[:2], dtype=torch.float32)
    pairs = torch.stack([tb, ti], dim=1)
    uniq, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    for u, (b, i) in enumerate(uniq.tolist()):
        mask = targets[b]["masks"][i]
        canvas = torch.zeros(max_h, max_w, dtype=torch.float32, device=coords.device)
        canvas[: mask.shape[0], : mask.shape[1]] = mask.to(device=coords.device, dtype=torch.float32)
        rows = (inverse == u).nonzero().squeeze(1).to(coords.device)
        pts = coords[rows].reshape(1, -1, 2)  # all points of all rows reading this mask
        vals = point_sample(canvas[None, None], pts.float(), align_corners=False)  # [1, 1, rows * P]
        out[rows] = vals.reshape(rows.numel(), coords.shape[1])
    return out


def average_num_masks(targets: Sequence[dict], device: torch.device) -> float:
    """Average #targets per rank, at least 1: the normaliser of the matched losses.

    Under torch.distributed the count is all-reduced (summed) and divided by the world size, so every rank uses
    the same normaliser (the official ``num_masks``). Note: every rank must call this (it is a collective).
    """
    n = torch.as_tensor([float(sum(int(t["labels"].numel()) for t in targets))], device=device)
    world = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(n)
        world = dist.get_world_size()
    return float(torch.clamp(n / world, min=1).item())


class SetCriterion(nn.Module):
    """Losses of GEM training (see the module docstring).

    Args:
        num_classes: K (GEM: 2, background and glass); the no-object class is K.
        matcher: the Hungarian matcher.
        weight_dict: loss weights (kept here for the trainer, as in the official code).
        eos_coef: no-object class weight (official 0.1).
        losses: loss groups for the matched outputs, from ``"labels"``, ``"masks"``, ``"boxes"``.
        num_points, oversample_ratio, importance_sample_ratio: point sampling (12544, 3.0, 0.75).
        dn: ``"no"``, ``"standard"`` or ``"seg"`` (GEM: ``"seg"``).
        dn_losses: loss groups for the DN queries.
        proposal_target: ``"fixed"`` (default) or ``"official"`` (module docstring).
        background_label: the class id of background (used by ``proposal_target="fixed"``).
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        weight_dict: dict[str, float],
        eos_coef: float = 0.1,
        losses: Sequence[str] = ("labels", "masks", "boxes"),
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        dn: str = "seg",
        dn_losses: Sequence[str] = ("labels", "masks", "boxes"),
        proposal_target: str = "fixed",
        background_label: int = 0,
    ) -> None:
        super().__init__()
        for group in list(losses) + list(dn_losses):
            if group not in _GROUP_KEYS:
                raise ValueError(f"unknown loss group {group!r}; expected one of {sorted(_GROUP_KEYS)}")
        if dn not in ("no", "standard", "seg"):
            raise ValueError(f"dn must be 'no', 'standard' or 'seg', got {dn!r}")
        if proposal_target not in PROPOSAL_TARGETS:
            raise ValueError(f"proposal_target must be one of {PROPOSAL_TARGETS}, got {proposal_target!r}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.eos_coef = eos_coef
        self.losses = tuple(losses)
        self.dn = dn
        self.dn_losses = tuple(dn_losses) if dn != "no" else ()
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.proposal_target = proposal_target
        self.background_label = background_label
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        # a buffer so that it follows .to(device) and is saved in checkpoints like the official one
        self.register_buffer("empty_weight", empty_weight)

    # ------------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def _src_idx(indices: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        batch = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])
        src = torch.cat([src for src, _ in indices])
        return batch, src

    @staticmethod
    def _tgt_idx(indices: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        batch = torch.cat([torch.full_like(tgt, b) for b, (_, tgt) in enumerate(indices)])
        tgt = torch.cat([tgt for _, tgt in indices])
        return batch, tgt

    # ------------------------------------------------------------------------------------------------ losses
    def loss_labels(self, outputs: dict, targets: Sequence[dict], indices, num_masks: float) -> dict[str, Tensor]:
        """Softmax CE over K + 1 classes of ``pred_logits`` ``[B, Q, K+1]``; unmatched queries -> class K."""
        logits = outputs["pred_logits"].float()
        batch_idx, src_idx = self._src_idx(indices)
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        if src_idx.numel():
            matched = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(logits.device)
            target_classes[batch_idx.to(logits.device), src_idx.to(logits.device)] = matched.long()
        loss = F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight.to(logits))
        return {"loss_ce": loss}

    def loss_boxes(self, outputs: dict, targets: Sequence[dict], indices, num_masks: float) -> dict[str, Tensor]:
        """L1 and 1 - GIoU of matched ``pred_boxes`` ``[B, Q, 4]`` (normalised cxcywh), each / num_masks."""
        boxes = outputs["pred_boxes"]
        batch_idx, src_idx = self._src_idx(indices)
        if src_idx.numel() == 0:
            zero = boxes.sum() * 0.0
            return {"loss_bbox": zero, "loss_giou": zero.clone()}
        src = boxes[batch_idx.to(boxes.device), src_idx.to(boxes.device)].float()
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(src)
        loss_bbox = F.l1_loss(src, tgt, reduction="none").sum() / num_masks
        giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt)))
        loss_giou = (1 - giou).sum() / num_masks
        return {"loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def loss_masks(self, outputs: dict, targets: Sequence[dict], indices, num_masks: float) -> dict[str, Tensor]:
        """Point-sampled BCE + dice of matched ``pred_masks`` ``[B, Q, h, w]`` against targets ``[M, H, W]``.

        Predictions are not upsampled: the points are in normalised coordinates, so the low-resolution logits and
        the full-resolution targets are sampled at the same image locations.
        """
        pred = outputs["pred_masks"]
        batch_idx, src_idx = self._src_idx(indices)
        if src_idx.numel() == 0:
            zero = pred.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero.clone()}
        src = pred[batch_idx.to(pred.device), src_idx.to(pred.device)].float()[:, None]  # [N, 1, h, w]
        tb, ti = self._tgt_idx(indices)
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                src, calculate_uncertainty, self.num_points, self.oversample_ratio, self.importance_sample_ratio
            )
            point_labels = _sample_target_masks(targets, tb, ti, coords).to(src)
        point_logits = point_sample(src, coords, align_corners=False).squeeze(1)
        return {
            "loss_mask": sigmoid_ce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    def get_loss(self, group: str, outputs: dict, targets: Sequence[dict], indices, num_masks: float) -> dict:
        fn = {"labels": self.loss_labels, "masks": self.loss_masks, "boxes": self.loss_boxes}[group]
        return fn(outputs, targets, indices, num_masks)

    # ------------------------------------------------------------------------------------------------ proposal
    def proposal_targets(self, targets: Sequence[dict], size: tuple[int, int]) -> Tensor:
        """Per-cell targets of the proposal map.

        Args:
            targets: B dicts with ``"masks"`` ``[M_b, H, W]`` (and ``"labels"`` for the fixed mode).
            size: ``(h, w)`` of ``proposal_cls_logits``.

        Returns:
            ``[B, h * w]`` int64 in {0, 1} (official) or {-1, 0, 1} (fixed; -1 = ignored cell).
        """
        planes_pos: list[Tensor] = []
        planes_valid: list[Tensor] = []
        for t in targets:
            masks = t["masks"].bool()
            h, w = masks.shape[-2:]
            if self.proposal_target == "official":
                first = masks[0] if masks.shape[0] else torch.zeros(h, w, dtype=torch.bool, device=masks.device)
                planes_pos.append(~first)
            else:
                labels = t["labels"].to(masks.device)
                # any() over an empty selection is all-False: no background mask -> no background pixel
                bg = masks[labels == self.background_label].any(dim=0)
                valid = masks.any(dim=0)  # labelled pixels (not ignore / padding)
                planes_pos.append(bg)  # the fixed mode pools the background itself, see below
                planes_valid.append(valid)
        pooled = F.adaptive_avg_pool2d(torch.stack(planes_pos)[:, None].float(), output_size=size).flatten(1)
        if self.proposal_target == "official":
            # truncation: 1 only when every pixel of the cell is outside the first mask
            return pooled.to(torch.int64)
        bg_frac = pooled
        valid_frac = F.adaptive_avg_pool2d(torch.stack(planes_valid)[:, None].float(), output_size=size).flatten(1)
        target = (bg_frac <= 0).to(torch.int64)  # no background pixel in the cell -> positive (official rule)
        return torch.where(valid_frac > 0, target, torch.full_like(target, -1))

    def loss_proposals(self, outputs: dict, targets: Sequence[dict]) -> dict[str, Tensor]:
        """GEM proposal loss: 2-class CE over all cells of ``proposal_cls_logits`` ``[B, 2, h, w]``, mean."""
        logits = outputs["proposal_cls_logits"].float()
        size = (int(logits.shape[-2]), int(logits.shape[-1]))
        target = self.proposal_targets(targets, size).to(logits.device)
        flat = logits.flatten(2)  # [B, 2, h*w]
        if not (target != -1).any():  # every cell ignored: mean over nothing would be NaN
            return {"loss_proposal": flat.sum() * 0.0}
        return {"loss_proposal": F.cross_entropy(flat, target, ignore_index=-1)}

    # ------------------------------------------------------------------------------------------------ forward
    def _dn_indices(self, targets: Sequence[dict], dn_meta: dict) -> list[tuple[Tensor, Tensor]]:
        """Fixed DN assignment: query ``g * single_pad + i`` <-> target ``i``, for every group g."""
        scalar = int(dn_meta["scalar"])
        single_pad = int(dn_meta["pad_size"]) // scalar
        out = []
        for t in targets:
            n = int(t["labels"].numel())
            if n == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                out.append((empty, empty.clone()))
                continue
            tgt = torch.arange(n).repeat(scalar)
            src = (torch.arange(scalar)[:, None] * single_pad + torch.arange(n)[None, :]).flatten()
            out.append((src, tgt))
        return out

    def _zero_dn(self, suffix: str, device: torch.device) -> dict[str, Tensor]:
        # the official code emits zeros when DN is on but this batch has no DN queries (no targets), so that the
        # logged key set is stable
        out = {}
        for group in self.dn_losses:
            for key in _GROUP_KEYS[group]:
                out[f"{key}_dn{suffix}"] = torch.zeros((), device=device)
        return out

    def forward(self, outputs: dict, targets: Sequence[dict], dn_meta: Optional[dict] = None) -> dict[str, Tensor]:
        """Compute all unweighted losses.

        Args:
            outputs: ``{"pred_logits": [B, Q, K+1], "pred_masks": [B, Q, h, w], "pred_boxes": [B, Q, 4],
                "aux_outputs": [dicts with the same keys], "proposal_cls_logits": [B, 2, h16, w16]}``
                (``aux_outputs``, ``proposal_cls_logits`` and ``interm_outputs`` optional). Not modified.
            targets: B dicts ``{"labels": [M_b] int64, "masks": [M_b, H, W] bool/float, "boxes": [M_b, 4]}``.
            dn_meta: from :func:`gemseg.losses.denoising.prepare_for_dn` after
                :func:`~gemseg.losses.denoising.dn_post_process` (holds ``"output_known_lbs_bboxes"``), or ``None``.

        Returns:
            dict of scalar tensors (keys listed in the module docstring).
        """
        device = outputs["pred_logits"].device
        losses: dict[str, Tensor] = {}
        main = {k: v for k, v in outputs.items() if k in ("pred_logits", "pred_masks", "pred_boxes")}
        num_masks = average_num_masks(targets, device)

        indices = self.matcher(main, targets)
        for group in self.losses:
            losses.update(self.get_loss(group, main, targets, indices, num_masks))

        use_dn = self.dn != "no" and dn_meta is not None
        if use_dn:
            dn_out = dn_meta["output_known_lbs_bboxes"]
            dn_indices = self._dn_indices(targets, dn_meta)
            dn_norm = num_masks * int(dn_meta["scalar"])
            for group in self.dn_losses:
                l_dict = self.get_loss(group, dn_out, targets, dn_indices, dn_norm)
                losses.update({f"{k}_dn": v for k, v in l_dict.items()})
        elif self.dn != "no":
            losses.update(self._zero_dn("", device))

        # the initial prediction's DN part is supervised only with two-stage (official `start`)
        dn_aux_start = 0 if "interm_outputs" in outputs else 1
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            aux_indices = self.matcher(aux, targets)
            for group in self.losses:
                l_dict = self.get_loss(group, aux, targets, aux_indices, num_masks)
                losses.update({f"{k}_{i}": v for k, v in l_dict.items()})
            if i < dn_aux_start:
                continue
            if use_dn:
                dn_aux = dn_meta["output_known_lbs_bboxes"]["aux_outputs"][i]
                for group in self.dn_losses:
                    l_dict = self.get_loss(group, dn_aux, targets, dn_indices, dn_norm)
                    losses.update({f"{k}_dn_{i}": v for k, v in l_dict.items()})
            elif self.dn != "no":
                losses.update(self._zero_dn(f"_{i}", device))

        if "interm_outputs" in outputs:
            interm = outputs["interm_outputs"]
            interm_indices = self.matcher(interm, targets)
            for group in self.losses:
                l_dict = self.get_loss(group, interm, targets, interm_indices, num_masks)
                losses.update({f"{k}_interm": v for k, v in l_dict.items()})

        if outputs.get("proposal_cls_logits") is not None:
            losses.update(self.loss_proposals(outputs, targets))
        return losses


def weighted_total(losses: dict[str, Tensor], weight_dict: dict[str, float]) -> Tensor:
    """``sum(weight_dict[k] * losses[k])`` over the losses that have a weight (others are dropped, as official)."""
    terms = [losses[k] * weight_dict[k] for k in losses if k in weight_dict]
    if not terms:
        raise ValueError("no loss has a weight in weight_dict")
    return torch.stack([t.float() for t in terms]).sum()


def build_weight_dict(
    *,
    class_weight: float = 4.0,
    mask_weight: float = 5.0,
    dice_weight: float = 5.0,
    box_weight: float = 5.0,
    giou_weight: float = 2.0,
    proposal_weight: float = 80.0,
    dn: str = "seg",
    deep_supervision: bool = True,
    dec_layers: int = 9,
    two_stage: bool = False,
) -> dict[str, float]:
    """The official loss-weight dict (maskdino.py:188-216 of the GEM code), in the official key order.

    Base keys ``loss_ce, loss_mask, loss_dice, loss_bbox, loss_giou, loss_proposal``; with ``two_stage`` each gets
    an ``_interm`` copy; DN ``"seg"`` duplicates every key with ``_dn`` (``"standard"``: all but mask/dice); deep
    supervision then duplicates every key with ``_0`` .. ``_{dec_layers-1}``. Some keys are never produced by the
    criterion (``loss_proposal_dn``, ``loss_proposal_{i}``, ``*_dn_0``); they are kept so the set matches the
    official one.
    """
    weights: dict[str, float] = {
        "loss_ce": class_weight,
        "loss_mask": mask_weight,
        "loss_dice": dice_weight,
        "loss_bbox": box_weight,
        "loss_giou": giou_weight,
        "loss_proposal": proposal_weight,
    }
    if two_stage:
        weights.update({f"{k}_interm": v for k, v in list(weights.items())})
    if dn == "standard":
        weights.update({f"{k}_dn": v for k, v in list(weights.items()) if k not in ("loss_mask", "loss_dice")})
    elif dn == "seg":
        weights.update({f"{k}_dn": v for k, v in list(weights.items())})
    elif dn != "no":
        raise ValueError(f"dn must be 'no', 'standard' or 'seg', got {dn!r}")
    if deep_supervision:
        aux: dict[str, float] = {}
        for i in range(dec_layers):
            aux.update({f"{k}_{i}": v for k, v in weights.items()})
        weights.update(aux)
    return weights


def _cfg_get(node: Any, name: str, default: Any) -> Any:
    return getattr(node, name, default) if node is not None else default


def build_criterion(cfg: Any) -> SetCriterion:
    """Matcher + criterion + weight dict from a config (``cfg.MODEL.MaskDINO`` / ``cfg.MODEL.SEM_SEG_HEAD``).

    Only the semantic softmax-CE classification loss is implemented (what every GEM config uses:
    ``TEST.SEMANTIC_ON and SEMANTIC_CE_LOSS and not TEST.PANOPTIC_ON``).
    """
    m = cfg.MODEL.MaskDINO
    test = _cfg_get(m, "TEST", None)
    semantic_ce = (
        bool(_cfg_get(test, "SEMANTIC_ON", True))
        and bool(m.SEMANTIC_CE_LOSS)
        and not bool(_cfg_get(test, "PANOPTIC_ON", False))
    )
    if not semantic_ce:
        raise ConfigError(
            "only the semantic cross-entropy criterion is implemented: set MODEL.MaskDINO.SEMANTIC_CE_LOSS True "
            "and MODEL.MaskDINO.TEST.SEMANTIC_ON True (as the GEM configs do)"
        )
    if bool(_cfg_get(m, "PANO_BOX_LOSS", False)):
        raise ConfigError("MODEL.MaskDINO.PANO_BOX_LOSS is not supported (GEM does not use it)")
    proposal_target = str(_cfg_get(m, "PROPOSAL_TARGET", "fixed"))
    if proposal_target not in PROPOSAL_TARGETS:
        raise ConfigError(f"MODEL.MaskDINO.PROPOSAL_TARGET must be one of {PROPOSAL_TARGETS}, got {proposal_target!r}")
    dn = str(m.DN)
    if dn not in ("no", "standard", "seg"):
        raise ConfigError(f"MODEL.MaskDINO.DN must be 'no', 'standard' or 'seg', got {dn!r}")
    matcher = HungarianMatcher(
        cost_class=float(m.COST_CLASS_WEIGHT),
        cost_mask=float(m.COST_MASK_WEIGHT),
        cost_dice=float(m.COST_DICE_WEIGHT),
        cost_box=float(m.COST_BOX_WEIGHT),
        cost_giou=float(m.COST_GIOU_WEIGHT),
        num_points=int(m.TRAIN_NUM_POINTS),
    )
    weight_dict = build_weight_dict(
        class_weight=float(m.CLASS_WEIGHT),
        mask_weight=float(m.MASK_WEIGHT),
        dice_weight=float(m.DICE_WEIGHT),
        box_weight=float(m.BOX_WEIGHT),
        giou_weight=float(m.GIOU_WEIGHT),
        proposal_weight=float(_cfg_get(m, "PROPOSAL_WEIGHT", 80.0)),
        dn=dn,
        deep_supervision=bool(m.DEEP_SUPERVISION),
        dec_layers=int(m.DEC_LAYERS),
        two_stage=bool(m.TWO_STAGE),
    )
    losses: Iterable[str] = ("labels", "masks", "boxes") if bool(m.BOX_LOSS) else ("labels", "masks")
    dn_losses = {"seg": ("labels", "masks", "boxes"), "standard": ("labels", "boxes"), "no": ()}[dn]
    return SetCriterion(
        num_classes=int(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES),
        matcher=matcher,
        weight_dict=weight_dict,
        eos_coef=float(m.NO_OBJECT_WEIGHT),
        losses=tuple(losses),
        num_points=int(m.TRAIN_NUM_POINTS),
        oversample_ratio=float(m.OVERSAMPLE_RATIO),
        importance_sample_ratio=float(m.IMPORTANCE_SAMPLE_RATIO),
        dn=dn,
        dn_losses=dn_losses,
        proposal_target=proposal_target,
    )
