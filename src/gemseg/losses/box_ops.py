"""Box utilities for the set criterion and the matcher.

Conventions (as in DETR/MaskDINO):

* ``cxcywh``: (centre x, centre y, width, height), usually normalised by the image width/height;
* ``xyxy``: (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1.

:func:`masks_to_boxes` follows detectron2's ``BitMasks.get_bounding_boxes``: the box of a mask is
``[min x, min y, max x + 1, max y + 1]`` in pixel units (the right/bottom edges are *exclusive*), and an empty mask
gets the all-zero box. The official GEM targets are built this way (``docs/official-gem.md`` §3.3).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_area",
    "box_iou",
    "generalized_box_iou",
    "masks_to_boxes",
]


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (cx, cy, w, h) -> ``[..., 4]`` (x1, y1, x2, y2)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (x1, y1, x2, y2) -> ``[..., 4]`` (cx, cy, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``[N, 4]`` xyxy boxes -> ``[N]``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _check_xyxy(boxes: Tensor, name: str) -> None:
    # Inverted boxes make GIoU meaningless. NaN rows compare False and pass through on purpose: a non-finite
    # prediction must reach the loss so that the trainer's non-finite-loss handling sees it, not crash here.
    if (boxes[:, 2:] < boxes[:, :2]).any():
        raise ValueError(f"{name}: degenerate xyxy boxes (x2 < x1 or y2 < y1)")


def box_iou(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise IoU and union of xyxy boxes.

    Args:
        boxes1: ``[N, 4]`` xyxy.
        boxes2: ``[M, 4]`` xyxy.

    Returns:
        ``(iou [N, M], union [N, M])``; ``iou = inter / (union + 1e-6)`` (the MaskDINO epsilon, so that two empty
        boxes give IoU 0 instead of NaN).
    """
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter / (union + 1e-6), union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalised IoU (https://giou.stanford.edu/) of xyxy boxes.

    Args:
        boxes1: ``[N, 4]`` xyxy.
        boxes2: ``[M, 4]`` xyxy.

    Returns:
        ``[N, M]`` GIoU in [-1, 1]: ``iou - (enclosing - union) / (enclosing + 1e-6)``.
    """
    _check_xyxy(boxes1, "boxes1")
    _check_xyxy(boxes2, "boxes2")
    iou, union = box_iou(boxes1, boxes2)
    lt = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / (enclosing + 1e-6)


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight pixel boxes of binary masks, detectron2 convention.

    Args:
        masks: ``[N, H, W]`` bool (or 0/1) masks.

    Returns:
        ``[N, 4]`` float32 xyxy boxes in pixels: ``[x_min, y_min, x_max + 1, y_max + 1]``; all zeros for an empty
        mask.
    """
    n, h, w = masks.shape
    boxes = torch.zeros(n, 4, dtype=torch.float32, device=masks.device)
    if n == 0:
        return boxes
    m = masks.bool()
    x_any = m.any(dim=1)  # [N, W]: column contains a pixel
    y_any = m.any(dim=2)  # [N, H]: row contains a pixel
    nonempty = x_any.any(dim=1)
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    # first / last occupied column and row without a Python loop: masked min / max over the index ranges
    x_min = torch.where(x_any, xs, w).min(dim=1).values
    x_max = torch.where(x_any, xs, -1).max(dim=1).values
    y_min = torch.where(y_any, ys, h).min(dim=1).values
    y_max = torch.where(y_any, ys, -1).max(dim=1).values
    filled = torch.stack((x_min, y_min, x_max + 1, y_max + 1), dim=1).to(torch.float32)
    boxes[nonempty] = filled[nonempty]
    return boxes
