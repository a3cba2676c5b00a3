"""Hungarian matcher of MaskDINO as configured by GEM (``docs/official-gem.md`` §3.2).

Per image, the cost of assigning query ``q`` to target ``t`` is::

    C = cost_mask * BCE + cost_class * focal + cost_dice * dice + cost_box * L1 + cost_giou * (-GIoU)

with the official weights 5 / 4 / 5 / 5 / 2, and the assignment is solved by
``scipy.optimize.linear_sum_assignment``. Quirk kept on purpose (it is the method): the class cost is the
*sigmoid focal* cost of the logits although the classification loss is a softmax cross-entropy.
The mask costs are computed on ``num_points`` points drawn uniformly at random, one set shared by all queries and
targets of an image.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from .box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from .point_sampling import point_sample

__all__ = ["HungarianMatcher", "batch_dice_cost", "batch_sigmoid_ce_cost", "focal_class_cost"]


def batch_dice_cost(inputs: Tensor, targets: Tensor) -> Tensor:
    """Pairwise dice cost.

    Args:
        inputs: ``[N, P]`` mask logits at P points.
        targets: ``[M, P]`` binary targets at the same points.

    Returns:
        ``[N, M]``: ``1 - (2 Σ σ(x) t + 1) / (Σ σ(x) + Σ t + 1)``.
    """
    probs = inputs.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def batch_sigmoid_ce_cost(inputs: Tensor, targets: Tensor) -> Tensor:
    """Pairwise binary cross-entropy with logits, averaged over the points.

    Args:
        inputs: ``[N, P]`` mask logits.
        targets: ``[M, P]`` targets in [0, 1].

    Returns:
        ``[N, M]`` mean-over-points BCE of every (prediction, target) pair.
    """
    num_points = inputs.shape[1]
    # BCE(x, 1) = softplus(-x) and BCE(x, 0) = softplus(x) = softplus(-x) + x: one transcendental pass, not two
    pos = F.softplus(-inputs)
    neg = pos + inputs
    return (pos @ targets.T + neg @ (1 - targets).T) / num_points


def focal_class_cost(logits: Tensor, tgt_ids: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Sigmoid-focal classification cost (DINO / MaskDINO matcher).

    Args:
        logits: ``[Q, K]`` class logits (K = num_classes + 1 for GEM; the no-object column is never indexed).
        tgt_ids: ``[M]`` target class ids.

    Returns:
        ``[Q, M]``: ``α(1-p)^γ(-log(p+1e-8)) - (1-α)p^γ(-log(1-p+1e-8))`` with ``p = sigmoid(logit)[tgt]``.
    """
    prob = logits.sigmoid()
    neg = (1 - alpha) * prob.pow(gamma) * (-(1 - prob + 1e-8).log())
    pos = alpha * (1 - prob).pow(gamma) * (-(prob + 1e-8).log())
    return pos[:, tgt_ids] - neg[:, tgt_ids]


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets, per image.

    Args:
        cost_class, cost_mask, cost_dice, cost_box, cost_giou: weights of the cost terms (official 4, 5, 5, 5, 2).
        num_points: points for the mask costs (official 12544).
        costs: which cost groups to use: any of ``"cls"``, ``"box"``, ``"mask"`` (official: all three).
    """

    def __init__(
        self,
        cost_class: float = 4.0,
        cost_mask: float = 5.0,
        cost_dice: float = 5.0,
        cost_box: float = 5.0,
        cost_giou: float = 2.0,
        num_points: int = 12544,
        costs: Sequence[str] = ("cls", "box", "mask"),
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("cost_class, cost_mask and cost_dice cannot all be 0")
        unknown = set(costs) - {"cls", "box", "mask"}
        if unknown:
            raise ValueError(f"unknown cost groups {sorted(unknown)}")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.cost_box = cost_box
        self.cost_giou = cost_giou
        self.num_points = num_points
        self.costs = tuple(costs)

    @torch.no_grad()
    def cost_terms(
        self,
        pred_logits: Tensor,
        pred_boxes: Optional[Tensor],
        pred_masks: Optional[Tensor],
        target: dict,
        point_coords: Optional[Tensor] = None,
    ) -> dict[str, Tensor]:
        """The unweighted cost matrices of one image.

        Args:
            pred_logits: ``[Q, K]``.
            pred_boxes: ``[Q, 4]`` normalised cxcywh (needed when ``"box"`` is used).
            pred_masks: ``[Q, h, w]`` mask logits (needed when ``"mask"`` is used).
            target: ``{"labels": [M], "boxes": [M, 4] cxcywh, "masks": [M, H, W]}``.
            point_coords: ``[P, 2]`` points in [0, 1] for the mask costs; ``num_points`` uniform random points
                (global RNG, as the official code) when ``None``.

        Returns:
            dict with ``class``, ``bbox``, ``giou`` (= -GIoU), ``mask`` (BCE), ``dice``, each ``[Q, M]`` float32;
            cost groups that are switched off are absent.
        """
        out: dict[str, Tensor] = {}
        tgt_ids = target["labels"]
        if "cls" in self.costs:
            out["class"] = focal_class_cost(pred_logits.float(), tgt_ids)
        if "box" in self.costs:
            if pred_boxes is None:
                raise ValueError("the box cost needs 'pred_boxes'")
            ob = pred_boxes.float()
            tb = target["boxes"].to(ob)
            out["bbox"] = torch.cdist(ob, tb, p=1)
            out["giou"] = -generalized_box_iou(box_cxcywh_to_xyxy(ob), box_cxcywh_to_xyxy(tb))
        if "mask" in self.costs:
            if pred_masks is None:
                raise ValueError("the mask cost needs 'pred_masks'")
            om = pred_masks.float()[:, None]  # [Q, 1, h, w]
            tm = target["masks"].to(om)[:, None]  # [M, 1, H, W]
            if point_coords is None:
                point_coords = torch.rand(self.num_points, 2, device=om.device)
            pc = point_coords.to(om)[None]
            # one shared set of points for every query and target, so that the pairwise costs compare the same
            # locations (the official "memory efficient" matcher)
            tgt_pts = point_sample(tm, pc.expand(tm.shape[0], -1, -1), align_corners=False).squeeze(1)
            out_pts = point_sample(om, pc.expand(om.shape[0], -1, -1), align_corners=False).squeeze(1)
            out["mask"] = batch_sigmoid_ce_cost(out_pts, tgt_pts)
            out["dice"] = batch_dice_cost(out_pts, tgt_pts)
        return out

    def total_cost(self, terms: dict[str, Tensor]) -> Tensor:
        """Weighted sum ``[Q, M]`` of the terms returned by :meth:`cost_terms`."""
        weights = {
            "class": self.cost_class,
            "mask": self.cost_mask,
            "dice": self.cost_dice,
            "bbox": self.cost_box,
            "giou": self.cost_giou,
        }
        total: Optional[Tensor] = None
        for name, value in terms.items():
            term = weights[name] * value
            total = term if total is None else total + term
        assert total is not None  # the constructor guarantees at least one group
        return total

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list[dict]) -> list[tuple[Tensor, Tensor]]:
        """Match every image of the batch.

        Args:
            outputs: ``{"pred_logits": [B, Q, K], "pred_boxes": [B, Q, 4], "pred_masks": [B, Q, h, w]}``
                (other keys are ignored).
            targets: B dicts ``{"labels": [M_b], "boxes": [M_b, 4], "masks": [M_b, H, W]}``.

        Returns:
            B pairs ``(query_idx, target_idx)`` of int64 CPU tensors of length ``min(Q, M_b)``, query indices
            ascending (scipy's order).
        """
        bs, num_queries = outputs["pred_logits"].shape[:2]
        indices: list[tuple[Tensor, Tensor]] = []
        for b in range(bs):
            n_tgt = int(targets[b]["labels"].numel())
            if n_tgt == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            terms = self.cost_terms(
                outputs["pred_logits"][b],
                outputs["pred_boxes"][b] if "pred_boxes" in outputs else None,
                outputs["pred_masks"][b] if "pred_masks" in outputs else None,
                targets[b],
            )
            cost = self.total_cost(terms).reshape(num_queries, n_tgt).cpu()
            # a NaN/inf cost makes scipy raise; turn it into a large finite cost so that a diverging step is
            # reported by the loss (non-finite) rather than by a crash inside the matcher
            cost = torch.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8)
            q_idx, t_idx = linear_sum_assignment(cost.numpy())
            indices.append((torch.as_tensor(q_idx, dtype=torch.int64), torch.as_tensor(t_idx, dtype=torch.int64)))
        return indices
