#!/usr/bin/env python
"""Mix two GEM models of one architecture in weight space (WiSE-FT): (1 - alpha) * BASE + alpha * OTHER.

    python tools/interpolate_weights.py --base gem-lite-synth.safetensors --other finetune/gem-lite-synth2.safetensors \
        --alpha 0.5 --name gem-lite-wise --output gem-lite-wise.safetensors

BASE and OTHER are weight files that carry their config (gemseg ``.safetensors`` or ``gem train`` checkpoints);
``bundled`` names the shipped gem-lite-synth. The result keeps BASE's config (input size etc.) and records both
parents and alpha in its metadata; it loads like any model (``gem predict --weights OUT``). An existing OUTPUT is
not overwritten without ``--force``. See ``gemseg.modeling.weight_space`` and docs/model_card.md (issue 16, fifth
round).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gemseg.errors import GemsegError
from gemseg.modeling.checkpoint import read_checkpoint, save_checkpoint
from gemseg.modeling.weight_space import interpolate_models


def _resolve(path: str) -> Path:
    if path == "bundled":
        import gemseg

        return Path(gemseg.__file__).parent / "assets" / "models" / "gem-lite-synth.safetensors"
    return Path(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="weights at alpha = 0 ('bundled' = the shipped gem-lite-synth)")
    ap.add_argument("--other", required=True, help="weights at alpha = 1 (typically a fine-tune of BASE)")
    ap.add_argument("--alpha", type=float, required=True, help="mixing weight of OTHER, in [0, 1]")
    ap.add_argument("--output", required=True, help="the new .safetensors file")
    ap.add_argument("--name", default=None, help="model name written into the file (gemseg.model)")
    ap.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    args = ap.parse_args(argv)
    out = Path(args.output)
    if out.suffix != ".safetensors":
        ap.error(f"--output must end in .safetensors, got {out.name}")
    if out.exists() and not args.force:
        print(f"error: {out} exists; pass --force to overwrite it", file=sys.stderr)
        return 1
    base, other = _resolve(args.base), _resolve(args.other)
    try:
        ckpt_base, ckpt_other = read_checkpoint(base), read_checkpoint(other)
        model = interpolate_models(ckpt_base, ckpt_other, args.alpha)
    except (GemsegError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    meta_base, meta_other = ckpt_base.metadata, ckpt_other.metadata
    name_base = meta_base.get("gemseg.model", base.name)
    name_other = meta_other.get("gemseg.model", other.name)
    extra = {
        "gemseg.model": args.name or out.stem,
        "gemseg.training": (f"weight-space interpolation (WiSE-FT): {1 - args.alpha:g} x {name_base} + "
                            f"{args.alpha:g} x {name_other}"),
        "gemseg.interpolation": f"alpha={args.alpha:g}; base={name_base}; other={name_other}",
        "gemseg.training.base": meta_base.get("gemseg.training", ""),
        "gemseg.training.other": meta_other.get("gemseg.training", ""),
    }
    if "gemseg.model_card" in meta_base:
        extra["gemseg.model_card"] = meta_base["gemseg.model_card"]
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, out, extra=extra)
    print(f"wrote {out} ({1 - args.alpha:g} x {name_base} + {args.alpha:g} x {name_other})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
