"""Training losses of GEM: Hungarian matcher, set criterion (incl. GEM's proposal loss), denoising queries,
point sampling and box utilities. See ``docs/official-gem.md`` §3 for the official recipe."""
from .box_ops import (
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    masks_to_boxes,
)
from .criterion import PROPOSAL_TARGETS, SetCriterion, build_criterion, build_weight_dict, weighted_total
from .denoising import build_dn_attn_mask, dn_post_process, inverse_sigmoid, prepare_for_dn
from .matcher import HungarianMatcher
from .point_sampling import calculate_uncertainty, get_uncertain_point_coords_with_randomness, point_sample

__all__ = [
    "HungarianMatcher",
    "SetCriterion",
    "PROPOSAL_TARGETS",
    "build_criterion",
    "build_weight_dict",
    "weighted_total",
    "prepare_for_dn",
    "dn_post_process",
    "build_dn_attn_mask",
    "inverse_sigmoid",
    "point_sample",
    "calculate_uncertainty",
    "get_uncertain_point_coords_with_randomness",
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_iou",
    "generalized_box_iou",
    "masks_to_boxes",
]
