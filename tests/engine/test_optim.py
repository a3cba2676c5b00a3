"""Optimizer groups (official per-parameter rules), gradient clipping, and the LR schedules."""
import logging

import pytest
import torch
from torch import nn

from gemseg.config import get_config
from gemseg.engine.optim import (build_lr_scheduler, build_optimizer, build_param_groups, clip_gradients,
                                 param_hyperparams)
from gemseg.errors import ConfigError
from gemseg.modeling.build import build_model


@pytest.fixture(scope="module")
def tiny_model():
    cfg = get_config("gem-tiny", ["INPUT.MIN_SIZE_TEST", "64", "MODEL.MaskDINO.DEC_LAYERS", "2"])
    return cfg, build_model(cfg)


def test_official_lr_and_weight_decay_rules_on_named_params(tiny_model):
    cfg, model = tiny_model
    hp = param_hyperparams(model, 2e-4, 0.05, 0.5)
    expect = {
        # backbone: LR × 0.5; BN (norm module) no decay; TinyViT attention_biases decay (plain parameter)
        "backbone.patch_embed.seq.0.c.weight": (1e-4, 0.05),
        "backbone.patch_embed.seq.0.bn.weight": (1e-4, 0.0),
        "backbone.layers.1.blocks.0.attn.norm.weight": (1e-4, 0.0),  # nn.LayerNorm
        "backbone.layers.1.blocks.0.attn.attention_biases": (1e-4, 0.05),
        # SAM's LayerNorm2d is not an nn.LayerNorm: weight decay 0.05, as officially
        "backbone.neck.1.weight": (1e-4, 0.05),
        "backbone.transpose1.1.weight": (1e-4, 0.05),
        # head: full LR; GroupNorm / LayerNorm / Embedding no decay; linear layers decay
        "sem_seg_head.pixel_decoder.input_proj.0.1.weight": (2e-4, 0.0),
        "sem_seg_head.predictor.query_embed.weight": (2e-4, 0.0),
        "sem_seg_head.predictor.label_enc.weight": (2e-4, 0.0),
        "sem_seg_head.predictor.decoder_norm.weight": (2e-4, 0.0),
        "sem_seg_head.predictor.decoder.layers.0.norm1.weight": (2e-4, 0.0),
        "sem_seg_head.predictor.class_embed.weight": (2e-4, 0.05),
        "sem_seg_head.predictor.class_embed.bias": (2e-4, 0.05),  # BIAS_LR_FACTOR is ignored officially
    }
    for name, (lr, wd) in expect.items():
        assert hp[name] == {"lr": pytest.approx(lr), "weight_decay": wd}, name
    # every trainable parameter is decided exactly once (the aliased bbox_embed too)
    assert len(hp) == len({id(p) for p in model.parameters() if p.requires_grad})


def test_position_table_names_get_no_decay():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.relative_position_bias_table = nn.Parameter(torch.zeros(3))
            self.absolute_pos_embed = nn.Parameter(torch.zeros(3))
            self.proj = nn.Linear(2, 2)

    hp = param_hyperparams(nn.ModuleDict({"backbone": Block()}), 1.0, 0.05, 0.5)
    assert hp["backbone.relative_position_bias_table"]["weight_decay"] == 0.0
    assert hp["backbone.absolute_pos_embed"]["weight_decay"] == 0.0
    assert hp["backbone.proj.weight"] == {"lr": 0.5, "weight_decay": 0.05}


def test_groups_merge_equal_hyperparameters_and_cover_all_params(tiny_model):
    cfg, model = tiny_model
    groups = build_param_groups(model, cfg)
    assert len(groups) == 4  # {backbone, head} × {decay, no decay}
    assert sum(len(g["params"]) for g in groups) == len({id(p) for p in model.parameters()})
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["eps"] == 1e-8


def test_full_model_clipping_to_0_01():
    cfg = get_config("gem-tiny")
    ps = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(4))]
    ps[0].grad = torch.tensor([3.0, 0.0, 0.0])
    ps[1].grad = torch.tensor([0.0, 4.0, 0.0, 0.0])
    norm = clip_gradients(ps, cfg)
    assert norm.item() == pytest.approx(5.0)
    total = torch.cat([p.grad for p in ps]).norm()
    assert total.item() == pytest.approx(0.01, rel=1e-4)  # one global norm, not per parameter
    assert ps[0].grad[0].item() == pytest.approx(0.006, rel=1e-4)


def _lrs(cfg, iters):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=float(cfg.SOLVER.BASE_LR))
    sched = build_lr_scheduler(opt, cfg)
    out = {}
    for it in range(max(iters) + 1):
        if it in iters:
            out[it] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    return out


