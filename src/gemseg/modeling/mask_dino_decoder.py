"""The GEM predictor: MaskDINO's decoder with GEM's query proposal, and its prediction heads.

Parameter names follow the official ``sem_seg_head.predictor.*`` keys. Shared modules keep the official aliasing:
``_bbox_embed`` is also ``bbox_embed.{i}`` and ``decoder.bbox_embed.{i}``; ``decoder_norm`` is also ``decoder.norm``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from gemseg.modeling.layers import MLP, inverse_sigmoid
from gemseg.modeling.query_proposal import QueryProposal
from gemseg.modeling.transformer_decoder import TransformerDecoder


class MaskDINODecoder(nn.Module):
    """Queries → 9 deformable decoder layers → class logits, mask logits and boxes.

    Args:
        num_classes: real classes (2: background, glass); the class head has ``num_classes + 1`` outputs
            (the last is "no object").
        hidden_dim, num_queries, nheads, dim_feedforward, dec_layers: decoder sizes.
        mask_dim: channels of ``mask_features``.
        num_feature_levels: memory levels (3).
        query_proposal: content queries from :class:`QueryProposal` (GEM HEAD) or a learned ``query_feat``
            embedding (older variant).
        dn: "seg" enables denoising queries in training (``dn_num`` queries, ``noise_scale``); "no" disables.
        initial_pred: also predict from the queries before the first layer (deep supervision).
    """

    def __init__(
        self,
        num_classes: int = 2,
        hidden_dim: int = 256,
        num_queries: int = 100,
        nheads: int = 8,
        dim_feedforward: int = 2048,
        dec_layers: int = 9,
        mask_dim: int = 256,
        num_feature_levels: int = 3,
        dec_n_points: int = 4,
        dropout: float = 0.0,
        query_proposal: bool = True,
        dn: str = "seg",
        dn_num: int = 100,
        noise_scale: float = 0.4,
        initial_pred: bool = True,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.num_layers = dec_layers
        self.num_feature_levels = num_feature_levels
        self.dn = dn
        self.dn_num = dn_num
        self.noise_scale = noise_scale
        self.initial_pred = initial_pred
        self.use_query_proposal = query_proposal

        # learned anchor boxes (unsigmoided cx, cy, w, h): TWO_STAGE False, INITIALIZE_BOX_TYPE "no"
        self.query_embed = nn.Embedding(num_queries, 4)
        if query_proposal:
            self.query_proposal = QueryProposal(hidden_dim, num_queries, num_classes)
        else:
            self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.label_enc = nn.Embedding(num_classes, hidden_dim)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.decoder = TransformerDecoder(dec_layers, hidden_dim, dim_feedforward, dropout, num_feature_levels,
                                          nheads, dec_n_points)
        self.decoder.norm = self.decoder_norm
        self._bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        nn.init.constant_(self._bbox_embed.layers[-1].weight, 0.0)
        nn.init.constant_(self._bbox_embed.layers[-1].bias, 0.0)
        self.bbox_embed = nn.ModuleList([self._bbox_embed for _ in range(dec_layers)])
        self.decoder.bbox_embed = self.bbox_embed

    # ------------------------------------------------------------------------------------------------------------
    def prediction_heads(self, output: Tensor, mask_features: Tensor, with_masks: bool = True
                         ) -> Tuple[Tensor, Optional[Tensor]]:
        """``output`` [B, Q, C] → class logits [B, Q, K+1] and mask logits [B, Q, H4, W4] (or None).

        ``decoder_norm`` is applied here although the decoder already normed its outputs: the official model
        normalises twice, and its weights expect that.
        """
        out = self.decoder_norm(output)
        logits = self.class_embed(out)
        masks = None
        if with_masks:
            emb = self.mask_embed(out)  # [B, Q, C]
            b, c, h, w = mask_features.shape
            masks = torch.bmm(emb, mask_features.reshape(b, c, h * w)).view(b, -1, h, w)
        return logits, masks

    def predict_boxes(self, references: List[Tensor], hs: List[Tensor], ref0: Optional[Tensor]) -> List[Tensor]:
        """Reported boxes per layer: sigmoid(bbox_embed(normed hs_l) + logit(ref_l)); ``ref0`` first if given."""
        boxes = [] if ref0 is None else [ref0]
        for ref, embed, h in zip(references[:-1], self.bbox_embed, hs):
            boxes.append((embed(h) + inverse_sigmoid(ref)).sigmoid())
        return boxes

    def forward(
        self,
        multi_scale_features: List[Tensor],
        mask_features: Tensor,
        targets: Optional[List[Dict[str, Tensor]]] = None,
        prepare_for_dn: Optional[Callable[..., Any]] = None,
        dn_post_process: Optional[Callable[..., Any]] = None,
    ) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
        """
        Args:
            multi_scale_features: [B, C, H_l, W_l] for the levels, lowest resolution first (stride 32, 16, 8).
            mask_features: [B, mask_dim, H4, W4].
            targets: training targets (only with denoising; see ``gemseg.losses.denoising``).
        Returns:
            ``outputs`` with ``pred_logits`` [B, Q, K+1], ``pred_masks`` [B, Q, H4, W4], ``pred_boxes`` [B, Q, 4],
            ``proposal_cls_logits`` [B, K, H16, W16] (HEAD variant) and, in training, ``aux_outputs``; and the
            denoising metadata (or None).
        """
        levels = multi_scale_features[-self.num_feature_levels:]
        b = levels[0].shape[0]
        # memory: levels flattened from highest to lowest resolution (stride 8, 16, 32)
        spatial_shapes = [(int(f.shape[2]), int(f.shape[3])) for f in reversed(levels)]
        memory = torch.cat([f.flatten(2).transpose(1, 2) for f in reversed(levels)], dim=1)

        outputs: Dict[str, Any] = {}
        if self.use_query_proposal:
            tgt, proposal_logits = self.query_proposal(levels)
            outputs["proposal_cls_logits"] = proposal_logits
        else:
            tgt = self.query_feat.weight[None].expand(b, -1, -1)
        refpoints = self.query_embed.weight[None].expand(b, -1, -1)

        attn_mask = None
        dn_meta = None
        if self.training and self.dn != "no" and targets is not None and prepare_for_dn is not None:
            # tgt/refpoints are passed as None (as the official decoder does): we join them below ourselves
            dn_label, dn_box, attn_mask, dn_meta = prepare_for_dn(
                targets, None, None, b, dn_num=self.dn_num, noise_scale=self.noise_scale,
                num_queries=self.num_queries, num_classes=self.num_classes, hidden_dim=self.hidden_dim,
                label_enc=self.label_enc, training=self.training,
            )
            if dn_meta is not None:
                tgt = torch.cat([dn_label, tgt], dim=1)
                refpoints = torch.cat([dn_box, refpoints], dim=1)

        hs, references = self.decoder(tgt, memory, refpoints, spatial_shapes, None, attn_mask)

        train = self.training
        classes: List[Tensor] = []
        masks: List[Optional[Tensor]] = []
        if self.initial_pred and train:
            c, m = self.prediction_heads(tgt, mask_features)
            classes.append(c)
            masks.append(m)
        for i, h in enumerate(hs):
            last = i == len(hs) - 1
            if train or last:  # at inference only the last layer's masks are needed
                c, m = self.prediction_heads(h, mask_features, with_masks=True)
                classes.append(c)
                masks.append(m)

        if train:
            boxes = self.predict_boxes(references, hs, refpoints.sigmoid() if self.initial_pred else None)
            if dn_meta is not None and dn_post_process is not None:
                classes, boxes, masks = dn_post_process(classes, boxes, dn_meta, masks)
                classes, boxes, masks = list(classes), list(boxes), list(masks)
            else:
                # keep label_enc in the graph so DDP does not complain about unused parameters
                classes[-1] = classes[-1] + 0.0 * self.label_enc.weight.sum()
            outputs.update(pred_logits=classes[-1], pred_masks=masks[-1], pred_boxes=boxes[-1])
            outputs["aux_outputs"] = [
                {"pred_logits": c, "pred_masks": m, "pred_boxes": bx}
                for c, m, bx in zip(classes[:-1], masks[:-1], boxes[:-1])
            ]
        else:
            last_box = (self.bbox_embed[-1](hs[-1]) + inverse_sigmoid(references[-2])).sigmoid()
            outputs.update(pred_logits=classes[-1], pred_masks=masks[-1], pred_boxes=last_box)
        return outputs, dn_meta
