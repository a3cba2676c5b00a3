"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

No compiled op: sampling uses ``F.grid_sample`` (bilinear, zero padding, ``align_corners=False``), which is exactly
the fallback path of the official code, runs on CPU/CUDA/MPS and exports to ONNX (opset ≥ 16). Parameter names
(``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``) match MaskDINO's ``MSDeformAttn``.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def ms_deform_attn_core(
    value: Tensor,
    spatial_shapes: Sequence[Tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """The deformable-attention sampling and weighted sum.

    Args:
        value: [N, S, M, D] values of all levels flattened (S = Σ H_l·W_l), M heads of D channels.
        spatial_shapes: L pairs (H_l, W_l), in the order the levels are flattened in ``value``.
        sampling_locations: [N, Lq, M, L, P, 2] normalised (x, y) in [0, 1] (outside → zeros).
        attention_weights: [N, Lq, M, L, P] (softmaxed over L·P).
    Returns:
        [N, Lq, M·D].
    """
    n, _, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    sizes = [int(h) * int(w) for h, w in spatial_shapes]
    value_list = value.split(sizes, dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    sampled: List[Tensor] = []
    for lvl, (h, w) in enumerate(spatial_shapes):
        # [N, H·W, M, D] → [N·M, D, H, W]
        v = value_list[lvl].flatten(2).transpose(1, 2).reshape(n * m, d, int(h), int(w))
        # [N, Lq, M, P, 2] → [N·M, Lq, P, 2]
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    # [N·M, D, Lq, L·P] weighted by [N·M, 1, Lq, L·P]
    stacked = torch.stack(sampled, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, num_levels * num_points)
    out = (stacked * weights).sum(-1).view(n, m * d, lq)
    return out.transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module.

    Args:
        d_model: channels of queries and values.
        n_levels: number of feature levels.
        n_heads: attention heads (``d_model`` must be divisible by it).
        n_points: sampling points per head and level.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable-DETR init: offsets start on a ring of directions, growing with the point index."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        input_flatten: Tensor,
        spatial_shapes: Sequence[Tuple[int, int]],
        input_padding_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """
        Args:
            query: [N, Lq, C].
            reference_points: [N, Lq, L, 2] normalised (x, y) points, or [N, Lq, L, 4] boxes (cx, cy, w, h):
                with boxes, offsets are scaled by half the box size divided by ``n_points``.
            input_flatten: [N, S, C] flattened values of all levels.
            spatial_shapes: L pairs (H_l, W_l).
            input_padding_mask: [N, S] bool, True at padded positions (their values are zeroed).
        Returns:
            [N, Lq, C].
        """
        n, lq, _ = query.shape
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, -1, self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(n, lq, self.n_heads, self.n_levels, self.n_points, 2)
        attn = self.attention_weights(query).view(n, lq, self.n_heads, self.n_levels * self.n_points)
        attn = attn.softmax(-1).view(n, lq, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: normalise by (W_l, H_l)
            normalizer = torch.tensor(
                [[float(w), float(h)] for h, w in spatial_shapes], dtype=query.dtype, device=query.device
            )
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise ValueError(f"reference_points must end in 2 or 4 coordinates, got {reference_points.shape[-1]}")
        out = ms_deform_attn_core(value, spatial_shapes, locations, attn)
        return self.output_proj(out)
