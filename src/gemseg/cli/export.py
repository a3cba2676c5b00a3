"""``gem export``: write the inference graph as ONNX (image [B,3,S,S] 0–255 → scores [B,2,S,S]).

    gem export --config gem_sam_tiny.yaml --weights model_final.pth --output gem_tiny_384.onnx --size 384
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gemseg.cli.predict import MODEL_HELP
from gemseg.errors import GemsegError


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-PyTorch check after export")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                   help="config overrides (must come last)")
    return p


def run(args) -> int:
    import numpy as np
    import torch

    from gemseg.cli.predict import random_init_banner
    from gemseg.inference.onnx_export import export_onnx
    from gemseg.modeling.build import input_size_overrides, load_model

    out = Path(args.output)
    if out.suffix.lower() != ".onnx":
        raise GemsegError(f"--output must end in .onnx, got {out}")
    if out.exists() and not args.overwrite:
        raise GemsegError(f"{out} exists; pass --overwrite to replace it")
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
    print(f"gem export: tracing GEM at {model.img_size}x{model.img_size}, opset {args.opset} ...", file=sys.stderr)
    batch = args.static_batch or 1
    export_onnx(model, out, opset=args.opset, batch_size=batch, dynamic_batch=args.static_batch is None,
                random_init=random_init)
    msg = f"gem export: wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)"
    if not args.no_check:
        from gemseg.inference.onnx_export import create_session

        torch.manual_seed(0)
        x = torch.rand(batch, 3, model.img_size, model.img_size) * 255
        with torch.inference_mode():
            ref = model.infer_scores(x).numpy()
        sess = create_session(out)
        got = sess.run(None, {"image": x.numpy()})[0]
        err = float(np.abs(got - ref).max())
        msg += f"; onnxruntime vs PyTorch on a random image: max |Δ scores| = {err:.2e}"
        if err > 1e-3:
            print(msg, file=sys.stderr)
            raise GemsegError(f"the exported graph disagrees with PyTorch (max |Δ| = {err:.2e} > 1e-3)")
    print(msg, file=sys.stderr)
    return 0
