"""``GlassSegmentor``: the user-facing predictor (batching, devices, precision, flip TTA, video, ONNX Runtime).

Every image goes through the one pre/post-processing path (:mod:`gemseg.inference.preprocess`): square bilinear
resize to the model size → network → 2-channel scores resized back to the input's size → probability and argmax
mask. Batching only stacks the resized images, so batched and one-by-one predictions agree (to float rounding of
the batched matrix products).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from gemseg.errors import GemsegError
from gemseg.inference.devices import autocast_context, resolve_device, resolve_precision
from gemseg.inference.preprocess import load_rgb, load_rgb_for_size, postprocess_scores, resize_square
from gemseg.modeling.gem import Prediction

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
RANDOM_INIT_WARNING = (
    "WARNING: no weights given: GEM is RANDOMLY INITIALISED and its masks are MEANINGLESS "
    "(pass --weights/--model to use a trained model)"
)


# ----------------------------------------------------------------------------------------------------------------
# named models (the zoo owns them; kept here for existing imports)
def available_models() -> List[str]:
    """Every model name ``from_pretrained`` accepts (the zoo's; see ``gem models``)."""
    from gemseg.zoo import list_models

    return list_models()


def resolve_model_name(name: str) -> Path:
    """Model name → its local file (bundled, cached, or downloaded now); GemsegError listing the names otherwise."""
    from gemseg.zoo import resolve_model

    src = resolve_model(name)
    if src.weights is None:
        raise GemsegError(f"unknown model {name!r}")
    return src.weights


# ----------------------------------------------------------------------------------------------------------------
# runners: [B, 3, S, S] float 0–255 → [B, 2, S, S] float32 scores
class TorchRunner:
    """PyTorch eager backend."""

    backend = "torch"

    def __init__(self, model, device: torch.device, precision: str = "fp32"):
        self.model = model.eval()
        self.device = device
        self.precision = precision
        self.img_size = int(model.img_size)

    def __call__(self, images: Tensor) -> Tensor:
        from gemseg.inference.optimize import semantic_scores_blocked
        from gemseg.modeling.gem import semantic_scores

        fn = semantic_scores_blocked if getattr(self.model, "blocked_semantic", False) else semantic_scores
        with torch.inference_mode(), autocast_context(self.precision, self.device):
            x = images.to(self.device, non_blocking=True)
            if getattr(self.model, "channels_last", False):
                x = x.contiguous(memory_format=torch.channels_last)
            outputs, _ = self.model(x)
        with torch.inference_mode():  # semantic inference in float32, outside autocast
            return fn(outputs["pred_logits"].float(), outputs["pred_masks"].float(), x.shape[-2:])


class OnnxRunner:
    """ONNX Runtime backend for a graph written by :func:`gemseg.inference.onnx_export.export_onnx` (fp32) or
    quantised by :func:`gemseg.inference.quantize.quantize_onnx_int8` (int8; ``precision`` comes from the file's
    ``gemseg.precision`` metadata)."""

    backend = "onnxruntime"

    def __init__(self, path: PathLike, device: torch.device, threads: Optional[int] = None):
        from gemseg.inference.onnx_export import create_session, read_metadata

        self.path = Path(path)
        self.session = create_session(self.path, device, threads=threads)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        size = inp.shape[-1]
        if not isinstance(size, int):
            raise GemsegError(f"{self.path}: the ONNX input has no fixed spatial size ({inp.shape})")
        self.img_size = size
        self.device = torch.device("cpu")
        self.metadata = read_metadata(self.path)
        self.precision = self.metadata.get("gemseg.precision", "fp32")

    def __call__(self, images: Tensor) -> Tensor:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: x})[0])


# ----------------------------------------------------------------------------------------------------------------
@dataclass
class VideoFrame:
    """One processed video frame: its index in the stream, the RGB frame and the prediction."""

    index: int
    image: np.ndarray
    prediction: Prediction


