"""Exact inference-time rewrites of a GEM model (outputs equal to float rounding).

* **BatchNorm folding**: every ``Conv2d → BatchNorm2d`` pair inside a ``Sequential`` (TinyViT's ``Conv2d_BN``)
  becomes one ``Conv2d`` with the BatchNorm's affine transform folded into its weight and bias. In eval mode the
  BatchNorm is a per-channel affine map, so the result is the same up to float rounding.

The rewrite acts on a model in eval mode; a rewritten model cannot be trained or saved in the official layout
(its state-dict keys change), so :class:`gemseg.inference.GlassSegmentor` applies it to its own copy only.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d computing ``bn(conv(x))`` (eval-mode statistics)."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    with torch.no_grad():
        w = conv.weight.double()
        b = conv.bias.double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
        inv_std = (bn.running_var.double() + bn.eps).rsqrt()
        gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(inv_std)
        beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(inv_std)
        scale = gamma * inv_std
        fused.weight.copy_((w * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
        fused.bias.copy_(((b - bn.running_mean.double()) * scale + beta).to(conv.weight.dtype))
    return fused.to(conv.weight.device)


def fold_batchnorm(model: nn.Module) -> int:
    """Replace, in place, every two-module ``Sequential`` of ``Conv2d`` then ``BatchNorm2d`` by the fused conv.

    Returns the number of pairs folded. The model must be in eval mode (training BatchNorm is not affine).
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if (isinstance(child, nn.Sequential) and len(child) == 2 and type(child[0]) is nn.Conv2d
                    and isinstance(child[1], nn.BatchNorm2d) and child[1].track_running_stats):
                parent._modules[name] = fuse_conv_bn(child[0], child[1])
                count += 1
    return count


def optimize_for_inference(model: nn.Module, fold_bn: bool = True, inplace: bool = False) -> nn.Module:
    """Apply the exact rewrites to ``model`` (a copy unless ``inplace``) and return it in eval mode."""
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    if fold_bn:
        model.folded_batchnorms = fold_batchnorm(model)
    return model
