"""Synthetic glass-surface datasets with exact masks (S-GSD-style), written in the official GSD-S layout.

Two engines:

* :class:`~gemseg.synthesis.procedural.ProceduralEngine` (default; CPU, no weights): glass structures (windows,
  façades, shop fronts, doors, partitions, railings, display cases) in perspective, composited onto photographs
  and procedural scenes with transmission, refraction, tint, Fresnel reflections, highlights and dirt; occluders and
  hard negatives. The mask is painted with the same pixel sets as the colours, so it is exact.
* :class:`~gemseg.synthesis.diffusion.DiffusionEngine` (the paper's recipe, optional ``diffusers``): restyle real
  image+mask pairs with ControlNet + Stable Diffusion from local weights, keep the mask, filter by CLIP score.

:func:`~gemseg.synthesis.writer.generate_dataset` writes either engine's output (resumable, multi-process,
deterministic per seed). The ``gem synth`` command is a thin shell over these.
"""
from gemseg.synthesis.procedural import ProceduralEngine, SynthOptions
from gemseg.synthesis.writer import (
    GSD_S_TRAIN_IMAGES,
    SCALES,
    SynthError,
    WriteOptions,
    generate_dataset,
    image_seed,
    images_for_scale,
    split_of,
    stem_of,
)

__all__ = [
    "GSD_S_TRAIN_IMAGES",
    "SCALES",
    "ProceduralEngine",
    "SynthError",
    "SynthOptions",
    "WriteOptions",
    "generate_dataset",
    "image_seed",
    "images_for_scale",
    "split_of",
    "stem_of",
]
