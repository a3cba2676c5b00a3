"""``gem eval``: score a model or saved masks with the paper's metrics (IoU, Fβ, MAE, BER).

Model mode::

    gem eval --config configs/gem_sam_tiny.yaml --weights model_final.pth --dataset datasets/GSD-S-D2 \
             [--split validation] [--device cpu] [--soft]

Prediction mode (any method's saved masks)::

    gem eval --pred-dir results/GDNet --gt-dir GSD-S/annotations/validation [--resize-pred | --strict-size]

Outputs: the table as the paper prints it on stdout; ``--json`` (exactly count/IoU/Fbeta/MAE/BER),
``--report-json`` (everything), ``--markdown``, ``--csv``, ``--per-image-csv``, ``--plots DIR`` (curves.png and
worst.png). The model is imported only in model mode.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gemseg.errors import GemsegError
from gemseg.zoo.registry import DEFAULT_MODEL

# kept in sync with gem predict's --model help (not imported: prediction mode must not load the model code)
MODEL_HELP = ("a model by name (see gem models; Hub models are downloaded once into the Hugging Face cache), a Hub "
              "repo id owner/name, or a weights file; default: the bundled " + DEFAULT_MODEL)


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    """Register ``gem eval`` on the dispatcher's sub-parsers."""
    p = subparsers.add_parser(
        name, help=help_text, description=__doc__.split("\n\n", 1)[0] + (
            "\nModel mode scores a model (--model NAME, --weights FILE, --config alone for random weights, or by "
            "default the bundled gem-lite-synth) on --dataset (or --images/--masks); prediction mode "
            "needs --pred-dir with --gt-dir (or --dataset / --masks). By default model mode scores the binary "
            "argmax mask, as the official GEM evaluator does; --soft scores the glass probability."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    m = p.add_argument_group("model mode")
    m.add_argument("--config", help="model config (YAML, official names accepted)")
    m.add_argument("--weights", help="checkpoint (.pth/.pkl/.safetensors) or a graph from gem export (.onnx: fp32 or "
                   "int8, run in ONNX Runtime)")
    m.add_argument("--model", metavar="NAME", help=MODEL_HELP)
    m.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    m.add_argument("--size", type=int, help="network input size (a multiple of 32; default: the config's)")
    m.add_argument("--soft", action="store_true",
                   help="score the glass probability instead of the binary argmax mask (official GEM: binary)")
    m.add_argument("--tta", action="store_true",
                   help="horizontal-flip test-time augmentation: score the mean of the image's and its mirror's "
                        "scores, exactly as gem predict --tta (2x compute)")
    m.add_argument("--baseline", choices=("all-glass", "no-glass"),
                   help="score a trivial predictor (every pixel glass / none) through the same code, as a reference")
    pm = p.add_argument_group("prediction mode")
    pm.add_argument("--pred-dir", help="folder of saved predictions (PNG 0/255 or 0/1 masks, 8-bit soft maps, .npy)")
    pm.add_argument("--gt-dir", help="folder of ground-truth masks (or a dataset folder with masks/)")
    size = pm.add_mutually_exclusive_group()
    size.add_argument("--resize-pred", action="store_true",
                      help="resize predictions whose size differs from the GT (bilinear; binary masks re-thresholded "
                           "at 0.5). Default: such pairs are skipped and reported")
    size.add_argument("--strict-size", action="store_true",
                      help="stop with an error at the first prediction whose size differs from the GT")
    d = p.add_argument_group("dataset")
    d.add_argument("--dataset", help="dataset folder or official name (ade20k_sem_seg_val, under $DETECTRON2_DATASETS)")
    d.add_argument("--split", help="split (GSD-S: validation|training; GDD/GSD/Trans10K: test|train; "
                                   "default: the layout's test split)")
    d.add_argument("--layout", help="force a layout: gsd-s, sgsd, gsd, gdd, trans10k, realdata, generic")
    d.add_argument("--images", help="image folder (generic layout)")
    d.add_argument("--masks", help="mask folder (generic layout)")
    d.add_argument("--mask-encoding", choices=("auto", "zero_one", "binary", "trans10k"),
                   help="override how GT masks are decoded (default: the layout's; see docs/evaluation.md)")
    d.add_argument("--limit", type=int, help="score only the first N pairs (quick checks)")
    o = p.add_argument_group("metrics and output")
    o.add_argument("--empty", choices=("guard", "official", "skip"), default="guard",
                   help="images with empty GT and empty prediction (0/0): guard = IoU 1 and BER over the classes "
                        "present (default); official = NaN as the official code; skip = leave them out")
    o.add_argument("--s-measure", action="store_true",
                   help="also compute the S-measure (structure measure; a few extra passes per image)")
    o.add_argument("--name", default=None, help="method name in the table (default: weights / prediction folder)")
    o.add_argument("--json", help="write {count, IoU, Fbeta, MAE, BER} (exactly these keys; BER in percent)")
    o.add_argument("--report-json", help="write every number, the curves, settings and skipped pairs")
    o.add_argument("--markdown", help="write the table as Markdown")
    o.add_argument("--csv", help="write a one-row summary CSV")
    o.add_argument("--per-image-csv", help="write one row of scores per image (streamed)")
    o.add_argument("--plots", help="folder for curves.png (P/R and Fβ-threshold) and worst.png (gallery)")
    o.add_argument("--worst", type=int, default=8, help="images in the worst-images gallery (default 8)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _dataset(args: argparse.Namespace):
    from gemseg.data import masks_only, resolve_dataset

    if args.gt_dir:
        if args.dataset or args.masks:
            raise GemsegError("give the ground truth once: --gt-dir, --dataset or --masks")
        gt = Path(args.gt_dir)
        if not gt.is_dir():
            raise GemsegError(f"ground-truth folder not found: {gt}")
        return masks_only(gt, encoding=args.mask_encoding or "auto")
    if args.masks or args.images:
        if not args.masks:
            raise GemsegError("--images needs --masks")
        return resolve_dataset(None, images=args.images, masks=args.masks, encoding=args.mask_encoding)
    if args.dataset:
        return resolve_dataset(args.dataset, split=args.split, layout=args.layout, encoding=args.mask_encoding)
    raise GemsegError("no ground truth: pass --dataset PATH, --gt-dir DIR, or --images DIR --masks DIR")


def run(args: argparse.Namespace) -> int:
    """Run ``gem eval``; returns 0 on success, 130 when interrupted (partial results printed)."""
    from gemseg.evaluation import (evaluate_model, evaluate_predictions, format_table, plot_curves, save_gallery,
                                   write_csv, write_full_json, write_json, write_markdown)

    if args.model and args.weights:
        raise GemsegError("give either --model or --weights, not both")
    model_spec = args.model or args.weights  # resolved by gemseg.load_model (the one model rule)
    if args.baseline and (args.config or model_spec or args.pred_dir):
        raise GemsegError("--baseline scores a trivial predictor: drop --config/--weights/--model/--pred-dir")
    if args.pred_dir and (args.config or model_spec):
        raise GemsegError("choose one mode: --model/--weights/--config (model) or --pred-dir (saved predictions)")
    model_mode = not args.pred_dir  # no model named: the default model
    if args.limit is not None and args.limit < 1:
        raise GemsegError("--limit must be at least 1")
    if args.tta and (args.baseline or not model_mode):
        raise GemsegError("--tta runs a model twice per image: it applies to model mode only")
    if args.soft and not model_mode:
        raise GemsegError("--soft applies to model mode; in prediction mode soft maps are detected from the files")
    size_policy = "resize" if args.resize_pred else ("strict" if args.strict_size else "skip")
    dataset = _dataset(args)
    report = dataset.pairing_report() if hasattr(dataset, "pairing_report") else ""
    print(f"dataset: {dataset.describe()}", file=sys.stderr)
    if report:
        print(report, file=sys.stderr)
    worst_k = max(0, args.worst) if args.plots else 0
    common = dict(empty=args.empty, size_policy=size_policy, per_image_csv=args.per_image_csv, worst_k=worst_k,
                  progress=not args.no_progress, limit=args.limit, s_measure=args.s_measure)

    if args.baseline:
        from gemseg.evaluation.baselines import ConstantPredictor

        name = args.name or args.baseline
        results = evaluate_model(ConstantPredictor(args.baseline), dataset, soft=args.soft,
                                 source=f"baseline {args.baseline}", **common)
    elif model_mode:
        if not model_spec and args.config:
            print("gem eval: WARNING: --config without weights: scoring a RANDOMLY INITIALISED model "
                  "(meaningless scores)", file=sys.stderr)
        elif not model_spec:
            model_spec = DEFAULT_MODEL
        import gemseg  # imported here: prediction mode must work without the model code

        from gemseg.modeling.build import input_size_overrides

        # opts only when needed: stand-in loaders (tests, notebooks) keep the plain signature
        extra = {"opts": input_size_overrides(args.size)} if args.size else {}
        if model_spec and str(model_spec).lower().endswith(".onnx"):
            # an exported graph (fp32 or int8, either head) runs in ONNX Runtime, as in gem predict
            if args.size or args.config:
                raise GemsegError("an .onnx graph has its input size and architecture built in: drop --size/--config")
            from gemseg.inference.predictor import GlassSegmentor

            model = GlassSegmentor.from_pretrained(model_spec, device=args.device, tta=args.tta)
        else:
            model = gemseg.load_model(args.config, weights=model_spec, device=args.device, **extra)
            if hasattr(model, "eval"):
                model.eval()
            if args.tta:
                # the predictor of gem predict, so that --tta scores are exactly those of gem predict --tta masks
                import torch

                from gemseg.inference.predictor import GlassSegmentor

                if not isinstance(model, torch.nn.Module):
                    raise GemsegError("--tta needs a GEM model (a torch module)")
                model = GlassSegmentor(model, device=args.device, tta=True)
        name = args.name or (args.model or (Path(model_spec).stem if model_spec else "random init"))
        print("scoring the binary argmax mask (as the official GEM evaluator)" if not args.soft else
              "scoring the glass probability (--soft; official GEM scores the binary mask)", file=sys.stderr)
        source = f"{args.config or 'config in weights'} + {model_spec}" + (" + flip TTA" if args.tta else "")
        results = evaluate_model(model, dataset, soft=args.soft, source=source, **common)
    else:
        name = args.name or Path(args.pred_dir).name
        results = evaluate_predictions(args.pred_dir, dataset, **common)

    print(format_table(results, name=name))
    if results.count == 0:
        raise GemsegError(f"no pair could be scored ({len(results.failures)} skipped; first: "
                          f"{results.failures[0].key}: {results.failures[0].reason})" if results.failures else
                          "no pair could be scored")
    if results.interrupted:
        # a partial --json would be indistinguishable from a full run's: write only the clearly-labelled extras
        print("interrupted: --json not written (partial results above)", file=sys.stderr)
    elif args.json:
        write_json(args.json, results)
    if args.report_json:
        write_full_json(args.report_json, results)
    if args.markdown:
        write_markdown(args.markdown, results, name=name)
    if args.csv:
        write_csv(args.csv, results, name=name)
    if args.plots:
        out = Path(args.plots)
        out.mkdir(parents=True, exist_ok=True)
        plot_curves(out / "curves.png", results, name=name)
        save_gallery(out / "worst.png", results.worst)
    return 130 if results.interrupted else 0
