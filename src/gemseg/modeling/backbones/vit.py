"""SAM's ViT-B image encoder + neck + GEM pyramid (official name ``D2BaseViT``).

Module/parameter names equal segment-anything's ``ImageEncoderViT`` (``patch_embed.proj``, ``pos_embed``,
``blocks.N.{norm1,attn.qkv,attn.proj,attn.rel_pos_h,attn.rel_pos_w,norm2,mlp.lin1,mlp.lin2}``, ``neck.*``), so
a SAM ``image_encoder.*`` state dict (prefix stripped, then passed through ``adapt_state_dict`` for the input
size) or a GEM ``backbone.*`` state dict loads directly.

Numerics follow SAM: LayerNorm eps 1e-6, window attention (14x14, zero-padded bottom/right after ``norm1``, no
mask for padded tokens) except the global blocks (2, 5, 8, 11), decomposed relative position bias (MViTv2) with
linear interpolation of a table whose length differs from 2*max(q,k)-1. The attention itself runs through
``F.scaled_dot_product_attention`` with the rel-pos bias as an additive float mask (the official code computes
softmax(q k^T * scale + bias) explicitly; same maths, one fused kernel).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import VALID_POLICIES, DropPath, drop_path_rates
from .pyramid import PyramidBackbone, build_sam_neck

__all__ = [
    "ViTBackbone",
    "build_vit_b_backbone",
    "get_rel_pos",
    "resize_rel_pos",
    "resize_pos_embed",
    "window_partition",
    "window_unpartition",
]


def resize_rel_pos(rel_pos: Tensor, length: int) -> Tensor:
    """Linearly resample a relative-position table [L, C] -> [length, C].

    Same operation as SAM's ``get_rel_pos`` (``F.interpolate(mode="linear")``, align_corners=False), computed in
    float32 and returned in the input dtype.
    """
    if rel_pos.shape[0] == length:
        return rel_pos
    r = F.interpolate(rel_pos.float().t().unsqueeze(0), size=length, mode="linear")
    return r.squeeze(0).t().to(rel_pos.dtype)


def resize_pos_embed(pos_embed: Tensor, grid: Tuple[int, int]) -> Tensor:
    """Bicubically resample an absolute position embedding [1, H, W, C] -> [1, grid[0], grid[1], C]
    (align_corners=False, float32 maths, input dtype out)."""
    if tuple(pos_embed.shape[1:3]) == tuple(grid):
        return pos_embed
    p = F.interpolate(pos_embed.float().permute(0, 3, 1, 2), size=grid, mode="bicubic", align_corners=False)
    return p.permute(0, 2, 3, 1).contiguous().to(pos_embed.dtype)


def get_rel_pos(q_size: int, k_size: int, rel_pos: Tensor) -> Tensor:
    """Relative-position embeddings for every (query, key) coordinate pair along one axis.

    rel_pos: [L, C] table -> [q_size, k_size, C]. The table is linearly resampled if L != 2*max(q,k)-1; when q and
    k sizes differ, the shorter axis' coordinates are scaled (SAM/MViTv2 rule).
    """
    max_rel_dist = 2 * max(q_size, k_size) - 1
    table = resize_rel_pos(rel_pos, max_rel_dist)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    relative = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return table[relative.long()]


def window_partition(x: Tensor, window_size: int) -> Tuple[Tensor, Tuple[int, int]]:
    """[B, H, W, C] -> ([B * nWin, ws, ws, C], (Hp, Wp)), zero-padding bottom/right to a multiple of ws."""
    b, h, w, c = x.shape
    pad_h = (window_size - h % window_size) % window_size
    pad_w = (window_size - w % window_size) % window_size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window_size, window_size, wp // window_size, window_size, c)
    return x.transpose(2, 3).reshape(-1, window_size, window_size, c), (hp, wp)


def window_unpartition(windows: Tensor, window_size: int, pad_hw: Tuple[int, int], hw: Tuple[int, int]) -> Tensor:
    """Inverse of ``window_partition``: [B * nWin, ws, ws, C] -> [B, H, W, C] (padding cut off; may be a view)."""
    hp, wp = pad_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window_size) * (wp // window_size))
    x = windows.view(b, hp // window_size, wp // window_size, window_size, window_size, -1)
    x = x.transpose(2, 3).reshape(b, hp, wp, -1)
    return x[:, :h, :w] if (hp > h or wp > w) else x


class MLPBlock(nn.Module):
    """lin1 -> GELU -> lin2. [..., C] -> [..., C]."""

    def __init__(self, embedding_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.act(self.lin1(x)))


class Attention(nn.Module):
    """Multi-head self-attention over a [B, H, W, C] token grid with decomposed relative position bias.

    rel_pos_h/rel_pos_w: [2*H-1, head_dim] / [2*W-1, head_dim] for the grid size the block was built for
    (window size, or the full token grid for global blocks); zero-initialised as in SAM.
    """

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, use_rel_pos: bool = True,
        input_size: Optional[Tuple[int, int]] = None,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size is required when use_rel_pos=True")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def rel_pos_bias(self, q: Tensor, hw: Tuple[int, int]) -> Tensor:
        """q: [B, heads, H*W, hd] (unscaled, as in SAM) -> additive bias [B, heads, H*W, H*W]."""
        h, w = hw
        rh = get_rel_pos(h, h, self.rel_pos_h).to(q.dtype)  # [H, H, hd]
        rw = get_rel_pos(w, w, self.rel_pos_w).to(q.dtype)  # [W, W, hd]
        b, nh, _, hd = q.shape
        r_q = q.reshape(b, nh, h, w, hd)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rh)  # [B, heads, H, W, kH]
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rw)  # [B, heads, H, W, kW]
        return (rel_h.unsqueeze(-1) + rel_w.unsqueeze(-2)).reshape(b, nh, h * w, h * w)

    def attend(self, qkv: Tensor) -> Tensor:
        """qkv: [B, H, W, 3C] (the ``qkv`` projection) -> [B, H, W, C] attention output *before* ``proj``."""
        b, h, w, c3 = qkv.shape
        # SAM's qkv layout: [3, heads, hd] along the channel axis.
        q, k, v = qkv.reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.rel_pos_bias(q, (h, w)) if self.use_rel_pos else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)  # [B, heads, N, hd]
        return out.transpose(1, 2).reshape(b, h, w, c3 // 3)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, H, W, C] -> [B, H, W, C]."""
        return self.proj(self.attend(self.qkv(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)) (windowed unless window_size == 0), then x + mlp(norm2(x)).

    x: [B, H, W, C] -> [B, H, W, C].
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 0,
        input_size: Optional[Tuple[int, int]] = None,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim, num_heads, qkv_bias=qkv_bias, use_rel_pos=use_rel_pos,
            input_size=input_size if window_size == 0 else (window_size, window_size),
        )
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))
        self.window_size = window_size
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def _windowed_attention(self, x: Tensor) -> Tensor:
        """SAM's window attention, [B, H, W, C] -> [B, H, W, C], without projecting the padding.

        SAM zero-pads the normed tokens to a multiple of the window and runs qkv and proj on every padded token.
        A zero token's qkv is exactly the qkv bias and the padded outputs are cut off, so we project the H×W real
        tokens only and pad the *projections* with the bias: the same attention (padded tokens still act as keys,
        as in SAM) for 26 % fewer qkv/proj FLOPs at 384 px (24×24 → 28×28 tokens) and 16 % at 1024 px.
        """
        b, h, w, _ = x.shape
        ws = self.window_size
        qkv = self.attn.qkv(x)  # [B, H, W, 3C]
        # (ws - h % ws) % ws rather than a ceil via negative floor division, which ONNX's truncating Div gets wrong
        hp, wp = h + (ws - h % ws) % ws, w + (ws - w % ws) % ws
        if (hp, wp) != (h, w):
            bias = self.attn.qkv.bias
            c3 = qkv.shape[-1]

            def fill(rows: int, cols: int) -> Tensor:  # what qkv gives for zero tokens: exactly the bias (0 + b)
                block = qkv.new_zeros(b, rows, cols, c3)
                return block + bias if bias is not None else block

            # concatenation rather than expand/slice-assignment: exports to ONNX as plain Concat
            if wp > w:
                qkv = torch.cat([qkv, fill(h, wp - w)], dim=2)
            if hp > h:
                qkv = torch.cat([qkv, fill(hp - h, wp)], dim=1)
        windows, pad_hw = window_partition(qkv, ws)
        out = window_unpartition(self.attn.attend(windows), ws, pad_hw, (h, w))
        return self.attn.proj(out)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            x = self._windowed_attention(x)
        else:
            x = self.attn(x)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Conv2d(k=s=patch) with bias: [B, 3, S, S] -> [B, S/p, S/p, C] (channels-last token grid)."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ViTBackbone(PyramidBackbone):
    """SAM ViT image encoder (stride 16) + SAM neck (-> 256 ch) + simple feature pyramid.

    forward(x: [B, 3, S, S]) -> {"res2": [B,256,S/4,S/4], "res3": S/8, "res4": S/16, "res5": S/32}; S = img_size.
    ``pos_embed`` is [1, S/16, S/16, C] and is added without interpolation (the model is built for exactly S);
    use ``adapt_state_dict`` to fit weights made for another size (e.g. SAM's 1024).
    """

    def __init__(
        self,
        img_size: int = 384,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__(img_size, out_chans)
        if patch_size != 16:
            raise ValueError("the GEM pyramid expects a stride-16 encoder (patch_size=16)")
        grid = img_size // patch_size
        self.grid_size = grid
        self.global_attn_indexes = tuple(global_attn_indexes)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        dpr = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(
            [
                Block(
                    embed_dim, num_heads, mlp_ratio, qkv_bias, use_rel_pos,
                    window_size=0 if i in self.global_attn_indexes else window_size,
                    input_size=(grid, grid), drop_path=dpr[i],
                )
                for i in range(depth)
            ]
        )
        self.neck = build_sam_neck(embed_dim, out_chans)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: [B, 3, S, S] -> neck output [B, 256, S/16, S/16]."""
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))

    def adapt_state_dict(self, state_dict: Dict[str, Tensor], policy: str = "interpolate") -> Dict[str, Tensor]:
        """Fit a prefix-stripped backbone state dict made for another input size to this model.

        ``"interpolate"``: ``pos_embed`` is resampled bicubically on its grid (align_corners=False) and the
        ``rel_pos_h``/``rel_pos_w`` tables of the global blocks linearly to 2*grid-1 rows (exactly what SAM's
        ``get_rel_pos`` would do at run time with the original table). ``"drop"``: every entry whose shape does
        not match is removed, so those parameters keep their zero initialisation -- the official behaviour (its
        checkpoint loader skips shape-mismatched keys, and GEM-Base was trained from a SAM file with pos_embed
        removed). Entries that already fit and keys the model does not have are returned untouched. Under
        ``"interpolate"`` a mismatching tensor that does not depend on the input size (e.g. ``qkv`` of a ViT-L
        file) is also returned untouched, so the caller's strict load reports it with its shapes.
        Raises ValueError for an unknown policy.
        """
        if policy not in VALID_POLICIES:
            raise ValueError(f"policy must be one of {VALID_POLICIES}, got {policy!r}")
        own = self.state_dict()
        out: Dict[str, Tensor] = {}
        for k, v in state_dict.items():
            target = own.get(k)
            if target is None or tuple(target.shape) == tuple(v.shape):
                out[k] = v
                continue
            if policy == "drop":
                continue
            if k == "pos_embed" and v.ndim == 4 and v.shape[0] == 1 and v.shape[3] == target.shape[3]:
                out[k] = resize_pos_embed(v, (target.shape[1], target.shape[2]))
            elif k.endswith((".attn.rel_pos_h", ".attn.rel_pos_w")) and v.ndim == 2 and v.shape[1] == target.shape[1]:
                out[k] = resize_rel_pos(v, target.shape[0])
            else:
                out[k] = v  # not size-dependent: a different architecture; left for the caller to report
        return out


def build_vit_b_backbone(
    img_size: int = 384,
    drop_path_rate: float = 0.0,
    *,
    embed_dim: int = 768,
    depth: int = 12,
    num_heads: int = 12,
    global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
    window_size: int = 14,
) -> ViTBackbone:
    """GEM-Base's backbone ``D2BaseViT``: SAM ViT-B + neck + pyramid for ``img_size`` x ``img_size``.

    ``drop_path_rate`` 0.0 matches SAM/GEM (neither uses stochastic depth). The keyword-only arguments exist for
    reduced test configurations; the defaults are ViT-B (768 dim, 12 blocks, 12 heads, global blocks 2/5/8/11).
    """
    return ViTBackbone(
        img_size=img_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        window_size=window_size,
        global_attn_indexes=global_attn_indexes,
        drop_path_rate=drop_path_rate,
    )
