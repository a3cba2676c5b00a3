"""GEM's query proposal: choose the decoder's content queries from a fused stride-16 feature map."""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class QueryProposal(nn.Module):
    """Fuse the three pixel-decoder levels at stride 16, score every location, take the top-k as queries.

    ``x = f16 + up2(f32) + maxpool3x3/2(f8)``; 2-class logits by conv3×3 → ReLU → conv1×1; the ``num_queries``
    locations with the highest max-class softmax probability give their fused 256-d features as content queries.
    Locations that are confidently *background* are chosen as readily as glass ones (both are classes).
    """

    def __init__(self, hidden_dim: int = 256, num_queries: int = 100, num_classes: int = 2):
        super().__init__()
        self.num_queries = num_queries
        self.conv_proposal_cls_logits = nn.Sequential(
            nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, num_classes, 1),
        )

    def forward(self, multi_scale_features: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """
        Args:
            multi_scale_features: [f32, f16, f8], each [B, C, H_l, W_l] (strides 32, 16, 8).
        Returns:
            content queries [B, num_queries, C] and proposal logits [B, num_classes, H16, W16].
        """
        f32, f16, f8 = multi_scale_features[-3:]
        up = F.interpolate(f32, scale_factor=2.0, mode="bilinear", align_corners=True)
        down = F.max_pool2d(f8, kernel_size=3, stride=2, padding=1)
        fused = f16 + up + down
        logits = self.conv_proposal_cls_logits(fused)
        score = logits.softmax(dim=1).max(dim=1)[0].flatten(1)  # [B, H·W]
        k = min(self.num_queries, score.shape[1])
        if k < self.num_queries:
            raise ValueError(
                f"the stride-16 map has {score.shape[1]} locations, fewer than the {self.num_queries} queries; "
                "use a larger input size"
            )
        idx = score.topk(k, dim=1).indices  # sorted, highest first
        flat = fused.flatten(2)  # [B, C, H·W]
        tgt = torch.gather(flat, 2, idx[:, None, :].expand(-1, flat.shape[1], -1))
        return tgt.transpose(1, 2), logits
