"""Image-encoder backbones of GEM: MobileSAM TinyViT-5M (GEM-Tiny) and SAM ViT-B (GEM-Base).

Both end in SAM's neck (256 channels, stride 16) followed by GEM's simple feature pyramid, and return
``{"res2", "res3", "res4", "res5"}`` maps at strides 4/8/16/32. See ``docs/backbones.md``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

from torch import nn

from .efficientnet_lite import EfficientNetLiteBackbone, build_efficientnet_lite0_backbone
from .pyramid import LayerNorm2d, PyramidBackbone
from .tiny_vit import TinyViTBackbone, build_tiny_vit_backbone
from .vit import ViTBackbone, build_vit_b_backbone

__all__ = [
    "BACKBONES",
    "EfficientNetLiteBackbone",
    "LayerNorm2d",
    "PyramidBackbone",
    "TinyViTBackbone",
    "ViTBackbone",
    "build_backbone",
    "build_efficientnet_lite0_backbone",
    "build_tiny_vit_backbone",
    "build_vit_b_backbone",
]

# Official config names (MODEL.BACKBONE.NAME) -> builder.
BACKBONES: Dict[str, Callable[..., nn.Module]] = {
    "D2TinyViT": build_tiny_vit_backbone,
    "D2BaseViT": build_vit_b_backbone,
    "EfficientNetLite0": build_efficientnet_lite0_backbone,  # gemseg's GEM-Lite (not in the paper)
}


def build_backbone(name: str, img_size: int, **kwargs: Any) -> nn.Module:
    """Build a backbone by its config name ("D2TinyViT", "D2BaseViT" or "EfficientNetLite0") for img_size input.

    Extra keyword arguments (e.g. ``drop_path_rate``) go to the builder.
    """
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}") from None
    return builder(img_size=img_size, **kwargs)
