"""The check after ``gem export``: does the ONNX file give the masks PyTorch gives, on realistic images?

Random noise is a poor probe for GEM: its query selection (top-k over proposals) is a discrete choice, and on noise
images many proposals tie, so tiny float differences pick other queries and the scores move by 1e-2 although real
photos agree to 1e-6. The check therefore runs realistic inputs — the bundled example photo and a few images from
the procedural synthesis engine — through the PyTorch model and the ONNX file, and measures what a user sees at
the network resolution: the glass probability (max and mean |Δ|) and the fraction of mask pixels that flip.

Tolerances (stated in docs/inference.md):

* fp32: mean |Δ probability| ≤ 1e-3, max ≤ 0.05 and ≤ 0.1 % of mask pixels flipped. Most images agree to
  ~1e-6; on some (1 in 3 of the synthesised ones for the bundled model) two proposals tie for the last top-k
  place, float rounding swaps them, and a small region's probability moves by up to ~2e-2 — real, harmless, and
  far below what a broken graph gives (mean |Δ| > 1e-2);
* int8: mean |Δ probability| ≤ 0.03 and ≤ 3 % of mask pixels flipped — int8 is an approximation; these bounds
  catch a broken quantisation (typically > 10 % flips), while ``benchmarks/int8_quality.py`` measures the real
  quality per dataset;
* fp32 with the ``fast`` head (``gem export --head fast``): mean |Δ probability| ≤ 0.02 and ≤ 2 % flipped — the
  sigmoid before the upsampling moves boundary pixels only (bundled model: 0.2 % flipped, mean 8e-3; the small
  official test checkpoint of ``../shared/fixtures``, whose masks are soft: 1.4 %, mean 1.2e-2).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Union

import numpy as np

PathLike = Union[str, os.PathLike]
EXAMPLE_PHOTO = Path(__file__).resolve().parents[1] / "assets" / "examples" / "glass_room.jpg"
CHECK_SYNTH_SEED = 9_100_000


@dataclass(frozen=True)
class Tolerance:
    """Bounds on the disagreement between an ONNX file and PyTorch fp32."""

    max_abs_prob: float  # bound on max |Δ probability| (inf: not checked)
    mean_abs_prob: float  # bound on mean |Δ probability|
    max_flip_fraction: float  # bound on the fraction of mask pixels that differ (pooled over the check images)


TOLERANCES: Dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs_prob=0.05, mean_abs_prob=1e-3, max_flip_fraction=1e-3),
    "int8": Tolerance(max_abs_prob=float("inf"), mean_abs_prob=0.03, max_flip_fraction=0.03),
    # fp32 with the fast head (sigmoid before upsampling): differences sit on mask boundaries only
    "fp32-fast": Tolerance(max_abs_prob=float("inf"), mean_abs_prob=0.02, max_flip_fraction=0.02),
}


def tolerance_for(precision: str, head: str = "exact") -> Tolerance:
    """The bounds an export of ``precision`` with ``head`` must meet (int8 already covers the fast head)."""
    if precision == "fp32" and head == "fast":
        return TOLERANCES["fp32-fast"]
    return TOLERANCES[precision]


@dataclass
class Agreement:
    """Disagreement of two predictors on a set of images (probabilities and argmax masks)."""

    max_abs_prob: float
    mean_abs_prob: float
    flip_fraction: float
    images: int

    @property
    def pixel_agreement(self) -> float:
        return 1.0 - self.flip_fraction

    def within(self, tol: Tolerance) -> bool:
        return (self.max_abs_prob <= tol.max_abs_prob and self.mean_abs_prob <= tol.mean_abs_prob
                and self.flip_fraction <= tol.max_flip_fraction)

    def describe(self) -> str:
        return (f"max |Δ probability| = {self.max_abs_prob:.2e}, mean {self.mean_abs_prob:.2e}, "
                f"mask pixels flipped {100 * self.flip_fraction:.3f} % ({self.images} images)")


def probability_and_mask(scores: np.ndarray):
    """[B, 2, S, S] scores → (probability [B, S, S], mask [B, S, S]) exactly as the post-processing computes them."""
    from gemseg.inference.preprocess import scores_to_outputs

    out = [scores_to_outputs(s) for s in scores]
    return np.stack([p for p, _ in out]), np.stack([m for _, m in out])


def match_size(scores: np.ndarray, size) -> np.ndarray:
    """[B, 2, h, w] scores resized to ``size`` as the post-processing resizes them (bilinear, align_corners=False):
    how the scores of a ``fast``-head graph (S/4) are compared with S×S ones."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    import torch

    from gemseg.inference.preprocess import resize_scores

    return resize_scores(torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32)), tuple(size)).numpy()


def compare_scores(reference: List[np.ndarray], candidate: List[np.ndarray]) -> Agreement:
    """Agreement of two lists of [2, H, W] (or [B, 2, H, W]) score arrays, image by image (a candidate at another
    resolution is first resized to the reference's, as the post-processing would)."""
    max_abs, abs_sum, flips, pixels = 0.0, 0.0, 0, 0
    for ref, got in zip(reference, candidate):
        ref, got = np.asarray(ref).reshape(-1, 2, *ref.shape[-2:]), np.asarray(got).reshape(-1, 2, *got.shape[-2:])
        got = match_size(got, ref.shape[-2:])
        p_ref, m_ref = probability_and_mask(ref)
        p_got, m_got = probability_and_mask(got)
        diff = np.abs(p_got.astype(np.float64) - p_ref)
        max_abs = max(max_abs, float(diff.max()))
        abs_sum += float(diff.sum())
        flips += int((m_ref != m_got).sum())
        pixels += m_ref.size
    return Agreement(max_abs, abs_sum / max(pixels, 1), flips / max(pixels, 1), len(reference))


def check_images(size: int, synthesized: int = 3) -> List[np.ndarray]:
    """The check inputs as [1, 3, size, size] float32 0–255 arrays: the example photo + ``synthesized`` scenes."""
    from gemseg.inference.preprocess import preprocess_image
    from gemseg.inference.quantize import synthesized_images

    images = [EXAMPLE_PHOTO] + list(synthesized_images(synthesized, seed=CHECK_SYNTH_SEED))
    return [preprocess_image(im, size)[0].numpy()[None] for im in images]


def check_onnx_against_pytorch(model, onnx_path: PathLike, precision: str = "fp32",
                               synthesized: int = 3) -> Agreement:
    """Run the check images through ``model`` (PyTorch fp32) and ``onnx_path`` (ONNX Runtime, CPU)."""
    import torch

    from gemseg.inference.onnx_export import create_session

    session = create_session(onnx_path)
    name = session.get_inputs()[0].name
    reference, candidate = [], []
    for x in check_images(int(model.img_size), synthesized):
        with torch.inference_mode():
            reference.append(model.infer_scores(torch.from_numpy(x)).numpy())
        candidate.append(session.run(None, {name: x})[0])
    return compare_scores(reference, candidate)
