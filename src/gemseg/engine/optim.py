"""Optimizer, gradient clipping and LR schedules of the official GEM training (``train_net.py:232-311``).

Parameter rules (``docs/official-gem.md`` §1.3), decided per parameter exactly as the official builder:

* lr = ``BASE_LR``, times ``BACKBONE_MULTIPLIER`` (0.5) when the *module name* contains ``"backbone"``;
* weight decay = ``WEIGHT_DECAY`` (0.05), except ``WEIGHT_DECAY_NORM`` (0.0) for the parameters of norm modules
  (``BatchNorm*``, ``GroupNorm``, ``LayerNorm``, ``InstanceNorm*``, ``LocalResponseNorm``, ``SyncBatchNorm``),
  ``WEIGHT_DECAY_EMBED`` (0.0) for ``nn.Embedding`` weights, and 0.0 for parameter names containing
  ``relative_position_bias_table`` / ``absolute_pos_embed`` (none exist in GEM). SAM's ``LayerNorm2d`` is not an
  ``nn.LayerNorm`` and therefore keeps weight decay 0.05, as officially;
* ``BIAS_LR_FACTOR`` / ``WEIGHT_DECAY_BIAS`` are ignored, as by the official builder.

The official builder makes one param group per parameter; we merge parameters with identical (lr, weight decay)
into one group. Each parameter sees exactly the same hyper-parameters (AdamW is per-element), but the fused
``foreach`` kernels get a few large groups instead of ~650 tiny ones.

Schedules (detectron2 semantics; ``lr(it)`` is the LR used by the optimizer step of 0-based iteration ``it``):

* ``WarmupMultiStepLR``: ``BASE_LR · warmup(it) · GAMMA^#{s in STEPS : s <= it}``; steps beyond ``MAX_ITER`` are
  dropped with a warning (detectron2 ``solver/build.py:275-281``) — the official Base config thus runs at a
  constant LR;
* ``WarmupPolyLR`` (MaskFormer): ``BASE_LR · warmup(it) · (1 - it / MAX_ITER)^POLY_LR_POWER``, held at
  ``POLY_LR_CONSTANT_ENDING`` when that is > 0 and the poly factor falls below it;
* ``WarmupCosineLR`` (detectron2): cosine from 1 to ``BASE_LR_END / BASE_LR``;
* warm-up: ``linear`` (factor ``WARMUP_FACTOR`` → 1 over ``WARMUP_ITERS``) or ``constant``; GEM's factor 1.0 makes
  it a no-op.
"""
from __future__ import annotations

import bisect
import logging
import math
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import torch
from torch import nn

from gemseg.errors import ConfigError

logger = logging.getLogger(__name__)

NORM_MODULE_TYPES: Tuple[type, ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.LayerNorm, nn.LocalResponseNorm,
)
NO_DECAY_NAME_PARTS = ("relative_position_bias_table", "absolute_pos_embed")
SCHEDULERS = ("WarmupMultiStepLR", "WarmupPolyLR", "WarmupCosineLR")


def param_hyperparams(model: nn.Module, base_lr: float, weight_decay: float, backbone_multiplier: float,
                      weight_decay_norm: float = 0.0, weight_decay_embed: float = 0.0
                      ) -> Dict[str, Dict[str, float]]:
    """The official per-parameter ``{"lr", "weight_decay"}``, keyed by parameter name.

    Walks ``named_modules`` / ``named_parameters(recurse=False)`` like the official builder, so a parameter
    shared by several modules (the aliased ``bbox_embed``) is decided once, at its first occurrence.
    """
    out: Dict[str, Dict[str, float]] = {}
    seen: set = set()
    for module_name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{module_name}.{pname}" if module_name else pname
            lr = base_lr * (backbone_multiplier if "backbone" in module_name else 1.0)
            wd = weight_decay
            if isinstance(module, NORM_MODULE_TYPES):
                wd = weight_decay_norm
            elif isinstance(module, nn.Embedding):
                wd = weight_decay_embed
            if any(part in pname for part in NO_DECAY_NAME_PARTS):
                wd = 0.0
            out[full] = {"lr": lr, "weight_decay": wd}
    return out


