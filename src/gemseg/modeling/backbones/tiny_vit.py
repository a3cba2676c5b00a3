"""MobileSAM's TinyViT-5M image encoder + SAM neck + GEM pyramid (official name ``D2TinyViT``).

Module/parameter names equal MobileSAM's ``tiny_vit_sam.py`` and GEM's ``sam_tiny.py`` so that a MobileSAM
``image_encoder.*`` state dict (minus its ``norm_head``/``head`` classifier, which GEM does not have) or a GEM
``backbone.*`` state dict loads directly.

Layout: stage 0 (MBConv) runs on NCHW maps; stages 1-3 (attention) keep tokens as a [B, H, W, C] grid instead of
the official [B, H*W, C] sequence -- same memory order (row-major tokens), but window partitioning, the depthwise
``local_conv`` and patch merging become views/permutes instead of copies.

Differences from the official code that do not change the numbers:
- ``attention_biases`` are gathered with the index table on every forward. The official module caches the
  gathered table when switched to eval mode, so weights loaded *after* ``.eval()`` were silently ignored
  (GEM's demo hit this); gathering a (heads, w*w, w*w) table is negligible next to the attention itself.
- attention uses ``F.scaled_dot_product_attention`` with the gathered bias as an additive float mask.
- every grid size is derived from ``img_size`` (the official code hard-codes a 24x24 output grid).
"""
from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import VALID_POLICIES, DropPath, drop_path_rates
from .pyramid import LayerNorm2d, PyramidBackbone, build_sam_neck

__all__ = ["TinyViTBackbone", "build_tiny_vit_backbone", "attention_bias_index", "attention_bias_index_reference"]


