"""The one image reader of the project.

Every command decodes photographs through :func:`read_image`, which returns an ``H×W×3`` ``uint8`` RGB array with the
EXIF orientation applied, whatever the file holds: grayscale, grayscale+alpha, RGBA (composited on black, as the
official OpenCV reader drops alpha), palette, 16-bit or float images.

Large images: files above :data:`MAX_IMAGE_PIXELS` (150 megapixels, e.g. 15000×10000) are refused with a one-line
error instead of PIL's ``DecompressionBombWarning``/``Error``. A caller that only needs the image at a small size
(the network input, ≤ 1024 px) reads it with :func:`read_image_reduced`: a JPEG above
:data:`REDUCED_DECODE_PIXELS` is then decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself (PIL draft mode), still at
least twice the requested size, so a 12000×9000 photo costs tens of megabytes instead of gigabytes; the original
size is returned with it, so masks are still written at the original resolution.
"""
from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# the largest image (width × height) gemseg decodes; below PIL's own error threshold (2 × Image.MAX_IMAGE_PIXELS)
MAX_IMAGE_PIXELS = 150_000_000
# JPEGs above this size are draft-decoded by read_image_reduced (smaller photos take the exact full-size path)
REDUCED_DECODE_PIXELS = 40_000_000
_EXIF_ORIENTATION = 0x0112
_OPEN_LOCK = threading.Lock()  # warnings.catch_warnings is process-global: one header parse at a time

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


def _open(p) -> Image.Image:
    """Open (header only) with our pixel limit in place of PIL's decompression-bomb warning."""
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
    except Image.DecompressionBombError:
        raise ImageReadError(p, _too_large(None)) from None
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise ImageReadError(p, _too_large((w, h)))
    return im


def _too_large(size: Optional[Tuple[int, int]]) -> str:
    what = f"{size[0]}×{size[1]} = {size[0] * size[1] / 1e6:.0f} megapixels" if size else "too many pixels"
    return (f"image is too large ({what}; gemseg decodes at most {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, "
            "gemseg.io.images.MAX_IMAGE_PIXELS)")


def _decode(path, min_side: Optional[int]) -> Tuple[np.ndarray, Tuple[int, int]]:
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
        with _open(p) as im:
            w, h = im.size
            if im.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8):  # rotated by 90°: width and height swap
                w, h = h, w
            if min_side and w * h > REDUCED_DECODE_PIXELS and im.format == "JPEG":
                im.draft("RGB", (2 * min_side, 2 * min_side))  # libjpeg's DCT scaling: never below the request
            im.load()  # force a full decode so truncated files fail here, not later
            ImageOps.exif_transpose(im, in_place=True)  # no copy of a large image when nothing rotates
            return to_rgb_uint8(im), (h, w)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(p, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL raises OSError for truncated data
        raise ImageReadError(p, str(e) or type(e).__name__) from None


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file (a path or an open binary file) as an ``H×W×3`` uint8 RGB array with EXIF orientation
    applied.

    Raises :class:`ImageReadError` (with the path and a short reason) for missing, empty, truncated or
    undecodable files, and for images above :data:`MAX_IMAGE_PIXELS`.
    """
    return _decode(path, None)[0]


def read_image_reduced(path: PathLike, min_side: int) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Read an image for use at ``min_side`` px or less: ``(rgb, (H, W))`` where ``(H, W)`` is the full
    (EXIF-oriented) size and ``rgb`` is the full image or, for a JPEG above :data:`REDUCED_DECODE_PIXELS`, a
    draft decode at 1/2–1/8 scale whose sides stay ≥ ``2 × min_side`` (bounded memory for huge photos)."""
    return _decode(path, int(min_side))
