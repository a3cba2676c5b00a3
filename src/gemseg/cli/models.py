"""``gem models``: the model zoo — what each model is, how good the paper says it is, and whether it is here.

    gem models                          # the table
    gem models --download gem-tiny-gsds # fetch into the Hugging Face cache now (e.g. before going offline)
    gem models --json                   # machine-readable
"""
from __future__ import annotations

import argparse
import json
import sys

from gemseg.errors import GemsegError


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_text, description=help_text + ". Hub models are downloaded once into the standard Hugging "
        "Face cache (HF_HOME / HF_HUB_CACHE; HF_ENDPOINT and HF_HUB_OFFLINE apply) and verified; use a name with "
        "--model in predict, eval, bench and export, or as MODEL.WEIGHTS in gem train. Metrics: GSD-S test set as "
        "reported by the paper (BER in percent, FPS on the authors' GPU). See docs/model_zoo.md.")
    p.add_argument("--download", metavar="NAME", nargs="+", help="download these models into the cache now")
    p.add_argument("--force", action="store_true", help="with --download: download again even when cached")
    p.add_argument("--json", action="store_true", help="print the zoo as JSON instead of a table")
    return p


def describe(name: str) -> dict:
    """One zoo entry as a JSON-ready dict (with its local status and, when present, its local path)."""
    from dataclasses import asdict

    from gemseg.zoo import get_entry, model_status
    from gemseg.zoo.hub import bundled_path, cached_file, file_url

    entry = get_entry(name)
    status = model_status(name)
    row = {k: v for k, v in asdict(entry).items() if k != "metrics"}
    row["source"] = entry.source
    row["status"] = status
    row["metrics"] = asdict(entry.metrics) if entry.metrics else None
    if entry.bundled:
        row["path"] = str(bundled_path(entry.name.split("/")[-1]) or "")
    else:
        row["url"] = file_url(entry.repo_id, entry.filename, entry.revision, entry.repo_type)
        found = cached_file(entry.repo_id, entry.filename, entry.revision, entry.repo_type)
        row["path"] = str(found) if found else None
    return row


def _metric(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_table(rows) -> str:
    """The ``gem models`` table (plain text, one row per model)."""
    from gemseg.zoo.hub import format_size

    header = ["name", "architecture", "size", "source", "IoU", "Fβ", "MAE", "BER", "FPS", "licence", "status"]
    body = []
    for r in rows:
        m = r["metrics"] or {}
        iou = _metric(m.get("iou"), ".3f") + ("*" if m and "file name" in m.get("source", "") else "")
        where = "bundled" if r["bundled_file"] else (
            "hf:" + ("datasets/" if r["repo_type"] == "dataset" else "") + r["repo_id"])
        body.append([r["name"], r["architecture"], format_size(r["size_bytes"]), where, iou,
                     _metric(m.get("fbeta"), ".3f"), _metric(m.get("mae"), ".3f"), _metric(m.get("ber"), ".2f"),
                     _metric(m.get("fps"), ".2f"), r["license"], r["status"]])
    widths = [max(len(str(x[i])) for x in [header] + body) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = ["metrics: GSD-S test set, as reported by the paper (BER in %, FPS on the authors' GPU); "
             "* = IoU from the file name, not in the paper's table; - = not reported",
             "backbone entries (sam-vit-b, mobile-sam) initialise training: gem train ... MODEL.WEIGHTS NAME",
             "file names, URLs and local paths: gem models --json"]
    return "\n".join(lines + [""] + notes)


def run(args) -> int:
    from gemseg.zoo import download, get_entry, list_models
    from gemseg.zoo.hub import cache_dir

    if args.force and not args.download:
        raise GemsegError("--force applies to --download")
    if args.download:
        for name in args.download:
            get_entry(name)  # every name checked before the first download starts
        for name in args.download:
            path = download(name, force=args.force)
            print(f"gem models: {name}: {path}", file=sys.stderr)
    rows = [describe(n) for n in list_models()]
    if args.json:
        print(json.dumps({"cache": cache_dir(), "models": rows}, indent=1))
    elif not args.download:
        print(format_table(rows))
        print(f"cache: {cache_dir()}")
    return 0