class Conv2d_BN(nn.Sequential):  # noqa: N801 - official class name
    """Conv2d without bias (``c``) followed by BatchNorm2d (``bn``). [B, a, H, W] -> [B, b, H', W']."""

    def __init__(
        self, a: int, b: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1, bn_weight_init: float = 1.0
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, groups=groups, bias=False))
        bn = nn.BatchNorm2d(b)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.constant_(bn.bias, 0.0)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 Conv_BN with GELU between: [B, 3, S, S] -> [B, embed_dim, S/4, S/4]."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        n = embed_dim
        self.seq = nn.Sequential(Conv2d_BN(in_chans, n // 2, 3, 2, 1), nn.GELU(), Conv2d_BN(n // 2, n, 3, 2, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, GELU, 3x3 depthwise, GELU, 1x1 project, drop-path, residual add, then GELU.

    The activation *after* the residual add is MobileSAM's (unusual) choice and must be kept. [B,C,H,W] -> same.
    """

    def __init__(self, in_chans: int, out_chans: int, expand_ratio: float, drop_path: float) -> None:
        super().__init__()
        hidden = int(in_chans * expand_ratio)
        self.conv1 = Conv2d_BN(in_chans, hidden, ks=1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2d_BN(hidden, hidden, ks=3, stride=1, pad=1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2d_BN(hidden, out_chans, ks=1, bn_weight_init=0.0)  # zero-init: block starts as identity
        self.act3 = nn.GELU()
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        y = self.drop_path(self.conv3(y))
        return self.act3(y + x)


def merging_stride(out_dim: int) -> int:
    """Stride of PatchMerging's depthwise conv. MobileSAM makes the *last* merge (to 320/448/576 channels for the
    5M/11M/21M models) stride 1 so the encoder output stays at stride 16 (SAM's embedding grid)."""
    return 1 if out_dim in (320, 448, 576) else 2


class PatchMerging(nn.Module):
    """1x1 Conv_BN, GELU, 3x3 depthwise Conv_BN (stride 2, or 1 for out_dim in {320,448,576}), GELU, 1x1 Conv_BN.

    x: [B, dim, H, W] (any memory layout) -> [B, H', W', out_dim] token grid, H' = ceil(H / stride).
    """

    def __init__(self, input_resolution: Tuple[int, int], dim: int, out_dim: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.dim = dim
        self.out_dim = out_dim
        self.stride = merging_stride(out_dim)
        self.act = nn.GELU()
        self.conv1 = Conv2d_BN(dim, out_dim, 1, 1, 0)
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, self.stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim, 1, 1, 0)

    @property
    def output_resolution(self) -> Tuple[int, int]:
        h, w = self.input_resolution
        s = self.stride
        return ((h - 1) // s + 1, (w - 1) // s + 1)  # k3 p1 conv arithmetic

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        return x.permute(0, 2, 3, 1)


class ConvLayer(nn.Module):
    """Stage 0: ``depth`` MBConv blocks then an optional PatchMerging. [B,C,H,W] -> [B,H',W',out_dim] (or NCHW)."""

    def __init__(
        self,
        dim: int,
        input_resolution: Tuple[int, int],
        depth: int,
        drop_path: Sequence[float],
        out_dim: Optional[int],
        conv_expand_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.blocks = nn.ModuleList([MBConv(dim, dim, conv_expand_ratio, drop_path[i]) for i in range(depth)])
        self.downsample = PatchMerging(input_resolution, dim, out_dim) if out_dim is not None else None

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class Mlp(nn.Module):
    """Pre-norm MLP: LayerNorm (eps 1e-5) -> fc1 -> GELU -> fc2. [..., C] -> [..., C]."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop(self.act(self.fc1(self.norm(x))))
        return self.drop(self.fc2(x))


def attention_bias_index(window: Tuple[int, int]) -> Tuple[Tensor, int]:
    """Index table of TinyViT's relative attention bias for an (h, w) window, computed in closed form.

    Returns (idx [h*w, h*w] long, number of distinct offsets). MobileSAM numbers the offsets
    (|drow|, |dcol|) in first-seen order while scanning all point pairs row-major; the first query point (0, 0)
    already meets every offset, in row-major order of (|drow|, |dcol|), so the number is |drow| * w + |dcol|.
    ``attention_bias_index_reference`` builds the table the official way; the tests check both agree.
    """
    h, w = window
    r = torch.arange(h).repeat_interleave(w)  # row of each flattened point
    c = torch.arange(w).repeat(h)  # column of each flattened point
    idx = (r[:, None] - r[None, :]).abs() * w + (c[:, None] - c[None, :]).abs()
    return idx, h * w


def attention_bias_index_reference(window: Tuple[int, int]) -> Tuple[Tensor, int]:
    """The official first-seen numbering (slow pure-Python loop; for tests and documentation only)."""
    points = list(itertools.product(range(window[0]), range(window[1])))
    offsets: Dict[Tuple[int, int], int] = {}
    idxs: List[int] = []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            if off not in offsets:
                offsets[off] = len(offsets)
            idxs.append(offsets[off])
    n = len(points)
    return torch.tensor(idxs, dtype=torch.long).view(n, n), len(offsets)


class Attention(nn.Module):
    """Window self-attention with TinyViT's learned relative bias.

    x: [Bw, N, C] (N = window tokens) -> [Bw, N, C]. Pre-LayerNorm (``norm``, eps 1e-5) is part of this module
    (official layout), so zero-padded tokens enter as LayerNorm(0) = ``norm.bias``, exactly as officially.
    ``qkv`` is split *per head* as [key_dim, key_dim, d] (not [3, heads, ...] like SAM).
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, resolution: Tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.key_dim = key_dim
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, self.dh + 2 * key_dim * num_heads)
        self.proj = nn.Linear(self.dh, dim)
        idx, n_offsets = attention_bias_index(resolution)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, n_offsets))
        # Derived from the window size only -> not persistent (absent from official checkpoints too).
        self.register_buffer("attention_bias_idxs", idx, persistent=False)

    def attention_bias(self) -> Tensor:
        """[heads, N, N] additive bias gathered from the *current* ``attention_biases`` (never cached)."""
        return self.attention_biases[:, self.attention_bias_idxs]

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, -1)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=3)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [Bw, heads, N, *]
        # 4-D mask: a 3-D one sends CPU SDPA to its slow math path (measured ~2.5x slower).
        bias = self.attention_bias().to(q.dtype).unsqueeze(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, n, self.dh))


