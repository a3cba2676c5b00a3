"""Image-encoder backbones of GEM: MobileSAM TinyViT-5M (GEM-Tiny) and SAM ViT-B (GEM-Base).

Both end in SAM's neck (256 channels, stride 16) followed by GEM's simple feature pyramid, and return
``{"res2", "res3", "res4", "res5"}`` maps at strides 4/8/16/32. See ``docs/backbones.md``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

from torch import nn

from .pyramid import LayerNorm2d, PyramidBackbone
from .tiny_vit import TinyViTBackbone, build_tiny_vit_backbone
from .vit import ViTBackbone, build_vit_b_backbone

__all__ = [
    "BACKBONES",
    "LayerNorm2d",
    "PyramidBackbone",
    "TinyViTBackbone",
    "ViTBackbone",
    "build_backbone",
    "build_tiny_vit_backbone",
    "build_vit_b_backbone",
]

# Official config names (MODEL.BACKBONE.NAME) -> builder.
BACKBONES: Dict[str, Callable[..., PyramidBackbone]] = {
    "D2TinyViT": build_tiny_vit_backbone,
    "D2BaseViT": build_vit_b_backbone,
}


def build_backbone(name: str, img_size: int, **kwargs: Any) -> nn.Module:
    """Build a backbone by its official config name ("D2TinyViT" or "D2BaseViT") for img_size x img_size input.

    Extra keyword arguments (e.g. ``drop_path_rate``) go to the builder.
    """
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}") from None
    return builder(img_size=img_size, **kwargs)
