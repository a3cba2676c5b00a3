"""Input discovery for ``gem predict``: files, folders (optionally recursive), glob patterns, videos, cameras.

Each input becomes an :class:`InputItem` with the path its outputs are named after (``rel``): for a single file its
name, for a folder or a glob pattern the path relative to the folder (the pattern's non-wildcard leading folder).
The binary mask goes to ``OUTPUT/rel`` with the extension replaced by ``.png`` (a contract scripts rely on).
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple, Union

from gemseg.io.images import IMAGE_EXTENSIONS
from gemseg.io.video import VIDEO_EXTENSIONS

_CAMERA = re.compile(r"^(?:camera:|cam:)?(\d{1,2})$")


@dataclass
class InputItem:
    """One input: ``kind`` is "image", "video", "camera" or "missing" (a path that matched nothing)."""

    source: Union[Path, int]
    rel: Path
    kind: str
    root: Optional[Path] = None

    @property
    def display(self) -> str:
        return f"camera {self.source}" if self.kind == "camera" else str(self.source)

    def output(self, out_dir: Path, suffix: str = "", ext: str = ".png") -> Path:
        """``out_dir/rel`` with ``suffix`` appended to the stem and the extension replaced by ``ext``."""
        return out_dir / self.rel.parent / f"{self.rel.stem}{suffix}{ext}"


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    lead = []
    for p in parts:
        if _has_magic(p):
            break
        lead.append(p)
    return Path(*lead) if lead else Path(".")


def _is_hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _inside(path: Path, folder: Optional[Path]) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def kind_of(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_EXTENSIONS else "image"


def walk_folder(root: Path, recursive: bool, exclude: Optional[Path] = None) -> List[InputItem]:
    """Image files (by extension, case-insensitive) of a folder, sorted; hidden files/folders are ignored."""
    items = []
    if exclude is not None and not _inside(exclude, root):
        exclude = None  # only an output folder *below* the input root is skipped (not the root itself)
    elif exclude is not None and exclude == root.resolve():
        exclude = None
    it: Iterable[Path] = root.rglob("*") if recursive else root.iterdir()
    for p in it:
        rel = p.relative_to(root)
        if _is_hidden(rel) or not p.is_file() or p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if _inside(p, exclude):
            continue  # our own outputs when the output folder lies inside the input folder
        items.append(InputItem(p, rel, "image", root))
    return sorted(items, key=lambda i: str(i.rel))


def expand_inputs(inputs: List[str], recursive: bool = False, exclude: Optional[Path] = None) -> List[InputItem]:
    """Expand command-line inputs into items (in the order given; folder and glob contents sorted)."""
    exclude = exclude.resolve() if exclude is not None else None
    items: List[InputItem] = []
    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            items.extend(walk_folder(p, recursive, exclude))
        elif p.is_file() or (p.exists() and not p.is_dir()):
            items.append(InputItem(p, Path(p.name), kind_of(p)))
        elif _CAMERA.match(arg):
            idx = int(_CAMERA.match(arg).group(1))
            items.append(InputItem(idx, Path(f"camera{idx}"), "camera"))
        elif _has_magic(arg):
            root = _glob_root(arg)
            skip = exclude if exclude is not None and exclude != root.resolve() else None
            matches = sorted(Path(m) for m in glob.glob(arg, recursive=True))
            found = [m for m in matches if m.is_file() and not _is_hidden(m.relative_to(root))
                     and not _inside(m, skip)]
            if not found:
                items.append(InputItem(p, Path(p.name), "missing"))
            for m in found:
                items.append(InputItem(m, m.relative_to(root), kind_of(m), root))
        else:
            items.append(InputItem(p, Path(p.name), "missing"))
    return items


def input_paths(items: List[InputItem]) -> set:
    """Resolved paths of all file inputs (outputs must never land on one)."""
    return {os.path.realpath(i.source) for i in items if isinstance(i.source, Path)}


def find_collisions(claims: List[Tuple[InputItem, List[Path]]]) -> dict:
    """Items whose output paths were already claimed by an earlier item: {id(item): (path, earlier item)}."""
    owner = {}
    bad = {}
    for item, paths in claims:
        for path in paths:
            key = os.path.normcase(os.path.abspath(path))
            if key in owner and owner[key] is not item:
                bad[id(item)] = (path, owner[key])
                break
        else:
            for path in paths:
                owner[os.path.normcase(os.path.abspath(path))] = item
    return bad
