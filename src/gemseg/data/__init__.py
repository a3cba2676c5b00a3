"""Datasets: layout readers (GSD-S, S-GSD, GSD, GDD, Trans10K, real photographs, generic folders) and mask decoding.

``resolve_dataset`` is the one way every command (``gem eval``, ``gem train``) turns a dataset name or folder into
image/mask pairs; ``load_mask_binary`` is the one way a mask becomes ``(glass, ignore)``. See
:mod:`gemseg.data.layouts` for the layouts and the decoding rules.
"""
from gemseg.data.layouts import (
    ENCODINGS,
    LAYOUTS,
    OFFICIAL_NAMES,
    Dataset,
    DatasetError,
    MaskDecodeError,
    Sample,
    decode_mask,
    detectron2_datasets_root,
    load_mask_binary,
    masks_only,
    pair_files,
    resolve_dataset,
)

__all__ = [
    "ENCODINGS",
    "LAYOUTS",
    "OFFICIAL_NAMES",
    "Dataset",
    "DatasetError",
    "MaskDecodeError",
    "Sample",
    "decode_mask",
    "detectron2_datasets_root",
    "load_mask_binary",
    "masks_only",
    "pair_files",
    "resolve_dataset",
]
