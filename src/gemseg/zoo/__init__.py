"""The gemseg model zoo: named models (bundled or on the Hugging Face Hub), one resolution rule, sharing.

::

    from gemseg import zoo
    zoo.list_models()                 # ['gem-base-gsds', 'gem-base-sgsd-20k', ..., 'gem-tiny-gsds', 'mobile-sam', ...]
    zoo.get_entry("gem-tiny-gsds")    # architecture, Hub file, size, licence, paper metrics
    zoo.model_status("gem-tiny-gsds") # 'bundled' | 'cached' | 'not downloaded'
    zoo.local_models()                # models usable offline right now
    zoo.download("gem-tiny-gsds")     # into the standard Hugging Face cache (verified)
    zoo.save_pretrained(model, "my-model/"); zoo.push_to_hub("my-model/", "me/gem-tiny-office")

See docs/model_zoo.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

from gemseg.zoo.registry import DEFAULT_MODEL, REGISTRY, ZooEntry
from gemseg.zoo.resolve import (ModelSource, get_entry, load_model, local_models, model_names, model_status,
                                resolve_model)

__all__ = ["DEFAULT_MODEL", "ZooEntry", "ModelSource", "list_models", "get_entry", "model_status", "local_models",
           "download", "resolve_model", "load_model", "save_pretrained", "push_to_hub"]


def list_models() -> List[str]:
    """Every zoo name (bundled and Hub models, and the backbone initialisations for training)."""
    return model_names()


def download(name: str, force: bool = False) -> Path:
    """Fetch zoo model ``name`` into the Hugging Face cache (verified) and return its path; bundled models
    return their packaged file. ``force`` downloads again even when cached."""
    from gemseg.zoo.resolve import entry_path

    return entry_path(get_entry(name), force=force)


def __getattr__(name):  # sharing pulls in the model code: import it on first use
    if name in ("save_pretrained", "push_to_hub"):
        from gemseg.zoo import pretrained

        return getattr(pretrained, name)
    raise AttributeError(f"module 'gemseg.zoo' has no attribute {name!r}")
