"""``gem synth --executor ray``: the shards of a synthetic dataset as Ray tasks (one shard per task).

Shard ``K`` of ``N`` makes the images ``i`` with ``i mod N == K`` (see :mod:`gemseg.synthesis.writer`); every task
writes into the same output tree, which must be on a file system all Ray nodes see, and the last shard to finish
merges the manifest. The files are byte-identical to a one-machine run with the same seed.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Optional, Tuple

from gemseg.errors import GemsegError
from gemseg.synthesis.errors import SynthError


def _shard_task(engine_spec, opts, info_options: Dict, size: Tuple[int, int]) -> Dict:
    import cv2

    from gemseg.synthesis.writer import generate_dataset

    cv2.setNumThreads(1)  # one task per CPU: OpenCV's own threads would only oversubscribe
    return generate_dataset(engine_spec, opts, info_options, size)


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def run_synth_ray(engine_spec, opts, info_options: Dict, size: Tuple[int, int], *, workers: int,
                  address: Optional[str] = None) -> Dict:
    """Run ``opts`` (a :class:`~gemseg.synthesis.writer.WriteOptions` without a shard) as ``workers`` shards on Ray;
    returns a summary like :func:`~gemseg.synthesis.writer.generate_dataset`'s for the whole set."""
    from tqdm import tqdm

    from gemseg.distributed.runtime import connect
    from gemseg.synthesis.writer import SPLITS, in_shard, merge_shards, partial_name, read_manifest

    if opts.shard is not None:
        raise GemsegError("--executor ray makes all shards itself: leave out --shard")
    if workers < 1:
        raise GemsegError("--workers must be >= 1")
    root = Path(opts.output)
    if root.is_dir() and any(root.iterdir()) and not (opts.skip_existing or opts.overwrite):
        # as for an unsharded run (a lone shard cannot tell an earlier run from its running siblings; we can)
        raise SynthError(f"output folder {root} is not empty; pass --skip-existing to resume/extend it or "
                         f"--overwrite to replace its synthetic images")
    ray = connect(address, num_cpus=None if address else workers)
    task = ray.remote(num_cpus=1)(_shard_task)
    shards = [(k, workers) for k in range(workers)]
    refs = [task.remote(engine_spec, dataclasses.replace(opts, shard=s, workers=1, progress=False), info_options,
                        size) for s in shards]
    total = sum(1 for i in range(opts.num_images) if any(in_shard(i, s) for s in shards))
    bar = tqdm(total=total, unit="img", disable=not opts.progress, desc="gem synth (ray)", dynamic_ncols=True)
    results = []
    try:
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
            results.extend(ray.get(ready))
            # progress: finished shards' counts + the records running shards have appended so far
            done = sum(r["generated"] + r["skipped"] + r["rejected"] for r in results)
            running = sum(_lines(root / partial_name(s)) for s in shards)
            bar.update(max(0, min(total, done + running)) - bar.n)
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()
    if not any(r["merged"] for r in results):  # every shard finished, so the parts are complete
        merge_shards(root, workers)
    summary = {k: sum(r[k] for r in results) for k in ("generated", "skipped", "rejected")}
    recs = read_manifest(root)
    counts = {s: sum(1 for r in recs if r.get("split") == s) for s in SPLITS}
    return {"output": str(root), **summary, "total": len(recs), "merged": True, **counts, "shards": workers}
