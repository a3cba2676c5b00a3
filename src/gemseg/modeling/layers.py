"""Small building blocks shared by the GEM head: MLP, conv+norm, inverse sigmoid, weight-init helpers."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (not after the last).

    Parameter names (``layers.0``, ``layers.1``, …) match MaskDINO's MLP.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.num_layers = num_layers
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: [..., input_dim] → [..., output_dim]."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = F.relu(x)
        return x


class Conv2dNorm(nn.Conv2d):
    """``nn.Conv2d`` with an optional ``norm`` sub-module and activation (detectron2's ``Conv2d`` naming)."""

    def __init__(self, *args, norm: Optional[nn.Module] = None, activation: Optional[nn.Module] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """logit(x) with x clamped to [0, 1] and both x and 1-x clamped below at ``eps`` (MaskDINO convention)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2-style Xavier fill: kaiming_uniform with a=1 for weights, zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)
