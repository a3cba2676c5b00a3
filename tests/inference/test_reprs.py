"""Readable reprs of the user-facing objects and a discoverable top-level API."""
import numpy as np

import gemseg
from gemseg.inference.predictor import GlassSegmentor
from gemseg.modeling.prediction import Prediction
from tests.inference.tiny import photo, tiny_weights


def test_dir_gemseg_lists_the_public_api():
    names = dir(gemseg)
    for name in ("load_model", "build_model", "get_config", "load_checkpoint", "GlassSegmentor", "Prediction",
                 "available_models", "__version__"):
        assert name in names
        assert getattr(gemseg, name) is not None
    assert "annotations" not in names


def test_prediction_repr_summarises_instead_of_dumping_arrays():
    mask = np.zeros((30, 40), bool)
    mask[:, :10] = True
    pred = Prediction(scores=np.zeros((2, 30, 40), np.float32), probability=mask.astype(np.float32), mask=mask)
    text = repr(pred)
    assert text == "Prediction(30×40, glass 25.0% of the pixels; .mask, .probability, .scores)"
    assert pred.glass_fraction == 0.25


def test_segmentor_repr_names_model_backend_device_precision_size(tmp_path):
    weights = tiny_weights(tmp_path)
    seg = GlassSegmentor.from_pretrained(weights, device="cpu", threshold=0.7)
    text = repr(seg)
    assert text == (f"GlassSegmentor(model={str(weights)!r}, backend=torch, device=cpu, precision=fp32, size=64, "
                    "batch_size=1, threshold=0.7)")
    result = seg.predict(photo(50, 70))
    assert repr(result).startswith("Prediction(50×70, glass ") and "array" not in repr(result)
