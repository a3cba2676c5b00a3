#!/usr/bin/env python
"""The model card's metric table: a model beside the trivial baselines on every evaluation set, all via `gem eval`.

    python tools/model_card_metrics.py --model gem-lite-synth --synthetic /work/data/sgsd_default \
        --json docs/model_card_metrics.json

Sets: the held-out split of a `gem synth` dataset (``--synthetic``, split ``validation``) and every folder of
``../shared/realdata`` (``--realdata``). For each set it runs `gem eval` three times — the model, ``--baseline
all-glass`` and ``--baseline no-glass`` — through the same evaluator, and prints one Markdown table.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

from gemseg.cli.main import main as gem

REPO = Path(__file__).resolve().parents[1]


def score(args_list):
    """Run `gem eval ... --json tmp` quietly; return its four-number JSON."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            rc = gem(["eval", *args_list, "--json", str(out), "--no-progress"])
        if rc != 0:
            raise SystemExit(f"gem eval {' '.join(args_list)} failed ({rc}):\n{err.getvalue()}")
        return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a bundled model name")
    src.add_argument("--weights", help="a gemseg .safetensors (carries its config)")
    ap.add_argument("--synthetic", type=Path, help="a gem synth dataset: its validation split is scored")
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--size", type=int, help="network input size (default: the model's)")
    ap.add_argument("--json", type=Path, help="write all numbers here")
    args = ap.parse_args()

    model_args = ["--model", args.model] if args.model else ["--weights", args.weights]
    if args.size:
        model_args += ["--size", str(args.size)]
    sets = []
    if args.synthetic:
        sets.append(("synthetic validation", ["--dataset", str(args.synthetic), "--split", "validation"]))
    for folder in sorted(p for p in args.realdata.iterdir() if (p / "masks").is_dir()):
        sets.append((folder.name, ["--dataset", str(folder)]))
    rows = []
    for name, ds in sets:
        row = {"set": name}
        for who, extra in (("model", model_args), ("all-glass", ["--baseline", "all-glass"]),
                           ("no-glass", ["--baseline", "no-glass"])):
            row[who] = score([*extra, *ds])
            print(f"{name:22s} {who:9s} " + "  ".join(f"{k} {v:.4g}" for k, v in row[who].items()), file=sys.stderr)
        rows.append(row)

    print("| set (images) | model IoU ↑ | all-glass / no-glass IoU | model Fβ ↑ | baselines Fβ | model MAE ↓ | "
          "all-glass / no-glass MAE | model BER ↓ | baselines BER |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m, a, n = r["model"], r["all-glass"], r["no-glass"]
        print(f"| {r['set']} ({m['count']}) | {m['IoU']:.3f} | {a['IoU']:.3f} / {n['IoU']:.3f} | "
              f"{m['Fbeta']:.3f} | {a['Fbeta']:.3f} / {n['Fbeta']:.3f} | {m['MAE']:.3f} | "
              f"{a['MAE']:.3f} / {n['MAE']:.3f} | {m['BER']:.1f} | {a['BER']:.1f} / {n['BER']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
