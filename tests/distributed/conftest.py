"""One local Ray (2 CPUs) per test module: Ray takes seconds to start on a busy 2-core machine."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'gemseg[ray]'")
    pytest.importorskip("ray.data", reason="Ray Data is missing: pip install 'ray[data]'")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    if started:
        ray.shutdown()
