"""The one pre/post-processing path for inference (model.predict, gem predict, gem eval, ONNX wrapper) and its
result, :class:`Prediction`.

It lives beside the model because ``GEM.predict`` uses it (modeling never imports inference);
:mod:`gemseg.inference.preprocess` re-exports it for the inference code.

Pre: RGB uint8 → square resize to the model size (aspect ratio not kept, as the official pipeline) → float
tensor on 0–255 (normalisation happens inside the model). Post: 2-channel scores bilinearly resized back to the
original H×W (align_corners=False) → probability = glass / (bg + glass) and mask = argmax == glass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F

from gemseg.io.images import read_image, read_image_reduced, to_rgb_uint8


@dataclass(repr=False)
class Prediction:
    """Result of ``GEM.predict`` / ``GlassSegmentor.predict`` for one image, at the image's own resolution.

    Attributes:
        scores: float32 [2, H, W] — the official ``sem_seg`` (background, glass): Σ_q softmax·sigmoid.
        probability: float32 [H, W] — glass / (background + glass).
        mask: bool [H, W] — argmax == glass (the official binary output).
    """

    scores: np.ndarray
    probability: np.ndarray
    mask: np.ndarray

    @property
    def glass_fraction(self) -> float:
        """Share of the image's pixels in the mask (0–1)."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def __repr__(self) -> str:  # a summary: the arrays are megapixels
        h, w = self.mask.shape[-2:]
        return f"Prediction({h}×{w}, glass {self.glass_fraction:.1%} of the pixels; .mask, .probability, .scores)"


def load_rgb(image) -> np.ndarray:
    """Path / PIL image / array → H×W×3 uint8 RGB (via the project's one image reader)."""
    if isinstance(image, np.ndarray):
        return to_rgb_uint8(image)
    if isinstance(image, Image.Image):
        return to_rgb_uint8(image)
    return read_image(image)


def load_rgb_for_size(image, size: int) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Like :func:`load_rgb` for an image that will be resized to ``size``² only: ``(rgb, (H, W))`` with the
    original size; a huge JPEG file is decoded at a reduced scale (bounded memory, see
    :func:`gemseg.io.images.read_image_reduced`)."""
    if isinstance(image, (np.ndarray, Image.Image)):
        rgb = load_rgb(image)
        return rgb, rgb.shape[:2]
    return read_image_reduced(image, size)


def resize_square(rgb: np.ndarray, size: int, resize: str = "cv2") -> np.ndarray:
    """Square-resize an H×W×3 uint8 image to size×size with bilinear interpolation (no-op at that size)."""
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    if resize == "cv2":
        return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    if resize == "pil":
        return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
    raise ValueError(f"resize must be 'cv2' or 'pil', got {resize!r}")


def preprocess_image(image, size: int, resize: str = "cv2") -> Tuple[Tensor, Tuple[int, int]]:
    """Image → ([3, size, size] float32 tensor on 0–255, original (H, W))."""
    rgb = load_rgb(image)
    h, w = rgb.shape[:2]
    sq = resize_square(rgb, size, resize)
    return torch.from_numpy(np.ascontiguousarray(sq.transpose(2, 0, 1))).float(), (h, w)


def resize_scores(scores: Tensor, size: Tuple[int, int]) -> Tensor:
    """[..., 2, S, S] → [..., 2, H, W] bilinear, align_corners=False (detectron2 ``sem_seg_postprocess``)."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    squeeze = scores.dim() == 3
    out = F.interpolate(scores[None] if squeeze else scores, size=tuple(size), mode="bilinear",
                        align_corners=False)
    return out[0] if squeeze else out


def scores_to_outputs(scores: np.ndarray):
    """[2, H, W] scores → (probability [H, W] float32, mask [H, W] bool)."""
    bg, glass = scores[0], scores[1]
    denom = bg + glass
    prob = np.divide(glass, denom, out=np.full_like(glass, 0.5), where=denom > 0).astype(np.float32)
    mask = glass > bg  # argmax over (bg, glass): ties go to background, as torch.argmax picks the first
    return prob, mask


def postprocess_scores(scores: Tensor, size: Tuple[int, int]) -> Prediction:
    """[2, S, S] network scores → :class:`Prediction` at (H, W)."""
    s = resize_scores(scores.float(), size).cpu().numpy().astype(np.float32, copy=False)
    prob, mask = scores_to_outputs(s)
    return Prediction(scores=s, probability=prob, mask=mask)
