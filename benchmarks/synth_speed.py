"""Synthetic-data generation speed of `gem synth` (procedural engine), end to end through the CLI.

    python benchmarks/synth_speed.py [--images 120] [--size 640x480]

Rows: 1 worker (the baseline) and 2 workers, same seed, same run; images/s include rendering, JPEG/PNG encoding
and the manifest. Also checks that both runs wrote byte-identical files (determinism across worker counts).
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".jpg", ".png"):
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=120)
    ap.add_argument("--size", default="640x480")
    args = ap.parse_args()
    print(f"| workers | images | seconds | images/s |  ({args.size})")
    print("|---:|---:|---:|---:|")
    digests = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            out = Path(tmp) / f"w{workers}"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "gemseg.cli.main", "synth", "-n", str(args.images), "-o", str(out),
                            "--size", args.size, "-j", str(workers), "-q", "--seed", "0"], check=True)
            dt = time.perf_counter() - t
            print(f"| {workers} | {args.images} | {dt:.1f} | {args.images / dt:.1f} |")
            digests.append(_digest(out))
    print("identical output across worker counts:", digests[0] == digests[1])


if __name__ == "__main__":
    main()