class TinyViTBlock(nn.Module):
    """Window attention (+residual) -> depthwise 3x3 ``local_conv`` (no residual) -> MLP (+residual).

    x: [B, H, W, C] -> [B, H, W, C] with (H, W) = ``input_resolution``. Windows of ``window_size`` are formed
    after zero-padding bottom/right; padded tokens are *not* masked (official behaviour) and are cut off again.
    """

    def __init__(
        self,
        dim: int,
        input_resolution: Tuple[int, int],
        num_heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        local_conv_size: int = 3,
    ) -> None:
        super().__init__()
        if window_size <= 0:
            raise ValueError("window_size must be > 0")
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.dim = dim
        self.input_resolution = input_resolution
        self.num_heads = num_heads
        self.window_size = window_size
        self.mlp_ratio = mlp_ratio
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        head_dim = dim // num_heads
        self.attn = Attention(dim, head_dim, num_heads, attn_ratio=1, resolution=(window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.local_conv = Conv2d_BN(dim, dim, ks=local_conv_size, stride=1, pad=local_conv_size // 2, groups=dim)

    def window_attention(self, x: Tensor) -> Tensor:
        """x: [B, H, W, C] -> attention output [B, H, W, C] (without the residual)."""
        b, h, w, c = x.shape
        ws = self.window_size
        pad_b = (ws - h % ws) % ws
        pad_r = (ws - w % ws) % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // ws, pw // ws
        # [B, nh, ws, nw, ws, C] -> [B*nh*nw, ws*ws, C]; a free view when there is a single window.
        win = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        win = self.attn(win)
        x = win.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        return x[:, :h, :w] if (pad_b or pad_r) else x

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.window_attention(x))
        # local_conv on the NCHW view of the token grid: channels-last strides, so no copy either way.
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.drop_path(self.mlp(x))

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, input_resolution={self.input_resolution}, num_heads={self.num_heads}, "
            f"window_size={self.window_size}, mlp_ratio={self.mlp_ratio}"
        )


class BasicLayer(nn.Module):
    """Stages 1-3: TinyViT blocks then an optional PatchMerging. [B,H,W,C] -> [B,H',W',out_dim]."""

    def __init__(
        self,
        dim: int,
        input_resolution: Tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        drop: float,
        drop_path: Sequence[float],
        out_dim: Optional[int],
        local_conv_size: int = 3,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.blocks = nn.ModuleList(
            [
                TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio, drop, drop_path[i], local_conv_size)
                for i in range(depth)
            ]
        )
        self.downsample = PatchMerging(input_resolution, dim, out_dim) if out_dim is not None else None

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x.permute(0, 3, 1, 2))
        return x


