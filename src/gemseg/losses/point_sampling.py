"""PointRend-style point sampling used by the mask losses and the matcher (Mask2Former / MaskDINO recipe).

Coordinates are normalised to ``[0, 1] x [0, 1]`` in ``(x, y)`` order and sampled bilinearly with
``align_corners=False`` (so ``(0, 0)`` is the top-left *corner* of the top-left pixel, not its centre) and zero
padding outside the map, exactly as detectron2's ``point_sample``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["point_sample", "calculate_uncertainty", "get_uncertain_point_coords_with_randomness"]


def point_sample(input: Tensor, point_coords: Tensor, align_corners: bool = False) -> Tensor:
    """Bilinearly sample ``input`` at normalised points.

    Args:
        input: ``[N, C, H, W]`` feature / logit maps.
        point_coords: ``[N, P, 2]`` (or ``[N, Hg, Wg, 2]``) points, ``(x, y)`` in ``[0, 1]``.
        align_corners: passed to ``grid_sample``; the GEM losses always use ``False``.

    Returns:
        ``[N, C, P]`` (or ``[N, C, Hg, Wg]``) sampled values.
    """
    squeeze = point_coords.dim() == 3
    grid = point_coords.unsqueeze(2) if squeeze else point_coords
    # grid_sample wants [-1, 1]; zero padding outside, as in detectron2
    # the grid must share the input's dtype (bf16/fp16 maps under AMP)
    grid = grid.to(input.dtype)
    out = F.grid_sample(input, 2.0 * grid - 1.0, mode="bilinear", padding_mode="zeros", align_corners=align_corners)
    return out.squeeze(3) if squeeze else out


def calculate_uncertainty(logits: Tensor) -> Tensor:
    """Uncertainty of class-agnostic mask logits: ``-|logit|`` (highest at the decision boundary).

    Args:
        logits: ``[R, 1, ...]`` mask logits.

    Returns:
        ``[R, 1, ...]`` uncertainty scores.
    """
    if logits.shape[1] != 1:
        raise ValueError(f"expected class-agnostic logits [R, 1, ...], got {tuple(logits.shape)}")
    return -logits.abs()


def get_uncertain_point_coords_with_randomness(
    coarse_logits: Tensor,
    uncertainty_func: Callable[[Tensor], Tensor],
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Importance sampling of points (PointRend): mostly uncertain points plus some uniform ones.

    ``int(num_points * oversample_ratio)`` candidates are drawn uniformly; the ``int(importance_sample_ratio *
    num_points)`` most uncertain candidates are kept and the rest of the ``num_points`` are drawn uniformly anew.
    GEM: 12544 points, oversample 3 (37632 candidates), importance 0.75 (9408 uncertain + 3136 random).

    Args:
        coarse_logits: ``[R, 1, H, W]`` mask logits.
        uncertainty_func: maps ``[R, 1, P]`` point logits to ``[R, 1, P]`` uncertainties.
        num_points: points per mask.
        oversample_ratio: >= 1.
        importance_sample_ratio: in [0, 1].
        generator: optional RNG (on the logits' device) for reproducible sampling; the global RNG otherwise.

    Returns:
        ``[R, num_points, 2]`` point coordinates in ``[0, 1]``, ``(x, y)``.
    """
    if oversample_ratio < 1:
        raise ValueError("oversample_ratio must be >= 1")
    if not 0.0 <= importance_sample_ratio <= 1.0:
        raise ValueError("importance_sample_ratio must be in [0, 1]")
    num_boxes = coarse_logits.shape[0]
    device = coarse_logits.device
    num_sampled = int(num_points * oversample_ratio)
    candidates = torch.rand(num_boxes, num_sampled, 2, device=device, generator=generator)
    point_logits = point_sample(coarse_logits, candidates, align_corners=False)
    uncertainties = uncertainty_func(point_logits)[:, 0, :]  # [R, num_sampled]
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    # the kept *set* is what matters (losses average over points); unsorted top-k is ~2x faster on CPU
    idx = torch.topk(uncertainties, k=num_uncertain, dim=1, sorted=False).indices  # [R, num_uncertain]
    coords = torch.gather(candidates, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        extra = torch.rand(num_boxes, num_random, 2, device=device, generator=generator)
        coords = torch.cat([coords, extra], dim=1)
    return coords