class GlassSegmentor:
    """Glass segmentation of images and videos at their own resolution.

    Args:
        model: a :class:`gemseg.modeling.gem.GEM` (or a runner, see :meth:`from_pretrained`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or a torch.device (ignored for ONNX runners).
        precision: ``"fp32"``, ``"fp16"`` (CUDA/MPS) or ``"bf16"`` (autocast); ``"int8"`` only through
            :meth:`from_pretrained` with the ONNX Runtime backend.
        tta: horizontal-flip test-time augmentation (scores of the image and of its mirror are averaged).
        threshold: if given, ``mask = probability > threshold``; by default the official ``argmax``.
        batch_size: images per network call for lists and videos.
        resize: ``"cv2"`` (official demo) or ``"pil"`` square resize.

    Example::

        seg = GlassSegmentor.from_pretrained("model.safetensors")
        result = seg.predict("photo.jpg")          # Prediction: .mask (H×W bool), .probability, .scores
    """

    def __init__(self, model, device: Union[str, torch.device, None] = "auto", precision: str = "fp32",
                 tta: bool = False, threshold: Optional[float] = None, batch_size: int = 1, resize: str = "cv2"):
        if isinstance(model, (TorchRunner, OnnxRunner)):
            self.runner = model
        else:
            dev = resolve_device(device)
            self.runner = TorchRunner(model.to(dev), dev, resolve_precision(precision, dev))
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise GemsegError(f"threshold must lie in [0, 1], got {threshold}")
        if batch_size < 1:
            raise GemsegError("batch size must be >= 1")
        self.tta = bool(tta)
        self.threshold = None if threshold is None else float(threshold)
        self.batch_size = int(batch_size)
        self.resize = resize
        self.random_init = False
        self.source = None  # what the weights came from (for reports)
        self.model_name = None  # short name of the model (zoo name, repo id, file stem)

    # ------------------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: Optional[PathLike] = None,
        *,
        config=None,
        device: Union[str, torch.device, None] = "auto",
        precision: str = "fp32",
        size: Optional[int] = None,
        backend: str = "torch",
        tta: bool = False,
        threshold: Optional[float] = None,
        batch_size: int = 1,
        optimize: bool = True,
        opts: Optional[Sequence[str]] = None,
        threads: Optional[int] = None,
    ) -> "GlassSegmentor":
        """Build a segmentor from a model name, a weights file, a Hub repo, or a config alone (random init).

        ``name_or_path`` follows the one model rule of :mod:`gemseg.zoo.resolve`: a zoo name (``gem models``;
        Hub models are downloaded once into the Hugging Face cache), a gemseg ``.safetensors`` (carries its
        config) or :func:`gemseg.zoo.save_pretrained` folder, a Hub repo id ``owner/name`` in that layout, an
        official ``.pth``/``.pkl`` (needs ``config``), an exported ``.onnx`` (ONNX Runtime), None with a
        ``config`` (random weights: a loud warning is logged), or None alone: the bundled default model.
        ``size`` overrides the network input size (e.g. 384 or 1024). ``backend="onnxruntime"`` exports the
        PyTorch model to a temporary ONNX file first unless ``name_or_path`` already is one.
        ``precision="int8"`` with ``backend="onnxruntime"`` quantises the exported graph (calibrated on
        synthesised images; ``gem export --quantize int8 --calibration DIR`` calibrates on your photos).
        ``optimize`` applies the exact inference rewrites of :mod:`gemseg.inference.optimize` (BatchNorm folding,
        row-blocked semantic inference).
        """
        from gemseg.zoo import resolve_model

        src = resolve_model(name_or_path, config=config)
        weights, config = src.weights, src.config
        if backend not in ("torch", "onnxruntime"):
            raise GemsegError(f"unknown backend {backend!r}: use torch or onnxruntime")
        dev = resolve_device(device)
        if weights is not None and weights.suffix.lower() == ".onnx":
            if backend != "onnxruntime":
                backend = "onnxruntime"
            runner = OnnxRunner(weights, dev, threads=threads)
            # the precision of an ONNX file is the file's own (fp32, or int8 after gem export --quantize int8)
            if precision not in (None, "fp32", runner.precision):
                raise GemsegError(f"{weights} is a {runner.precision} ONNX model; --precision {precision} does not "
                                  "apply to it (export it again with gem export --quantize int8 for int8)")
            if size is not None and int(size) != runner.img_size:
                raise GemsegError(f"{weights} was exported for size {runner.img_size}, not {size}")
            seg = cls(runner, tta=tta, threshold=threshold, batch_size=batch_size)
            seg.random_init = runner.metadata.get("gemseg.random_init") == "1"
            seg.source = src.label
            seg.model_name = src.name
            return seg
        if precision == "int8" and backend != "onnxruntime":
            raise GemsegError("int8 runs in ONNX Runtime: pass backend='onnxruntime' (--backend onnxruntime)")
        from gemseg.modeling.build import input_size_overrides, load_model

        all_opts = list(opts or [])
        if size is not None:
            all_opts += input_size_overrides(size)
        model = load_model(config, weights=weights, device="cpu", opts=all_opts or None)
        cfg_weights = str(model.cfg.MODEL.WEIGHTS or "")
        random_init = weights is None and (not cfg_weights or cfg_weights.startswith("detectron2://"))
        if backend == "onnxruntime":
            if precision not in (None, "fp32", "int8"):
                raise GemsegError(f"the ONNX Runtime backend runs fp32 or int8, not {precision}")
            import atexit
            import shutil
            import tempfile

            from gemseg.inference.onnx_export import default_head, export_onnx

            tmpdir = Path(tempfile.mkdtemp(prefix="gemseg-onnx-"))
            atexit.register(shutil.rmtree, tmpdir, True)
            onnx_path = tmpdir / "model.onnx"
            export_onnx(model, onnx_path, random_init=random_init, head=default_head(precision or "fp32"))
            if precision == "int8":  # calibrated on synthesised images; gem export --quantize int8 for your photos
                from gemseg.inference.quantize import quantize_onnx_int8

                quantize_onnx_int8(onnx_path, tmpdir / "model.int8.onnx")
                onnx_path = tmpdir / "model.int8.onnx"
            runner = OnnxRunner(onnx_path, dev, threads=threads)
            seg = cls(runner, tta=tta, threshold=threshold, batch_size=batch_size)
        else:
            if optimize:
                from gemseg.inference.optimize import optimize_for_inference

                # our own freshly loaded model: no copy; NHWC convolutions except on MPS (patchy NHWC support)
                model = optimize_for_inference(model, inplace=True, channels_last=dev.type != "mps")
            seg = cls(model, device=dev, precision=precision, tta=tta, threshold=threshold, batch_size=batch_size)
        seg.random_init = random_init
        seg.source = "random init" if random_init else src.label
        seg.model_name = src.name
        return seg

    # ------------------------------------------------------------------------------------------------------------
    @property
    def img_size(self) -> int:
        """The square network input size."""
        return self.runner.img_size

    @property
    def device(self) -> torch.device:
        return self.runner.device

    @property
    def model(self):
        """The PyTorch model (None for the ONNX Runtime backend)."""
        return getattr(self.runner, "model", None)

    def __repr__(self) -> str:
        source = self.source or type(getattr(self.runner, "model", self.runner)).__name__
        extra = "".join([", RANDOM WEIGHTS" if self.random_init else "", ", flip TTA" if self.tta else "",
                         f", threshold={self.threshold}" if self.threshold is not None else ""])
        return (f"GlassSegmentor(model={source!r}, backend={self.runner.backend}, device={self.device}, "
                f"precision={self.runner.precision}, size={self.img_size}, batch_size={self.batch_size}{extra})")

    def prepare(self, image) -> np.ndarray:
        """Image (path, PIL, array) → the square-resized H×W×3 uint8 network input."""
        return resize_square(load_rgb(image), self.img_size, self.resize)

    def infer_scores(self, images: Tensor) -> Tensor:
        """[B, 3, S, S] float 0–255 → [B, 2, S, S] float32 scores (with flip TTA if enabled)."""
        if not self.tta:
            return self.runner(images)
        b = images.shape[0]
        both = self.runner(torch.cat([images, images.flip(-1)], 0))
        return (both[:b] + both[b:].flip(-1)) * 0.5

    def _finish(self, scores: Tensor, size) -> Prediction:
        pred = postprocess_scores(scores, size)
        if self.threshold is not None:
            pred.mask = pred.probability > self.threshold
        return pred

    def predict_resized(self, squares: Sequence[np.ndarray], sizes: Sequence) -> List[Prediction]:
        """Network + post-processing for already square-resized uint8 images (one batch) at their original sizes."""
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(squares).transpose(0, 3, 1, 2))).float()
        scores = self.infer_scores(batch)
        return [self._finish(scores[i], tuple(sizes[i])) for i in range(len(squares))]

    def predict_arrays(self, images: Sequence[np.ndarray]) -> List[Prediction]:
        """Predict a list of H×W×3 uint8 RGB arrays (any sizes), ``batch_size`` at a time."""
        out: List[Prediction] = []
        for i in range(0, len(images), self.batch_size):
            chunk = [load_rgb(im) for im in images[i:i + self.batch_size]]
            squares = [resize_square(im, self.img_size, self.resize) for im in chunk]
            out.extend(self.predict_resized(squares, [im.shape[:2] for im in chunk]))
        return out

    def predict(self, image):
        """Segment an image (array, PIL image or path) → :class:`Prediction` at its resolution; a list/tuple of
        images → a list of predictions (batched by ``batch_size``)."""
        if isinstance(image, (list, tuple)):
            return self.predict_arrays([load_rgb(im) for im in image])
        rgb, size = load_rgb_for_size(image, self.img_size)  # a huge JPEG file decodes at a reduced scale
        return self.predict_resized([resize_square(rgb, self.img_size, self.resize)], [size])[0]

    def predict_video(self, source, every: int = 1, max_frames: Optional[int] = None) -> Iterator[VideoFrame]:
        """Yield a :class:`VideoFrame` for every ``every``-th frame of a video file or camera index (int)."""
        from gemseg.io.video import iter_frames

        frames: List = []
        for index, rgb in iter_frames(source, every=every, max_frames=max_frames):
            frames.append((index, rgb))
            if len(frames) >= self.batch_size:
                yield from self._video_batch(frames)
                frames = []
        if frames:
            yield from self._video_batch(frames)

    def _video_batch(self, frames) -> Iterator[VideoFrame]:
        preds = self.predict_resized([resize_square(f, self.img_size, self.resize) for _, f in frames],
                                     [f.shape[:2] for _, f in frames])
        for (index, rgb), pred in zip(frames, preds):
            yield VideoFrame(index, rgb, pred)