def build_param_groups(model: nn.Module, cfg: Any) -> List[Dict[str, Any]]:
    """Param groups for ``torch.optim``: parameters with equal (lr, weight_decay) share a group.

    Each group's ``"lr"`` is its LR at schedule multiplier 1; ``"names"`` lists its parameters (for inspection and
    tests; torch keeps extra group keys in the optimizer state).
    """
    s = cfg.SOLVER
    hp = param_hyperparams(model, float(s.BASE_LR), float(s.WEIGHT_DECAY), float(s.BACKBONE_MULTIPLIER),
                           float(s.WEIGHT_DECAY_NORM), float(s.WEIGHT_DECAY_EMBED))
    params = dict(model.named_parameters())
    groups: Dict[Tuple[float, float], Dict[str, Any]] = {}
    for name, h in hp.items():
        key = (h["lr"], h["weight_decay"])
        g = groups.setdefault(key, {"params": [], "names": [], "lr": h["lr"], "weight_decay": h["weight_decay"]})
        g["params"].append(params[name])
        g["names"].append(name)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """AdamW (torch default betas/eps, as officially) over :func:`build_param_groups`."""
    name = str(cfg.SOLVER.OPTIMIZER).upper()
    groups = build_param_groups(model, cfg)
    if name == "ADAMW":
        return torch.optim.AdamW(groups, lr=float(cfg.SOLVER.BASE_LR))
    if name == "SGD":  # the official builder also accepts SGD
        return torch.optim.SGD(groups, lr=float(cfg.SOLVER.BASE_LR), momentum=float(cfg.SOLVER.MOMENTUM),
                               nesterov=bool(cfg.SOLVER.NESTEROV))
    raise ConfigError(f"SOLVER.OPTIMIZER {cfg.SOLVER.OPTIMIZER!r} is not supported (ADAMW or SGD)")


