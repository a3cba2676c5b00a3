"""The one rule that turns what a user named into weights + config — used by every command and both Python APIs.

In order:

1. a **zoo name** (``gem models``: ``gem-tiny-gsds``, ``gem-lite-synth``, …) → the bundled file, or the Hub file
   from the Hugging Face cache (downloaded and verified the first time), with the entry's config;
2. a **bundled model** file name (``gemseg/assets/models/<name>.safetensors``);
3. a **local path**: a weights file (``.safetensors``/``.pth``/``.pt``/``.pkl``/``.onnx``) or a folder written by
   :func:`gemseg.zoo.save_pretrained` (``model.safetensors`` inside);
4. a **Hub repo id** ``owner/name`` in the :func:`gemseg.zoo.save_pretrained` layout (``model.safetensors`` with
   its config inside);
5. nothing named but a **config** → that architecture with random weights (callers warn loudly);
6. nothing at all → the bundled default model (:data:`gemseg.zoo.registry.DEFAULT_MODEL`).
"""
from __future__ import annotations

import difflib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from gemseg.errors import CheckpointError, GemsegError
from gemseg.zoo import hub
from gemseg.zoo.registry import DEFAULT_MODEL, REGISTRY, ZooEntry

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
FALLBACK_CONFIG = "gem-tiny"  # architecture (random, loudly warned) if the default model is missing from the install
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".pkl", ".onnx")
PRETRAINED_FILE = "model.safetensors"  # the save_pretrained / from_pretrained layout (as transformers and timm)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ModelSource:
    """What a model request resolved to.

    Attributes:
        weights: the weights file (None: random initialisation).
        config: a config name/path/node for :func:`gemseg.modeling.build.load_model` (None: the file carries it).
        name: short name for tables and summaries (zoo name, repo id, file stem, config name).
        label: where the weights come from, for people (``gem-tiny-gsds (Hugging Face cache)``).
        entry: the zoo entry, when a zoo name was used.
        random_init: no weights at all (the caller must warn loudly).
    """

    weights: Optional[Path]
    config: Any
    name: str
    label: str
    entry: Optional[ZooEntry] = None
    random_init: bool = False


# ------------------------------------------------------------------------------------------------------------------
# names
def model_names() -> List[str]:
    """Every name ``--model`` accepts: the zoo's entries and any other bundled file."""
    return sorted(set(REGISTRY) | set(hub.bundled_models()))


def unknown_model_error(name: str) -> GemsegError:
    names = model_names()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return GemsegError(f"unknown model {name!r}; {hint}available models: {', '.join(names)} "
                       "(or a weights file, a save_pretrained folder, or a Hub repo id owner/name)")


