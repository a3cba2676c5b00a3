"""``gem train``: train or fine-tune GEM with the official configs (the official ``train_net.py`` command shape).

    gem train --config-file gem-tiny MODEL.WEIGHTS pretrained/mobile_sam.pkl            # one process
    gem train --config-file gem-tiny MODEL.WEIGHTS mobile-sam                           # a zoo name (gem models)
    gem train --config-file gem-tiny --num-gpus 4 MODEL.DEVICE cuda ...                 # 4 local workers (DDP)
    torchrun --nproc_per_node 4 -m gemseg.cli.main train --config-file gem-tiny ...     # the same via torchrun
    gem train --config-file gem-tiny --resume                                           # continue OUTPUT_DIR
    gem train --eval-only --config-file gem-tiny MODEL.WEIGHTS output/model_final.pth   # the four-number table

Trailing ``KEY VALUE`` pairs override the config (e.g. ``SOLVER.IMS_PER_BATCH 8 SOLVER.GRAD_ACCUM_STEPS 4``).
Datasets come from ``DATASETS.TRAIN`` / ``DATASETS.TEST``: the official names resolve under
``$DETECTRON2_DATASETS``, anything else is a dataset folder. See docs/training.md.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, List

from gemseg.errors import GemsegError


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    """Register ``gem train`` on the dispatcher's sub-parsers."""
    p = subparsers.add_parser(name, help=help_text, description=__doc__.split("\n\n")[0],
                              usage="gem train --config-file FILE [--num-gpus N] [--resume] [--eval-only] "
                                    "[options] [KEY VALUE ...]",
                              epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE",
                   help="config YAML (official files load unchanged) or a shipped name: gem-tiny, gem-base, gem-lite, …")
    p.add_argument("--num-gpus", type=int, default=1, metavar="N",
                   help="local worker processes (DDP; NCCL on CUDA, gloo on CPU). Under torchrun leave it at 1")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUTPUT_DIR/last_checkpoint (model, optimizer, schedule, RNG, data position)")
    p.add_argument("--eval-only", action="store_true",
                   help="evaluate MODEL.WEIGHTS on the test dataset and print IoU / Fβ / MAE / BER")
    p.add_argument("--dataset", help="--eval-only: dataset folder or official name (default: DATASETS.TEST[0])")
    p.add_argument("--split", help="--eval-only: split of a dataset folder (default: the layout's test split)")
    p.add_argument("--device", help="shortcut for MODEL.DEVICE (cpu, cuda, mps, auto)")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    p.set_defaults(_accepts_extra=True)
    return p


def _config(args: argparse.Namespace):
    from gemseg.config import get_config

    opts: List[str] = list(getattr(args, "extra", None) or [])
    stray = [o for o in opts if o.startswith("--")]
    if stray:
        raise GemsegError(f"unrecognized option {stray[0]} (KEY VALUE overrides come last, without dashes)")
    if len(opts) % 2:
        raise GemsegError(f"config overrides must be KEY VALUE pairs; got an odd number: {' '.join(opts)}")
    if args.device:
        opts += ["MODEL.DEVICE", args.device]
    return get_config(args.config_file, opts, freeze=False)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _worker(cfg: Any, resume: bool, verbose: bool) -> None:
    """One training process (spawned by --num-gpus, or this process itself)."""
    from gemseg.engine import distributed as du
    from gemseg.engine.train_loop import train

    _setup_logging(verbose)
    try:
        summary = train(cfg, resume=resume)
    finally:
        du.cleanup()
    if summary.get("final_checkpoint"):
        print(f"gem train: done; final checkpoint {summary['final_checkpoint']}", file=sys.stderr)
        if summary.get("eval"):
            ev = summary["eval"]
            print("final eval: " + "  ".join(f"{k} {v:.4f}" for k, v in ev.items()), file=sys.stderr)


def _eval_only(args: argparse.Namespace, cfg) -> int:
    import gemseg
    from gemseg.data import resolve_dataset
    from gemseg.evaluation import evaluate_model, format_table

    weights = str(cfg.MODEL.WEIGHTS or "")
    if not weights:
        raise GemsegError("--eval-only needs weights: add MODEL.WEIGHTS path/to/model_final.pth")
    name = args.dataset
    if not name:
        tests = cfg.DATASETS.TEST
        tests = (tests,) if isinstance(tests, str) else tuple(tests)
        if not tests:
            raise GemsegError("no test dataset: pass --dataset or set DATASETS.TEST")
        name = tests[0]
    dataset = resolve_dataset(name, split=args.split)
    print(f"dataset: {dataset.describe()}", file=sys.stderr)
    device = cfg.MODEL.DEVICE
    model = gemseg.load_model(cfg, weights=weights, device=device)
    results = evaluate_model(model, dataset, source=f"{args.config_file} + {weights}")
    print(format_table(results, name=weights.rsplit("/", 1)[-1]))
    if results.count == 0:
        raise GemsegError("no pair could be scored")
    return 130 if results.interrupted else 0


def run(args: argparse.Namespace) -> int:
    """Run ``gem train``; returns 0 on success."""
    from gemseg.engine import distributed as du
    from gemseg.engine.data import per_rank_batch_size, resolve_train_dataset
    from gemseg.engine.train_loop import resolve_eval_dataset

    _setup_logging(args.verbose)
    cfg = _config(args)
    if args.eval_only:
        return _eval_only(args, cfg)
    if args.num_gpus < 1:
        raise GemsegError(f"--num-gpus must be >= 1, got {args.num_gpus}")
    world = args.num_gpus if du.env_world_size() <= 1 else du.env_world_size()
    # fail fast, in the launching process, with one-line errors: dataset and batch split
    per_rank_batch_size(int(cfg.SOLVER.IMS_PER_BATCH), int(cfg.SOLVER.GRAD_ACCUM_STEPS), world)
    resolve_train_dataset(cfg.DATASETS.TRAIN)
    resolve_eval_dataset(cfg)
    from gemseg.inference.devices import resolve_device

    if args.num_gpus > 1 and resolve_device(str(cfg.MODEL.DEVICE) or "auto").type == "cuda":
        import torch

        if torch.cuda.device_count() < args.num_gpus:
            raise GemsegError(f"--num-gpus {args.num_gpus} but only {torch.cuda.device_count()} CUDA device(s)")
    try:
        du.launch(_worker, args.num_gpus, (cfg, args.resume, args.verbose))
    except Exception as e:  # a spawned worker failed: surface its last line
        if isinstance(e, GemsegError):
            raise
        text = str(e).strip().splitlines()
        if type(e).__name__ == "ProcessRaisedException" and text:
            raise GemsegError(f"a training process failed: {text[-1]}") from None
        raise
    return 0
