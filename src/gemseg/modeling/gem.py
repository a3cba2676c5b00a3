"""The GEM meta-model: backbone → pixel decoder → predictor, plus GEM's semantic inference.

``GEM.forward`` works on batches of already-resized images; ``GEM.predict`` is the user-facing path for one image
of any size (square resize → network → scores resized back → argmax), shared by ``gem predict``, ``gem eval``
and the Python API.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gemseg.modeling.mask_dino_decoder import MaskDINODecoder
from gemseg.modeling.pixel_decoder import PixelDecoder
from gemseg.modeling.prediction import Prediction, postprocess_scores, preprocess_image

ImageInput = Union[np.ndarray, "os.PathLike[str]", str, Any]  # H×W×3 uint8 RGB array, path, or PIL image


class SemSegHead(nn.Module):
    """``sem_seg_head``: the pixel decoder and the predictor (official module names)."""

    def __init__(self, pixel_decoder: PixelDecoder, predictor: MaskDINODecoder):
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor

    def forward(self, features: Dict[str, Tensor], targets=None, prepare_for_dn=None, dn_post_process=None):
        mask_features, multi_scale = self.pixel_decoder(features)
        return self.predictor(multi_scale, mask_features, targets, prepare_for_dn, dn_post_process)


def semantic_scores(pred_logits: Tensor, pred_masks: Tensor, out_size: Sequence[int]) -> Tensor:
    """GEM's semantic inference.

    Args:
        pred_logits: [B, Q, K+1] class logits (last = no-object).
        pred_masks: [B, Q, h, w] mask logits.
        out_size: (H, W) the network input size: mask logits are upsampled there *before* the sigmoid.
    Returns:
        [B, K, H, W] scores: Σ_q softmax(logits)[q, k] · sigmoid(mask)[q].
    """
    probs = pred_logits.softmax(-1)[..., :-1]  # [B, Q, K]
    masks = F.interpolate(pred_masks, size=tuple(out_size), mode="bilinear", align_corners=False)
    masks = masks.sigmoid_()
    b, q, h, w = masks.shape
    # [B, K, Q] @ [B, Q, H·W]: one matmul instead of an einsum over a 4-D broadcast
    return torch.bmm(probs.transpose(1, 2), masks.view(b, q, h * w)).view(b, -1, h, w)


class GEM(nn.Module):
    """GEM glass segmenter.

    Args:
        backbone: module mapping [B, 3, S, S] normalised images to {"res2".."res5"} (256 ch, strides 4–32).
        sem_seg_head: :class:`SemSegHead`.
        img_size: the square network input size S.
        pixel_mean, pixel_std: RGB normalisation on the 0–255 scale.
        num_classes: 2 (background, glass).
    """

    def __init__(self, backbone: nn.Module, sem_seg_head: SemSegHead, img_size: int,
                 pixel_mean: Sequence[float] = (123.675, 116.28, 103.53),
                 pixel_std: Sequence[float] = (58.395, 57.12, 57.375), num_classes: int = 2):
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.img_size = int(img_size)
        self.num_classes = num_classes
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.cfg = None  # set by the builder: the config the model was built from
        self.variant = "head"

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def normalize(self, images: Tensor) -> Tensor:
        """[B, 3, S, S] RGB on 0–255 → normalised."""
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, images: Tensor, targets=None, prepare_for_dn=None, dn_post_process=None):
        """Run the network.

        Args:
            images: [B, 3, S, S] float RGB on the 0–255 scale (S = ``img_size``).
        Returns:
            (outputs, dn_meta) from the predictor; see :class:`MaskDINODecoder`.
        """
        features = self.backbone(self.normalize(images))
        return self.sem_seg_head(features, targets, prepare_for_dn, dn_post_process)

    @torch.inference_mode()
    def infer_scores(self, images: Tensor) -> Tensor:
        """[B, 3, S, S] 0–255 RGB → [B, 2, S, S] semantic scores at the network resolution."""
        outputs, _ = self.forward(images)
        return semantic_scores(outputs["pred_logits"], outputs["pred_masks"], images.shape[-2:])

    # ------------------------------------------------------------------------------------------------------------
    def predict(self, image: ImageInput, resize: str = "cv2") -> Prediction:
        """Segment glass in one image of any size.

        Args:
            image: H×W×3 uint8 RGB numpy array, a PIL image or a path (read with EXIF orientation).
            resize: how to square-resize to the model size: ``"cv2"`` (bilinear, as the official demo) or
                ``"pil"`` (PIL bilinear, as the official evaluation's ``T.Resize``). An image already at the model
                size is not resized.
        Returns:
            :class:`Prediction` at the input's resolution.
        """
        was_training = self.training
        self.eval()
        try:
            tensor, (h, w) = preprocess_image(image, self.img_size, resize=resize)
            scores = self.infer_scores(tensor.to(self.device)[None])
            return postprocess_scores(scores[0], (h, w))
        finally:
            self.train(was_training)
