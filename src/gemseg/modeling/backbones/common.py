"""Small pieces shared by the TinyViT and ViT-B backbones."""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor, nn

__all__ = ["DropPath", "drop_path_rates", "check_img_size", "VALID_POLICIES"]

# Policies accepted by ``adapt_state_dict`` of both backbones.
VALID_POLICIES = ("interpolate", "drop")


class DropPath(nn.Module):
    """Stochastic depth: zero a whole residual branch per sample (training only).

    Same semantics as timm's ``DropPath`` (``scale_by_keep=True``), which the official code uses: kept samples are
    scaled by ``1 / keep_prob`` so the expectation is unchanged. Identity in eval mode. No parameters or buffers,
    so it never shows up in a state dict.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, ...] -> same shape."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        # One Bernoulli draw per sample, broadcast over all other dims.
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
        return x * mask.div_(keep_prob)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def drop_path_rates(drop_path_rate: float, depth: int) -> List[float]:
    """Linearly spaced stochastic-depth rates 0 .. drop_path_rate over ``depth`` blocks (timm/TinyViT rule)."""
    return [x.item() for x in torch.linspace(0, drop_path_rate, depth)]


def check_img_size(img_size: int) -> int:
    """Validate a backbone input size: a positive multiple of 32 (the stride of ``res5``)."""
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size <= 0 or img_size % 32 != 0:
        raise ValueError(f"img_size must be a positive multiple of 32 (stride of res5), got {img_size!r}")
    return img_size
