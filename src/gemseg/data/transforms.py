"""The official GEM training augmentations (``docs/official-gem.md`` §4.3), on numpy arrays.

``MaskFormerSemanticDatasetMapper`` applies, in order:

1. ``ResizeShortestEdge(MIN_SIZE_TRAIN, MAX_SIZE_TRAIN, "choice")`` -- image PIL-bilinear, label nearest;
2. ``RandomCrop_CategoryAreaConstraint("absolute", CROP.SIZE, SINGLE_CATEGORY_MAX_AREA, ignore 255)`` -- with
   max area 1.0 a plain random crop of ``min(crop, image)`` size;
3. ``ColorAugSSDTransform`` (detectron2 PointRend): brightness, then contrast before or after saturation + hue;
4. ``RandomFlip`` -- horizontal, p = 0.5;
5. pad right/bottom to exactly ``SIZE_DIVISIBILITY`` x ``SIZE_DIVISIBILITY`` -- image with the raw pixel value
   128, label with 255 (ignore).

Arrays: image ``[H, W, 3]`` uint8 RGB, label ``[H, W]`` uint8 with 0 (background), 1 (glass), 255 (ignore).
All randomness comes from an explicit ``numpy.random.Generator`` so that a seeded run is reproducible (the
official code draws from the global numpy / Python RNGs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..losses.box_ops import box_xyxy_to_cxcywh, masks_to_boxes

__all__ = [
    "ResizeShortestEdge",
    "RandomCropCategoryAreaConstraint",
    "ColorAugSSD",
    "RandomHorizontalFlip",
    "pad_to_size",
    "TrainTransform",
    "TrainTransformConfig",
    "build_train_transform",
    "make_targets",
    "OFFICIAL_MIN_SIZE_TRAIN",
]

# int(x * 0.1 * 512) for x in 5..20 (the expression in the official base configs)
OFFICIAL_MIN_SIZE_TRAIN: tuple[int, ...] = tuple(int(x * 0.1 * 512) for x in range(5, 21))


def _check_pair(image: np.ndarray, label: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be [H, W, 3] uint8, got shape {image.shape} dtype {image.dtype}")
    if label.ndim != 2 or label.shape != image.shape[:2]:
        raise ValueError(f"label must be [H, W] matching the image {image.shape[:2]}, got {label.shape}")


class ResizeShortestEdge:
    """Resize so that the short side is a size drawn from ``short_edge_length``, the long side <= ``max_size``.

    Output size as detectron2: ``scale = size / min(h, w)``, long side capped to ``max_size`` (both sides scaled
    down), then ``int(x + 0.5)`` rounding. Image: PIL bilinear (detectron2's path for uint8 images). Label: nearest
    neighbour as ``torch.nn.functional.interpolate(mode="nearest")`` (the official mapper casts the label to
    float64, which sends it down detectron2's torch path), so no new label values can appear.
    """

    def __init__(self, short_edge_length: Sequence[int], max_size: int = 2048, sample_style: str = "choice") -> None:
        if sample_style not in ("choice", "range"):
            raise ValueError(f"sample_style must be 'choice' or 'range', got {sample_style!r}")
        if isinstance(short_edge_length, int):
            short_edge_length = [short_edge_length]
        lengths = [int(x) for x in short_edge_length]
        if sample_style == "range" and len(lengths) != 2:
            raise ValueError("sample_style 'range' needs [min, max]")
        self.short_edge_length = lengths
        self.max_size = int(max_size)
        self.sample_style = sample_style

    def sample_size(self, rng: np.random.Generator) -> int:
        """Draw the target short-side length."""
        if self.sample_style == "range":
            return int(rng.integers(self.short_edge_length[0], self.short_edge_length[1] + 1))
        return int(self.short_edge_length[int(rng.integers(len(self.short_edge_length)))])

    def output_shape(self, h: int, w: int, size: int) -> tuple[int, int]:
        """``(new_h, new_w)`` for short side ``size`` with the ``max_size`` cap (detectron2 arithmetic)."""
        scale = size * 1.0 / min(h, w)
        if h < w:
            newh, neww = float(size), scale * w
        else:
            newh, neww = scale * h, float(size)
        if max(newh, neww) > self.max_size:
            scale = self.max_size * 1.0 / max(newh, neww)
            newh, neww = newh * scale, neww * scale
        return int(newh + 0.5), int(neww + 0.5)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        size = self.sample_size(rng)
        if size == 0:
            return image, label
        h, w = image.shape[:2]
        newh, neww = self.output_shape(h, w, size)
        if (newh, neww) == (h, w):
            return image, label
        image = np.asarray(Image.fromarray(image).resize((neww, newh), Image.BILINEAR))
        lab = torch.from_numpy(np.ascontiguousarray(label)).to(torch.float32)[None, None]
        label = F.interpolate(lab, size=(newh, neww), mode="nearest")[0, 0].numpy().astype(np.uint8)
        return image, label


class RandomCropCategoryAreaConstraint:
    """Random crop; with ``single_category_max_area < 1`` retry (<= 10 times) until no single category (other than
    ``ignored_category``) covers more than that fraction of the crop and at least two categories are present.

    Crop types: ``"absolute"`` (``min(crop, image)`` per side; the GEM setting), ``"relative"``,
    ``"relative_range"``, ``"absolute_range"`` -- detectron2's ``RandomCrop.get_crop_size``.
    """

    def __init__(
        self,
        crop_type: str,
        crop_size: Sequence[float],
        single_category_max_area: float = 1.0,
        ignored_category: Optional[int] = 255,
    ) -> None:
        if crop_type not in ("relative_range", "relative", "absolute", "absolute_range"):
            raise ValueError(f"unknown crop type {crop_type!r}")
        self.crop_type = crop_type
        self.crop_size = tuple(crop_size)
        self.single_category_max_area = float(single_category_max_area)
        self.ignored_category = ignored_category

    def crop_hw(self, h: int, w: int, rng: np.random.Generator) -> tuple[int, int]:
        """Crop height and width for an ``h x w`` input."""
        if self.crop_type == "absolute":
            return min(int(self.crop_size[0]), h), min(int(self.crop_size[1]), w)
        if self.crop_type == "relative":
            ch, cw = self.crop_size
            return int(h * ch + 0.5), int(w * cw + 0.5)
        if self.crop_type == "relative_range":
            cs = np.asarray(self.crop_size, dtype=np.float32)
            ch, cw = cs + rng.random(2) * (1 - cs)
            return int(h * ch + 0.5), int(w * cw + 0.5)
        lo, hi = int(self.crop_size[0]), int(self.crop_size[1])  # absolute_range
        return int(rng.integers(min(h, lo), min(h, hi) + 1)), int(rng.integers(min(w, lo), min(w, hi) + 1))

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        h, w = label.shape
        if self.single_category_max_area >= 1.0:
            ch, cw = self.crop_hw(h, w, rng)
            y0 = int(rng.integers(h - ch + 1))
            x0 = int(rng.integers(w - cw + 1))
        else:
            for _ in range(10):
                ch, cw = self.crop_hw(h, w, rng)
                y0 = int(rng.integers(h - ch + 1))
                x0 = int(rng.integers(w - cw + 1))
                values, counts = np.unique(label[y0 : y0 + ch, x0 : x0 + cw], return_counts=True)
                if self.ignored_category is not None:
                    counts = counts[values != self.ignored_category]
                if len(counts) > 1 and np.max(counts) < np.sum(counts) * self.single_category_max_area:
                    break
        return image[y0 : y0 + ch, x0 : x0 + cw], label[y0 : y0 + ch, x0 : x0 + cw]


class ColorAugSSD:
    """SSD colour jitter, detectron2 PointRend ``ColorAugSSDTransform`` semantics; the label is not touched.

    On the BGR uint8 image (an RGB input is swapped to BGR and back, as the official ``img_format="RGB"``):

    * brightness (p 0.5): ``+ U(-32, 32)``;
    * then with p 0.5 either contrast -> saturation -> hue or saturation -> hue -> contrast;
    * contrast (p 0.5): ``* U(0.5, 1.5)``;
    * saturation (p 0.5): OpenCV HSV (uint8: H in [0, 180), S and V in [0, 255]), ``S * U(0.5, 1.5)``;
    * hue (p 0.5): OpenCV HSV, ``H = (H + randint[-18, 18]) mod 180``.

    Every arithmetic step is done in float32, clipped to [0, 255] and truncated to uint8 (the official
    ``convert``).
    """

    def __init__(
        self,
        img_format: str = "RGB",
        brightness_delta: float = 32,
        contrast_low: float = 0.5,
        contrast_high: float = 1.5,
        saturation_low: float = 0.5,
        saturation_high: float = 1.5,
        hue_delta: int = 18,
    ) -> None:
        if img_format not in ("RGB", "BGR"):
            raise ValueError("img_format must be 'RGB' or 'BGR'")
        self.is_rgb = img_format == "RGB"
        self.brightness_delta = brightness_delta
        self.contrast_low, self.contrast_high = contrast_low, contrast_high
        self.saturation_low, self.saturation_high = saturation_low, saturation_high
        self.hue_delta = int(hue_delta)

    @staticmethod
    def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        out = img.astype(np.float32) * alpha + beta
        return np.clip(out, 0, 255).astype(np.uint8)

    def _brightness(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.integers(2):
            return self._convert(img, beta=float(rng.uniform(-self.brightness_delta, self.brightness_delta)))
        return img

    def _contrast(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.integers(2):
            return self._convert(img, alpha=float(rng.uniform(self.contrast_low, self.contrast_high)))
        return img

    def _saturation(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.integers(2):
            hsv = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2HSV)
            hsv[:, :, 1] = self._convert(hsv[:, :, 1], alpha=float(rng.uniform(self.saturation_low, self.saturation_high)))
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return img

    def _hue(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.integers(2):
            hsv = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2HSV)
            shift = int(rng.integers(-self.hue_delta, self.hue_delta, endpoint=True))
            hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int64) + shift) % 180).astype(np.uint8)
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return img

    def apply_image(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Jitter one ``[H, W, 3]`` uint8 image."""
        img = image[:, :, ::-1] if self.is_rgb else image
        img = self._brightness(img, rng)
        if rng.integers(2):
            img = self._contrast(img, rng)
            img = self._saturation(img, rng)
            img = self._hue(img, rng)
        else:
            img = self._saturation(img, rng)
            img = self._hue(img, rng)
            img = self._contrast(img, rng)
        if self.is_rgb:
            img = img[:, :, ::-1]
        return np.ascontiguousarray(img)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return self.apply_image(image, rng), label


class RandomHorizontalFlip:
    """Flip image and label left-right together with probability ``prob`` (detectron2 ``RandomFlip``)."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = float(prob)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.prob:
            return np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(label[:, ::-1])
        return image, label


def pad_to_size(
    image: np.ndarray,
    label: np.ndarray,
    size: tuple[int, int],
    image_pad_value: int = 128,
    label_pad_value: int = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """Pad right/bottom to exactly ``size = (H, W)``: image with ``image_pad_value`` (raw pixel value, before
    normalisation), label with ``label_pad_value`` (ignore).

    Raises:
        ValueError: the input is larger than ``size`` (the official ``F.pad`` with negative padding would silently
            crop; with crop size == pad size, as in every GEM config, this cannot happen).
    """
    h, w = label.shape
    th, tw = int(size[0]), int(size[1])
    if h > th or w > tw:
        raise ValueError(f"cannot pad a {h}x{w} sample to {th}x{tw}: use a crop size <= the pad size")
    out_img = np.full((th, tw, image.shape[2]), image_pad_value, dtype=image.dtype)
    out_img[:h, :w] = image
    out_lab = np.full((th, tw), label_pad_value, dtype=label.dtype)
    out_lab[:h, :w] = label
    return out_img, out_lab


@dataclass
class TrainTransformConfig:
    """The INPUT settings of the training pipeline (defaults: the GEM 384 configs)."""

    min_size_train: Sequence[int] = OFFICIAL_MIN_SIZE_TRAIN
    max_size_train: int = 2048
    min_size_train_sampling: str = "choice"
    crop_enabled: bool = True
    crop_type: str = "absolute"
    crop_size: tuple[float, float] = (384, 384)
    single_category_max_area: float = 1.0
    ignore_value: int = 255
    color_aug_ssd: bool = True
    img_format: str = "RGB"
    random_flip: str = "horizontal"  # "horizontal" or "none"
    pad_size: Optional[tuple[int, int]] = (384, 384)  # None: no padding (SIZE_DIVISIBILITY <= 0)
    image_pad_value: int = 128


class TrainTransform:
    """The full training pipeline: ``(image, label, rng) -> (image, label)``, both numpy (see module docstring)."""

    def __init__(self, cfg: TrainTransformConfig) -> None:
        self.cfg = cfg
        self.steps: list[Any] = [
            ResizeShortestEdge(cfg.min_size_train, cfg.max_size_train, cfg.min_size_train_sampling)
        ]
        if cfg.crop_enabled:
            self.steps.append(
                RandomCropCategoryAreaConstraint(
                    cfg.crop_type, cfg.crop_size, cfg.single_category_max_area, cfg.ignore_value
                )
            )
        if cfg.color_aug_ssd:
            self.steps.append(ColorAugSSD(img_format=cfg.img_format))
        if cfg.random_flip == "horizontal":
            self.steps.append(RandomHorizontalFlip(0.5))
        elif cfg.random_flip != "none":
            raise ValueError(f"random_flip must be 'horizontal' or 'none', got {cfg.random_flip!r}")

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment one sample.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.
            label: ``[H, W]`` uint8 (0 / 1 / 255).
            rng: the sample's RNG (e.g. ``np.random.default_rng([seed, epoch, index])``).

        Returns:
            ``(image [S, S, 3] uint8, label [S, S] uint8)`` with ``S`` = the pad size (or unpadded if none).
        """
        _check_pair(image, label)
        for step in self.steps:
            image, label = step(image, label, rng)
        if self.cfg.pad_size is not None:
            image, label = pad_to_size(image, label, self.cfg.pad_size, self.cfg.image_pad_value, self.cfg.ignore_value)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)


def build_train_transform(cfg: Any = None, **overrides: Any) -> TrainTransform:
    """Build the training pipeline from a config and/or keyword overrides.

    Args:
        cfg: a yacs/detectron2-style config with ``INPUT.*`` (MIN_SIZE_TRAIN, MAX_SIZE_TRAIN,
            MIN_SIZE_TRAIN_SAMPLING, CROP.{ENABLED,TYPE,SIZE,SINGLE_CATEGORY_MAX_AREA}, COLOR_AUG_SSD, FORMAT,
            SIZE_DIVISIBILITY, RANDOM_FLIP) and ``MODEL.SEM_SEG_HEAD.IGNORE_VALUE``; ``None`` = the GEM-384 recipe.
        overrides: :class:`TrainTransformConfig` field names, applied last.

    ``SIZE_DIVISIBILITY > 0`` pads to exactly ``SIZE_DIVISIBILITY x SIZE_DIVISIBILITY`` (the official mapper's
    semantics); ``<= 0`` does not pad.
    """
    kw: dict[str, Any] = {}
    if cfg is not None:
        inp = cfg.INPUT
        sd = int(inp.SIZE_DIVISIBILITY)
        kw.update(
            min_size_train=tuple(int(x) for x in inp.MIN_SIZE_TRAIN),
            max_size_train=int(inp.MAX_SIZE_TRAIN),
            min_size_train_sampling=str(inp.MIN_SIZE_TRAIN_SAMPLING),
            crop_enabled=bool(inp.CROP.ENABLED),
            crop_type=str(inp.CROP.TYPE),
            crop_size=tuple(inp.CROP.SIZE),
            single_category_max_area=float(inp.CROP.SINGLE_CATEGORY_MAX_AREA),
            ignore_value=int(cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE),
            color_aug_ssd=bool(inp.COLOR_AUG_SSD),
            img_format=str(inp.FORMAT),
            random_flip=str(getattr(inp, "RANDOM_FLIP", "horizontal")),
            pad_size=(sd, sd) if sd > 0 else None,
        )
    kw.update(overrides)
    return TrainTransform(TrainTransformConfig(**kw))


def make_targets(label: torch.Tensor, ignore_value: int = 255) -> dict[str, torch.Tensor]:
    """Per-class targets of one (padded) label map, as the official mapper + ``prepare_targets``.

    Args:
        label: ``[H, W]`` integer tensor (0 / 1 / ``ignore_value``).
        ignore_value: label value that is not a class.

    Returns:
        ``{"labels": [n] int64 (sorted unique non-ignored values), "masks": [n, H, W] bool,
        "boxes": [n, 4] float32 cxcywh normalised by (W, H)}``; boxes are the tight mask boxes with exclusive
        right/bottom edges (detectron2 ``BitMasks.get_bounding_boxes``).
    """
    if label.dim() != 2:
        raise ValueError(f"label must be [H, W], got {tuple(label.shape)}")
    h, w = label.shape
    classes = torch.unique(label)
    classes = classes[classes != ignore_value].to(torch.int64)
    if classes.numel() == 0:
        return {
            "labels": torch.zeros(0, dtype=torch.int64, device=label.device),
            "masks": torch.zeros(0, h, w, dtype=torch.bool, device=label.device),
            "boxes": torch.zeros(0, 4, dtype=torch.float32, device=label.device),
        }
    masks = label.to(torch.int64)[None] == classes[:, None, None]
    boxes = masks_to_boxes(masks)
    scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=label.device)
    return {"labels": classes, "masks": masks, "boxes": box_xyxy_to_cxcywh(boxes) / scale}