def test_warmup_multistep_values():
    cfg = get_config("gem-tiny", ["SOLVER.MAX_ITER", "100", "SOLVER.STEPS", "(50, 80)", "SOLVER.WARMUP_FACTOR",
                                  "0.1", "SOLVER.WARMUP_ITERS", "10", "SOLVER.BASE_LR", "1.0"])
    lrs = _lrs(cfg, [0, 5, 10, 49, 50, 79, 80, 99])
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[5] == pytest.approx(0.1 * 0.5 + 0.5)  # linear warm-up factor
    assert lrs[10] == pytest.approx(1.0) and lrs[49] == pytest.approx(1.0)
    assert lrs[50] == pytest.approx(0.1) and lrs[79] == pytest.approx(0.1)  # detectron2: decayed *at* the step
    assert lrs[80] == pytest.approx(0.01) and lrs[99] == pytest.approx(0.01)


def test_official_tiny_schedule_is_constant_warmup_then_two_drops():
    cfg = get_config("gem-tiny")  # WARMUP_FACTOR 1.0: the warm-up is a no-op
    lrs = _lrs(cfg, [0, 9, 8437, 8438, 9375])
    assert lrs[0] == pytest.approx(2e-4) and lrs[9] == pytest.approx(2e-4) and lrs[8437] == pytest.approx(2e-4)
    assert lrs[8438] == pytest.approx(2e-5) and lrs[9375] == pytest.approx(2e-6)


def test_steps_beyond_max_iter_are_dropped_with_a_warning(caplog):
    cfg = get_config("gem-base")  # MAX_ITER 10000, STEPS (16875, 18750): constant LR officially
    with caplog.at_level(logging.WARNING, logger="gemseg"):
        lrs = _lrs(cfg, [0, 5000, 9999])
    assert "larger than SOLVER.MAX_ITER" in caplog.text
    assert lrs == {0: pytest.approx(5e-5), 5000: pytest.approx(5e-5), 9999: pytest.approx(5e-5)}


def test_poly_and_cosine():
    cfg = get_config("gem-tiny", ["SOLVER.LR_SCHEDULER_NAME", "WarmupPolyLR", "SOLVER.MAX_ITER", "100",
                                  "SOLVER.BASE_LR", "1.0", "SOLVER.POLY_LR_POWER", "0.9"])
    lrs = _lrs(cfg, [0, 50, 99])
    assert lrs[0] == pytest.approx(1.0) and lrs[50] == pytest.approx(0.5 ** 0.9)
    assert lrs[99] == pytest.approx(0.01 ** 0.9)
    cfg.merge_from_list(["SOLVER.POLY_LR_CONSTANT_ENDING", "0.2"])
    assert _lrs(cfg, [99])[99] == pytest.approx(0.2)
    cfg.merge_from_list(["SOLVER.LR_SCHEDULER_NAME", "WarmupCosineLR", "SOLVER.POLY_LR_CONSTANT_ENDING", "0.0"])
    assert _lrs(cfg, [50])[50] == pytest.approx(0.5)


def test_unknown_scheduler_is_a_config_error():
    cfg = get_config("gem-tiny", ["SOLVER.LR_SCHEDULER_NAME", "Nope"])
    with pytest.raises(ConfigError, match="LR_SCHEDULER_NAME"):
        _lrs(cfg, [0])


def _stepped_scheduler(cfg, steps: int):
    """An AdamW on one parameter and its scheduler from ``cfg``, advanced ``steps`` iterations."""
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_lr_scheduler(opt, cfg)
    for _ in range(steps):
        opt.step()
        sched.step()
    return opt, sched


def test_scheduler_state_roundtrip():
    cfg = get_config("gem-tiny", ["SOLVER.MAX_ITER", "100", "SOLVER.STEPS", "(3,)", "SOLVER.BASE_LR", "1.0"])
    opt, sched = _stepped_scheduler(cfg, 5)
    opt2 = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = build_lr_scheduler(opt2, cfg)
    sched2.load_state_dict(sched.state_dict())
    opt2.load_state_dict(opt.state_dict())
    assert sched2.last_epoch == 5 and opt2.param_groups[0]["lr"] == pytest.approx(0.1)


def test_resumed_schedule_follows_the_new_config():
    """As detectron2: only the position is saved, so a resumed run with a longer MAX_ITER / moved STEPS uses them."""
    short = get_config("gem-tiny", ["SOLVER.MAX_ITER", "10", "SOLVER.STEPS", "(5,)", "SOLVER.BASE_LR", "1.0"])
    opt, sched = _stepped_scheduler(short, 6)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    longer = get_config("gem-tiny", ["SOLVER.MAX_ITER", "100", "SOLVER.STEPS", "(50,)", "SOLVER.BASE_LR", "1.0"])
    opt2 = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = build_lr_scheduler(opt2, longer)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.last_epoch == 6 and opt2.param_groups[0]["lr"] == pytest.approx(1.0)
