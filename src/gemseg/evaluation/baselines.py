"""Trivial reference predictors: what a method must beat to have learned anything.

``all-glass`` marks every pixel glass, ``no-glass`` none. They go through :func:`evaluate_model` like a network, so
their numbers come from exactly the code that scores the models (``gem eval --baseline all-glass``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BASELINES = ("all-glass", "no-glass")


@dataclass
class ConstantPrediction:
    """The fields of :class:`gemseg.modeling.gem.Prediction` that the evaluator reads."""

    probability: np.ndarray  # H×W float32
    mask: np.ndarray  # H×W bool


class ConstantPredictor:
    """Predicts the same value for every pixel of any image: ``predict(H×W×3 image) -> ConstantPrediction``."""

    def __init__(self, name: str):
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
        self.name = name
        self.glass = name == "all-glass"

    def predict(self, image) -> ConstantPrediction:
        h, w = np.asarray(image).shape[:2]
        return ConstantPrediction(probability=np.full((h, w), float(self.glass), np.float32),
                                  mask=np.full((h, w), self.glass, bool))