def get_entry(name: str) -> ZooEntry:
    """The zoo entry called ``name``; GemsegError listing the names (closest match first) otherwise."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise unknown_model_error(name)
    return entry


# ------------------------------------------------------------------------------------------------------------------
# verification of downloaded files
def verify_checkpoint(path: Path, config: Any = None, kind: str = "model") -> None:
    """Raise :class:`CheckpointError` unless ``path`` loads strictly into the architecture of ``config`` (or of
    the config stored in the file). ``kind="model"`` requires a full GEM checkpoint, ``"backbone"`` an encoder."""
    from gemseg.config import get_config
    from gemseg.modeling.build import build_model
    from gemseg.modeling.checkpoint import apply_checkpoint, config_from_checkpoint, read_checkpoint

    ckpt = read_checkpoint(path)
    if kind == "model" and ckpt.kind != "gem":
        raise CheckpointError(f"{path.name} holds a {ckpt.kind} checkpoint, not a full GEM model")
    if kind == "backbone" and ckpt.kind not in ("sam", "backbone"):
        raise CheckpointError(f"{path.name} holds a {ckpt.kind} checkpoint, not a backbone (SAM/MobileSAM)")
    cfg = get_config(config, freeze=False) if config is not None else config_from_checkpoint(ckpt)
    if cfg is None:
        raise CheckpointError(f"{path.name} carries no config (not written by gemseg save_pretrained)")
    ckpt.configure(cfg)
    cfg.freeze()
    try:
        apply_checkpoint(build_model(cfg), ckpt, strict=True, pos_embed_policy=cfg.MODEL.BACKBONE.POS_EMBED_POLICY)
    except CheckpointError as e:
        lines = str(e).splitlines()
        detail = "; ".join(ln.strip() for ln in lines[1:4])
        raise CheckpointError(f"its tensors do not fit {cfg.MODEL.BACKBONE.NAME} ({detail})") from None


# ------------------------------------------------------------------------------------------------------------------
# the rule
def entry_path(entry: ZooEntry, force: bool = False) -> Path:
    """The local file of a zoo entry: bundled, cached, or downloaded now (and verified)."""
    if entry.bundled:
        path = hub.bundled_path(Path(entry.bundled_file).stem)
        if path is None:
            raise GemsegError(f"{entry.name} should be bundled in this install but {hub.MODELS_DIR} lacks "
                              f"{entry.bundled_file}; reinstall gemseg")
        return path
    return hub.fetch(
        entry.repo_id, entry.filename, revision=entry.revision, repo_type=entry.repo_type, label=entry.name,
        size_bytes=entry.size_bytes, force=force,
        verify=lambda p: verify_checkpoint(p, entry.config, entry.kind),
        download_hint=f"run 'gem models --download {entry.name}' while online, ",
    )


def pretrained_repo_path(repo_id: str, revision: str = "main") -> Path:
    """``model.safetensors`` of a Hub repo in the save_pretrained layout (cached, or downloaded and verified)."""
    return hub.fetch(repo_id, PRETRAINED_FILE, revision=revision, label=repo_id,
                     verify=lambda p: verify_checkpoint(p, None, "model"))


def model_status(name: str) -> str:
    """``"bundled"``, ``"cached"`` (in the Hub cache: usable offline) or ``"not downloaded"``."""
    entry = REGISTRY.get(name)
    if entry is None:
        if hub.bundled_path(name) is not None:
            return "bundled"
        raise unknown_model_error(name)
    if entry.bundled:
        return "bundled"
    found = hub.cached_file(entry.repo_id, entry.filename, entry.revision, entry.repo_type)
    return "cached" if found is not None else "not downloaded"


def local_models() -> List[str]:
    """Names of the segmentation models usable without the network (bundled or already in the Hub cache)."""
    names = [e.name for e in REGISTRY.values() if e.kind == "model" and model_status(e.name) != "not downloaded"]
    return names + [n for n in hub.bundled_models() if n not in REGISTRY]


def _from_name(spec: str, config: Any, for_training: bool) -> ModelSource:
    entry = REGISTRY.get(spec)
    if entry is not None:
        if entry.kind == "backbone" and not for_training:
            raise GemsegError(f"{entry.name} is a backbone initialisation for training (gem train ... MODEL.WEIGHTS "
                              f"{entry.name}), not a glass segmentation model: its head would be random")
        status = model_status(entry.name)
        path = entry_path(entry)
        where = "bundled" if entry.bundled else "Hugging Face cache" if status == "cached" else "downloaded"
        return ModelSource(path, config if config is not None else entry.config, entry.name,
                           f"{entry.name} ({where})", entry)
    bundled = hub.bundled_path(spec)
    if bundled is not None:
        return ModelSource(bundled, config, spec, f"{spec} (bundled)")
    if _REPO_ID.match(spec) and Path(spec).suffix.lower() not in WEIGHT_SUFFIXES:
        return ModelSource(pretrained_repo_path(spec), config, spec, f"{spec} (Hugging Face Hub)")
    if Path(spec).suffix.lower() in WEIGHT_SUFFIXES or os.sep in spec or "/" in spec:
        raise GemsegError(f"weights file not found: {spec}")
    raise unknown_model_error(spec)


def _from_path(path: Path, config: Any) -> ModelSource:
    if path.is_dir():
        inner = path / PRETRAINED_FILE
        if not inner.is_file():
            raise GemsegError(f"{path} is a folder without {PRETRAINED_FILE} (not a save_pretrained folder)")
        return ModelSource(inner, config, path.name, str(path))
    return ModelSource(path, config, path.stem, str(path))


def resolve_model(model: Optional[Union[PathLike, ModelSource]] = None, weights: Optional[PathLike] = None,
                  config: Any = None, *, for_training: bool = False) -> ModelSource:
    """Apply the rule (module docstring) to ``--model`` / ``--weights`` / ``--config``.

    ``model`` and ``weights`` are alternatives (both accept every form: zoo name, path, repo id). ``config``
    overrides the entry's architecture (e.g. ``gem-tiny-1024`` with ``mobile-sam``). ``for_training`` also admits
    backbone-only entries (SAM / MobileSAM initialisations).
    """
    if isinstance(model, ModelSource):
        return model
    if model is not None and weights is not None:
        raise GemsegError("give either --model or --weights, not both")
    spec = model if model is not None else weights
    if spec is not None and str(spec) != "":
        path = Path(spec)
        # zoo names first: a folder that happens to share a name (an output folder) must not shadow a model
        if str(spec) not in model_names() and path.exists():
            return _from_path(path, config)
        return _from_name(str(spec), config, for_training)
    if config is not None:
        name = Path(str(config)).stem if not hasattr(config, "dump") else "config"
        return ModelSource(None, config, name, f"random init ({name})", random_init=True)
    default = REGISTRY[DEFAULT_MODEL]
    if hub.bundled_path(Path(default.bundled_file).stem) is not None:
        return _from_name(DEFAULT_MODEL, None, for_training)
    logger.warning("the default model %s is missing from this install: using a random %s", DEFAULT_MODEL,
                   FALLBACK_CONFIG)
    return ModelSource(None, FALLBACK_CONFIG, FALLBACK_CONFIG, f"random init ({FALLBACK_CONFIG})", random_init=True)


# ------------------------------------------------------------------------------------------------------------------
# the Python API
def _is_config(value: Any) -> bool:
    """Whether the first argument of :func:`load_model` names a config (node, YAML file, shipped config name)."""
    if value is None or hasattr(value, "dump"):
        return True
    from gemseg.config.loader import resolve_config_path

    text = str(value)
    if Path(text).suffix.lower() in WEIGHT_SUFFIXES or text in model_names() or Path(text).is_dir():
        return False
    try:
        resolve_config_path(text)
    except GemsegError:
        return not (_REPO_ID.match(text) and not Path(text).exists())
    return True


def load_model(config: Any = None, weights: Optional[PathLike] = None, device="cpu",
               opts: Optional[Sequence[str]] = None, strict: bool = True, *, model: Optional[PathLike] = None):
    """``gemseg.load_model``: a ready GEM (eval mode) from a zoo name, weights file, Hub repo or config.

    ``gemseg.load_model("gem-tiny-gsds")``, ``gemseg.load_model("owner/repo")``,
    ``gemseg.load_model("gem-tiny", weights="model_final.pth")``, ``gemseg.load_model("gem-tiny")`` (random,
    warned), ``gemseg.load_model()`` (the bundled default). The first argument is taken as a config when it is a
    config node, a YAML file or a shipped config name, and as the model otherwise.
    """
    from gemseg.modeling.build import load_model as build_and_load

    if not _is_config(config):
        if model is not None or weights is not None:
            raise GemsegError(f"{config!r} names a model: pass a config as the first argument, or the model alone")
        config, model = None, config
    src = resolve_model(model, weights, config)
    if src.weights is not None and src.weights.suffix.lower() == ".onnx":
        raise GemsegError(f"{src.weights} is an ONNX graph: use GlassSegmentor.from_pretrained for ONNX Runtime")
    net = build_and_load(src.config, weights=src.weights, device=device, opts=opts, strict=strict)
    net.source = src.label
    return net
