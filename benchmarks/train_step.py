#!/usr/bin/env python
"""Seconds per training iteration and peak memory of ``gem train``'s step (issue 5 benchmark).

Cases (each in a fresh subprocess so that peak RSS is its own):

* ``tiny384``: GEM-Tiny exactly as the official config at 384×384, batch 2 (DN, 9 decoder layers, 12 544 points);
* ``tinycfg``: the tests' tiny config (64×64, 2 decoder layers, 10 queries, 256 points), batch 4.

A step is what :func:`gemseg.engine.train_loop.train` does per iteration: forward, criterion, weighted total,
backward, full-model gradient clipping, AdamW step. Random images with a rectangular glass target; random weights
(the cost does not depend on them). Reports the median seconds per iteration after one warm-up step and the peak
RSS of the process.

    python benchmarks/train_step.py                    # both cases, 2 threads, 4 timed steps
    python benchmarks/train_step.py --cases tiny384 --steps 6 --threads 1 --json train_step.json
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    "tiny384": {"opts": [], "batch": 2, "size": 384},
    "tinycfg": {"opts": ["INPUT.MIN_SIZE_TEST", "64", "INPUT.SIZE_DIVISIBILITY", "64", "MODEL.MaskDINO.DEC_LAYERS",
                         "2", "MODEL.MaskDINO.NUM_OBJECT_QUERIES", "10", "MODEL.MaskDINO.DIM_FEEDFORWARD", "64",
                         "MODEL.MaskDINO.DN_NUM", "8", "MODEL.MaskDINO.TRAIN_NUM_POINTS", "256"],
                "batch": 4, "size": 64},
}


def run_case(name: str, steps: int, threads: int) -> dict:
    import torch

    from gemseg.config import get_config
    from gemseg.data.transforms import make_targets
    from gemseg.engine.optim import build_optimizer, clip_gradients
    from gemseg.losses.criterion import build_criterion, weighted_total
    from gemseg.losses.denoising import dn_post_process, prepare_for_dn
    from gemseg.modeling.build import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    case = CASES[name]
    cfg = get_config("gem-tiny", case["opts"])
    model = build_model(cfg).train()
    criterion = build_criterion(cfg)
    optimizer = build_optimizer(model, cfg)
    s, b = case["size"], case["batch"]
    images = torch.rand(b, 3, s, s) * 255
    label = torch.zeros(s, s, dtype=torch.long)
    label[s // 5: s * 3 // 4, s // 4: s * 4 // 5] = 1
    targets = [make_targets(label) for _ in range(b)]
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        outputs, dn_meta = model(images, targets, prepare_for_dn, dn_post_process)
        total = weighted_total(criterion(outputs, targets, dn_meta), criterion.weight_dict)
        total.backward()
        clip_gradients(model.parameters(), cfg)
        optimizer.step()
        if i > 0:  # the first step includes allocator warm-up
            times.append(time.perf_counter() - t0)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"case": name, "batch": b, "size": s, "threads": threads, "steps": steps,
            "sec_per_iter_median": statistics.median(times), "sec_per_iter_min": min(times),
            "peak_rss_mib": peak_kib / 1024.0, "torch": torch.__version__}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {', '.join(CASES)}")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per case (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.steps, args.threads)))
        return 0
    results = []
    for name in args.cases.split(","):
        proc = subprocess.run([sys.executable, __file__, "--child", name, "--steps", str(args.steps),
                               "--threads", str(args.threads)], capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{r['case']:8s} {r['size']}px batch {r['batch']}: {r['sec_per_iter_median']:.2f} s/it "
              f"(min {r['sec_per_iter_min']:.2f}), peak RSS {r['peak_rss_mib']:.0f} MiB, {r['threads']} thread(s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
