"""Share gemseg models the Hugging Face way: ``save_pretrained`` → folder → ``push_to_hub`` → ``from_pretrained``.

The folder layout follows the ``huggingface_hub`` / transformers / timm convention:

- ``model.safetensors``: the weights, with the full model config in the safetensors metadata (so that
  ``gem predict --model owner/name`` and ``GlassSegmentor.from_pretrained("owner/name")`` need nothing else);
- ``README.md``: a model card (YAML front matter the Hub indexes: ``library_name: gemseg``, licence, tags,
  ``pipeline_tag: image-segmentation``; then usage and the metrics when known).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from gemseg.errors import GemsegError
from gemseg.zoo.resolve import PRETRAINED_FILE

PathLike = Union[str, os.PathLike]
CARD_FILE = "README.md"
METRICS_METADATA_KEY = "gemseg.metrics"
METRIC_KEYS = ("IoU", "Fbeta", "MAE", "BER")


def _describe(cfg) -> Dict[str, Any]:
    from gemseg.modeling.build import model_input_size

    return {
        "backbone": cfg.MODEL.BACKBONE.NAME,
        "input size": model_input_size(cfg),
        "decoder layers": int(cfg.MODEL.MaskDINO.DEC_LAYERS),
        "queries": int(cfg.MODEL.MaskDINO.NUM_OBJECT_QUERIES),
        "hidden dim": int(cfg.MODEL.MaskDINO.HIDDEN_DIM),
    }


def model_card(repo_id: str, cfg, metrics: Optional[Mapping[str, Any]] = None, trained_on: str = "",
               license: str = "apache-2.0") -> str:
    """The ``README.md`` text for a gemseg model repository."""
    desc = _describe(cfg)
    lines = [
        "---",
        "library_name: gemseg",
        f"license: {license}",
        "pipeline_tag: image-segmentation",
        "tags:",
        "- glass-segmentation",
        "- gem",
        "- gemseg",
        "---",
        "",
        f"# {repo_id}",
        "",
        "A GEM glass surface segmentation model (arXiv 2401.15282) saved with "
        "gemseg `save_pretrained`: `model.safetensors` holds the weights and, in its "
        "metadata, the full model config.",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in desc.items()]
    if trained_on:
        lines.append(f"| trained on | {trained_on} |")
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "pip install gemseg",
        f"gem predict photo.jpg --model {repo_id} --output masks/",
        "```",
        "",
        "```python",
        "from gemseg.inference import GlassSegmentor",
        "",
        f'seg = GlassSegmentor.from_pretrained("{repo_id}")',
        'result = seg.predict("photo.jpg")  # .mask (H×W bool), .probability, .scores',
        "```",
        "",
    ]
    scores = {k: metrics[k] for k in METRIC_KEYS if metrics and k in metrics}
    if scores:
        dataset = metrics.get("dataset", "") if metrics else ""
        count = metrics.get("count") if metrics else None
        what = f"on {dataset}" if dataset else "as given to gem push"
        if count:
            what += f" ({count} images)"
        lines += [
            "## Metrics",
            "",
            f"Scored with `gem eval` {what} (IoU, Fβ and MAE in [0, 1]; BER in percent).",
            "",
            "| " + " | ".join(scores) + " |",
            "|" + "---|" * len(scores),
            "| " + " | ".join(f"{float(v):.4f}" if k != "BER" else f"{float(v):.2f}" for k, v in scores.items())
            + " |",
            "",
        ]
    else:
        lines += ["## Metrics", "", "Not measured yet (`gem eval --model " + repo_id + " --dataset ...`).", ""]
    return "\n".join(lines)


def save_pretrained(model, directory: PathLike, *, repo_id: Optional[str] = None,
                    metrics: Optional[Mapping[str, Any]] = None, trained_on: str = "",
                    overwrite: bool = False) -> Path:
    """Write ``model.safetensors`` (config inside) and a ``README.md`` model card into ``directory``.

    ``model`` is a GEM (with its ``cfg``) or a :class:`gemseg.inference.GlassSegmentor`. ``metrics`` (e.g. the
    JSON of ``gem eval --json``: IoU, Fbeta, MAE, BER, count, dataset) go into the card and the file metadata.
    Existing files are replaced only with ``overwrite``.
    """
    from gemseg.io.atomic import atomic_write_bytes
    from gemseg.modeling.checkpoint import save_checkpoint

    net = getattr(model, "model", None) if not hasattr(model, "cfg") else model
    if net is None or getattr(net, "cfg", None) is None:
        raise GemsegError("save_pretrained needs a PyTorch GEM model with its config (not an ONNX Runtime one)")
    folder = Path(directory)
    targets = [folder / PRETRAINED_FILE, folder / CARD_FILE]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise GemsegError(f"{', '.join(existing)} exist(s); pass overwrite=True (--overwrite) to replace")
    folder.mkdir(parents=True, exist_ok=True)
    extra = {"gemseg.format": "save_pretrained"}
    if metrics:
        extra[METRICS_METADATA_KEY] = json.dumps(dict(metrics), sort_keys=True)
    save_checkpoint(_unoptimised(net), targets[0], extra=extra)
    card = model_card(repo_id or folder.name, net.cfg, metrics, trained_on)
    atomic_write_bytes(targets[1], card.encode("utf-8"))
    return folder


def _unoptimised(net):
    """The model to save: BatchNorm-folded inference copies cannot be saved (their keys changed)."""
    if getattr(net, "folded_batchnorms", 0):
        raise GemsegError("this model was optimised for inference (BatchNorm folded); save the model from "
                          "gemseg.load_model, or GlassSegmentor.from_pretrained(..., optimize=False)")
    return net


def push_to_hub(folder: PathLike, repo_id: str, *, private: Optional[bool] = None, token: Optional[str] = None,
                commit_message: str = "Upload gemseg model", revision: Optional[str] = None, api=None) -> str:
    """Create ``repo_id`` if needed and upload a :func:`save_pretrained` folder; returns the commit URL.

    ``token`` defaults to ``huggingface_hub``'s (``HF_TOKEN`` or ``hf auth login``).
    """
    folder = Path(folder)
    if not (folder / PRETRAINED_FILE).is_file():
        raise GemsegError(f"{folder} has no {PRETRAINED_FILE}: write it with save_pretrained first")
    if api is None:
        from gemseg.zoo.hub import _hub

        api = _hub().HfApi()
    from huggingface_hub import utils as hf_utils

    try:
        api.create_repo(repo_id, token=token, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                                 token=token, revision=revision, allow_patterns=[PRETRAINED_FILE, CARD_FILE])
    except hf_utils.HfHubHTTPError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GemsegError(f"upload to {repo_id} failed: {first} (log in with 'hf auth login' or set HF_TOKEN)"
                          ) from None
    return str(getattr(info, "commit_url", info))
