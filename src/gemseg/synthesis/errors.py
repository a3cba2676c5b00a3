"""The synthesis error type, in its own module so that the engines and the dataset writer can all raise it
without importing each other."""
from __future__ import annotations

from gemseg.errors import GemsegError


class SynthError(GemsegError):
    """A user-facing problem with a synthesis run (output folder, disk space, settings mismatch)."""
