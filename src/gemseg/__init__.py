"""gemseg: glass surface segmentation (GEM) in pure PyTorch.

Public entry points::

    import gemseg
    model = gemseg.load_model("gem-tiny-gsds")        # a zoo name (gem models), a Hub repo id, or a weights file
    model = gemseg.load_model("configs/gem_sam_tiny_bs32_iter1w_steplr.yaml", weights="model_final.pth")
    model = gemseg.load_model()                       # the bundled default model
    result = model.predict("photo.jpg")     # .scores (2×H×W), .probability (H×W), .mask (H×W bool)

    seg = gemseg.GlassSegmentor.from_pretrained("gem-lite-synth")   # batching, devices, TTA, video, ONNX Runtime
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "load_checkpoint", "build_model", "get_config", "GlassSegmentor",
           "Prediction", "available_models"]


def __getattr__(name):  # lazy imports keep `import gemseg` (and `gem --help`) light
    if name in ("GlassSegmentor", "available_models"):
        from gemseg.inference import predictor

        return getattr(predictor, name)
    if name == "Prediction":
        from gemseg.modeling.prediction import Prediction

        return Prediction
    if name == "load_model":  # the one model rule (gemseg.zoo.resolve) in front of modeling.build.load_model
        from gemseg.zoo.resolve import load_model

        return load_model
    if name == "build_model":
        from gemseg.modeling import build

        return build.build_model
    if name == "load_checkpoint":
        from gemseg.modeling.checkpoint import load_checkpoint

        return load_checkpoint
    if name == "get_config":
        from gemseg.config import get_config

        return get_config
    raise AttributeError(f"module 'gemseg' has no attribute {name!r}")


def __dir__():  # the lazily imported public API shows up in dir(gemseg) and tab completion
    return sorted((set(globals()) - {"annotations"}) | set(__all__))
