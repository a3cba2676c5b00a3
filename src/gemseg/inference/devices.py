"""Device and precision selection for inference (``--device auto|cpu|cuda|mps``, ``--half``, ``--bf16``)."""
from __future__ import annotations

import contextlib
from typing import ContextManager, Optional, Union

import torch

from gemseg.errors import GemsegError

PRECISIONS = ("fp32", "fp16", "bf16")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``auto`` → CUDA if available, else MPS, else CPU. Explicit requests for an absent device raise."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise GemsegError("--device cuda requested but CUDA is not available in this PyTorch build/machine")
    if kind == "mps" and not mps_available():
        raise GemsegError("--device mps requested but Apple MPS is not available")
    if kind not in ("cpu", "cuda", "mps"):
        raise GemsegError(f"unknown device {device!r}: use auto, cpu, cuda[:N] or mps")
    return torch.device(name)


def resolve_precision(precision: Optional[str], device: torch.device) -> str:
    """Check that ``precision`` (fp32/fp16/bf16) is usable on ``device``; returns the canonical name."""
    p = (precision or "fp32").lower()
    aliases = {"float32": "fp32", "half": "fp16", "float16": "fp16", "bfloat16": "bf16"}
    p = aliases.get(p, p)
    if p not in PRECISIONS:
        raise GemsegError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if p == "fp16" and device.type == "cpu":
        raise GemsegError("--half (fp16) is not supported on CPU (slow and inexact there); use --bf16 or fp32")
    if p == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise GemsegError("--bf16 is not supported by this GPU; use --half")
    return p


def autocast_context(precision: str, device: torch.device) -> ContextManager:
    """Mixed precision through ``torch.autocast`` (weights stay float32; the model's own float casts hold)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (timing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
