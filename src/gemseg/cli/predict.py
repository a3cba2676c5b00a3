"""``gem predict``: segment glass in images, folders, glob patterns, videos and cameras.

    gem predict photo.jpg --config gem_sam_tiny.yaml --weights model_final.pth --output out/
    gem predict data/ -r --weights gem_tiny.safetensors --output masks/ --overlay --batch-size 4
    gem predict clip.mp4 --output out/        # out/clip/000000.png, ... (frame masks) + out/clip_overlay.mp4
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from gemseg.errors import GemsegError

from gemseg.zoo.registry import DEFAULT_MODEL  # noqa: F401  (the bundled model used when no model is named)

MODEL_HELP = ("a model by name (see gem models: bundled, or downloaded once from the Hugging Face Hub into its "
              "cache), a Hub repo id owner/name saved with gemseg save_pretrained, or a weights file; with no "
              "--model, --weights or --config: the bundled " + DEFAULT_MODEL)


def add_model_arguments(p: argparse.ArgumentParser, precision: bool = True) -> None:
    """Model selection shared by predict and bench."""
    g = p.add_argument_group("model")
    g.add_argument("--config", "-c", help="official GEM YAML config or a shipped name (gem-tiny, gem-base, ...); "
                   "not needed for a gemseg .safetensors; a config without weights builds that architecture with RANDOM "
                   "weights (loudly warned)")
    g.add_argument("--weights", "-w", help="official .pth/.pkl, SAM/MobileSAM .pth, gemseg .safetensors or .onnx")
    g.add_argument("--model", "-m", metavar="NAME", help=MODEL_HELP)
    g.add_argument("--size", type=int, help="network input size (e.g. 384 or 1024; default: the config's)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps (default: auto)")
    g.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="inference backend (onnxruntime exports the model first unless --weights is .onnx)")
    if precision:
        pg = g.add_mutually_exclusive_group()
        pg.add_argument("--half", action="store_true", help="fp16 autocast (CUDA/MPS)")
        pg.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPU/CUDA/MPS where supported)")
    g.add_argument("--no-optimize", action="store_true",
                   help="do not fold BatchNorm into convolutions (the exact rewrite is on by default)")
    g.add_argument("--threads", type=int, help="CPU threads for the network (default: PyTorch's choice)")
    g.add_argument("--opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                   help="config overrides, e.g. --opts MODEL.MaskDINO.DEC_LAYERS 9 (must come last)")


def precision_of(args) -> str:
    return "fp16" if getattr(args, "half", False) else "bf16" if getattr(args, "bf16", False) else "fp32"


def model_source(args):
    """(name_or_path, config) from --model/--weights/--config, for the one model rule of
    :func:`gemseg.zoo.resolve_model` (which ``GlassSegmentor.from_pretrained`` applies)."""
    if args.model and args.weights:
        raise GemsegError("give either --model or --weights, not both")
    return (args.model or args.weights or None), args.config


def segmentor_kwargs(args, tta: bool = False, threshold=None, batch_size: int = 1) -> dict:
    """``GlassSegmentor.from_pretrained`` keyword arguments (all but the model source) from the model flags."""
    return dict(device=args.device, precision=precision_of(args), size=args.size, backend=args.backend, tta=tta,
                threshold=threshold, batch_size=batch_size, optimize=not args.no_optimize, opts=args.opts or None,
                threads=args.threads)


def build_segmentor(args, tta: bool = False, threshold=None, batch_size: int = 1):
    import torch

    from gemseg.inference.predictor import GlassSegmentor

    if args.threads:
        torch.set_num_threads(int(args.threads))
    source, config = model_source(args)
    return GlassSegmentor.from_pretrained(source, config=config, **segmentor_kwargs(args, tta, threshold, batch_size))


def random_init_banner() -> str:
    line = "!" * 100
    return (f"{line}\n!! WARNING: no trained weights: the model is RANDOMLY INITIALISED.\n"
            f"!! The masks written by this run are MEANINGLESS. Pass --weights FILE (or --model NAME).\n{line}")


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_text, description=help_text + ". Masks (0/255 PNG, original resolution) are written to "
        "OUTPUT/<path relative to the input root, extension replaced by .png>; other outputs add a suffix.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders, glob patterns (quote them), video files, or a camera index (0, camera:1)")
    p.add_argument("--output", "-o", required=True, help="output folder")
    p.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders of folder inputs")
    add_model_arguments(p)
    g = p.add_argument_group("prediction")
    g.add_argument("--batch-size", "-b", type=int, default=1, help="images per network call")
    g.add_argument("--threshold", type=float, default=None,
                   help="mask = glass probability > T (default: the official argmax, i.e. T = 0.5)")
    g.add_argument("--tta", action="store_true", help="horizontal-flip test-time augmentation (2× compute)")
    g.add_argument("--resize", choices=("cv2", "pil"), default="cv2",
                   help="square resize: cv2 bilinear (official demo) or PIL bilinear (official evaluation)")
    g.add_argument("--workers", "-j", type=int, default=min(4, os.cpu_count() or 1),
                   help="decoding/writing threads (0 = none); with --engine ray: model replicas (Ray actors)")
    g.add_argument("--streams", default="auto", metavar="N",
                   help="network calls in flight at once on a folder of images, each on --threads/N CPU threads "
                   "(auto: 2 on a CPU with >= 2 threads and >= 2 images, else 1; videos always 1). Two 1-thread "
                   "calls keep 2 cores busier than one 2-thread call; masks are the same, float outputs may differ "
                   "in the last bits (thread count)")
    r = p.add_argument_group("engine")
    r.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process; ray: a Ray Data pipeline over --workers model replicas (needs the "
                   "ray extra), same outputs and summary")
    r.add_argument("--ray-address", metavar="ADDR",
                   help="join this Ray cluster (auto, HOST:6379 or ray://HOST:10001; inputs and output must be on "
                   "a file system every node sees); without it a local Ray with --workers CPUs is started")
    r.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                   help="GPUs per Ray replica (fractions share a GPU, e.g. 0.5); use with --device cuda")
    o = p.add_argument_group("outputs")
    o.add_argument("--no-mask", action="store_true", help="do not write the binary mask PNG (images) or the per-frame masks (videos)")
    o.add_argument("--prob", action="store_true", help="also write <stem>_prob.png (8-bit glass probability)")
    o.add_argument("--npy", action="store_true", help="also write <stem>_prob.npy (float32 glass probability)")
    o.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.jpg (original resolution)")
    o.add_argument("--save-frames", action="store_true",
                   help="kept for compatibility: videos always get per-frame masks OUTPUT/<stem>/<frame:06d>.png "
                   "unless --no-mask")
    o.add_argument("--every", type=int, default=1, help="videos: process every N-th frame")
    o.add_argument("--max-frames", type=int, default=None, help="videos/cameras: stop after N processed frames")
    ex = o.add_mutually_exclusive_group()
    ex.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder, replacing files")
    ex.add_argument("--skip-existing", action="store_true",
                    help="resume: skip inputs whose outputs all exist (a run stopped with Ctrl-C)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def network_streams(args, items) -> int:
    """The --streams rule (one for the CLI and its tests); sets ``args.threads`` to the threads of one stream."""
    import torch

    from gemseg.inference.devices import resolve_device

    total = int(args.threads or torch.get_num_threads())
    n_images = sum(1 for it in items if it.kind == "image")
    if args.streams == "auto":
        on_cpu = args.engine == "local" and resolve_device(args.device).type == "cpu"
        streams = 2 if on_cpu and total >= 2 and n_images >= 2 else 1
    else:
        try:
            streams = int(args.streams)
        except ValueError:
            raise GemsegError(f"--streams must be a positive integer or auto, got {args.streams!r}") from None
        if streams < 1:
            raise GemsegError(f"--streams must be >= 1, got {streams}")
        if streams > 1 and args.engine != "local":
            raise GemsegError("--streams is for the local engine (with --engine ray, --workers sets the replicas)")
    if streams > 1:
        args.threads = max(1, total // streams)
    return streams


def _counts_note(out_dir: Path) -> str:
    """' (3 done, 0 failed, 5 not processed)' from the summary an interrupted run wrote, or ''."""
    import json

    try:
        counts = json.loads((out_dir / "predict_summary.json").read_text())["counts"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return " (" + ", ".join(f"{n} {'done' if s == 'ok' else s}" for s, n in counts.items() if n or s == "ok") + ")"


def run(args) -> int:
    import torch

    threads = torch.get_num_threads()
    try:
        return _run(args)
    finally:  # --threads / --streams set the process-wide count: give it back to an in-process caller
        torch.set_num_threads(threads)


def _run(args) -> int:
    from gemseg.inference.pipeline import PredictOptions, run_predict
    from gemseg.inference.sources import expand_inputs

    if args.batch_size < 1:
        raise GemsegError("--batch-size must be >= 1")
    if args.engine != "ray" and (args.ray_address or args.gpus_per_worker):
        raise GemsegError("--ray-address and --gpus-per-worker need --engine ray")
    if args.engine == "ray":
        from gemseg.distributed.runtime import import_ray

        import_ray()  # a one-line error before the model loads when the extra is missing
    if args.every < 1:
        raise GemsegError("--every must be >= 1")
    opts = PredictOptions(
        save_mask=not args.no_mask, save_prob=args.prob, save_npy=args.npy, save_overlay=args.overlay,
        save_frames=not args.no_mask, overwrite=args.overwrite, skip_existing=args.skip_existing,
        workers=max(0, args.workers), every=args.every, max_frames=args.max_frames,
    )
    out_dir = Path(args.output)
    from gemseg.inference.pipeline import check_output_dir

    check_output_dir(out_dir, args.overwrite, args.skip_existing)  # fail before loading the model
    items = expand_inputs(args.inputs, recursive=args.recursive, exclude=out_dir)
    if not items:
        raise GemsegError("no input images found (folders are scanned for "
                          "jpg/png/bmp/tif/webp files; use --recursive for sub-folders)")
    only_images = all(it.kind not in ("video", "camera") for it in items)  # a video always gets its overlay
    if only_images and not (opts.save_mask or opts.save_prob or opts.save_npy or opts.save_overlay):
        raise GemsegError("--no-mask without --prob, --npy or --overlay leaves nothing to write")

    opts.streams = network_streams(args, items)
    logging.getLogger("gemseg").setLevel(logging.ERROR)  # our own banner replaces the library warning
    seg = build_segmentor(args, tta=args.tta, threshold=args.threshold, batch_size=args.batch_size)
    seg.resize = args.resize
    if seg.random_init:
        print(random_init_banner(), file=sys.stderr)
    print(f"gem predict: model {seg.source} | {seg.runner.backend} on {seg.device} {seg.runner.precision} | "
          f"size {seg.img_size} | batch {seg.batch_size}{' | flip TTA' if seg.tta else ''}"
          f"{f' | {opts.streams} streams x {args.threads} thread(s)' if opts.streams > 1 else ''} | "
          f"{len(items)} input(s) -> {out_dir}", file=sys.stderr)
    summary = None
    try:
        info = dict(model=seg.source, random_init=seg.random_init, backend=seg.runner.backend,
                    device=str(seg.device), precision=seg.runner.precision, size=seg.img_size,
                    batch_size=seg.batch_size, tta=seg.tta, threshold=seg.threshold, resize=seg.resize,
                    streams=opts.streams)
        if args.engine == "ray":
            summary = _run_ray(args, seg, items, out_dir, opts, info)
        else:
            summary = run_predict(seg, items, out_dir, opts, progress=not args.quiet, info=info)
    finally:
        if summary is None:
            print(f"gem predict: stopped{_counts_note(out_dir)}; completed files are kept; resume with "
                  f"--skip-existing (summary: {out_dir / 'predict_summary.json'})", file=sys.stderr)
    print(f"gem predict: {summary.line()} -> {out_dir} (summary: {out_dir / 'predict_summary.json'})",
          file=sys.stderr)
    if seg.random_init:
        print("gem predict: WARNING: random weights -- these masks are meaningless", file=sys.stderr)
    return 1 if summary.count("failed") else 0


def _run_ray(args, seg, items, out_dir: Path, opts, info):
    """The Ray engine: every replica builds the same segmentor as ``seg`` (checked here, on the driver)."""
    from gemseg.distributed.predict import SegmentorSpec, run_predict_ray

    source, config = model_source(args)
    kwargs = segmentor_kwargs(args, tta=args.tta, threshold=args.threshold, batch_size=args.batch_size)
    kwargs["opts"] = list(kwargs["opts"] or [])
    spec = SegmentorSpec(source=None if source is None else str(source), config=config, resize=seg.resize, **kwargs)
    return run_predict_ray(spec, items, out_dir, opts, address=args.ray_address, workers=max(1, args.workers),
                           gpus_per_worker=args.gpus_per_worker, progress=not args.quiet, info=info)
