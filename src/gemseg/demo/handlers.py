"""The demo's work, free of any web framework: read an upload, segment it, render the views, write the downloads.

Everything here is a plain function on files and arrays so that it can be tested without a server. User mistakes
(not an image, an empty or huge upload) raise :class:`DemoInputError` with a message meant for the page; the Gradio
layer (:mod:`gemseg.demo.app`) shows it as a ``gr.Error`` and keeps serving.

The mask and probability files are written by :func:`gemseg.inference.pipeline.write_image_outputs`, the writer of
``gem predict``: the downloaded mask is byte for byte the file ``gem predict IMAGE --output DIR`` writes.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Union

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from gemseg.errors import GemsegError
from gemseg.inference.pipeline import write_image_outputs
from gemseg.inference.visualize import overlay, probability_to_uint8
from gemseg.io.atomic import atomic_path
from gemseg.io.images import ImageReadError, read_image

PathLike = Union[str, os.PathLike]

# Resize guard: the mask comes back at the photo's own resolution, so a huge photo costs memory in proportion
# (scores, probability, overlay, side-by-side view); refuse it with a message instead of resizing silently.
MAX_SIDE = 8192
MAX_MEGAPIXELS = 40.0
MAX_UPLOAD_MB = 64
MAX_GALLERY_IMAGES = 24
# Videos are processed frame by frame on a shared server: a short clip only.
MAX_VIDEO_FRAMES = 300
IMAGE_FORMATS = "JPEG, PNG, BMP, TIFF or WebP"


class DemoInputError(GemsegError):
    """An upload the demo cannot process; the message is shown on the page as it is."""


# ----------------------------------------------------------------------------------------------------------------
# reading uploads
@dataclass
class LoadedImage:
    """A decoded upload: ``rgb`` is H×W×3 uint8; ``notes`` say what was converted (shown as warnings)."""

    rgb: np.ndarray
    name: str
    notes: List[str] = field(default_factory=list)


def limits_text() -> str:
    """The input limits, as stated on the page."""
    return (f"Images up to {MAX_SIDE} px per side and {MAX_MEGAPIXELS:g} megapixels ({IMAGE_FORMATS}; "
            f"uploads up to {MAX_UPLOAD_MB} MB), {MAX_GALLERY_IMAGES} at once; videos up to {MAX_VIDEO_FRAMES} frames.")


def _conversion_notes(im: Image.Image) -> List[str]:
    """What :func:`gemseg.io.images.read_image` will do to this file's pixels, in words."""
    mode = im.mode
    notes = []
    if mode in ("L", "LA", "1", "I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        notes.append("grayscale image: its gray level is copied to the three colour channels")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        notes.append("16-bit image: scaled to 8 bits (0..65535 to 0..255) before segmentation")
    elif mode == "F":
        notes.append("floating-point image: scaled to 8 bits before segmentation")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        notes.append("transparent image: transparent pixels are composited on black")
    if mode == "CMYK":
        notes.append("CMYK image: converted to RGB")
    return notes


def read_upload(path: Optional[PathLike], max_side: int = MAX_SIDE,
                max_megapixels: float = MAX_MEGAPIXELS) -> LoadedImage:
    """Upload path → :class:`LoadedImage` through the project's one image reader (EXIF, 16-bit, alpha, gray).

    The pixel count is checked on the file header, before decoding, so a huge image never reaches memory.
    Raises :class:`DemoInputError` for no upload, an empty file, a file that is not an image, a truncated image or
    one beyond the resize guard.
    """
    if path is None or str(path) == "":
        raise DemoInputError("No image: upload, paste or photograph one first.")
    p = Path(path)
    if not p.is_file():
        raise DemoInputError("The upload did not arrive (no file on the server); try again.")
    if p.stat().st_size == 0:
        raise DemoInputError(f"The uploaded file {p.name!r} is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:  # header only: nothing decoded yet
                w, h = im.size
                notes = _conversion_notes(im)
    except Image.DecompressionBombError:
        raise DemoInputError(f"{p.name!r} is far too large to decode. {limits_text()}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise DemoInputError(f"{p.name!r} is not an image this demo can read; use a {IMAGE_FORMATS} file.") from None
    if max(w, h) > max_side or w * h > max_megapixels * 1e6:
        raise DemoInputError(
            f"{p.name!r} is {w}×{h} px ({w * h / 1e6:.1f} megapixels), beyond this demo's limit of {max_side} px per "
            f"side and {max_megapixels:g} megapixels; resize it first, or run gem predict on your own machine.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            rgb = read_image(p)
    except ImageReadError as e:
        raise DemoInputError(f"Cannot read {p.name!r}: {e.reason}.") from None
    return LoadedImage(rgb=rgb, name=p.name, notes=notes)


# ----------------------------------------------------------------------------------------------------------------
# segmentation and views
@dataclass
class SegmentResult:
    """One segmented image: the prediction and the views shown on the page (all at the image's resolution)."""

    image: LoadedImage
    prediction: object  # gemseg.modeling.gem.Prediction: .mask (H×W bool), .probability (H×W float32)
    overlay: np.ndarray  # H×W×3 uint8
    latency_ms: float
    model: str

    @property
    def glass_fraction(self) -> float:
        return float(np.asarray(self.prediction.mask).mean())

    def summary(self) -> str:
        h, w = self.prediction.mask.shape
        return (f"{self.image.name}: glass {100 * self.glass_fraction:.1f} % of {w}×{h} px | "
                f"{self.latency_ms:.0f} ms | model {self.model}")


def heat_map(probability: np.ndarray) -> np.ndarray:
    """Glass probability (H×W in [0, 1]) → H×W×3 uint8 RGB heat map (inferno: black = background, yellow = glass)."""
    bgr = cv2.applyColorMap(probability_to_uint8(probability), cv2.COLORMAP_INFERNO)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def mask_image(mask: np.ndarray) -> np.ndarray:
    """Boolean H×W mask → uint8 0/255 (the values of the mask file)."""
    return np.asarray(mask, dtype=bool).astype(np.uint8) * 255


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    """Two H×W×3 images next to each other with a white gap."""
    if left.shape != right.shape:
        raise ValueError(f"images differ in shape: {left.shape} vs {right.shape}")
    spacer = np.full((left.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([left, spacer, right], axis=1)


def segment(segmentor, image: LoadedImage, opacity: float = 0.45) -> SegmentResult:
    """Run ``segmentor`` (a :class:`gemseg.inference.GlassSegmentor`) on one decoded image; overlay at ``opacity``."""
    if not 0.0 <= opacity <= 1.0:
        raise DemoInputError(f"overlay opacity must lie in [0, 1], got {opacity}")
    t0 = time.perf_counter()
    pred = segmentor.predict(image.rgb)
    latency_ms = (time.perf_counter() - t0) * 1000
    return SegmentResult(image=image, prediction=pred, overlay=overlay(image.rgb, pred.mask, alpha=opacity),
                         latency_ms=latency_ms, model=model_label(segmentor))


def model_label(segmentor) -> str:
    """The model's name for the page (``gem-lite-synth (bundled)``, a file name, or ``random init``)."""
    source = getattr(segmentor, "source", None) or "unknown model"
    return Path(source).name if os.sep in source else source


# ----------------------------------------------------------------------------------------------------------------
# downloads
@dataclass
class SavedResult:
    """Files written for one result (download links)."""

    mask: Path  # <stem>.png: 0/255, the photo's resolution -- the file gem predict writes
    probability: Path  # <stem>_prob.png: 8-bit glass probability -- gem predict --prob
    overlay: Path  # <stem>_overlay.png: the overlay shown on the page


def save_result(result: SegmentResult, out_dir: PathLike) -> SavedResult:
    """Write the mask, probability and overlay of ``result`` into ``out_dir`` (named after the upload)."""
    out_dir = Path(out_dir)
    stem = Path(result.image.name).stem or "image"
    saved = SavedResult(mask=out_dir / f"{stem}.png", probability=out_dir / f"{stem}_prob.png",
                        overlay=out_dir / f"{stem}_overlay.png")
    write_image_outputs({"mask": saved.mask, "prob": saved.probability}, None, result.prediction, quality=90)
    with atomic_path(saved.overlay, suffix=".png") as tmp:
        Image.fromarray(result.overlay).save(tmp, format="PNG")
    return saved


class OutputStore:
    """Per-request folders for downloads under one root, keeping only the newest ``keep`` (a long-running server
    must not fill its disk); the root is removed by :meth:`cleanup`."""

    def __init__(self, root: Optional[PathLike] = None, keep: int = 64):
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="gemseg-demo-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = max(1, int(keep))
        self._dirs: deque = deque()
        self._lock = threading.Lock()

    def new_dir(self) -> Path:
        d = self.root / uuid.uuid4().hex
        d.mkdir()
        with self._lock:
            self._dirs.append(d)
            while len(self._dirs) > self.keep:
                shutil.rmtree(self._dirs.popleft(), ignore_errors=True)
        return d

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------
# several images, video
def segment_files(segmentor, paths: Iterable[PathLike], store: OutputStore, opacity: float = 0.45,
                  on_error: Callable[[str], None] = lambda msg: None):
    """Segment several uploads; a bad file is reported through ``on_error`` and skipped.

    Returns (results, saved files) of the good ones, in order.
    """
    results, saved = [], []
    for path in paths:
        try:
            image = read_upload(path)
        except DemoInputError as e:
            on_error(str(e))
            continue
        result = segment(segmentor, image, opacity)
        results.append(result)
        saved.append(save_result(result, store.new_dir()))
    return results, saved


@dataclass
class VideoResult:
    path: Path  # the overlay video
    frames: int
    fps: float
    glass_fraction: float  # mean over frames
    ms_per_frame: float
    model: str

    def summary(self) -> str:
        return (f"{self.frames} frames at {self.fps:.1f} fps | mean glass {100 * self.glass_fraction:.1f} % | "
                f"{self.ms_per_frame:.0f} ms per frame | model {self.model}")


def segment_video(segmentor, path: Optional[PathLike], out_dir: PathLike, opacity: float = 0.45,
                  max_frames: int = MAX_VIDEO_FRAMES,
                  progress: Callable[[int, Optional[int]], None] = lambda done, total: None) -> VideoResult:
    """Overlay video of a clip, frame by frame (``GlassSegmentor.predict_video``), written as WebM (VP8: plays in
    browsers without a transcoder). ``progress(done, total)`` is called after each frame. Clips longer than
    ``max_frames`` are refused with a message."""
    from gemseg.io.video import VideoWriter, open_video, video_info

    if path is None or str(path) == "":
        raise DemoInputError("No video: upload a short clip first.")
    p = Path(path)
    try:
        cap = open_video(p)
        fps, count, w, h = video_info(cap)
        cap.release()
    except ImageReadError as e:
        raise DemoInputError(f"Cannot read the video {p.name!r}: {e.reason}.") from None
    if count > max_frames:
        raise DemoInputError(f"{p.name!r} has {count} frames; this demo processes clips of up to {max_frames} "
                             f"frames (trim it, or run gem predict on your own machine).")
    if max(w, h) > MAX_SIDE or w * h > MAX_MEGAPIXELS * 1e6:
        raise DemoInputError(f"{p.name!r} is {w}×{h} px per frame, beyond the limit. {limits_text()}")
    out = Path(out_dir) / f"{p.stem}_overlay.webm"
    total = count if count > 0 else None
    fractions: List[float] = []
    t0 = time.perf_counter()
    try:
        with VideoWriter(out, fps) as writer:
            for frame in segmentor.predict_video(p, max_frames=max_frames):
                writer.write(overlay(frame.image, frame.prediction.mask, alpha=opacity))
                fractions.append(float(frame.prediction.mask.mean()))
                progress(len(fractions), total)
    except ImageReadError as e:
        raise DemoInputError(f"Cannot read the video {p.name!r}: {e.reason}.") from None
    if not fractions:
        raise DemoInputError(f"The video {p.name!r} has no decodable frame.")
    elapsed = time.perf_counter() - t0
    return VideoResult(path=out, frames=len(fractions), fps=fps, glass_fraction=float(np.mean(fractions)),
                       ms_per_frame=1000 * elapsed / len(fractions), model=model_label(segmentor))


def example_images(max_backgrounds: int = 3) -> List[Path]:
    """The bundled example photo and a few bundled synthesis backgrounds (indoor and street scenes)."""
    assets = Path(__file__).resolve().parents[1] / "assets"
    examples = sorted((assets / "examples").glob("*.jpg"))
    picks: Sequence[str] = ("NYC_Mulberry_Street.jpg", "Budapest_parlament_interior.jpg", "demo01.jpg")
    backgrounds = [assets / "synthesis" / "backgrounds" / n for n in picks]
    return examples + [b for b in backgrounds if b.is_file()][:max_backgrounds]
