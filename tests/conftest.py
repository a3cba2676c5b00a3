"""Shared test helpers.

The project's CI also runs tests on data that a clone does not contain: ``../shared`` (beside the repository, or the
folder named by ``GEMSEG_SHARED_DIR``) holds reduced official GEM checkpoints with reference outputs, the official
configs and key lists, and a few real photographs with masks (two of those sets are shipped in
``tests/data/realdata``). Without it the other tests skip with one reason, summarised in one line at the end of the
run (:func:`pytest_terminal_summary`).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ENV = "GEMSEG_SHARED_DIR"
SHARED = Path(os.environ.get(SHARED_ENV) or REPO_ROOT.parent / "shared")
FIXTURES = SHARED / "fixtures"
SHARED_SKIP_REASON = f"project-CI data: needs ../shared or {SHARED_ENV} (see README, Tests)"


# the real-photo sets whose licences allow shipping a copy with the tests (tests/data/realdata/README.md)
SHIPPED_REALDATA = REPO_ROOT / "tests" / "data" / "realdata"


def shared_path(*parts: str) -> Path:
    """Path inside the shared test data, or inside the copies shipped in ``tests/data/realdata``; skips the test
    (one reason for all, see above) when neither has it."""
    p = SHARED.joinpath(*parts)
    if not p.exists() and parts and parts[0] == "realdata":
        p = SHIPPED_REALDATA.joinpath(*parts[1:])
    if not p.exists():
        pytest.skip(SHARED_SKIP_REASON)
    return p


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Report every shared-data skip at one place, so that ``-ra`` folds them into one line."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and report.longrepr[2].endswith(SHARED_SKIP_REASON):
        report.longrepr = (str(Path(__file__)), _SHARED_PATH_LINE, report.longrepr[2])


_SHARED_PATH_LINE = shared_path.__code__.co_firstlineno


def pytest_terminal_summary(terminalreporter):
    """One line that explains every skip caused by absent shared data."""
    skipped = terminalreporter.stats.get("skipped", [])
    n = sum(1 for r in skipped if isinstance(r.longrepr, tuple) and r.longrepr[2].endswith(SHARED_SKIP_REASON))
    if n:
        terminalreporter.write_line(
            f"{n} test(s) skipped: they need the project's shared test data (reduced official GEM checkpoints, "
            f"official configs, real photographs), not part of a clone; this is expected. Point {SHARED_ENV} at a "
            "copy to run them.")


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