def clip_gradients(params: Iterable[torch.Tensor], cfg: Any) -> torch.Tensor:
    """Clip as ``SOLVER.CLIP_GRADIENTS`` says and return the total gradient norm before clipping.

    ``full_model`` (GEM): one global L2 norm over all parameters, clipped to ``CLIP_VALUE`` (0.01).
    ``value``: element-wise clamp. ``norm``: per-parameter norm clipping (detectron2). Disabled: the norm is still
    computed (for logging and the non-finite check) without clipping.
    """
    params = [p for p in params if p.grad is not None]
    c = cfg.SOLVER.CLIP_GRADIENTS
    norm_type = float(c.NORM_TYPE)
    if not c.ENABLED:
        return torch.nn.utils.clip_grad_norm_(params, float("inf"), norm_type)
    kind = str(c.CLIP_TYPE)
    if kind == "full_model":
        return torch.nn.utils.clip_grad_norm_(params, float(c.CLIP_VALUE), norm_type)
    total = torch.nn.utils.clip_grad_norm_(params, float("inf"), norm_type)
    if kind == "value":
        torch.nn.utils.clip_grad_value_(params, float(c.CLIP_VALUE))
    elif kind == "norm":
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], float(c.CLIP_VALUE), norm_type)
    else:
        raise ConfigError(f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE {kind!r} is not supported (full_model, value, norm)")
    return total


# ---------------------------------------------------------------------------------------------------------------
# schedules
def effective_steps(steps: Sequence[int], max_iter: int) -> List[int]:
    """``STEPS`` without the values beyond ``MAX_ITER`` (warning when some are dropped, as detectron2)."""
    kept = [int(s) for s in steps if int(s) <= max_iter]
    if len(kept) != len(steps):
        logger.warning("SOLVER.STEPS %s contains values larger than SOLVER.MAX_ITER %d; they are ignored "
                       "(detectron2 behaviour: the LR stays at BASE_LR%s)", tuple(steps), max_iter,
                       "" if kept else " for the whole run")
    return kept


class WarmupLR(torch.optim.lr_scheduler.LRScheduler):
    """LR = the group's base LR × :meth:`multiplier` (iteration). ``step()`` once per optimizer step.

    Args:
        optimizer: the optimizer; each group's ``lr`` at construction is its base LR.
        name: one of :data:`SCHEDULERS`.
        max_iter, steps, gamma, warmup_factor, warmup_iters, warmup_method, poly_power, poly_constant_ending,
        end_factor: see the module docstring (``end_factor`` = BASE_LR_END / BASE_LR for cosine).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, name: str, max_iter: int, steps: Sequence[int] = (),
                 gamma: float = 0.1, warmup_factor: float = 1.0, warmup_iters: int = 0,
                 warmup_method: str = "linear", poly_power: float = 0.9, poly_constant_ending: float = 0.0,
                 end_factor: float = 0.0, last_epoch: int = -1):
        if name not in SCHEDULERS:
            raise ConfigError(f"SOLVER.LR_SCHEDULER_NAME {name!r} is not supported ({', '.join(SCHEDULERS)})")
        if warmup_method not in ("linear", "constant"):
            raise ConfigError(f"SOLVER.WARMUP_METHOD {warmup_method!r} is not supported (linear, constant)")
        self.name = name
        self.max_iter = int(max_iter)
        self.steps = effective_steps(steps, self.max_iter) if name == "WarmupMultiStepLR" else list(steps)
        if self.steps != sorted(self.steps):
            raise ConfigError(f"SOLVER.STEPS must be increasing, got {tuple(steps)}")
        self.gamma = float(gamma)
        self.warmup_factor = float(warmup_factor)
        self.warmup_iters = int(warmup_iters)
        self.warmup_method = warmup_method
        self.poly_power = float(poly_power)
        self.poly_constant_ending = float(poly_constant_ending)
        self.end_factor = float(end_factor)
        super().__init__(optimizer, last_epoch)

    def multiplier(self, it: int) -> float:
        """The LR factor at 0-based iteration ``it``."""
        if self.name == "WarmupMultiStepLR":
            base = self.gamma ** bisect.bisect_right(self.steps, it)
        elif self.name == "WarmupPolyLR":
            base = (1.0 - min(it, self.max_iter) / self.max_iter) ** self.poly_power
            if self.poly_constant_ending > 0 and it >= self.warmup_iters and base < self.poly_constant_ending:
                base = self.poly_constant_ending
        else:  # cosine, detectron2 CosineParamScheduler(1, end_factor)
            frac = min(it, self.max_iter) / self.max_iter
            base = self.end_factor + 0.5 * (1 - self.end_factor) * (1 + math.cos(math.pi * frac))
        if it < self.warmup_iters:
            if self.warmup_method == "constant":
                w = self.warmup_factor
            else:
                alpha = it / self.warmup_iters
                w = self.warmup_factor * (1 - alpha) + alpha
            base *= w
        return base

    def get_lr(self) -> List[float]:  # noqa: D102 - torch API
        m = self.multiplier(self.last_epoch)
        return [base * m for base in self.base_lrs]

    def state_dict(self) -> Dict[str, Any]:
        """Only the position (as detectron2's ``LRMultiplier``): the schedule's shape comes from the config, so a
        resumed run may extend ``MAX_ITER`` or move ``STEPS``."""
        return {"base_lrs": list(self.base_lrs), "last_epoch": int(self.last_epoch)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:  # noqa: D102 - torch API
        self.base_lrs = list(state_dict["base_lrs"])
        self.last_epoch = int(state_dict["last_epoch"])
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: Any) -> WarmupLR:
    """The scheduler named by ``SOLVER.LR_SCHEDULER_NAME``."""
    s = cfg.SOLVER
    base_lr = float(s.BASE_LR)
    return WarmupLR(
        optimizer, str(s.LR_SCHEDULER_NAME), int(s.MAX_ITER), tuple(s.STEPS), float(s.GAMMA),
        float(s.WARMUP_FACTOR), int(s.WARMUP_ITERS), str(s.WARMUP_METHOD), float(s.POLY_LR_POWER),
        float(s.POLY_LR_CONSTANT_ENDING), float(s.BASE_LR_END) / base_lr if base_lr > 0 else 0.0,
    )
