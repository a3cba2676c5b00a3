"""Inference: the shared pre/post-processing, ``GlassSegmentor`` (batching, devices, TTA, video, ONNX Runtime),
folder prediction, ONNX export and benchmarking.

    from gemseg.inference import GlassSegmentor
    seg = GlassSegmentor.from_pretrained("gem_tiny.safetensors")   # or ("model_final.pth", config="gem.yaml")
    pred = seg.predict("photo.jpg")                                 # .mask, .probability at the photo's size
"""
from __future__ import annotations

__all__ = ["GlassSegmentor", "VideoFrame", "available_models", "export_onnx"]


def __getattr__(name):  # lazy: keep `import gemseg.inference.preprocess` light
    if name in ("GlassSegmentor", "VideoFrame", "available_models"):
        from gemseg.inference import predictor

        return getattr(predictor, name)
    if name == "export_onnx":
        from gemseg.inference.onnx_export import export_onnx

        return export_onnx
    raise AttributeError(f"module 'gemseg.inference' has no attribute {name!r}")
