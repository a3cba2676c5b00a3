"""ONNX export of the inference graph and ONNX Runtime sessions.

The exported graph maps ``image`` [B, 3, S, S] (float32 RGB on 0–255; normalisation is inside) to ``scores``
[B, 2, S, S] (the official ``sem_seg`` at the network resolution, before the resize back; with the ``fast`` head,
int8's default, [B, 2, S/4, S/4], see ``HEADS``). B is dynamic, S is fixed
(the encoders are built for one size). Deformable attention exports as ``GridSample`` (opset ≥ 16); we default to
opset 17. Resizing back to the image size and the argmax stay outside the graph, in the shared post-processing
(:mod:`gemseg.inference.preprocess`), so the ONNX path and the PyTorch path give the same masks.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import Tensor, nn

from gemseg.errors import GemsegError
from gemseg.io.atomic import atomic_path

PathLike = Union[str, os.PathLike]
DEFAULT_OPSET = 17


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise GemsegError(
            f"{module} is not installed: pip install 'gemseg[onnx]' (or pip install onnx onnxruntime)"
        ) from None


# How the graph combines the query masks into scores:
# * "exact": the official semantic inference — every query's mask logits are upsampled to S×S, then sigmoid, then
#   the class-weighted sum ([B, 2, S, S] out). What PyTorch computes, to float rounding.
# * "fast": the sigmoid and the weighted sum at the masks' own resolution (S/4) and [B, 2, S/4, S/4] out; the resize
#   back to the image (outside the graph) does the upsampling, once for 2 channels instead of once per query.
#   Sigmoid and upsampling do not commute, so masks differ on object boundaries (measured in docs/inference.md).
#   It saves ~10 % of GEM-Tiny's int8 latency (the 100 × S² resize is ~10 % of the graph) and is the default of
#   int8 exports, which are approximations anyway.
HEADS = ("exact", "fast")
DEFAULT_HEAD = {"fp32": "exact", "int8": "fast"}


def default_head(precision: str) -> str:
    """The head an export of ``precision`` gets unless told otherwise (one rule for every exporter)."""
    return DEFAULT_HEAD.get(precision, "exact")


class ScoresGraph(nn.Module):
    """The inference graph: [B, 3, S, S] 0–255 → [B, 2, S, S] semantic scores (``head="fast"``: [B, 2, S/4, S/4])."""

    def __init__(self, model: nn.Module, head: str = "exact"):
        super().__init__()
        if head not in HEADS:
            raise GemsegError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        self.model = model
        self.head = head

    def forward(self, image: Tensor) -> Tensor:
        from gemseg.modeling.gem import semantic_scores

        outputs, _ = self.model(image)
        masks = outputs["pred_masks"]
        size = image.shape[-2:] if self.head == "exact" else masks.shape[-2:]
        return semantic_scores(outputs["pred_logits"], masks, size)


def export_onnx(model: nn.Module, path: PathLike, opset: int = DEFAULT_OPSET, batch_size: int = 1,
                dynamic_batch: bool = True, random_init: bool = False,
                extra_metadata: Optional[Dict[str, str]] = None, head: str = "exact",
                exact_rewrites: bool = True) -> Path:
    """Export ``model`` (a GEM in eval mode) to ``path`` (written atomically); returns the path.

    ``head``: ``"exact"`` (the official scores at S×S) or ``"fast"`` (scores at the mask resolution, see ``HEADS``).
    ``exact_rewrites``: trace a copy with the structural rewrites of
    :func:`gemseg.inference.optimize.structural_rewrites` (same scores up to float rounding): GEM-Lite's res2
    ``Conv1x1 → LayerNorm2d → mask_features`` as one normalised projection (~17 % less CPU time), GEM-Tiny/Base's
    res2 transposed conv composed with ``mask_features`` and every stride-2 transposed conv as conv + DepthToSpace.
    The model passed in is not changed; the file's ``gemseg.rewrites`` metadata lists what was applied.

    Uses the TorchScript-based exporter (``dynamo=False``): it needs no extra package and traces GEM's
    data-dependent parts (top-k query selection, level shapes) into plain ONNX ops. The file's metadata records
    the input size, opset, gemseg version and whether the weights were random.
    """
    if opset < 17:
        raise GemsegError(f"opset {opset} is too old: GEM needs opset >= 17 (GridSample, LayerNormalization)")
    _require("onnx")
    from gemseg import __version__

    path = Path(path)
    model = model.eval()
    size = int(model.img_size)
    rewrites: list = []
    if exact_rewrites:
        from gemseg.inference.optimize import structural_rewrites

        model, rewrites = structural_rewrites(model)
    dummy = torch.full((batch_size, 3, size, size), 114.0)
    graph = ScoresGraph(model, head).eval()
    dynamic_axes = {"image": {0: "batch"}, "scores": {0: "batch"}} if dynamic_batch else None
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints from shapes: sizes are fixed by design
        torch.onnx.export(graph, (dummy,), str(tmp), opset_version=opset, dynamo=False,
                          input_names=["image"], output_names=["scores"], dynamic_axes=dynamic_axes,
                          do_constant_folding=True)
        import onnx

        proto = onnx.load(str(tmp))
        meta = {"gemseg.version": __version__, "gemseg.img_size": str(size), "gemseg.opset": str(opset),
                "gemseg.random_init": "1" if random_init else "0", "gemseg.head": head,
                "gemseg.rewrites": ",".join(rewrites) or "none",
                "gemseg.io": "image [B,3,S,S] float32 RGB 0-255 -> scores "
                             f"[B,2,{'S,S' if head == 'exact' else 'S/4,S/4'}] (background, glass)"}
        cfg = getattr(model, "cfg", None)
        if cfg is not None:
            meta["gemseg.config"] = cfg.dump()
        meta.update(extra_metadata or {})
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(proto, str(tmp))
    return path


def read_metadata(path: PathLike) -> Dict[str, str]:
    """The ``metadata_props`` of an ONNX file (empty dict if onnx is missing or the file has none)."""
    try:
        import onnx
    except ImportError:
        return {}
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def create_session(path: PathLike, device: Optional[torch.device] = None, threads: Optional[int] = None):
    """An ONNX Runtime session for ``path`` (CUDA provider when ``device`` is CUDA and available).

    ``threads`` sets the intra-op thread count (default: ``torch.get_num_threads()``, so both backends use the
    same number of cores). With ``OMP_WAIT_POLICY=PASSIVE`` in the environment, thread spinning is disabled as
    it is for PyTorch's OpenMP threads.
    """
    ort = _require("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise GemsegError(f"ONNX file not found: {path}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        # the same knob as PyTorch's OpenMP: idle threads sleep instead of spinning (much better on a shared CPU)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device is not None and device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise GemsegError("onnxruntime has no CUDA provider here (pip install onnxruntime-gpu) ; use --device cpu")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise GemsegError(f"cannot load ONNX model {path}: {e}") from None
