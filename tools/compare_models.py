#!/usr/bin/env python
"""Two models on the same images: the paired difference per set, with a bootstrap interval and a verdict.

    python tools/compare_models.py --a gem-lite-synth --b candidate.safetensors --realdata ../shared/realdata
    python tools/compare_models.py --a gem-lite-synth --b cand.safetensors --dataset data/seed31 --split validation

A and B are anything ``gem eval --model`` takes (a zoo name or a weights file). Every set is scored by ``gem eval
--per-image-csv`` for both; the table gives mean(B − A) per metric with its 95 % BCa bootstrap interval over images,
how many images each model wins, and "B better" / "A better" only when the interval excludes 0. Use it before
calling a candidate better than the shipped model on a small set (docs/model_card.md, issue 16).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

from gemseg.cli.main import main as gem
from gemseg.evaluation.paired import HIGHER_IS_BETTER, compare_per_image_csvs


def per_image_csv(model: str, dataset_args, out: Path, size=None) -> None:
    args = ["eval", "--model", model, *dataset_args, "--per-image-csv", str(out), "--no-progress"]
    if size:
        args += ["--size", str(size)]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        rc = gem(args)
    if rc != 0:
        raise SystemExit(f"gem {' '.join(args)} failed ({rc}):\n{err.getvalue()}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="the reference model (zoo name or weights file)")
    ap.add_argument("--b", required=True, help="the candidate (zoo name or weights file)")
    ap.add_argument("--dataset", action="append", default=[], help="a dataset folder (repeatable)")
    ap.add_argument("--split", help="split of every --dataset (e.g. validation for a gem synth set)")
    ap.add_argument("--realdata", type=Path, help="a folder of sets: every subfolder with masks/ is one set")
    ap.add_argument("--metrics", default="IoU,BER", help=f"comma-separated, from {','.join(HIGHER_IS_BETTER)}")
    ap.add_argument("--size", type=int, help="network input size for both (default: each model's own)")
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--resamples", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (the table is deterministic)")
    ap.add_argument("--json", type=Path, help="also write every number here")
    args = ap.parse_args(argv)
    sets = [(Path(d).name, ["--dataset", d] + (["--split", args.split] if args.split else [])) for d in args.dataset]
    if args.realdata:
        if not args.realdata.is_dir():
            ap.error(f"--realdata {args.realdata} is not a folder")
        sets += [(p.name, ["--dataset", str(p)]) for p in sorted(args.realdata.iterdir()) if (p / "masks").is_dir()]
    if not sets:
        ap.error("nothing to compare on: give --dataset and/or --realdata")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in HIGHER_IS_BETTER]
    if unknown:
        ap.error(f"unknown metric(s) {unknown}; choose from {', '.join(HIGHER_IS_BETTER)}")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, ds) in enumerate(sets):
            csv_a, csv_b = Path(tmp) / f"{i}.a.csv", Path(tmp) / f"{i}.b.csv"
            per_image_csv(args.a, ds, csv_a, args.size)
            per_image_csv(args.b, ds, csv_b, args.size)
            for c in compare_per_image_csvs(csv_a, csv_b, metrics, n_resamples=args.resamples,
                                            confidence=args.confidence, seed=args.seed):
                rows.append({"set": name, **c.as_dict()})
                print(f"{name}: {c.metric} {c.mean_a:.4g} -> {c.mean_b:.4g} ({c.verdict})", file=sys.stderr)

    pct = f"{args.confidence:.0%}"
    print(f"A = {args.a}, B = {args.b}; B − A per image, {pct} bootstrap interval over images\n")
    print(f"| set (images) | metric | A | B | B − A [{pct}] | images B / A better | verdict |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} ({r['count']}) | {r['metric']} | {r['mean_a']:.3f} | {r['mean_b']:.3f} | "
              f"{r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] | {r['b_better']} / {r['a_better']} | "
              f"{r['verdict']} |")
    if args.json:
        from gemseg.io.atomic import atomic_path

        with atomic_path(args.json) as tmp_json:
            Path(tmp_json).write_text(json.dumps({"a": args.a, "b": args.b, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
