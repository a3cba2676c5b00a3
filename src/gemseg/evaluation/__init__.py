"""Evaluation: the paper's glass metrics (streaming, histogram-based), the dataset/prediction evaluator and reports.

::

    from gemseg.data import resolve_dataset
    from gemseg.evaluation import evaluate_model, evaluate_predictions, format_table

    ds = resolve_dataset("datasets/GSD-S-D2", split="validation")
    res = evaluate_model(model, ds)            # binary argmax masks, as the official GEM evaluator
    print(format_table(res))                   # IoU / Fβ / MAE / BER as the paper prints them
    res.official()                             # {"count", "IoU", "Fbeta", "MAE", "BER"}

Definitions and edge cases: ``docs/evaluation.md``.
"""
from gemseg.evaluation.evaluator import (
    OFFICIAL_KEYS,
    SIZE_POLICIES,
    EvalResults,
    EvaluationError,
    Failure,
    PredictionReadError,
    evaluate_model,
    evaluate_predictions,
    match_predictions,
    read_prediction,
    resize_prediction,
)
from gemseg.evaluation.metrics import BETA2, EMPTY_POLICIES, GlassMetrics, ImageScores, quantize_prediction
from gemseg.evaluation.report import (
    format_table,
    full_report,
    plot_curves,
    save_gallery,
    write_csv,
    write_full_json,
    write_json,
    write_markdown,
)

__all__ = [
    "BETA2",
    "EMPTY_POLICIES",
    "OFFICIAL_KEYS",
    "SIZE_POLICIES",
    "EvalResults",
    "EvaluationError",
    "Failure",
    "GlassMetrics",
    "ImageScores",
    "PredictionReadError",
    "evaluate_model",
    "evaluate_predictions",
    "format_table",
    "full_report",
    "match_predictions",
    "plot_curves",
    "quantize_prediction",
    "read_prediction",
    "resize_prediction",
    "save_gallery",
    "write_csv",
    "write_full_json",
    "write_json",
    "write_markdown",
]
