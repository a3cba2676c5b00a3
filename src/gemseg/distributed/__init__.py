"""Beyond one machine, on Ray (optional extra ``gemseg[ray]``): dataset-scale prediction with Ray Data and sharded
synthesis as Ray tasks. Training scales with ``torchrun`` instead (see ``docs/training.md``).

    import gemseg.distributed as gd
    results = gd.predict_dataset("photos/", model="gem-lite-synth")    # a ray.data.Dataset of masks
    results.write_parquet("s3://bucket/masks/")                         # or any Ray Data sink

Nothing here imports Ray until it is used, so ``import gemseg.distributed`` works without the extra.
"""
from __future__ import annotations

__all__ = ["SegmentorSpec", "connect", "predict_dataset", "run_predict_ray", "run_synth_ray"]


def __getattr__(name):  # lazy: Ray is an optional, heavy import
    if name in ("SegmentorSpec", "predict_dataset", "run_predict_ray"):
        from gemseg.distributed import predict

        return getattr(predict, name)
    if name == "run_synth_ray":
        from gemseg.distributed.synth import run_synth_ray

        return run_synth_ray
    if name == "connect":
        from gemseg.distributed.runtime import connect

        return connect
    raise AttributeError(f"module 'gemseg.distributed' has no attribute {name!r}")
