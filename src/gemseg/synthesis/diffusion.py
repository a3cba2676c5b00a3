"""The diffusion engine: the paper's S-GSD recipe, for users who have the weights locally.

For every output image: take a real image+mask pair from ``--source-dataset``, turn the image into a control
image (Canny edges, or a segmentation map painted with the ADE20K palette from the glass mask), generate a new
image with ControlNet + Stable Diffusion conditioned on it and a text prompt, keep the *source mask* unchanged
(the control pins the layout, so the glass stays where it was), and keep the generation only if its CLIP score
against the prompt passes a threshold (the official repository ships ``clip_sim_large_than_20.txt``, hence > 20 by
default; CLIP score = 100 × cosine similarity, floored at 0).

Everything loads from local files (``local_files_only=True``): nothing is downloaded. ``diffusers`` and
``transformers`` are an optional extra (``pip install 'gemseg[diffusion]'``).

Model folder layout (``--model-dir DIR``): a Stable Diffusion pipeline saved by ``diffusers`` (``model_index.json``,
``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), with the ControlNet in ``DIR/controlnet``
(or ``--controlnet``) and, for the filter, a CLIP model + processor in ``DIR/clip`` (or ``--clip-model``).
A ``StableDiffusionControlNetPipeline`` saved with ``save_pretrained`` has exactly this layout (minus ``clip``).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from gemseg.io import IMAGE_EXTENSIONS, read_image, read_mask
from gemseg.synthesis.errors import SynthError

DEFAULT_PROMPTS = (
    "a photo of a modern living room with large glass windows, realistic, natural light",
    "a photo of an office with glass partitions and glass doors, realistic",
    "a photo of a shop front with glass display windows on a street, realistic",
    "a photo of a building facade with a glass curtain wall, realistic, daylight",
    "a photo of a museum hall with glass display cases, realistic",
    "a photo of a kitchen with a glass door to the garden, realistic",
    "a photo of a balcony with a glass railing, realistic",
    "a photo of a hotel lobby with glass walls, realistic, evening light",
)
NEGATIVE_PROMPT = "cartoon, drawing, painting, lowres, blurry, distorted, text, watermark"
# ADE20K palette entries used by the segmentation ControlNet (lllyasviel/sd-controlnet-seg was trained on them).
ADE_WALL = (120, 120, 120)
ADE_WINDOWPANE = (230, 230, 230)
# Folder pairs searched in --source-dataset, first match wins: (images, masks).
PAIR_LAYOUTS = (
    ("images/training", "annotations_zero_one/training"),
    ("images/validation", "annotations_zero_one/validation"),
    ("images", "annotations_zero_one"),
    ("image", "mask"),
    ("images", "masks"),
    ("images", "annotations"),
    ("train/image", "train/mask"),
)


def diffusers_available() -> Tuple[bool, str]:
    """Whether ``diffusers`` + ``transformers`` import, and why not."""
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        return False, str(e)
    return True, ""


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Silence diffusers/transformers load-time chatter (progress bars, "install accelerate", deprecations)
    while loading, then restore the libraries' settings: ``gem synth`` has its own progress bar."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    dlevel, tlevel = dlog.get_verbosity(), tlog.get_verbosity()
    tbar, dbar = tlog.is_progress_bar_enabled(), dlog.is_progress_bar_enabled()
    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        dlog.set_verbosity(dlevel)
        tlog.set_verbosity(tlevel)
        if tbar:
            tlog.enable_progress_bar()
        if dbar:
            dlog.enable_progress_bar()


def find_pairs(root: Path) -> List[Tuple[Path, Path]]:
    """Image/mask pairs of a dataset folder (official GSD-S layout first; GSD/Trans10K-style folders too)."""
    root = Path(root)
    if not root.is_dir():
        raise SynthError(f"--source-dataset {root} is not a folder")
    for img_sub, mask_sub in PAIR_LAYOUTS:
        idir, mdir = root / img_sub, root / mask_sub
        if not (idir.is_dir() and mdir.is_dir()):
            continue
        masks = {p.relative_to(mdir).with_suffix(""): p for p in mdir.rglob("*.png")}
        pairs = []
        for p in sorted(idir.rglob("*")):
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                m = masks.get(p.relative_to(idir).with_suffix(""))
                if m is not None:
                    pairs.append((p, m))
        if pairs:
            return pairs
    raise SynthError(f"no image/mask pairs found in {root} (looked for "
                     + ", ".join(f"{a}/ + {b}/" for a, b in PAIR_LAYOUTS) + ")")


def to_zero_one(mask: np.ndarray) -> np.ndarray:
    """Source mask → 0/1 labels (255 = ignore kept). 0/1(/255) masks stay; 0/255 masks: > 127 is glass."""
    if mask.ndim == 3:
        mask = mask[..., 0]
    values = np.unique(mask)
    if np.isin(values, (0, 1, 255)).all() and 1 in values:
        return mask.astype(np.uint8)
    return (mask > 127).astype(np.uint8)


def control_image(image: np.ndarray, labels: np.ndarray, kind: str, low: int = 100, high: int = 200) -> np.ndarray:
    """The ControlNet condition: Canny edges (white on black) or an ADE20K-coloured glass/wall map."""
    if kind == "canny":
        edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), low, high)
        return np.repeat(edges[..., None], 3, axis=2)
    if kind == "segmentation":
        out = np.empty(labels.shape + (3,), np.uint8)
        out[:] = ADE_WALL
        out[labels == 1] = ADE_WINDOWPANE
        out[labels == 255] = 0
        return out
    raise SynthError(f"unknown control {kind!r} (canny | segmentation)")


@dataclass
class DiffusionOptions:
    """Settings of the diffusion engine (JSON-able; recorded in ``synth_info.json``)."""

    model_dir: str
    source_dataset: str
    width: int = 640
    height: int = 480
    controlnet_dir: Optional[str] = None
    clip_dir: Optional[str] = None
    control: str = "canny"
    prompts: Tuple[str, ...] = DEFAULT_PROMPTS
    negative_prompt: str = NEGATIVE_PROMPT
    steps: int = 20
    guidance: float = 7.5
    clip_filter: bool = True
    clip_threshold: float = 20.0
    max_tries: int = 3
    device: str = "auto"
    extra: Dict = field(default_factory=dict)

    def to_json(self) -> Dict:
        return {"model_dir": str(self.model_dir), "source_dataset": str(self.source_dataset),
                "controlnet_dir": self.controlnet_dir, "clip_dir": self.clip_dir, "control": self.control,
                "prompts": list(self.prompts), "negative_prompt": self.negative_prompt, "steps": self.steps,
                "guidance": self.guidance, "clip_filter": self.clip_filter, "clip_threshold": self.clip_threshold,
                "max_tries": self.max_tries}


class DiffusionEngine:
    """Restyle real image+mask pairs with ControlNet + Stable Diffusion; keep the masks; filter by CLIP score."""

    name = "diffusion"

    def __init__(self, options: DiffusionOptions):
        ok, why = diffusers_available()
        if not ok:
            raise SynthError("the diffusion engine needs the optional extra: pip install 'gemseg[diffusion]' "
                             f"(diffusers, transformers) — {why}")
        import torch
        from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

        self.opt = options
        self.pairs = find_pairs(Path(options.source_dataset))
        model_dir = Path(options.model_dir)
        if not (model_dir / "model_index.json").is_file():
            raise SynthError(f"--model-dir {model_dir} holds no diffusers pipeline (model_index.json missing)")
        cn_dir = Path(options.controlnet_dir) if options.controlnet_dir else model_dir / "controlnet"
        if not (cn_dir / "config.json").is_file():
            raise SynthError(f"no ControlNet in {cn_dir} (pass --controlnet DIR)")
        if options.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            self.device = options.device
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        try:
            with _quiet_loading():
                controlnet = ControlNetModel.from_pretrained(cn_dir, torch_dtype=self.dtype, local_files_only=True)
                self.pipe = StableDiffusionControlNetPipeline.from_pretrained(
                    model_dir, controlnet=controlnet, safety_checker=None, feature_extractor=None,
                    requires_safety_checker=False, torch_dtype=self.dtype, local_files_only=True)
        except (OSError, ValueError) as e:
            raise SynthError(f"cannot load the diffusion pipeline from {model_dir}: {e}") from None
        self.pipe = self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.clip = self.clip_processor = None
        if options.clip_filter:
            clip_dir = Path(options.clip_dir) if options.clip_dir else model_dir / "clip"
            if not (clip_dir / "config.json").is_file():
                raise SynthError(f"the CLIP filter needs a CLIP model in {clip_dir} (pass --clip-model DIR, "
                                 "or --no-clip-filter)")
            from transformers import CLIPModel, CLIPProcessor

            try:
                with _quiet_loading():
                    self.clip = CLIPModel.from_pretrained(clip_dir, local_files_only=True).to(self.device).eval()
                    self.clip_processor = CLIPProcessor.from_pretrained(clip_dir, local_files_only=True)
            except (OSError, ValueError) as e:
                raise SynthError(f"cannot load the CLIP model from {clip_dir}: {e}") from None
        # Generation size: latents must survive the UNet's three 2× downsamplings, so sides are multiples of
        # 8 × the VAE factor (64 for Stable Diffusion); the control is resized to it and the result resized back.
        mult = 8 * int(getattr(self.pipe, "vae_scale_factor", 8))
        self.gen_w = max(mult, int(round(options.width / mult)) * mult)
        self.gen_h = max(mult, int(round(options.height / mult)) * mult)

    def clip_score(self, image: np.ndarray, prompt: str) -> float:
        """CLIP score = max(100 · cos(image, text), 0), as in torchmetrics / the CLIP-score literature."""
        import torch

        # CLIP's text tower has a fixed context (77 tokens): long prompts are cut, as CLIP-score tools do.
        max_len = int(self.clip.config.text_config.max_position_embeddings)
        inputs = self.clip_processor(text=[prompt], images=[image], return_tensors="pt", padding=True,
                                     truncation=True, max_length=max_len)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.no_grad():
            img = self.clip.get_image_features(pixel_values=inputs["pixel_values"])
            txt = self.clip.get_text_features(input_ids=inputs["input_ids"],
                                              attention_mask=inputs.get("attention_mask"))
            img = getattr(img, "pooler_output", img)
            txt = getattr(txt, "pooler_output", txt)
            cos = torch.nn.functional.cosine_similarity(img.float(), txt.float()).item()
        return max(100.0 * cos, 0.0)

    def render(self, seed: int, index: Optional[int] = None) -> Optional[Tuple[np.ndarray, np.ndarray, Dict]]:
        """Image ``index`` uses source pair ``index mod #pairs`` (variant ``index div #pairs``, so S-GSD-kx = k
        restyled versions of every source image); ``None`` if every try failed the CLIP filter."""
        import torch
        from PIL import Image

        index = 0 if index is None else int(index)
        img_path, mask_path = self.pairs[index % len(self.pairs)]
        W, H = self.opt.width, self.opt.height
        src = cv2.resize(read_image(img_path), (W, H), interpolation=cv2.INTER_AREA)
        # NEAREST_EXACT samples at pixel centres (like PIL); plain INTER_NEAREST is shifted by half a pixel.
        labels = cv2.resize(to_zero_one(read_mask(mask_path)), (W, H), interpolation=cv2.INTER_NEAREST_EXACT)
        control = control_image(src, labels, self.opt.control)
        control_pil = Image.fromarray(cv2.resize(control, (self.gen_w, self.gen_h),
                                                 interpolation=cv2.INTER_NEAREST))
        rng = np.random.default_rng(seed)
        tries = []
        for attempt in range(max(1, self.opt.max_tries)):
            prompt = str(rng.choice(list(self.opt.prompts)))
            gen_seed = int(rng.integers(0, 2**63 - 1))
            gen = torch.Generator(device="cpu").manual_seed(gen_seed)
            out = self.pipe(prompt=prompt, negative_prompt=self.opt.negative_prompt, image=control_pil,
                            height=self.gen_h, width=self.gen_w, num_inference_steps=self.opt.steps,
                            guidance_scale=self.opt.guidance, generator=gen, output_type="np")
            arr = np.asarray(out.images[0])
            image = np.clip(np.nan_to_num(arr) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            if image.shape[:2] != (H, W):
                image = cv2.resize(image, (W, H), interpolation=cv2.INTER_CUBIC)
            score = self.clip_score(image, prompt) if self.clip is not None else None
            tries.append({"prompt": prompt, "generator_seed": gen_seed,
                          "clip_score": None if score is None else round(score, 3)})
            if score is None or score > self.opt.clip_threshold:
                params = {"source_image": str(img_path), "source_mask": str(mask_path),
                          "variant": index // len(self.pairs), "control": self.opt.control, "prompt": prompt,
                          "generator_seed": gen_seed, "clip_score": tries[-1]["clip_score"], "tries": attempt + 1,
                          "steps": self.opt.steps, "guidance": self.opt.guidance}
                return image, labels.astype(np.uint8), params
        return None
