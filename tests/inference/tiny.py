"""A tiny GEM (TinyViT backbone, 64-px input, 64-d head, 1 decoder layer) for fast inference/CLI tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

TINY_OPTS = [
    "MODEL.BACKBONE.NAME", "D2TinyViT", "INPUT.MIN_SIZE_TEST", "64",
    "MODEL.MaskDINO.DEC_LAYERS", "1", "MODEL.MaskDINO.NUM_OBJECT_QUERIES", "10",
    "MODEL.MaskDINO.DIM_FEEDFORWARD", "64", "MODEL.MaskDINO.TWO_STAGE", "False",
    "MODEL.MaskDINO.HIDDEN_DIM", "64", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "64", "MODEL.SEM_SEG_HEAD.MASK_DIM", "64",
]
_CACHE = {}


def tiny_model():
    """A seeded random tiny GEM whose masks are neither empty nor full on natural images."""
    import torch

    import gemseg

    if "model" not in _CACHE:
        torch.manual_seed(0)
        model = gemseg.load_model(gemseg.get_config(None, TINY_OPTS))
        pred = model.sem_seg_head.predictor
        with torch.no_grad():  # sharpen the random heads so that masks are mixed (not all glass / all background)
            pred.class_embed.bias[:2] = torch.tensor([0.0, -3.0])
            pred.class_embed.weight.mul_(10.0)
            pred.mask_embed.layers[-1].weight.mul_(30.0)
        _CACHE["model"] = model
    return _CACHE["model"]


def tiny_weights(folder: Path) -> Path:
    """The tiny model saved as a gemseg .safetensors (carries its config) in ``folder``."""
    from gemseg.modeling.checkpoint import save_checkpoint

    path = Path(folder) / "tiny_gem.safetensors"
    if not path.exists():
        save_checkpoint(tiny_model(), path)
    return path


def photo(h: int = 90, w: int = 120, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (structure at several scales, so predictions vary over the image)."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for cells in (3, 8, 20):
        small = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
        img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) / 3
    return np.clip(img, 0, 255).astype(np.uint8)


def write_clip(path: Path, frames: int, h: int, w: int, seed: int = 0) -> Path:
    """A short video of :func:`photo` frames (seeds ``seed``, ``seed + 1``, …) at 10 fps."""
    from gemseg.io.video import VideoWriter

    with VideoWriter(path, fps=10) as vw:
        for i in range(frames):
            vw.write(photo(h, w, seed=seed + i))
    return path


def interrupt_at_call(segmentor, n: int):
    """Make ``segmentor.predict_resized`` raise KeyboardInterrupt on its ``n``-th call (Ctrl-C in the middle of a
    run); returns the real method, to put back."""
    real, calls = segmentor.predict_resized, [0]

    def interrupted(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return real(*a, **k)

    segmentor.predict_resized = interrupted
    return real
