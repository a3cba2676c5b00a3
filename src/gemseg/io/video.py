"""Video and camera I/O (OpenCV): frame reading as RGB uint8 and atomic video writing.

Frames come out as ``H×W×3`` uint8 RGB like :func:`gemseg.io.read_image`; a video written with
:class:`VideoWriter` appears under its final name only when it is closed without error.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

import cv2
import numpy as np

from gemseg.io.atomic import atomic_path
from gemseg.io.images import ImageReadError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")

VideoSource = Union[str, os.PathLike, int]


def is_video_path(path: Union[str, os.PathLike]) -> bool:
    """True if the file name has a video extension."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _describe(source: VideoSource) -> str:
    return f"camera {source}" if isinstance(source, int) else str(source)


def open_video(source: VideoSource) -> cv2.VideoCapture:
    """Open a video file or a camera index; raises :class:`ImageReadError` (path + reason) on failure."""
    if not isinstance(source, int):
        p = Path(source)
        if not p.exists():
            raise ImageReadError(p, "file not found")
        if p.stat().st_size == 0:
            raise ImageReadError(p, "empty file (0 bytes)")
        cap = cv2.VideoCapture(str(p))
    else:
        cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        cap.release()
        raise ImageReadError(_describe(source), "cannot open video (unsupported codec or device)")
    return cap


def video_info(cap: cv2.VideoCapture) -> Tuple[float, int, int, int]:
    """(fps, frame count or -1, width, height) as reported by the container (fps falls back to 25)."""
    fps = cap.get(cv2.CAP_PROP_FPS)
    if not fps or not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 25.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or -1)
    w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    return float(fps), count if count > 0 else -1, w, h


def iter_frames(source: VideoSource, every: int = 1, max_frames: Optional[int] = None
                ) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield ``(frame_index, rgb)`` for every ``every``-th frame (at most ``max_frames`` of them).

    A video that opens but yields no frame raises :class:`ImageReadError`.
    """
    if every < 1:
        raise ValueError("every must be >= 1")
    cap = open_video(source)
    try:
        index = 0
        produced = 0
        while max_frames is None or produced < max_frames:
            ok = cap.grab()
            if not ok:
                break
            if index % every == 0:
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    break
                produced += 1
                yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
        if index == 0:
            raise ImageReadError(_describe(source), "no decodable frame")
    finally:
        cap.release()


class VideoWriter:
    """Write RGB frames to a video file atomically (temporary file renamed on :meth:`close`).

    The size is taken from the first frame; the codec from the extension (``mp4v`` for .mp4/.m4v/.mov,
    ``MJPG`` for .avi, ``VP80`` for .webm (plays in browsers), otherwise ``mp4v``).
    """

    _FOURCC = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".webm": "VP80"}

    def __init__(self, path: Union[str, os.PathLike], fps: float):
        self.path = Path(path)
        self.fps = float(fps)
        self._ctx = atomic_path(self.path)
        self._tmp: Optional[Path] = None
        self._writer: Optional[cv2.VideoWriter] = None
        self.frames = 0

    def __enter__(self) -> "VideoWriter":
        return self

    def write(self, rgb: np.ndarray) -> None:
        if self._writer is None:
            self._tmp = self._ctx.__enter__()
            h, w = rgb.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*self._FOURCC.get(self.path.suffix.lower(), "mp4v"))
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                self._abort()
                raise OSError(f"cannot write video {self.path} (no encoder for {self.path.suffix})")
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def _abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is not None:
            with contextlib.suppress(BaseException):
                self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
            self._tmp = None

    def close(self) -> None:
        """Finish the file and move it to its final name (nothing is written if no frame was given)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        self._ctx.__exit__(None, None, None)
        self._tmp = None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()
