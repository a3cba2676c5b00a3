"""DINO's deformable transformer decoder with iterative box refinement (as used by MaskDINO/GEM)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from torch import Tensor, nn
from torch.nn import functional as F

from gemseg.modeling.layers import MLP, inverse_sigmoid
from gemseg.modeling.ms_deform_attn import MSDeformAttn
from gemseg.modeling.position_encoding import box_sine_embedding


class DeformableDecoderLayer(nn.Module):
    """Self-attention → add & ``norm2`` → deformable cross-attention → add & ``norm1`` → FFN → add & ``norm3``.

    Tensors are batch-first: queries [B, Q, C]. (Official names: ``self_attn``, ``cross_attn``, ``norm1..3``,
    ``linear1``, ``linear2``.)
    """

    def __init__(self, d_model: int = 256, d_ffn: int = 2048, dropout: float = 0.0, n_levels: int = 3,
                 n_heads: int = 8, n_points: int = 4):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: Tensor,
        query_pos: Tensor,
        reference_points: Tensor,
        memory: Tensor,
        spatial_shapes: Sequence[Tuple[int, int]],
        memory_padding_mask: Optional[Tensor] = None,
        self_attn_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """``tgt``/``query_pos``: [B, Q, C]; ``reference_points``: [B, Q, L, 4]; ``memory``: [B, S, C].

        ``self_attn_mask``: [Q, Q] bool, True = may NOT attend (denoising groups, training only).
        """
        q = k = tgt + query_pos
        tgt2 = self.self_attn(q, k, tgt, attn_mask=self_attn_mask, need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.cross_attn(tgt + query_pos, reference_points, memory, spatial_shapes, memory_padding_mask)
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = self.linear2(self.dropout3(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(tgt2))


class TransformerDecoder(nn.Module):
    """Stack of decoder layers; each refines the 4-d reference boxes with the (shared) ``bbox_embed``.

    ``norm`` and ``bbox_embed`` are attached by the owner (MaskDINO shares them with its prediction heads, which is
    why they appear under several names in official checkpoints).
    """

    def __init__(self, num_layers: int, d_model: int = 256, d_ffn: int = 2048, dropout: float = 0.0,
                 n_levels: int = 3, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        self.num_layers = num_layers
        self.layers = nn.ModuleList(
            DeformableDecoderLayer(d_model, d_ffn, dropout, n_levels, n_heads, n_points) for _ in range(num_layers)
        )
        self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)
        self.d_model = d_model
        self.norm: nn.Module = nn.Identity()
        self.bbox_embed: Optional[nn.ModuleList] = None

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        refpoints_unsigmoid: Tensor,
        spatial_shapes: Sequence[Tuple[int, int]],
        memory_padding_mask: Optional[Tensor] = None,
        self_attn_mask: Optional[Tensor] = None,
    ) -> Tuple[List[Tensor], List[Tensor]]:
        """
        Args:
            tgt: content queries [B, Q, C]; memory: [B, S, C]; refpoints_unsigmoid: [B, Q, 4].
        Returns:
            per layer the normed output [B, Q, C] (``num_layers`` items), and the sigmoid reference boxes
            [B, Q, 4] used by each layer plus the final refined boxes (``num_layers + 1`` items).
        """
        output = tgt
        reference = refpoints_unsigmoid.sigmoid()
        intermediate: List[Tensor] = []
        references: List[Tensor] = [reference]
        n_levels = len(spatial_shapes)
        for layer_id, layer in enumerate(self.layers):
            # all valid ratios are 1 (no padding), so the per-level references equal the box itself
            ref_input = reference[:, :, None].expand(-1, -1, n_levels, -1)
            query_pos = self.ref_point_head(box_sine_embedding(reference, self.d_model // 2))
            output = layer(output, query_pos, ref_input, memory, spatial_shapes, memory_padding_mask,
                           self_attn_mask)
            if self.bbox_embed is not None:
                # refinement uses the un-normed output (a MaskDINO quirk; reported boxes use the normed one)
                new_reference = (self.bbox_embed[layer_id](output) + inverse_sigmoid(reference)).sigmoid()
                reference = new_reference.detach()
                references.append(new_reference)
            intermediate.append(self.norm(output))
        return intermediate, references
