"""The Gradio page of ``gem demo`` (also what a Hugging Face Space runs through the repository's ``app.py``).

Layout: shared controls (model, threshold, overlay opacity, flip TTA), then three tabs -- one image (upload, paste
or webcam; overlay / mask / heat map / side-by-side views, downloads), several images (a gallery) and a short
video (overlay video, progress bar). Every inference event shares one Gradio concurrency group, so users queue
for the model instead of loading it twice or running the machine out of memory.

API contract (scripts rely on it): ``api_name="/segment"`` takes one image and returns first the binary mask
(0/255 PNG at the image's size, the file ``gem predict`` writes), then the glass probability map (8-bit PNG, the
file ``gem predict --prob`` writes), computed by the model the server started with, with the default options::

    from gradio_client import Client, handle_file
    mask_png, prob_png = Client("http://127.0.0.1:7860/").predict(handle_file("photo.jpg"), api_name="/segment")
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Optional

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry calls from a demo started offline

import gradio as gr  # noqa: E402

from gemseg.demo.handlers import (  # noqa: E402
    MAX_GALLERY_IMAGES, MAX_UPLOAD_MB, DemoInputError, OutputStore, example_images, heat_map, limits_text, mask_image, read_upload,
    save_result, segment, segment_files, segment_video, side_by_side,
)
from gemseg.demo.models import DEFAULT_MODEL, ModelSpec, SegmentorCache, model_menu, with_options  # noqa: E402
from gemseg.errors import GemsegError  # noqa: E402

logger = logging.getLogger(__name__)

CONCURRENCY_ID = "gemseg-inference"
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
# local font stacks: the page must not fetch web fonts (offline machines, privacy)
THEME_FONTS = ["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]

INTRO = """# gemseg: glass surface segmentation
Drop in a photo: glass (windows, glass doors and walls, display cases) is tinted and outlined.
[GEM](https://arxiv.org/abs/2401.15282) re-implemented in pure PyTorch;
the default model `gem-lite-synth` is small and CPU-fast, trained on synthetic images only (see the model card).
"""


def upload_path(payload, store: OutputStore) -> Optional[str]:
    """The file of an image upload as it reaches an event with ``preprocess=False``: Gradio's image payload
    (``{"path": ..., "url": ...}``) → a path on the server, or None when nothing was uploaded.

    The image events skip ``gr.Image``'s own preprocessing (which opens the file with PIL and would turn a
    non-image into an unreadable server error, and 16-bit files into clipped RGB): the file itself goes to gemseg's
    one image reader. Gradio has already moved the upload into its cache and checked where it came from.
    """
    if payload is None:
        return None
    if isinstance(payload, str):
        return payload
    path, url = payload.get("path"), payload.get("url") or ""
    if path:
        return str(path)
    if url.startswith("data:"):  # an image pasted as a data URL
        import base64
        import binascii

        header, _, data = url.partition(",")
        target = store.new_dir() / "pasted_image"
        try:
            target.write_bytes(base64.b64decode(data, validate=True) if ";base64" in header else data.encode())
        except (binascii.Error, ValueError):
            raise DemoInputError("The pasted data is not an image this demo can read.") from None
        return str(target)
    return None


def _user_error(e: BaseException) -> gr.Error:
    """Any failure → a one-line message for the page (the traceback goes to the server log only)."""
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, GemsegError):
        return gr.Error(str(e))
    if isinstance(e, MemoryError):
        return gr.Error("Out of memory on the server for this input; try a smaller image.")
    logger.exception("gem demo: request failed")
    return gr.Error(f"Segmentation failed ({type(e).__name__}: {e}).")


def _threshold(value: Optional[float]) -> Optional[float]:
    return None if value is None else float(value)


class DemoHandlers:
    """The event handlers, bound to one model cache and one download store."""

    def __init__(self, cache: SegmentorCache, store: OutputStore, default_label: str):
        self.cache = cache
        self.store = store
        self.default_label = default_label

    def _segmentor(self, label: Optional[str], threshold=None, tta: bool = False):
        return with_options(self.cache.get(label or self.default_label), tta=bool(tta),
                            threshold=_threshold(threshold))

    # -- one image ------------------------------------------------------------------------------------------------
    def _segment_upload(self, payload, segmentor, opacity: float = 0.45):
        """Read an image upload (conversion notes shown as warnings), segment it, write its downloads."""
        image = read_upload(upload_path(payload, self.store))
        for note in image.notes:
            gr.Warning(note)
        result = segment(segmentor, image, opacity)
        return result, save_result(result, self.store.new_dir())

    def segment_image(self, payload, label, threshold, opacity, tta):
        """Page: (overlay, mask, heat map, side by side, summary, mask download, overlay download)."""
        try:
            result, saved = self._segment_upload(payload, self._segmentor(label, threshold, tta), float(opacity))
        except Exception as e:  # noqa: BLE001 - shown on the page
            raise _user_error(e) from None
        pred = result.prediction
        views = (result.overlay, mask_image(pred.mask), heat_map(pred.probability),
                 side_by_side(result.image.rgb, result.overlay))
        return (*views, result.summary(), str(saved.mask), str(saved.overlay))

    def api_segment(self, payload):
        """API ``/segment``: (mask PNG, probability PNG) with the server's model and the default options."""
        try:
            _, saved = self._segment_upload(payload, self._segmentor(None))
        except Exception as e:  # noqa: BLE001 - returned to the client as an error message
            raise _user_error(e) from None
        return str(saved.mask), str(saved.probability)

    # -- several images -------------------------------------------------------------------------------------------
    def segment_gallery(self, files, label, threshold, opacity, tta, progress=gr.Progress()):
        """Page: (gallery of (overlay, caption), mask files, summary)."""
        paths: List[str] = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if not paths:
            raise gr.Error("No images: upload one or more photos first.")
        if len(paths) > MAX_GALLERY_IMAGES:
            raise gr.Error(f"{len(paths)} images: this demo segments up to {MAX_GALLERY_IMAGES} at once.")
        try:
            seg = self._segmentor(label, threshold, tta)
            results, saved = segment_files(seg, progress.tqdm(paths, desc="segmenting"), self.store,
                                           float(opacity), on_error=gr.Warning)
        except Exception as e:  # noqa: BLE001
            raise _user_error(e) from None
        if not results:
            raise gr.Error("None of the uploads could be read as an image.")
        gallery = [(str(s.overlay), f"{r.image.name}: glass {100 * r.glass_fraction:.1f} %, {r.latency_ms:.0f} ms")
                   for r, s in zip(results, saved)]
        summary = "\n".join(f"- {r.summary()}" for r in results)
        return gallery, [str(s.mask) for s in saved], summary

    # -- video ----------------------------------------------------------------------------------------------------
    def segment_clip(self, path, label, threshold, opacity, tta, progress=gr.Progress()):
        """Page: (overlay video, summary)."""
        def report(done: int, total: Optional[int]) -> None:
            progress((done, total), desc="frames", unit="frames")

        try:
            result = segment_video(self._segmentor(label, threshold, tta), path, self.store.new_dir(),
                                   float(opacity), progress=report)
        except Exception as e:  # noqa: BLE001
            raise _user_error(e) from None
        return str(result.path), result.summary()


