"""The one image reader of the project.

Every command decodes photographs through :func:`read_image`, which returns an ``H×W×3`` ``uint8`` RGB array with the
EXIF orientation applied, whatever the file holds: grayscale, grayscale+alpha, RGBA (composited on black, as the
official OpenCV reader drops alpha), palette, 16-bit or float images.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

PathLike = Union[str, os.PathLike]


class ImageReadError(RuntimeError):
    """An image file could not be decoded; the message names the file and the reason."""

    def __init__(self, path: PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map integer or float arrays of any depth to uint8 by their nominal range."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        # 16-bit images use the full 0..65535 range; 32-bit integer mode ("I") usually holds 16-bit data too.
        maxval = 65535.0 if arr.max(initial=0) > 255 or arr.dtype in (np.uint16, np.int32) else 255.0
        if arr.dtype in (np.int32, np.uint32) and arr.max(initial=0) <= 255:
            maxval = 255.0
        return np.clip(np.round(arr.astype(np.float64) * (255.0 / maxval)), 0, 255).astype(np.uint8)
    # float images: [0, 1] by convention
    arr = np.nan_to_num(arr.astype(np.float64))
    scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
    return np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)


def to_rgb_uint8(image: Union[Image.Image, np.ndarray]) -> np.ndarray:
    """Convert a PIL image or an array (H×W, H×W×1, H×W×3, H×W×4; any dtype) to ``H×W×3`` uint8 RGB."""
    if isinstance(image, Image.Image):
        mode = image.mode
        if mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            return to_rgb_uint8(np.asarray(image))
        elif mode == "CMYK" or mode == "YCbCr" or mode == "LAB" or mode == "HSV" or mode == "1":
            image = image.convert("RGB")
        arr = np.asarray(image)
    else:
        arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an H×W, H×W×1, H×W×3 or H×W×4 image, got shape {tuple(arr.shape)}")
    arr = _scale_to_uint8(arr)
    c = arr.shape[2]
    if c == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif c == 2:  # gray + alpha
        alpha = arr[:, :, 1:2].astype(np.float32) / 255.0
        arr = np.repeat(np.round(arr[:, :, :1] * alpha).astype(np.uint8), 3, axis=2)
    elif c == 4:  # composite on black: the colour under transparent pixels is arbitrary
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        arr = np.round(arr[:, :, :3] * alpha).astype(np.uint8)
    return np.ascontiguousarray(arr)


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file (a path or an open binary file) as an ``H×W×3`` uint8 RGB array with EXIF orientation
    applied.

    Raises :class:`ImageReadError` (with the path and a short reason) for missing, empty, truncated or
    undecodable files.
    """
    if hasattr(path, "read"):  # an open binary file (e.g. bytes from a bucket in an io.BytesIO)
        p = path
    else:
        p = Path(path)
        if not p.exists():
            raise ImageReadError(p, "file not found")
        if p.is_dir():
            raise ImageReadError(p, "is a directory")
        if p.stat().st_size == 0:
            raise ImageReadError(p, "empty file (0 bytes)")
    try:
        with Image.open(p) as im:
            im.load()  # force a full decode so truncated files fail here, not later
            im = ImageOps.exif_transpose(im)
            return to_rgb_uint8(im)
    except UnidentifiedImageError:
        raise ImageReadError(p, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL raises OSError for truncated data
        raise ImageReadError(p, str(e) or type(e).__name__) from None
