"""LayerNorm2d, the SAM neck and GEM's simple feature pyramid (shared by both backbones).

GEM turns the single stride-16, 256-channel map of a SAM-family image encoder into four levels:

    res2 (stride 4)  = ConvT(2, s2) -> LayerNorm2d -> GELU -> ConvT(2, s2)     module ``transpose1.{0,1,2,3}``
    res3 (stride 8)  = ConvT(2, s2)                                         module ``transpose2.0``
    res4 (stride 16) = the neck output itself
    res5 (stride 32) = MaxPool2d(2, 2)                                       module ``transpose4`` (no parameters)

The modules live directly on the backbone (not in a sub-module) because the official state-dict keys are
``backbone.transpose1.0.weight`` etc.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import check_img_size

__all__ = ["LayerNorm2d", "build_sam_neck", "PyramidBackbone", "OUTPUT_STRIDES"]

OUTPUT_STRIDES: Dict[str, int] = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


class LayerNorm2d(nn.Module):
    """Channel LayerNorm of an NCHW map (SAM/ConvNeXt ``LayerNorm2d``), eps 1e-6, affine.

    x: [B, C, H, W] -> [B, C, H, W]. Parameters ``weight``/``bias`` [C] (official names).
    Computed with the fused ``F.layer_norm`` on a channels-last view instead of the official six element-wise
    ops: same maths (biased variance), one kernel; the result is a channels-last NCHW tensor, which the following
    convolutions accept without a copy.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps
        self.num_channels = num_channels

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (self.num_channels,), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"


def build_sam_neck(in_chans: int, out_chans: int = 256) -> nn.Sequential:
    """SAM's neck: Conv1x1 (no bias) -> LayerNorm2d -> Conv3x3 p1 (no bias) -> LayerNorm2d.

    Keys ``neck.0.weight`` [out, in, 1, 1], ``neck.1.{weight,bias}``, ``neck.2.weight`` [out, out, 3, 3],
    ``neck.3.{weight,bias}``. Maps [B, in_chans, h, w] -> [B, out_chans, h, w].
    """
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel_size=1, bias=False),
        LayerNorm2d(out_chans),
        nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(out_chans),
    )


class PyramidBackbone(nn.Module):
    """Base class: a stride-16 encoder (``forward_features``) + GEM's simple feature pyramid.

    Subclasses implement ``forward_features(x: [B,3,S,S]) -> [B,256,S/16,S/16]`` (encoder + neck).
    ``forward`` returns ``{"res2": [B,256,S/4,S/4], "res3": S/8, "res4": S/16, "res5": S/32}``.

    Attributes the model builder relies on: ``img_size`` (S), ``size_divisibility`` (32), ``output_strides``,
    ``out_channels`` (256).
    """

    size_divisibility: int = 32

    def __init__(self, img_size: int, out_chans: int = 256) -> None:
        super().__init__()
        self.img_size = check_img_size(img_size)
        self.out_channels = out_chans
        self.output_strides: Dict[str, int] = dict(OUTPUT_STRIDES)
        c = out_chans
        self.transpose1 = nn.Sequential(
            nn.ConvTranspose2d(c, c, kernel_size=2, stride=2),
            LayerNorm2d(c),
            nn.GELU(),
            nn.ConvTranspose2d(c, c, kernel_size=2, stride=2),
        )
        self.transpose2 = nn.Sequential(nn.ConvTranspose2d(c, c, kernel_size=2, stride=2))
        self.transpose4 = nn.MaxPool2d(kernel_size=2, stride=2)

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError unless x is [B, 3, img_size, img_size] (the encoders have no size flexibility:
        TinyViT's window grids and ViT's ``pos_embed``/rel-pos tables are built for exactly this size)."""
        s = self.img_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != s or x.shape[3] != s:
            raise ValueError(
                f"{type(self).__name__} is built for inputs of shape [B, 3, {s}, {s}] (img_size={s}); got "
                f"{list(x.shape)}. Resize the image to {s}x{s} (the official pipeline does a square resize) or "
                f"build the backbone with a different img_size."
            )

    def forward_features(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def pyramid(self, x: Tensor) -> Dict[str, Tensor]:
        """x: [B, 256, S/16, S/16] -> {"res2": S/4, "res3": S/8, "res4": S/16, "res5": S/32}, all 256 channels."""
        return {
            "res2": self.transpose1(x),
            "res3": self.transpose2(x),
            "res4": x,
            "res5": self.transpose4(x),
        }

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """x: [B, 3, S, S] normalised image -> dict of four [B, 256, S/stride, S/stride] maps."""
        self.check_input(x)
        return self.pyramid(self.forward_features(x))

    def output_shape(self) -> Dict[str, Dict[str, int]]:
        """{"res2": {"channels": 256, "stride": 4}, ...} (what detectron2's ``output_shape`` advertised)."""
        return {k: {"channels": self.out_channels, "stride": s} for k, s in self.output_strides.items()}
