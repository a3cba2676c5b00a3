"""Files on the Hugging Face Hub: download into the standard cache, find them there offline, verify, purge.

Everything goes through ``huggingface_hub`` (``hf_hub_download`` / ``try_to_load_from_cache``), so its cache
layout and settings apply unchanged: ``HF_HOME`` / ``HF_HUB_CACHE`` (where), ``HF_ENDPOINT`` (a mirror),
``HF_HUB_OFFLINE=1`` (no network), ``HF_TOKEN`` or ``hf auth login`` (private repos), its progress bars and its
retries with HTTP ranges when a connection drops mid-file. A file already in the cache is used without any network
call. A freshly downloaded file is verified by the caller's ``verify`` function; a file that fails is removed from
the cache (snapshot link and blob), so that the next run downloads it again instead of failing forever.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

from gemseg.errors import GemsegError

MODELS_DIR = Path(__file__).resolve().parents[1] / "assets" / "models"  # models bundled in the package
INSTALL_HINT = "pip install 'huggingface_hub>=0.23'"


def bundled_models() -> List[str]:
    """Names of the models shipped in ``gemseg/assets/models/<name>.safetensors``."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.stem for p in MODELS_DIR.glob("*.safetensors"))


def bundled_path(name: str) -> Optional[Path]:
    """The bundled file of model ``name``, or None."""
    path = MODELS_DIR / f"{name}.safetensors"
    return path if path.is_file() else None


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise GemsegError(f"downloading models needs the huggingface_hub package: {INSTALL_HINT}") from None
    return huggingface_hub


def file_url(repo_id: str, filename: str, revision: str = "main", repo_type: str = "model") -> str:
    """The file's download URL on the configured endpoint (``HF_ENDPOINT``)."""
    from huggingface_hub import constants

    prefix = "datasets/" if repo_type == "dataset" else "spaces/" if repo_type == "space" else ""
    return f"{constants.ENDPOINT}/{prefix}{repo_id}/resolve/{revision}/{filename}"


def cache_dir() -> str:
    """The Hub cache folder in use (``HF_HUB_CACHE``, default ``$HF_HOME/hub``)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return "(huggingface_hub not installed)"
    return str(constants.HF_HUB_CACHE)


def cached_file(repo_id: str, filename: str, revision: str = "main", repo_type: str = "model") -> Optional[Path]:
    """The file's path in the Hub cache, or None when it is not there (no network call)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, filename, revision=revision, repo_type=repo_type)
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


def purge_cached_file(path: Path) -> None:
    """Remove a cached file: its snapshot link, the blob it points to, and snapshot folders left empty."""
    path = Path(path)
    blob = path.resolve()
    for p in {path, blob}:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
    if "snapshots" not in path.parts:
        return
    folder = path.parent
    while folder.name != "snapshots":  # snapshots/<commit>/<sub-folders of the file name>, when left empty
        try:
            folder.rmdir()
        except OSError:
            break
        folder = folder.parent


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def not_available_message(label: str, repo_id: str, filename: str, revision: str, repo_type: str,
                          download_hint: str) -> str:
    from huggingface_hub import constants

    url = file_url(repo_id, filename, revision, repo_type)
    why = ("downloads are off (HF_HUB_OFFLINE=1)" if _offline()
           else f"the Hub ({constants.ENDPOINT}) cannot be reached")
    elsewhere = f"download {url} elsewhere and pass --weights PATH"
    return (f"{label}: {filename} is not in the Hugging Face cache ({cache_dir()}) and {why}; "
            + (f"{download_hint}or {elsewhere}" if download_hint else elsewhere))


def fetch(
    repo_id: str,
    filename: str,
    *,
    revision: str = "main",
    repo_type: str = "model",
    label: Optional[str] = None,
    size_bytes: Optional[int] = None,
    verify: Optional[Callable[[Path], None]] = None,
    download_hint: str = "",
    force: bool = False,
) -> Path:
    """Path of ``repo_id/filename`` in the Hub cache, downloading (and verifying) it when it is not there.

    ``verify(path)`` raises (typically :class:`GemsegError`) for a file that is not what it should be; the file is
    then removed from the cache and the error re-raised as one line. ``force`` downloads again even when cached.
    """
    label = label or f"{repo_id}/{filename}"
    if not force:
        hit = cached_file(repo_id, filename, revision, repo_type)
        if hit is not None:
            return hit
    hub = _hub()
    from huggingface_hub import utils as hf_utils

    url = file_url(repo_id, filename, revision, repo_type)
    size = f" ({format_size(size_bytes)})" if size_bytes else ""
    if not _offline():
        print(f"gemseg: downloading {label}{size} from {url} into {cache_dir()}", file=sys.stderr, flush=True)
    try:
        path = Path(hub.hf_hub_download(repo_id, filename, revision=revision, repo_type=repo_type,
                                        force_download=force and not _offline()))
    except (hf_utils.LocalEntryNotFoundError, hf_utils.OfflineModeIsEnabled):
        raise GemsegError(not_available_message(label, repo_id, filename, revision, repo_type,
                                                download_hint)) from None
    except hf_utils.EntryNotFoundError:
        raise GemsegError(f"{label}: the Hub has no file {filename} in {repo_id} (revision {revision}); "
                          f"{url} does not exist") from None
    except hf_utils.RevisionNotFoundError:
        raise GemsegError(f"{label}: revision {revision!r} not found in {repo_id}") from None
    except hf_utils.RepositoryNotFoundError:
        raise GemsegError(f"{label}: Hub repository {repo_id} not found, or it is private and no token is set "
                          "(HF_TOKEN or hf auth login)") from None
    except hf_utils.HfHubHTTPError as e:
        raise GemsegError(f"{label}: download of {url} failed: {_first_line(e)}") from None
    except (OSError, ValueError) as e:  # size consistency checks, disk full, dropped connection after retries
        raise GemsegError(f"{label}: download of {url} failed ({_first_line(e)}); run the command again to "
                          "retry") from None
    if verify is not None:
        try:
            verify(path)
        except Exception as e:  # whatever the reader raises, a file that does not load must not stay cached
            purge_cached_file(path)
            raise GemsegError(f"{label}: the file downloaded from {url} is not a usable checkpoint "
                              f"({_first_line(e)}); it was removed from the cache, so the next run downloads "
                              "it again") from None
    return path


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def format_size(n: Optional[int]) -> str:
    """Bytes → ``17.4 MB`` / ``1.23 GB`` (decimal units, as the Hub shows sizes)."""
    if not n:
        return "?"
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e8:
        return f"{n / 1e6:.0f} MB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.0f} kB"
