"""The demo's models: which ones it offers, and one loaded ``GlassSegmentor`` per model, shared by all users.

A model is loaded once (under a lock, so two users choosing it at the same moment do not load it twice) and kept
in a small least-recently-used cache; per-request options (flip TTA, threshold) do not reload anything: they wrap
the cached network runner in a light :class:`~gemseg.inference.GlassSegmentor` of their own.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from gemseg.zoo import DEFAULT_MODEL, local_models  # noqa: F401 - DEFAULT_MODEL is the demo's default too


@dataclass(frozen=True)
class ModelSpec:
    """What to load: a zoo/bundled model name, or a weights file with an optional config."""

    name: Optional[str] = None
    weights: Optional[str] = None
    config: Optional[str] = None

    @property
    def label(self) -> str:
        """The name shown in the model menu."""
        if self.name:
            return self.name
        if self.weights:
            return Path(self.weights).name
        return f"{self.config} (random init)"


def load_segmentor(spec: ModelSpec, device: str = "auto"):
    """Load the ``GlassSegmentor`` of ``spec`` exactly as ``gem predict`` does (argmax mask, no TTA)."""
    from gemseg.inference import GlassSegmentor

    source = spec.name if spec.name else spec.weights
    return GlassSegmentor.from_pretrained(source, config=spec.config, device=device)


def with_options(base, tta: bool = False, threshold: Optional[float] = None):
    """A ``GlassSegmentor`` sharing ``base``'s loaded network, with its own flip TTA and threshold.

    ``threshold`` None or 0.5 gives the official argmax mask (what ``gem predict`` writes by default).
    """
    from gemseg.inference import GlassSegmentor

    if threshold is not None and abs(float(threshold) - 0.5) < 1e-9:
        threshold = None
    seg = GlassSegmentor(base.runner, tta=tta, threshold=threshold, batch_size=base.batch_size, resize=base.resize)
    seg.source, seg.random_init = base.source, base.random_init
    return seg


class SegmentorCache:
    """Loaded segmentors by menu label, at most ``capacity`` at once (least recently used dropped first).

    ``specs`` maps each label of the model menu to what it loads; ``loader`` builds a segmentor from a spec
    (tests pass a counting one).
    """

    def __init__(self, specs: "OrderedDict[str, ModelSpec]", device: str = "auto", capacity: int = 2,
                 loader: Callable = load_segmentor):
        self.specs = OrderedDict(specs)
        self.device = device
        self.capacity = max(1, int(capacity))
        self.loader = loader
        self._loaded: "OrderedDict[str, object]" = OrderedDict()
        self._lock = threading.Lock()

    @property
    def labels(self) -> List[str]:
        return list(self.specs)

    def get(self, label: str):
        """The loaded segmentor of ``label`` (loading it on first use)."""
        from gemseg.demo.handlers import DemoInputError

        if label not in self.specs:
            raise DemoInputError(f"Unknown model {label!r}; choose one of: {', '.join(self.specs)}.")
        with self._lock:  # one load at a time: concurrent first requests wait for the same load
            if label in self._loaded:
                self._loaded.move_to_end(label)
                return self._loaded[label]
            while len(self._loaded) >= self.capacity:
                self._loaded.popitem(last=False)
            seg = self.loader(self.specs[label], device=self.device)
            self._loaded[label] = seg
            return seg

    def loaded(self) -> List[str]:
        with self._lock:
            return list(self._loaded)


def model_menu(default: ModelSpec) -> "OrderedDict[str, ModelSpec]":
    """The model menu: ``default`` first, then every zoo model available offline."""
    specs: "OrderedDict[str, ModelSpec]" = OrderedDict([(default.label, default)])
    for name in local_models():  # zoo models usable offline (bundled or downloaded)
        specs.setdefault(name, ModelSpec(name=name))
    return specs
