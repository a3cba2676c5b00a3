"""GEM's pixel decoder (MaskDINO's ``MaskDINOEncoder`` as the GEM configs use it).

Given the backbone pyramid {res2: stride 4, res3: 8, res4: 16, res5: 32}, it

1. projects res3/res4/res5 with 1×1 conv + GroupNorm (``input_proj[0]`` ← res5, ``[1]`` ← res4, ``[2]`` ← res3),
2. runs N multi-scale deformable encoder layers over the three projected levels (GEM: N = 0, the identity;
   the ResNet-50 config uses N = 6),
3. makes ``mask_features`` with a 1×1 conv — on raw res2 (GEM HEAD code), or, in the older variant
   (``fpn_adapter=True``), on MaskDINO's FPN fusion ``layer_1(adapter_1(res2) + up(stride-8 level))``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gemseg.modeling.layers import Conv2dNorm, c2_xavier_fill
from gemseg.modeling.ms_deform_attn import MSDeformAttn
from gemseg.modeling.position_encoding import PositionEmbeddingSine


class DeformableEncoderLayer(nn.Module):
    """Deformable self-attention over all levels + FFN, post-norm (Deformable DETR encoder layer)."""

    def __init__(self, d_model: int = 256, d_ffn: int = 1024, dropout: float = 0.0, n_levels: int = 3,
                 n_heads: int = 8, n_points: int = 4):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor,
                spatial_shapes: Sequence[Tuple[int, int]], padding_mask: Optional[Tensor]) -> Tensor:
        """``src``/``pos``: [B, S, C]; ``reference_points``: [B, S, L, 2] → [B, S, C]."""
        src2 = self.self_attn(src + pos, reference_points, src, spatial_shapes, padding_mask)
        src = self.norm1(src + self.dropout1(src2))
        src2 = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(src2))


class _LayerStack(nn.Module):
    """Holds the layers as ``layers.N`` (so official keys read ``transformer.encoder.layers.N.*``)."""

    def __init__(self, layers: List[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)


class DeformableEncoder(nn.Module):
    """Multi-scale deformable encoder: ``encoder.layers.N`` (:class:`DeformableEncoderLayer`) + ``level_embed``.

    With ``num_layers == 0`` it has no parameters and returns its input (the GEM configuration).
    """

    def __init__(self, d_model: int = 256, num_layers: int = 0, d_ffn: int = 1024, dropout: float = 0.0,
                 n_levels: int = 3, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        self.num_layers = num_layers
        self.encoder = _LayerStack(
            [DeformableEncoderLayer(d_model, d_ffn, dropout, n_levels, n_heads, n_points) for _ in range(num_layers)]
        )
        if num_layers > 0:
            self.level_embed = nn.Parameter(torch.empty(n_levels, d_model))
            nn.init.normal_(self.level_embed)
        else:
            self.register_parameter("level_embed", None)

    @staticmethod
    def reference_points(spatial_shapes: Sequence[Tuple[int, int]], valid_ratios: Tensor) -> Tensor:
        """Pixel-centre reference points of every level, normalised by the valid size: [B, S, L, 2]."""
        refs = []
        for lvl, (h, w) in enumerate(spatial_shapes):
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=valid_ratios.dtype, device=valid_ratios.device),
                torch.linspace(0.5, w - 0.5, w, dtype=valid_ratios.dtype, device=valid_ratios.device),
                indexing="ij",
            )
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
            refs.append(torch.stack((ref_x, ref_y), -1))
        ref = torch.cat(refs, 1)
        return ref[:, :, None] * valid_ratios[:, None]

    def forward(self, srcs: List[Tensor], pos_embeds: List[Tensor]) -> List[Tensor]:
        """``srcs``/``pos_embeds``: per level [B, C, H_l, W_l] (lowest resolution first, as MaskDINO orders them;
        ``level_embed[l]`` follows this order) → the same shapes after the encoder layers."""
        if self.num_layers == 0:
            return srcs
        shapes = [(int(s.shape[2]), int(s.shape[3])) for s in srcs]
        src_flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos_flat = torch.cat(
            [p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1) for lvl, p in enumerate(pos_embeds)],
            1,
        )
        b = src_flat.shape[0]
        # no padding in GEM inputs (square resize / pad-to-size), so every valid ratio is 1
        valid_ratios = torch.ones(b, len(srcs), 2, dtype=src_flat.dtype, device=src_flat.device)
        ref = self.reference_points(shapes, valid_ratios)
        out = src_flat
        for layer in self.encoder.layers:
            out = layer(out, pos_flat, ref, shapes, None)
        outs = out.split([h * w for h, w in shapes], dim=1)
        return [o.transpose(1, 2).reshape(b, -1, h, w) for o, (h, w) in zip(outs, shapes)]


class PixelDecoder(nn.Module):
    """MaskDINO pixel decoder as configured by GEM.

    Args:
        in_channels: channels of each backbone output (256 for the SAM pyramids).
        conv_dim: projection width (``CONVS_DIM``).
        mask_dim: ``mask_features`` width (``MASK_DIM``).
        num_encoder_layers: deformable encoder layers (``TRANSFORMER_ENC_LAYERS``; GEM 0).
        transformer_in_features: backbone features fed to the encoder, high→low resolution order (res3, res4, res5).
        total_num_feature_levels: levels returned; extra levels beyond the inputs are made by stride-2 3×3 convs.
        fpn_adapter: the older variant's FPN fusion (``adapter_1``/``layer_1``) before ``mask_features``.
    """

    def __init__(
        self,
        in_channels: Dict[str, int],
        conv_dim: int = 256,
        mask_dim: int = 256,
        num_encoder_layers: int = 0,
        dim_feedforward: int = 1024,
        transformer_in_features: Sequence[str] = ("res3", "res4", "res5"),
        mask_in_feature: str = "res2",
        total_num_feature_levels: int = 3,
        n_heads: int = 8,
        n_points: int = 4,
        fpn_adapter: bool = False,
    ):
        super().__init__()
        self.transformer_in_features = list(transformer_in_features)
        self.mask_in_feature = mask_in_feature
        self.total_num_feature_levels = total_num_feature_levels
        n_in = len(self.transformer_in_features)
        # input_proj[0] projects the lowest-resolution input (res5): the list is walked in reverse
        projs = []
        for name in reversed(self.transformer_in_features):
            projs.append(nn.Sequential(nn.Conv2d(in_channels[name], conv_dim, 1), nn.GroupNorm(32, conv_dim)))
        ch = in_channels[self.transformer_in_features[-1]]
        for _ in range(total_num_feature_levels - n_in):
            projs.append(nn.Sequential(nn.Conv2d(ch, conv_dim, 3, stride=2, padding=1), nn.GroupNorm(32, conv_dim)))
            ch = conv_dim
        self.input_proj = nn.ModuleList(projs)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)

        self.transformer = DeformableEncoder(
            conv_dim, num_encoder_layers, dim_feedforward, 0.0, total_num_feature_levels, n_heads, n_points
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True) if num_encoder_layers > 0 else None

        self.fpn_adapter = fpn_adapter
        if fpn_adapter:
            self.adapter_1 = Conv2dNorm(in_channels[mask_in_feature], conv_dim, 1, bias=False,
                                        norm=nn.GroupNorm(32, conv_dim))
            self.layer_1 = Conv2dNorm(conv_dim, conv_dim, 3, padding=1, bias=False,
                                      norm=nn.GroupNorm(32, conv_dim), activation=nn.ReLU())
            c2_xavier_fill(self.adapter_1)
            c2_xavier_fill(self.layer_1)
        self.mask_features = nn.Conv2d(conv_dim if fpn_adapter else in_channels[mask_in_feature], mask_dim, 1)
        c2_xavier_fill(self.mask_features)

    def forward(self, features: Dict[str, Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """
        Args:
            features: backbone outputs, e.g. res2 [B,256,S/4,S/4] … res5 [B,256,S/32,S/32].
        Returns:
            mask_features [B, mask_dim, S/4, S/4] and the multi-scale features, lowest resolution first
            ([res5, res4, res3] projections: [B, conv_dim, S/32|S/16|S/8, …]).
        """
        # MaskDINO order: lowest resolution first (res5, res4, res3); extra levels go before them
        srcs = [self.input_proj[i](features[n].float()) for i, n in enumerate(reversed(self.transformer_in_features))]
        prev = features[self.transformer_in_features[-1]].float()
        extra = []
        for idx in range(len(self.transformer_in_features), self.total_num_feature_levels):
            prev = self.input_proj[idx](prev)
            extra.append(prev)
        srcs = extra[::-1] + srcs
        if self.transformer.num_layers > 0:
            srcs = self.transformer(srcs, [self.pe_layer(s) for s in srcs])
        if self.fpn_adapter:
            lateral = self.adapter_1(features[self.mask_in_feature].float())
            top = F.interpolate(srcs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            mask_input = self.layer_1(lateral + top)
        else:
            mask_input = features[self.mask_in_feature].float()
        return self.mask_features(mask_input), srcs
