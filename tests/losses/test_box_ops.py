"""Box conversions, GIoU and the detectron2 mask->box convention."""
from __future__ import annotations

import pytest
import torch

from gemseg.losses.box_ops import (
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    masks_to_boxes,
)


def test_cxcywh_xyxy_roundtrip():
    b = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.2, 0.2]])
    xyxy = box_cxcywh_to_xyxy(b)
    torch.testing.assert_close(xyxy, torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.0, 0.8, 0.2, 1.0]]))
    torch.testing.assert_close(box_xyxy_to_cxcywh(xyxy), b)


def test_iou_and_giou_hand_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 5.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    iou, union = box_iou(a, b)
    torch.testing.assert_close(union, torch.tensor([[7.0, 5.0, 4.0]]))
    torch.testing.assert_close(iou, torch.tensor([[1 / 7, 0.0, 1.0]]), atol=1e-5, rtol=0)
    giou = generalized_box_iou(a, b)
    # enclosing boxes: 3x3=9, 5x2=10, 2x2=4
    expected = torch.tensor([[1 / 7 - (9 - 7) / 9, 0.0 - (10 - 5) / 10, 1.0]])
    torch.testing.assert_close(giou, expected, atol=1e-5, rtol=0)


def test_giou_rejects_inverted_boxes():
    with pytest.raises(ValueError):
        generalized_box_iou(torch.tensor([[1.0, 1.0, 0.0, 2.0]]), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))


def test_masks_to_boxes_detectron2_convention():
    m = torch.zeros(3, 6, 8, dtype=torch.bool)
    m[0, 1:4, 2:5] = True  # rows 1..3, cols 2..4
    m[1, 5, 7] = True  # single pixel at the corner
    boxes = masks_to_boxes(m)
    torch.testing.assert_close(
        boxes, torch.tensor([[2.0, 1.0, 5.0, 4.0], [7.0, 5.0, 8.0, 6.0], [0.0, 0.0, 0.0, 0.0]])
    )
    assert masks_to_boxes(torch.zeros(0, 4, 4, dtype=torch.bool)).shape == (0, 4)
