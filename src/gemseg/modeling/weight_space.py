"""Weight-space interpolation of two GEM models that share one architecture (WiSE-FT, Wortsman et al., CVPR 2022).

A fine-tune on new data often gains on that data and loses on the shift it was meant to help with; the straight line
between the two weight vectors, ``θ(α) = (1 − α)·θ_base + α·θ_finetuned``, frequently keeps the gain and recovers
the robustness of the base model (both endpoints share their early training, so the line stays in one basin). The
result is an ordinary model: same architecture, same speed, one file.

Used by ``tools/interpolate_weights.py`` and by stage 3 of ``tools/train_default_model.sh`` (issue 16, fifth round,
``docs/model_card.md``).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Mapping, Union

import torch
from torch import Tensor

from gemseg.errors import CheckpointError

if TYPE_CHECKING:
    from gemseg.modeling.checkpoint import Checkpoint

PathLike = Union[str, os.PathLike]


def interpolate_state_dicts(base: Mapping[str, Tensor], other: Mapping[str, Tensor],
                            alpha: float) -> "OrderedDict[str, Tensor]":
    """``(1 − alpha)·base + alpha·other`` for every floating-point tensor, in ``base``'s key order and dtypes.

    Floating-point tensors (weights, biases, BatchNorm running statistics) are mixed in float64 and cast back, so
    ``alpha`` 0 and 1 return the endpoints bit for bit. Integer tensors (e.g. ``num_batches_tracked``) cannot be
    mixed: they are taken from ``base``.

    Raises:
        ValueError: ``alpha`` outside [0, 1] (extrapolation leaves the segment both models were trained near).
        CheckpointError: the two differ in keys, shapes or dtypes — they are not one architecture; the message
            lists the first differences.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (0 = base, 1 = the other model), got {alpha}")
    only_base = [k for k in base if k not in other]
    only_other = [k for k in other if k not in base]
    mismatched = [f"{k}: {tuple(v.shape)} {v.dtype} vs {tuple(other[k].shape)} {other[k].dtype}"
                  for k, v in base.items() if k in other
                  and (v.shape != other[k].shape or v.dtype != other[k].dtype)]
    if only_base or only_other or mismatched:
        parts = []
        for label, items in (("only in the base", only_base), ("only in the other", only_other),
                             ("shape/dtype differs", mismatched)):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                parts.append(f"{label}: {', '.join(items[:3])}{more}")
        raise CheckpointError("cannot interpolate two different architectures; " + "; ".join(parts))
    mixed: "OrderedDict[str, Tensor]" = OrderedDict()
    for k, a in base.items():
        b = other[k]
        if a.is_floating_point():
            mixed[k] = ((1.0 - alpha) * a.double() + alpha * b.double()).to(a.dtype)
        else:
            mixed[k] = a.clone()
    return mixed


def interpolate_models(base: Union[PathLike, "Checkpoint"], other: Union[PathLike, "Checkpoint"], alpha: float,
                       device: str = "cpu"):
    """Load two weight files of the same GEM architecture and return the interpolated model (eval mode).

    Args:
        base, other: any weight file :func:`gemseg.load_model` reads that carries its config (a gemseg
            ``.safetensors`` or a ``gem train`` checkpoint), or such a file already read by
            :func:`~gemseg.modeling.checkpoint.read_checkpoint`; ``alpha`` = 0 gives ``base``, 1 gives ``other``.
    Returns:
        a :class:`gemseg.modeling.gem.GEM` with ``base``'s config (input size, datasets, …) and the mixed weights.
    """
    from gemseg.modeling.build import load_model

    m_base = load_model(None, weights=base, device=device)
    m_other = load_model(None, weights=other, device=device)
    mixed = interpolate_state_dicts(m_base.state_dict(), m_other.state_dict(), alpha)
    with torch.no_grad():
        m_base.load_state_dict(mixed, strict=True)
    return m_base.eval()