def build_demo(cache: SegmentorCache, store: Optional[OutputStore] = None, default_label: Optional[str] = None,
               concurrency: int = 1) -> gr.Blocks:
    """The Blocks app over ``cache``'s models (menu order = ``cache.labels``; the first is the default)."""
    store = store or OutputStore()
    default_label = default_label or cache.labels[0]
    h = DemoHandlers(cache, store, default_label)
    examples = [str(p) for p in example_images()]
    run = dict(concurrency_limit=concurrency, concurrency_id=CONCURRENCY_ID)

    # delete_cache: every hour, Gradio drops cached uploads and results older than two hours (long-running Spaces)
    with gr.Blocks(title="gemseg glass segmentation", analytics_enabled=False, delete_cache=(3600, 7200)) as demo:
        gr.Markdown(INTRO + f"\n*Limits: {limits_text()}*")
        with gr.Row():
            model = gr.Dropdown(cache.labels, value=default_label, label="Model", scale=2,
                                info="bundled with gemseg or already downloaded")
            threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Threshold",
                                  info="glass probability above it; 0.5 = the model's own")
            opacity = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Overlay opacity", info="tint strength")
            tta = gr.Checkbox(False, label="Test-time flip", info="mirror average, 2× time")
        settings = [model, threshold, opacity, tta]

        with gr.Tabs():
            with gr.Tab("Image"):
                with gr.Row():
                    with gr.Column():
                        photo = gr.Image(type="filepath", image_mode=None, label="Photo",
                                         sources=["upload", "clipboard", "webcam"], elem_id="gemseg-input")
                        go = gr.Button("Segment", variant="primary", elem_id="gemseg-run")
                        gr.Examples(examples, inputs=photo, label="Example photos")
                    with gr.Column():
                        with gr.Tabs():
                            with gr.Tab("Overlay"):
                                overlay_view = gr.Image(label="Overlay", format="png", interactive=False,
                                                        elem_id="gemseg-overlay")
                            with gr.Tab("Mask"):
                                mask_view = gr.Image(label="Binary mask", format="png", interactive=False)
                            with gr.Tab("Probability"):
                                heat_view = gr.Image(label="Glass probability (inferno: yellow = glass)",
                                                     format="png", interactive=False)
                            with gr.Tab("Side by side"):
                                side_view = gr.Image(label="Photo | overlay", format="png", interactive=False)
                        info = gr.Markdown(elem_id="gemseg-info")
                        with gr.Row():
                            mask_file = gr.DownloadButton("Mask PNG (0/255)", elem_id="gemseg-mask-dl", size="md")
                            overlay_file = gr.DownloadButton("Overlay PNG", size="md")
                outputs = [overlay_view, mask_view, heat_view, side_view, info, mask_file, overlay_file]
                gr.on([go.click, photo.upload], h.segment_image, [photo, *settings], outputs, preprocess=False,
                      api_visibility="private", **run)

            with gr.Tab("Several images"):
                with gr.Row():
                    with gr.Column():
                        files = gr.File(file_count="multiple", file_types=["image"], type="filepath",
                                        label="Photos")
                        go_many = gr.Button("Segment all", variant="primary")
                    with gr.Column():
                        gallery = gr.Gallery(label="Overlays", columns=3, height="auto")
                        masks = gr.File(label="Masks (PNG, 0/255)", file_count="multiple", interactive=False)
                        many_info = gr.Markdown()
                go_many.click(h.segment_gallery, [files, *settings], [gallery, masks, many_info],
                              api_visibility="private", **run)

            with gr.Tab("Video"):
                with gr.Row():
                    with gr.Column():
                        clip = gr.Video(sources=["upload"], label="Short clip")
                        go_clip = gr.Button("Segment clip", variant="primary")
                    with gr.Column():
                        clip_out = gr.Video(label="Overlay video (WebM)", interactive=False)
                        clip_info = gr.Markdown()
                go_clip.click(h.segment_clip, [clip, *settings], [clip_out, clip_info], api_visibility="private",
                              **run)

        # the API endpoint: one image in, (mask, probability) out -- a contract, see the module docstring
        with gr.Row(visible=False):
            api_image = gr.Image(type="filepath", image_mode=None, label="image")
            api_mask = gr.Image(type="filepath", format="png", label="mask")
            api_prob = gr.Image(type="filepath", format="png", label="probability")
            api_button = gr.Button()
        api_button.click(h.api_segment, [api_image], [api_mask, api_prob], api_name="segment", preprocess=False,
                         **run)
    demo.queue(max_size=32, default_concurrency_limit=concurrency)
    demo.gemseg_store = store  # for callers that clean it up when the server stops
    return demo


def create_app(spec: Optional[ModelSpec] = None, device: str = "auto", preload: bool = True,
               concurrency: int = 1, cache_size: int = 2) -> gr.Blocks:
    """The demo for ``spec`` (default: the bundled ``gem-lite-synth``) plus every zoo model available offline.

    ``preload`` loads the default model now, so that a wrong model fails at start-up and the first user does not
    wait for the load.
    """
    spec = spec or ModelSpec(name=DEFAULT_MODEL)
    cache = SegmentorCache(model_menu(spec), device=device, capacity=cache_size)
    if preload:
        cache.get(spec.label)
    return build_demo(cache, default_label=spec.label, concurrency=concurrency)


def launch_options() -> dict:
    """Keyword arguments for ``Blocks.launch`` that every way of serving the demo needs."""
    theme = gr.themes.Soft(primary_hue="cyan", font=THEME_FONTS, font_mono=MONO_FONTS)
    return dict(theme=theme, allowed_paths=[str(ASSETS_DIR)], max_file_size=f"{MAX_UPLOAD_MB}mb",
                ssr_mode=False, show_error=False)


__all__ = ["DemoHandlers", "DemoInputError", "build_demo", "create_app", "launch_options", "upload_path"]
