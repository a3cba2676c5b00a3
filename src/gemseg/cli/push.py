"""``gem push``: share a trained model on the Hugging Face Hub in the ``save_pretrained`` layout.

    gem push output/ --repo-id me/gem-tiny-office --metrics eval.json   # a gem train run folder
    gem push model_final.pth --config gem-tiny --repo-id me/gem-tiny-office
    gem push output/ --repo-id me/gem-tiny-office --save-dir share/ --dry-run   # write the folder, upload nothing

Others then use it with: gem predict photo.jpg --model me/gem-tiny-office --output masks/
or in Python: GlassSegmentor.from_pretrained("me/gem-tiny-office").
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from gemseg.errors import GemsegError

RUN_WEIGHTS = ("model_final.pth", "model_best.pth")


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_text, description=help_text + ": writes model.safetensors (the config inside) and a "
        "README.md model card, then uploads both with huggingface_hub (token: HF_TOKEN or hf auth login).",
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="RUN_DIR_OR_WEIGHTS",
                   help="a gem train output folder (model_final.pth + config.yaml) or a weights file")
    p.add_argument("--repo-id", required=True, metavar="OWNER/NAME", help="the Hub model repository to create or update")
    p.add_argument("--config", "-c", help="config of the weights (default: the run's config.yaml, or the one "
                   "inside a gemseg .safetensors)")
    p.add_argument("--metrics", metavar="JSON", help="scores for the model card: the file written by gem eval --json")
    p.add_argument("--trained-on", default="", help="one line for the model card: what the model was trained on")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--token", help="Hugging Face token (default: HF_TOKEN or the one saved by hf auth login)")
    p.add_argument("--message", default="Upload gemseg model", help="commit message")
    p.add_argument("--save-dir", help="also keep the uploaded folder here")
    p.add_argument("--overwrite", action="store_true", help="replace files already in --save-dir")
    p.add_argument("--dry-run", action="store_true", help="write the folder to --save-dir and upload nothing")
    return p


def weights_and_config(source: Path, config=None):
    """(weights file, config) of a run folder or a weights file."""
    if source.is_dir():
        found = [source / n for n in RUN_WEIGHTS if (source / n).is_file()]
        if not found:
            marker = source / "last_checkpoint"
            if marker.is_file() and (source / marker.read_text().strip()).is_file():
                found = [source / marker.read_text().strip()]
        if not found:
            raise GemsegError(f"{source} holds no model_final.pth, model_best.pth or last_checkpoint: not a "
                              "finished gem train run")
        if config is None and (source / "config.yaml").is_file():
            config = str(source / "config.yaml")
        return found[0], config
    if not source.is_file():
        raise GemsegError(f"not found: {source}")
    return source, config


def read_metrics(path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise GemsegError(f"cannot read --metrics {path}: {e}") from None
    if not isinstance(data, dict) or "IoU" not in data:
        raise GemsegError(f"--metrics {path}: expected the JSON of gem eval --json (IoU, Fbeta, MAE, BER)")
    return data


def run(args) -> int:
    from gemseg.zoo.pretrained import push_to_hub, save_pretrained
    from gemseg.zoo.resolve import load_model

    if args.dry_run and not args.save_dir:
        raise GemsegError("--dry-run needs --save-dir (where the folder is written)")
    if args.repo_id.count("/") != 1:
        raise GemsegError(f"--repo-id must look like owner/name, got {args.repo_id!r}")
    weights, config = weights_and_config(Path(args.source), args.config)
    metrics = read_metrics(args.metrics) if args.metrics else None
    model = load_model(config, weights=weights)
    print(f"gem push: {weights} ({model.cfg.MODEL.BACKBONE.NAME}, size {model.img_size})", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="gemseg-push-") as tmp:
        folder = Path(args.save_dir) if args.save_dir else Path(tmp) / args.repo_id.split("/")[1]
        save_pretrained(model, folder, repo_id=args.repo_id, metrics=metrics, trained_on=args.trained_on,
                        overwrite=args.overwrite)
        print(f"gem push: wrote {folder} (model.safetensors, README.md)", file=sys.stderr)
        if args.dry_run:
            return 0
        url = push_to_hub(folder, args.repo_id, private=args.private or None, token=args.token,
                          commit_message=args.message)
    print(f"gem push: uploaded to {args.repo_id}: {url}", file=sys.stderr)
    print(f"gem push: use it with: gem predict photo.jpg --model {args.repo_id} --output masks/", file=sys.stderr)
    return 0
