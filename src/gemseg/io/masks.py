"""Mask reading and writing.

On disk, datasets in the official layout store 0 = background, 1 = glass, 255 = ignore; user-facing outputs store
0/255. :func:`read_mask` returns the raw label values; the dataset layouts (``gemseg.data``) decide how values
map to glass.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from gemseg.io.atomic import atomic_path
from gemseg.io.images import ImageReadError

PathLike = Union[str, os.PathLike]


def read_mask(path: PathLike) -> np.ndarray:
    """Read a label/mask image as a 2-D array of its raw values (palette indices stay indices).

    RGB(A) masks are returned as ``H×W×3`` uint8 so that colour-coded layouts (Trans10K) can decode them; a
    grayscale-looking RGB mask (R == G == B) is collapsed to ``H×W``. 16-bit masks keep their integer values.
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "file not found")
    if p.stat().st_size == 0:
        raise ImageReadError(p, "empty file (0 bytes)")
    try:
        with Image.open(p) as im:
            im.load()
            if im.mode in ("RGBA", "LA"):
                im = im.convert("RGB" if im.mode == "RGBA" else "L")
            elif im.mode == "1":
                im = im.convert("L")
            arr = np.asarray(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(p, str(e) or type(e).__name__) from None
    if arr.ndim == 3:
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            arr = arr[..., 0]
    return np.ascontiguousarray(arr)


def write_mask(path: PathLike, mask: np.ndarray) -> None:
    """Write a 2-D mask atomically as an 8-bit PNG. Boolean masks are written as 0/255."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    if m.dtype == np.bool_:
        m = m.astype(np.uint8) * 255
    elif m.dtype != np.uint8:
        if m.min(initial=0) < 0 or m.max(initial=0) > 255:
            raise ValueError("mask values must lie in 0..255")
        m = m.astype(np.uint8)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(m, mode="L").save(tmp, format="PNG")