class TinyViTBackbone(PyramidBackbone):
    """TinyViT encoder (stride 16) + SAM neck (-> 256 ch) + simple feature pyramid.

    forward(x: [B, 3, S, S]) -> {"res2": [B,256,S/4,S/4], "res3": S/8, "res4": S/16, "res5": S/32}; S = img_size.

    Stage grids: S/4 (stage 0, MBConv) -> S/8 -> S/16 -> S/16 (the last merge has stride 1). Windows are
    ``window_sizes`` (7, 7, 14, 7 for TinyViT-5M) at every input size -- the attention-bias tables depend on the
    window, not on the image, so MobileSAM (1024) weights load at any size.
    """

    def __init__(
        self,
        img_size: int = 384,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        out_chans: int = 256,
    ) -> None:
        super().__init__(img_size, out_chans)
        n = len(depths)
        if not (len(embed_dims) == len(num_heads) == len(window_sizes) == n) or n < 2:
            raise ValueError("embed_dims, depths, num_heads and window_sizes must have the same length (>= 2)")
        self.depths = tuple(depths)
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        res = ((img_size - 1) // 2 + 1 - 1) // 2 + 1  # two k3 s2 p1 convs
        resolution = (res, res)
        dpr = drop_path_rates(drop_path_rate, sum(depths))
        self.layers = nn.ModuleList()
        for i in range(n):
            out_dim = embed_dims[i + 1] if i < n - 1 else None
            rates = dpr[sum(depths[:i]) : sum(depths[: i + 1])]
            if i == 0:
                layer: nn.Module = ConvLayer(
                    embed_dims[0], resolution, depths[0], rates, out_dim, conv_expand_ratio=mbconv_expand_ratio
                )
            else:
                layer = BasicLayer(
                    embed_dims[i],
                    resolution,
                    depths[i],
                    num_heads[i],
                    window_sizes[i],
                    mlp_ratio,
                    drop_rate,
                    rates,
                    out_dim,
                    local_conv_size,
                )
            self.layers.append(layer)
            if layer.downsample is not None:
                resolution = layer.downsample.output_resolution
        # The neck/pyramid assume the stride-16 grid of SAM's image embedding.
        if resolution != (img_size // 16, img_size // 16):
            raise ValueError(
                f"this TinyViT configuration ends on a {resolution} grid, expected stride 16 "
                f"({img_size // 16}x{img_size // 16}); the last PatchMerging must have stride 1 "
                f"(out_dim in 320/448/576)"
            )
        self.grid_size = resolution[0]
        self.neck = build_sam_neck(embed_dims[-1], out_chans)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # TinyViT's init: truncated-normal Linear weights (std .02), zero biases; LayerNorm 1/0.
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, LayerNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: [B, 3, S, S] -> neck output [B, 256, S/16, S/16]."""
        x = self.patch_embed(x)  # [B, C0, S/4, S/4]
        for layer in self.layers:
            x = layer(x)  # token grids [B, h, w, C] from stage 1 on
        return self.neck(x.permute(0, 3, 1, 2))

    def adapt_state_dict(self, state_dict: Dict[str, Tensor], policy: str = "interpolate") -> Dict[str, Tensor]:
        """Make a prefix-stripped backbone state dict fit this model (the counterpart of ``ViTBackbone``'s).

        No TinyViT/neck/pyramid tensor depends on the input size (the attention-bias tables depend on the window
        size), so a MobileSAM (1024) or GEM-384 dict already fits any img_size and ``"interpolate"`` returns every
        entry untouched (a no-op). ``"drop"`` removes entries whose shape differs from the model's (the official
        loader skips such keys); they can only come from a different architecture. Keys the model does not have
        (e.g. MobileSAM's ``norm_head.*``/``head.*`` classifier) are passed through for the caller to drop.
        Raises ValueError for an unknown policy.
        """
        if policy not in VALID_POLICIES:
            raise ValueError(f"policy must be one of {VALID_POLICIES}, got {policy!r}")
        if policy == "interpolate":
            return dict(state_dict)
        own = self.state_dict()
        return {k: v for k, v in state_dict.items() if k not in own or tuple(own[k].shape) == tuple(v.shape)}


def build_tiny_vit_backbone(
    img_size: int = 384,
    drop_path_rate: float = 0.1,
    *,
    embed_dims: Sequence[int] = (64, 128, 160, 320),
    depths: Sequence[int] = (2, 2, 6, 2),
    num_heads: Sequence[int] = (2, 4, 5, 10),
    window_sizes: Sequence[int] = (7, 7, 14, 7),
) -> TinyViTBackbone:
    """GEM-Tiny's backbone ``D2TinyViT``: MobileSAM TinyViT-5M + neck + pyramid for ``img_size`` x ``img_size``.

    ``drop_path_rate`` 0.1 is GEM's training value (MobileSAM uses 0.0; it has no effect in eval mode).
    The keyword-only arguments exist for reduced test configurations; the defaults are TinyViT-5M.
    """
    return TinyViTBackbone(
        img_size=img_size,
        embed_dims=embed_dims,
        depths=depths,
        num_heads=num_heads,
        window_sizes=window_sizes,
        drop_path_rate=drop_path_rate,
    )
