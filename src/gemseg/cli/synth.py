"""``gem synth``: build an S-GSD-style synthetic glass dataset in the official GSD-S layout.

Examples::

    gem synth --num-images 1000 --output data/synth --seed 0 --val-fraction 0.05
    gem synth --scale 5x --output data/S-GSD-5x --workers 8 --skip-existing      # resume / extend
    gem synth --engine diffusion --model-dir weights/sd15-controlnet --source-dataset data/GSD-S-D2 \
              --num-images 100 --output data/sgsd-diff
    gem synth --num-images 168000 --seed 0 --shard 3/16 --output /shared/sgsd     # one of 16 array jobs
    gem synth --num-images 168000 --seed 0 --executor ray --workers 64 --output /shared/sgsd
    gem synth --merge /shared/sgsd                    # merge the manifest parts by hand (normally automatic)
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Tuple

from gemseg.errors import GemsegError


def _size(text: str) -> Tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size must look like 640x480, got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise argparse.ArgumentTypeError("width and height must lie in 16..8192")
    return w, h


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    from gemseg.synthesis.backgrounds import BUNDLED_SETS
    from gemseg.synthesis.procedural import INFILL_STYLES, KINDS, MIRROR_LABELS
    from gemseg.synthesis.writer import SCALES

    p = subparsers.add_parser(
        name, help=help_text, description=(
            "Build a synthetic glass-surface dataset with exact masks, written in the official GSD-S layout "
            "(DIR/images/{training,validation}/*.jpg, DIR/annotations_zero_one/{training,validation}/*.png with "
            "0 = background, 1 = glass) plus DIR/manifest.jsonl. Deterministic per --seed, whatever --workers."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", "-o", type=Path, help="dataset folder to write")
    n = p.add_mutually_exclusive_group(required=True)
    n.add_argument("--num-images", "-n", type=int, help="number of images to make")
    n.add_argument("--scale", choices=list(SCALES), help="S-GSD scale: kx = k × 3,911 images (GSD-S train size)")
    n.add_argument("--merge", type=Path, metavar="DIR",
                   help="only merge the manifest parts of a sharded run in DIR into DIR/manifest.jsonl (the last "
                   "shard to finish does this itself)")
    p.add_argument("--shard", metavar="K/N",
                   help="make only shard K of N (0-based): the images i with i mod N == K, byte-identical to the "
                   "same images of an unsharded run; all N shards write into one --output")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local processes (default) or ray: the run split into --workers shards run as Ray tasks "
                   "(procedural engine; needs the ray extra)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="with --executor ray: join this Ray cluster (--output on a file system all nodes see); "
                   "default: a local Ray with --workers CPUs")
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0); image i uses a seed derived from it")
    p.add_argument("--size", type=_size, default=(640, 480), metavar="WxH", help="image size (default 640x480)")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="fraction of images written to the validation split (default 0)")
    p.add_argument("--workers", "-j", type=int, default=None, help="processes (default: CPUs available, ≤ 8); with --executor ray: shards, one Ray task each")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--skip-existing", action="store_true",
                      help="resume or extend an earlier run: keep finished images, make the missing ones")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace the synthetic images (synth_*) of an earlier run in --output")
    p.add_argument("--preview-masks", action="store_true", help="also write 0/255 masks to DIR/preview/")
    p.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality (default 90)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--engine", choices=["procedural", "diffusion", "ray"], default="procedural",
                   help="procedural (CPU, no weights; default) or diffusion (ControlNet + SD from local weights); "
                   "ray is short for --engine procedural --executor ray")

    g = p.add_argument_group("procedural engine")
    g.add_argument("--backgrounds", type=Path, action="append", default=[], metavar="DIR",
                   help="folder of your own background photos (repeatable); added to the bundled ones. Photos "
                        "that show real glass (windows, glazed façades) belong in the folder's shows_glass.txt "
                        "(one file name per line): they are then used only as views through glass and reflections")
    g.add_argument("--no-bundled-backgrounds", action="store_true",
                   help="do not use the bundled photos (procedural scenes and --backgrounds only)")
    g.add_argument("--bundled-set", choices=list(BUNDLED_SETS), default="core",
                   help="which bundled photos: core (29, the default; every data set made before this option) or "
                        "extended (core + 81 more CC0 / CC BY photos: indoor and outdoor cube-map faces, skies, "
                        "walls; 31 of them free of real glass, usable around it). Sources and licences: docs/synthesis.md")
    g.add_argument("--ignore-shows-glass", action="store_true",
                   help="use every photo as background around the glass too, ignoring the shows_glass.txt lists "
                        "(their real windows are then labelled not-glass; the engine before issue 16 did this)")
    g.add_argument("--photo-prob", type=float, default=0.55,
                   help="probability that a background is a photo rather than a procedural scene (default 0.55)")
    g.add_argument("--kinds", default=",".join(KINDS),
                   help=f"comma-separated glass structures to draw (default: all of {','.join(KINDS)})")
    g.add_argument("--mirror-label", choices=list(MIRROR_LABELS), default="background",
                   help="label of mirrors, a hard negative (default background; 'ignore' writes 255)")
    g.add_argument("--negative-prob", type=float, default=0.06,
                   help="fraction of images with only hard negatives (open frames, mirrors), no glass (0.06)")
    g.add_argument("--panel-prob", type=float, default=0.35,
                   help="share of images with opaque look-alike panels: white boards, pale panels, switched-off "
                        "screens, all labelled background (default 0.35)")
    g.add_argument("--white-wall-prob", type=float, default=0.4,
                   help="share of walls around glass painted flat white/pale instead of a texture (default 0.4)")
    g.add_argument("--bright-view-prob", type=float, default=0.2,
                   help="share of views through glass that are blown out to near-white (still glass) (default 0.2)")
    g.add_argument("--degrade-prob", type=float, default=0.5,
                   help="share of images given a JPEG round trip and/or motion blur (default 0.5)")
    g.add_argument("--infill-prob", type=float, default=0.4,
                   help="share of glazing grids with opaque cells (covered, boarded or panelled; background) "
                        "(default 0.4)")
    g.add_argument("--infill-style", choices=list(INFILL_STYLES), default="frame",
                   help="frame: infill cells in curtain walls only, painted like the frame (default); material: in "
                        "curtain walls and glass walls, each in a material of its own — sheeting, pale boards, grey "
                        "panels, plywood (issue 16's sixth round; it measured worse on real photos)")

    d = p.add_argument_group("diffusion engine")
    d.add_argument("--model-dir", type=Path, help="local diffusers Stable Diffusion (+ controlnet/, clip/) folder")
    d.add_argument("--controlnet", type=Path, help="ControlNet folder (default MODEL_DIR/controlnet)")
    d.add_argument("--clip-model", type=Path, help="CLIP model folder for the filter (default MODEL_DIR/clip)")
    d.add_argument("--source-dataset", type=Path, help="real image+mask pairs (GSD-S layout or images/+masks/)")
    d.add_argument("--control", choices=["canny", "segmentation"], default="canny", help="ControlNet condition")
    d.add_argument("--prompt", action="append", default=[], help="text prompt (repeatable; default: built-in set)")
    d.add_argument("--steps", type=int, default=20, help="denoising steps (default 20)")
    d.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale (default 7.5)")
    d.add_argument("--clip-threshold", type=float, default=20.0, help="keep generations with CLIP score above (20)")
    d.add_argument("--no-clip-filter", action="store_true", help="keep every generation (no CLIP model needed)")
    d.add_argument("--max-tries", type=int, default=3, help="generations tried per image before giving up (3)")
    d.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (diffusion engine)")
    return p


def run(args: argparse.Namespace) -> int:
    from gemseg.synthesis.writer import (WriteOptions, default_workers, generate_dataset, images_for_scale,
                                         merge_shards, parse_shard)

    if args.merge is not None:
        if not args.merge.is_dir():
            raise GemsegError(f"--merge {args.merge}: no such folder")
        records = merge_shards(args.merge)
        print(f"gem synth: merged {len(records)} records -> {args.merge / 'manifest.jsonl'}")
        return 0
    if args.output is None:
        raise GemsegError("--output is required")
    if args.engine == "ray":
        args.engine, args.executor = "procedural", "ray"
    shard = parse_shard(args.shard) if args.shard else None
    if args.executor == "ray" and args.engine != "procedural":
        raise GemsegError("--executor ray runs the procedural engine; shard diffusion runs with --shard K/N")
    if args.executor == "ray" and shard is not None:
        raise GemsegError("--executor ray makes all shards itself: leave out --shard")
    if args.ray_address and args.executor != "ray":
        raise GemsegError("--ray-address needs --executor ray")
    if args.executor == "ray":
        from gemseg.distributed.runtime import import_ray

        import_ray()  # a one-line error before anything is written when the extra is missing
    width, height = args.size
    num = images_for_scale(args.scale) if args.scale else int(args.num_images)
    if num < 1:
        raise GemsegError("--num-images must be at least 1")
    if not 1 <= args.jpeg_quality <= 100:
        raise GemsegError("--jpeg-quality must lie in 1..100")
    for d in args.backgrounds:
        if not d.is_dir():
            raise GemsegError(f"--backgrounds {d} is not a folder")

    engine = None
    if args.engine == "procedural":
        from gemseg.synthesis.procedural import KINDS, SynthOptions

        kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise GemsegError(f"unknown --kinds {','.join(bad) or '(empty)'}; choose from {','.join(KINDS)}")
        probs = {"--photo-prob": args.photo_prob, "--negative-prob": args.negative_prob,
                 "--panel-prob": args.panel_prob, "--white-wall-prob": args.white_wall_prob,
                 "--bright-view-prob": args.bright_view_prob, "--degrade-prob": args.degrade_prob,
                 "--infill-prob": args.infill_prob}
        bad_probs = [f"{k} {v:g}" for k, v in probs.items() if not 0.0 <= v <= 1.0]
        if bad_probs:
            raise GemsegError(f"probabilities must lie in [0, 1]: {', '.join(bad_probs)}")
        options = SynthOptions(width=width, height=height,
                               background_dirs=tuple(str(d.resolve()) for d in args.backgrounds),
                               bundled_backgrounds=not args.no_bundled_backgrounds, bundled_set=args.bundled_set,
                               photo_prob=args.photo_prob,
                               mirror_label=args.mirror_label, negative_prob=args.negative_prob, kinds=kinds,
                               glass_aware_backgrounds=not args.ignore_shows_glass, panel_prob=args.panel_prob,
                               white_wall_prob=args.white_wall_prob, bright_view_prob=args.bright_view_prob,
                               degrade_prob=args.degrade_prob, infill_prob=args.infill_prob,
                               infill_style=args.infill_style)
        workers = args.workers if args.workers is not None else default_workers()
    else:
        from gemseg.synthesis.diffusion import DEFAULT_PROMPTS, DiffusionEngine, DiffusionOptions

        if args.model_dir is None or args.source_dataset is None:
            raise GemsegError("--engine diffusion needs --model-dir and --source-dataset")
        options = DiffusionOptions(
            model_dir=str(args.model_dir), source_dataset=str(args.source_dataset), width=width, height=height,
            controlnet_dir=str(args.controlnet) if args.controlnet else None,
            clip_dir=str(args.clip_model) if args.clip_model else None, control=args.control,
            prompts=tuple(args.prompt) or DEFAULT_PROMPTS, steps=args.steps, guidance=args.guidance,
            clip_filter=not args.no_clip_filter, clip_threshold=args.clip_threshold, max_tries=args.max_tries,
            device=args.device)
        engine = DiffusionEngine(options)  # loads (and validates) the weights before anything is written
        workers = 1  # one pipeline on one device; parallelism is inside the model

    opts = WriteOptions(output=args.output, num_images=num, seed=args.seed, val_fraction=args.val_fraction,
                        workers=workers, skip_existing=args.skip_existing, overwrite=args.overwrite,
                        preview_masks=args.preview_masks, jpeg_quality=args.jpeg_quality,
                        progress=not args.quiet and sys.stderr.isatty(), shard=shard)
    t0 = time.perf_counter()
    if args.executor == "ray":
        from gemseg.distributed.synth import run_synth_ray

        summary = run_synth_ray((args.engine, options), opts, options.to_json(), (width, height),
                                workers=workers, address=args.ray_address)
    else:
        summary = generate_dataset((args.engine, options), opts, options.to_json(), (width, height), engine=engine)
    dt = time.perf_counter() - t0
    rate = summary["generated"] / dt if dt > 0 else 0.0
    what = f"shard {shard[0]}/{shard[1]}: " if shard else ""
    msg = (f"gem synth: {what}{summary['generated']} new, {summary['skipped']} kept"
           + (f", {summary['rejected']} rejected by the CLIP filter" if summary["rejected"] else "")
           + f" -> {summary['output']} (training {summary['training']}, validation {summary['validation']}; "
           f"{rate:.1f} images/s)")
    print(msg)
    if shard and not summary["merged"]:
        print(f"gem synth: manifest part written; the last of the {shard[1]} shards to finish merges the parts "
              f"into manifest.jsonl (or run gem synth --merge {summary['output']})")
    return 0
