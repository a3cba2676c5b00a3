"""Starting or joining Ray: the one place that imports ``ray`` for the rest of :mod:`gemseg.distributed`."""
from __future__ import annotations

import os
from typing import Optional

from gemseg.errors import GemsegError

INSTALL_HINT = "Ray is not installed: pip install 'gemseg[ray]' (or pip install 'ray[data]')"


def import_ray():
    """``ray`` (with Ray Data), or a one-line GemsegError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise GemsegError(f"{INSTALL_HINT} ({e})") from None
    return ray


def connect(address: Optional[str] = None, num_cpus: Optional[int] = None, quiet: bool = True):
    """Join the Ray cluster at ``address`` (``auto``, ``ray://host:10001``, ``host:6379``), or start a local Ray on
    this machine with ``num_cpus`` CPUs when ``address`` is None. Already connected: keep that connection (a
    notebook's or a test's). No dashboard and no usage statistics for a local Ray. Returns the ``ray`` module."""
    ray = import_ray()
    if ray.is_initialized():
        quiet_data(quiet)
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if quiet:
        # Ray's C++ core logs a warning-grade "error" for every actor whose constructor arguments sit in the object
        # store (all Ray Data actors); real failures still surface as Python exceptions
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    kwargs = dict(log_to_driver=not quiet, logging_level="ERROR" if quiet else "INFO")
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise GemsegError(f"cannot start or join {where}: {e}") from None
    quiet_data(quiet)
    return ray


def quiet_data(quiet: bool = True) -> None:
    """Ray Data's own progress bars and per-dataset log lines off (we draw one progress bar of our own)."""
    import logging

    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.ERROR if quiet else logging.INFO)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = not quiet
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = not quiet
