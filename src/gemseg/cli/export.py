"""``gem export``: write the inference graph as ONNX (image [B,3,S,S] 0–255 → scores [B,2,S,S]).

    gem export --config gem_sam_tiny.yaml --weights model_final.pth --output gem_tiny_384.onnx --size 384
    gem export --model gem-lite-synth --quantize int8 --calibration photos/ --output gem_lite.int8.onnx
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gemseg.cli.predict import MODEL_HELP
from gemseg.errors import GemsegError
from gemseg.io.atomic import atomic_path


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_text,
        description=help_text + ": input 'image' float32 [B,3,S,S] RGB on 0-255 (normalised inside), output "
        "'scores' float32 [B,2,S,S] (background, glass; the official sem_seg before the resize back). B is dynamic. "
        "Use it with `gem predict --backend onnxruntime --weights model.onnx`.",
    )
    p.add_argument("--config", "-c", help="official GEM YAML config (not needed for a gemseg .safetensors); alone: "
                   "that architecture with random weights (loudly warned)")
    p.add_argument("--weights", "-w", help="official .pth/.pkl or gemseg .safetensors")
    p.add_argument("--model", "-m", metavar="NAME", help=MODEL_HELP)
    p.add_argument("--output", "-o", required=True, help="the .onnx file to write")
    p.add_argument("--size", type=int, help="network input size S (default: the config's)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--static-batch", type=int, metavar="B", help="fix the batch size instead of a dynamic axis")
    p.add_argument("--quantize", choices=("int8",),
                   help="also quantise to int8 (ONNX Runtime static quantisation, QDQ, per-channel weights), "
                        "calibrated on --calibration images")
    p.add_argument("--calibration", metavar="DIR",
                   help="folder of photos to calibrate the int8 ranges on (searched recursively); without it, "
                        "images are synthesised on the fly by the gem synth engine")
    p.add_argument("--calibration-count", type=int, default=None, metavar="N",
                   help="number of calibration images: 32 unless given; with --calibration at most the folder's")
    p.add_argument("--head", choices=("exact", "fast"), default=None,
                   help="how query masks become scores: exact = the official inference, scores at S x S (fp32 "
                        "default); fast = combined at the mask resolution S/4 and upsampled once afterwards, about "
                        "10 %% faster, masks differ on boundaries (int8 default; see docs/inference.md)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the check after export (ONNX Runtime vs PyTorch on the example photo and synthesised "
                        "images: probability and mask flips, looser bounds for int8; see docs/inference.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                   help="config overrides (must come last)")
    return p


def run(args) -> int:
    from gemseg.cli.predict import random_init_banner
    from gemseg.inference.onnx_export import default_head, export_onnx
    from gemseg.modeling.build import input_size_overrides, load_model

    out = Path(args.output)
    if out.suffix.lower() != ".onnx":
        raise GemsegError(f"--output must end in .onnx, got {out}")
    if out.exists() and not args.overwrite:
        raise GemsegError(f"{out} exists; pass --overwrite to replace it")
    _check_quantize_args(args)
    from gemseg.zoo import resolve_model

    src = resolve_model(args.model, args.weights, args.config)
    weights = src.weights
    if weights is not None and weights.suffix.lower() == ".onnx":
        raise GemsegError(f"{weights} already is an ONNX graph")
    opts = list(args.opts or [])
    if args.size:
        opts += input_size_overrides(args.size)
    logging.getLogger("gemseg").setLevel(logging.ERROR)
    model = load_model(src.config, weights=weights, device="cpu", opts=opts or None)
    random_init = weights is None and (not model.cfg.MODEL.WEIGHTS
                                       or str(model.cfg.MODEL.WEIGHTS).startswith("detectron2://"))
    if random_init:
        print(random_init_banner(), file=sys.stderr)
    print(f"gem export: model {src.label if not random_init else 'random init'}", file=sys.stderr)
    precision = args.quantize or "fp32"
    head = args.head or default_head(precision)
    batch = args.static_batch or 1
    # everything goes to a temporary file next to the output, renamed only once the check passed: a failed
    # export or check leaves no file behind
    with atomic_path(out) as tmp:
        print(f"gem export: tracing GEM at {model.img_size}x{model.img_size}, opset {args.opset} ...", file=sys.stderr)
        if precision == "int8":
            _export_int8(model, tmp, args, batch, random_init, head)
        else:
            export_onnx(model, tmp, opset=args.opset, batch_size=batch, dynamic_batch=args.static_batch is None,
                        random_init=random_init, head=head)
        size_mib = tmp.stat().st_size / 2**20
        check = ""
        if not args.no_check:
            check = _check(model, tmp, precision, head)
    print(f"gem export: wrote {out} ({precision}, {head} head, {size_mib:.1f} MiB){check}", file=sys.stderr)
    return 0


def _check_quantize_args(args) -> None:
    if args.quantize is None and (args.calibration or args.calibration_count is not None):
        raise GemsegError("--calibration/--calibration-count only apply with --quantize int8")
    if args.calibration_count is not None and args.calibration_count < 1:
        raise GemsegError("--calibration-count must be >= 1")
    if args.calibration:
        from gemseg.inference.quantize import list_calibration_images

        list_calibration_images(args.calibration)  # a missing or image-less folder fails before the export


def _export_int8(model, target: Path, args, batch: int, random_init: bool, head: str) -> None:
    """fp32 export to a hidden temporary file beside ``target``, then int8 quantisation into ``target``."""
    import tempfile

    from gemseg.inference.onnx_export import export_onnx
    from gemseg.inference.quantize import DEFAULT_CALIBRATION_COUNT, quantize_onnx_int8

    count = args.calibration_count or DEFAULT_CALIBRATION_COUNT
    with tempfile.TemporaryDirectory(prefix=".gem-export-", dir=target.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(model, fp32, opset=args.opset, batch_size=batch, dynamic_batch=args.static_batch is None,
                    random_init=random_init, head=head)
        source = f"the photos in {args.calibration}" if args.calibration else "synthesised images"
        print(f"gem export: quantising to int8, calibrating on up to {count} of {source} ...", file=sys.stderr)
        quantize_onnx_int8(fp32, target, calibration=args.calibration, count=count)


def _check(model, path: Path, precision: str, head: str = "exact") -> str:
    """ONNX Runtime vs PyTorch on realistic images; GemsegError (the file is then discarded) beyond tolerance."""
    from gemseg.inference.export_check import check_onnx_against_pytorch, tolerance_for

    agreement = check_onnx_against_pytorch(model, path, precision)
    tol = tolerance_for(precision, head)
    if not agreement.within(tol):
        bounds = (f"max |Δ probability| <= {tol.max_abs_prob:g}, " if tol.max_abs_prob != float("inf") else "")
        raise GemsegError(
            f"the exported {precision} graph disagrees with PyTorch on the check images ({agreement.describe()}; "
            f"allowed: {bounds}mean |Δ probability| <= {tol.mean_abs_prob:g}, "
            f"flipped <= {100 * tol.max_flip_fraction:g} %); no file written")
    return f"; check vs PyTorch fp32: {agreement.describe()}"
