"""FLOP counting and GEMM-peak measurement used by benchmarks/latency.py's roofline table."""
from __future__ import annotations

import copy

import pytest

from tests.inference.tiny import tiny_model


def test_count_gemm_flops_adds_up():
    from gemseg.inference.bench import count_gemm_flops

    model = copy.deepcopy(tiny_model())
    s = model.img_size
    flops = count_gemm_flops(model, s)
    q = model.sem_seg_head.predictor.num_queries
    # everything counted lies in the backbone, the head, or the final [B,K,Q]@[B,Q,S²] of semantic inference
    semantic_bmm = 2 * model.num_classes * q * s * s
    assert flops["backbone"] > 0 and flops["sem_seg_head"] > 0
    assert flops["total"] == pytest.approx(flops["backbone"] + flops["sem_seg_head"] + semantic_bmm, rel=1e-12)
    # the patch embedding's first 3x3 stride-2 conv alone: 2 · (S/2)² · out · 3·3·3
    first = model.backbone.patch_embed.seq[0].c
    assert flops["backbone"] > 2 * (s // 2) ** 2 * first.out_channels * 27


def test_gemm_peak_is_positive_and_restores_threads():
    import torch

    from gemseg.inference.bench import gemm_peak_flops

    before = torch.get_num_threads()
    peak = gemm_peak_flops(1, n=256, runs=2)
    assert peak > 1e8  # any machine multiplies 256×256 matrices faster than 0.1 GFLOP/s
    assert torch.get_num_threads() == before
