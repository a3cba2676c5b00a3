"""Shared test helpers. Fixtures from ``../shared`` are located relative to the repository root."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"


def shared_path(*parts: str) -> Path:
    """Path inside ``../shared``; skips the test (with a clear reason) if the shared folder is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared test data not found: {p}")
    return p


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep tests on 2 threads: CI machines have 2 cores."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(2)
    yield
