"""Overlays and probability images at the input's own resolution."""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

GLASS_COLOUR = (0, 200, 255)  # RGB: cyan-blue fill and contour


def overlay(rgb: np.ndarray, mask: np.ndarray, colour: Tuple[int, int, int] = GLASS_COLOUR, alpha: float = 0.45,
            contour: bool = True, thickness: Optional[int] = None) -> np.ndarray:
    """Blend ``colour`` over the glass pixels of ``rgb`` (H×W×3 uint8) and draw the mask contour.

    The contour thickness scales with the image (about 1/300 of the shorter side, at least 1 px).
    """
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"image {rgb.shape[:2]} and mask {mask.shape} differ in size")
    out = rgb.copy()
    m = mask.astype(bool)
    if m.any():
        fill = np.asarray(colour, dtype=np.float32)
        out[m] = np.clip(rgb[m].astype(np.float32) * (1.0 - alpha) + fill * alpha + 0.5, 0, 255).astype(np.uint8)
        if contour:
            t = thickness or max(1, int(round(min(mask.shape) / 300)))
            contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, tuple(int(c) for c in colour), t, lineType=cv2.LINE_AA)
    return out


def probability_to_uint8(probability: np.ndarray) -> np.ndarray:
    """[0, 1] float map → uint8 0–255 (rounded)."""
    return np.clip(np.rint(probability * 255.0), 0, 255).astype(np.uint8)
