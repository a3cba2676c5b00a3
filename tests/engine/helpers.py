"""Tiny datasets and configs for the trainer tests (small images made here with numpy/PIL)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np
from PIL import Image

from gemseg.config import get_config


def make_dataset(root: Path, n: int = 4, size: int = 64, splits: Sequence[str] = ("training",), seed: int = 0,
                 ignore_strip: bool = False, same_images: bool = False) -> Path:
    """Write ``n`` images per split in the official GSD-S layout: a noisy grey scene with one bright, bluish,
    striped "glass" rectangle (label 1) — learnable in a few dozen steps. ``same_images``: every split holds the
    same images (to evaluate on the training set). Returns ``root``."""
    for k, split in enumerate(splits):
        rng = np.random.default_rng([seed, 0 if same_images else k])
        idir, mdir = root / "images" / split, root / "annotations_zero_one" / split
        idir.mkdir(parents=True, exist_ok=True)
        mdir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(40, 110, (size, size, 3)).astype(np.uint8)
            label = np.zeros((size, size), np.uint8)
            h, w = rng.integers(size // 3, size * 2 // 3, 2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            label[y:y + h, x:x + w] = 1
            glass = img[y:y + h, x:x + w].astype(np.int32)
            glass[..., 2] += 120
            glass[::4] += 60
            img[y:y + h, x:x + w] = np.clip(glass, 0, 255).astype(np.uint8)
            if ignore_strip:
                label[:, :2] = 255
            Image.fromarray(img).save(idir / f"img_{i:03d}.jpg", quality=95)
            Image.fromarray(label).save(mdir / f"img_{i:03d}.png")
    return root


def tiny_opts(size: int = 64) -> List[str]:
    """Overrides that make GEM-Tiny's head tiny and train at ``size`` px without colour jitter."""
    return [
        "INPUT.MIN_SIZE_TEST", str(size), "INPUT.MAX_SIZE_TEST", str(size), "INPUT.CROP.SIZE", f"({size}, {size})",
        "INPUT.SIZE_DIVISIBILITY", str(size), "INPUT.MIN_SIZE_TRAIN", f"({size},)", "INPUT.COLOR_AUG_SSD", "False",
        "MODEL.MaskDINO.DEC_LAYERS", "2", "MODEL.MaskDINO.NUM_OBJECT_QUERIES", "10",
        "MODEL.MaskDINO.DIM_FEEDFORWARD", "64", "MODEL.MaskDINO.DN_NUM", "8", "MODEL.MaskDINO.TRAIN_NUM_POINTS", "256",
        "MODEL.WEIGHTS", "", "DATALOADER.NUM_WORKERS", "0", "SOLVER.LOG_PERIOD", "1", "SEED", "7",
    ]


def tiny_cfg(output: Path, data: Path, *extra: str, size: int = 64):
    """A full tiny training config on the dataset folder ``data`` writing to ``output``."""
    opts = tiny_opts(size) + ["OUTPUT_DIR", str(output), "DATASETS.TRAIN", f"('{data}',)",
                              "DATASETS.TEST", f"('{data}',)", "TEST.EVAL_PERIOD", "0",
                              "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "1000",
                              "SOLVER.STEPS", "(1000,)"]
    return get_config("gem-tiny", opts + list(extra), freeze=False)
