"""Sine position encodings: 2-D maps for the deformable encoder, and box embeddings for the DINO decoder."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    """DETR's normalised 2-D sine embedding. Output [B, 2·num_pos_feats, H, W] (y features then x features)."""

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000, normalize: bool = True,
                 scale: Optional[float] = None):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """``x``: [B, C, H, W] (only its shape/device are used); ``mask``: [B, H, W] bool padding (True = pad)."""
        b, _, h, w = x.shape
        if mask is None:
            mask = torch.zeros((b, h, w), device=x.device, dtype=torch.bool)
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = (y_embed - 0.5) / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = (x_embed - 0.5) / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def box_sine_embedding(boxes: Tensor, num_feats: int = 128) -> Tensor:
    """Sine embedding of normalised boxes, DINO's ``gen_sineembed_for_position``.

    ``boxes``: [..., 4] (cx, cy, w, h) or [..., 2] (cx, cy) in [0, 1] → [..., 4·num_feats] concatenated in the order
    y, x, w, h (or y, x for points); per coordinate sin on even and cos on odd frequencies, interleaved;
    temperature 10000, scale 2π.
    """
    if boxes.shape[-1] not in (2, 4):
        raise ValueError(f"expected boxes with 2 or 4 coordinates, got {boxes.shape[-1]}")
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    # swap x and y so that the coordinates come out in the official order (y, x, w, h): all at once
    order = [1, 0, 2, 3][: boxes.shape[-1]]
    p = boxes[..., order, None] * (2 * math.pi) / dim_t  # [..., C, F]
    emb = torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1)  # [..., C, F/2, 2]
    return emb.flatten(-3)
