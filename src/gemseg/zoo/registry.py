"""The model zoo: every named model gemseg can use, as data.

An entry says what the model is (architecture = a shipped config name), where its file lives (bundled in the
package, or a Hugging Face Hub repo + file name + revision), how big it is, its licence, what it was trained on,
and the GSD-S numbers the paper reports for it. Code that downloads, verifies and loads entries lives in
:mod:`gemseg.zoo.hub` and :mod:`gemseg.zoo.resolve`.

Paper numbers: GEM results on the GSD-S test set (608 images) from the official repository's README (pre-training
scale table; FPS measured by the authors on their GPU). ``BER`` is in percent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

DEFAULT_MODEL = "gem-lite-synth"  # the bundled model used when no model is named anywhere

GEM_REPO = "Bryceee/GEM-Glass-Segment-model"  # the authors' Hub repository (Apache-2.0)
PAPER = "GEM, arXiv 2401.15282 (official repository isbrycee/GEM-Glass-Segmentor, README results table)"


@dataclass(frozen=True)
class Metrics:
    """GSD-S test scores: IoU, Fβ (max over thresholds), MAE, BER (%), and FPS where given."""

    iou: float
    fbeta: Optional[float] = None
    mae: Optional[float] = None
    ber: Optional[float] = None
    fps: Optional[float] = None
    source: str = PAPER


@dataclass(frozen=True)
class ZooEntry:
    """One named model.

    Attributes:
        name: what users type (``--model NAME``, ``MODEL.WEIGHTS NAME``).
        architecture: human-readable architecture.
        config: shipped config name (or file name) that builds the architecture; None when the file carries its
            config (gemseg ``.safetensors``).
        kind: ``"model"`` (a trained glass segmentor) or ``"backbone"`` (an encoder initialisation for training).
        trained_on: what the weights were trained on.
        license: licence of the weights.
        size_bytes: file size (as listed on the Hub; the authors' GEM files are listed rounded).
        repo_id / filename / revision / repo_type: where the file lives on the Hugging Face Hub.
        bundled_file: file name in ``gemseg/assets/models`` for models shipped inside the package.
        metrics: GSD-S scores (the paper's, or the file name's where the paper gives none; see ``metrics.source``).
        notes: one line of extra information.
    """

    name: str
    architecture: str
    config: Optional[str]
    kind: str
    trained_on: str
    license: str
    size_bytes: int
    repo_id: Optional[str] = None
    filename: Optional[str] = None
    revision: str = "main"
    repo_type: str = "model"
    bundled_file: Optional[str] = None
    metrics: Optional[Metrics] = None
    notes: str = ""

    @property
    def bundled(self) -> bool:
        return self.bundled_file is not None

    @property
    def source(self) -> str:
        """``bundled`` or ``hf://[datasets/]owner/repo/file`` (revision omitted when ``main``)."""
        if self.bundled:
            return "bundled"
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        rev = "" if self.revision == "main" else f"@{self.revision}"
        return f"hf://{prefix}{self.repo_id}{rev}/{self.filename}"


ENTRIES: Tuple[ZooEntry, ...] = (
    ZooEntry(
        name="gem-lite-synth",
        architecture="GEM-Lite (EfficientNet-Lite0, 448 px)",
        config=None,
        kind="model",
        trained_on="gem synth images only (7,700 synthetic images, 9k CPU iterations); see docs/model_card.md",
        license="Apache-2.0",
        size_bytes=17_438_308,
        bundled_file="gem-lite-synth.safetensors",
        notes="small demo model shipped with gemseg; far below the paper's models on real photographs",
    ),
    ZooEntry(
        name="gem-tiny-gsds",
        architecture="GEM-Tiny (MobileSAM TinyViT, 384 px)",
        config="gem-tiny",
        kind="model",
        trained_on="S-GSD-20x synthetic pre-training, fine-tuned on GSD-S train (3,911 images)",
        license="Apache-2.0",
        size_bytes=260_000_000,
        repo_id=GEM_REPO,
        filename="GEM_Tiny_Finetune_GSD-S_pretrained_20xdata_IoU0.770.pth",
        metrics=Metrics(iou=0.770, fbeta=0.865, mae=0.032, ber=8.21, fps=16.09),
        notes="the paper's GEM-Tiny",
    ),
    ZooEntry(
        name="gem-base-gsds",
        architecture="GEM-Base (SAM ViT-B, 384 px)",
        config="gem-base",
        kind="model",
        trained_on="S-GSD-20x synthetic pre-training, fine-tuned on GSD-S train (3,911 images)",
        license="Apache-2.0",
        size_bytes=1_230_000_000,
        repo_id=GEM_REPO,
        filename="GEM_Base_Finetune_GSD-S_pretrained_20xdata_IoU0.774.pth",
        metrics=Metrics(iou=0.774, fbeta=0.865, mae=0.029, ber=8.35, fps=11.55),
        notes="the paper's GEM-Base (best IoU and MAE in the paper)",
    ),
    # "2w" / "4k" in the authors' names: 2×10^4 (Chinese 万 = 10^4, as in their "iter1w" = 10k iterations) and
    # 4×10^3 synthetic training images; "iter4w" / "iter2w": 40k / 20k iterations. Only the file names give a score
    # (GSD-S IoU without fine-tuning, by the most plausible reading); the paper's table has no row for them.
    ZooEntry(
        name="gem-base-sgsd-20k",
        architecture="GEM-Base (SAM ViT-B, 384 px)",
        config="gem-base",
        kind="model",
        trained_on="S-GSD synthetic images only, ~20k images (file name: MultiPrompt_2w), 40k iterations, batch 32",
        license="Apache-2.0",
        size_bytes=1_230_000_000,
        repo_id=GEM_REPO,
        filename="Pretrain_GEM_Base_MultiPrompt_2w_bs32_lr5e-5_iter4w_IOU0.720.pth",
        metrics=Metrics(iou=0.720, source="the file name (IOU0.720); not in the paper's table"),
        notes="synthetic pre-training only: a starting point for fine-tuning (MODEL.WEIGHTS gem-base-sgsd-20k)",
    ),
    ZooEntry(
        name="gem-base-sgsd-4k",
        architecture="GEM-Base (SAM ViT-B, 384 px)",
        config="gem-base",
        kind="model",
        trained_on="S-GSD synthetic images only, ~4k images (file name: MultiPrompt_4k), 20k iterations, batch 32",
        license="Apache-2.0",
        size_bytes=1_230_000_000,
        repo_id=GEM_REPO,
        filename="Pretrain_GEM_Base_MultiPrompt_4k_bs32_lr5e-5_iter2w_IOU0.701.pth",
        metrics=Metrics(iou=0.701, source="the file name (IOU0.701); not in the paper's table"),
        notes="synthetic pre-training only: a starting point for fine-tuning (MODEL.WEIGHTS gem-base-sgsd-4k)",
    ),
    ZooEntry(
        name="sam-vit-b",
        architecture="SAM ViT-B encoder (GEM-Base init)",
        config="gem-base",
        kind="backbone",
        trained_on="SA-1B (Segment Anything); Meta's sam_vit_b_01ec64.pth, mirrored on the Hub",
        license="Apache-2.0",
        size_bytes=375_042_383,
        repo_id="Gourieff/ReActor",
        repo_type="dataset",
        filename="models/sams/sam_vit_b_01ec64.pth",
        notes="GEM-Base training initialisation (MODEL.WEIGHTS sam-vit-b); the head starts random. "
              "Upstream: https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    ),
    ZooEntry(
        name="mobile-sam",
        architecture="MobileSAM TinyViT encoder (GEM-Tiny init)",
        config="gem-tiny",
        kind="backbone",
        trained_on="SA-1B distillation of SAM ViT-H (MobileSAM)",
        license="Apache-2.0",
        size_bytes=40_728_226,
        repo_id="dhkim2810/MobileSAM",
        filename="mobile_sam.pt",
        notes="GEM-Tiny training initialisation (MODEL.WEIGHTS mobile-sam); the head starts random. "
              "Upstream: github.com/ChaoningZhang/MobileSAM weights/mobile_sam.pt",
    ),
)

REGISTRY: Dict[str, ZooEntry] = {e.name: e for e in ENTRIES}
