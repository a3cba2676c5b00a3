"""The one pre/post-processing path for inference (model.predict, gem predict, gem eval, ONNX wrapper).

Defined in :mod:`gemseg.modeling.prediction` (``GEM.predict`` uses it, and modeling never imports inference) and
re-exported here for the inference code: square bilinear resize to the model size → network → 2-channel scores
resized back to the original H×W → probability and argmax mask.
"""
from gemseg.modeling.prediction import (Prediction, load_rgb, load_rgb_for_size, postprocess_scores,
                                        preprocess_image, resize_scores, resize_square, scores_to_outputs)

__all__ = ["Prediction", "load_rgb", "load_rgb_for_size", "postprocess_scores", "preprocess_image", "resize_scores",
           "resize_square", "scores_to_outputs"]
