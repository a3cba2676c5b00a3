"""Dataset layouts: find image/mask pairs on disk and decode masks to (glass, ignore).

One module for every command: ``gem eval`` and the trainer resolve ``--dataset`` / ``DATASETS.*`` through
:func:`resolve_dataset`, and the synthesis engine writes a layout this module reads.

Layouts (``layout=`` name, or auto-detected from the folder):

==============  ==========================================================================  =================
name            folders                                                                      mask encoding
==============  ==========================================================================  =================
``gsd-s``       ``images/{training,validation}/*.jpg`` + ``annotations_zero_one/<split>/*.png``   ``zero_one``
                (the official GEM layout; ``annotations/`` is accepted as a fallback)             (``auto`` for
                                                                                                  ``annotations/``)
``sgsd``        our synthetic S-GSD output: the same folders as ``gsd-s``                          ``zero_one``
``gsd``         ``{train,test}/{image|images}`` + ``{train,test}/{mask|masks}``                  ``auto``
``gdd``         ``{train,test}/{image|images}`` + ``{train,test}/{mask|masks}``                  ``auto``
``trans10k``    ``{train,validation,test}/{images,masks}`` (or ``<split>/{easy,hard}/...``);       ``trans10k``
                masks are ``<stem>_mask.png``; ``test_easy`` / ``test_hard`` are accepted
``realdata``    ``images/*.jpg`` + ``masks/*.png`` (``../shared/realdata/<set>``)                 ``auto``
``generic``     explicit ``images=DIR, masks=DIR`` (``masks`` alone for prediction scoring)       ``auto``
==============  ==========================================================================  =================

The official dataset names ``ade20k_sem_seg_train`` / ``ade20k_sem_seg_val`` resolve, as in the official code
(detectron2 ``builtin.py``), to ``$DETECTRON2_DATASETS/images/{training,validation}`` +
``$DETECTRON2_DATASETS/annotations_zero_one/{training,validation}``; ``DETECTRON2_DATASETS`` defaults to
``datasets`` (relative to the working directory).

Pairing: images and masks are paired by their path relative to the image / mask folder without the extension
(like detectron2's ``load_sem_seg``), falling back to the bare stem when sub-folders differ; a mask stem may carry
a ``_mask`` suffix (Trans10K). Files without a partner are kept in ``Dataset.unpaired_images`` /
``Dataset.unpaired_masks`` and summarised by :meth:`Dataset.pairing_report`.

Mask decoding (:func:`decode_mask`), by encoding:

* ``zero_one`` (official): 0 = background, 1 = glass, 255 = ignore. Any other value is an error: a 0/255 mask in
  an ``annotations_zero_one`` folder would silently turn all glass into "ignore" in the official code, so we refuse
  values outside {0, 1, 255} instead of guessing.
* ``binary``: 8-bit grey, glass = value > 127 (the official evaluators binarise ``gt/255 > 0.5``); no ignore.
* ``trans10k``: colour-coded RGB (black = background, red (255,0,0) = "things", white = "stuff"); both transparent
  classes are glass: glass = any channel > 127.
* ``auto`` (default for every other layout), decided per mask from its values:

  - values ⊆ {0, 1}: 1 = glass (0/1 label maps, including palette PNGs whose indices are 0/1);
  - values ⊆ {0, 1, 255} with both 1 and 255 present: the official 0/1/255 encoding (255 = ignore);
  - colour (H×W×3, channels differ): glass = any channel > 127 (black is background; Trans10K-style);
  - otherwise (0/255 or anti-aliased grey, palette indices above 1): glass = value > 127, no ignore.

Palette PNGs are decoded by their *indices* (``gemseg.io.read_mask`` keeps indices), so a palette mask with
index 1 = glass works under ``auto``/``zero_one``. 16-bit masks: 65535-scale masks are handled as grey (value >
32767) when their maximum exceeds 255.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from gemseg.errors import GemsegError
from gemseg.io import IMAGE_EXTENSIONS, read_mask

PathLike = Union[str, os.PathLike]

LAYOUTS = ("gsd-s", "sgsd", "gsd", "gdd", "trans10k", "realdata", "generic")
ENCODINGS = ("auto", "zero_one", "binary", "trans10k")
OFFICIAL_NAMES = {"ade20k_sem_seg_train": "training", "ade20k_sem_seg_val": "validation"}

# Mask files: lossless formats only (a JPEG mask would be anti-aliased noise; it is still accepted as an image).
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".gif", ".pgm", ".npy")
# Suffixes some datasets append to the mask stem (Trans10K: ``1_mask.png`` for ``1.jpg``).
MASK_STEM_SUFFIXES = ("_mask", "-mask", "_gt", "-gt")

# Split aliases: the first existing folder wins. "val"/"test" map to the official GSD-S "validation" split (which
# *is* the GSD-S test set) and vice versa, so ``--split test`` works on every layout.
_SPLIT_ALIASES = {
    "train": ("train", "training"),
    "training": ("training", "train"),
    "val": ("val", "validation", "test"),
    "validation": ("validation", "val", "test"),
    "test": ("test", "validation", "val", "testing"),
    "testing": ("testing", "test", "validation"),
}
_DEFAULT_EVAL_SPLIT = {"gsd-s": "validation", "sgsd": "validation", "gsd": "test", "gdd": "test", "trans10k": "test"}
_IMAGE_DIR_NAMES = ("images", "image", "imgs", "img")
_MASK_DIR_NAMES = ("masks", "mask", "gt", "GT", "labels", "annotations")


class DatasetError(GemsegError):
    """A dataset cannot be found or understood (missing folders, no pairs, unknown layout)."""


class MaskDecodeError(GemsegError):
    """A mask's values do not fit the declared encoding."""

    def __init__(self, path: PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode mask {self.path}: {reason}")


@dataclass(frozen=True)
class Sample:
    """One image/mask pair. ``image`` is ``None`` for masks-only datasets (scoring saved predictions)."""

    key: str  # relative path without extension, '/'-separated; unique within a dataset
    image: Optional[Path]
    mask: Path
    encoding: str = "auto"


@dataclass
class Dataset:
    """A resolved list of samples plus what could not be paired."""

    name: str
    layout: str
    split: Optional[str]
    root: Optional[Path]
    samples: List[Sample]
    encoding: str = "auto"
    unpaired_images: List[Path] = field(default_factory=list)
    unpaired_masks: List[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def load_mask_binary(self, sample: Sample) -> Tuple[np.ndarray, np.ndarray]:
        """``(glass, ignore)`` boolean H×W arrays of ``sample`` (see :func:`decode_mask`)."""
        return load_mask_binary(sample)

    def describe(self) -> str:
        """One line: name, layout, split, pair count."""
        split = f", split {self.split}" if self.split else ""
        return f"{self.name} (layout {self.layout}{split}): {len(self.samples)} pairs"

    def pairing_report(self, limit: int = 5) -> str:
        """Human-readable summary of unpaired files (empty string when everything paired)."""
        lines = []
        for what, files in (("images without a mask", self.unpaired_images), ("masks without an image",
                                                                                self.unpaired_masks)):
            if files:
                shown = ", ".join(str(p) for p in files[:limit])
                more = f" (+{len(files) - limit} more)" if len(files) > limit else ""
                lines.append(f"{len(files)} {what}: {shown}{more}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# mask decoding


def decode_mask(raw: np.ndarray, encoding: str = "auto", path: PathLike = "<array>") -> Tuple[np.ndarray, np.ndarray]:
    """Decode a raw label array (from :func:`gemseg.io.read_mask`) to ``(glass, ignore)`` boolean H×W arrays.

    The rules per ``encoding`` are in the module docstring. Raises :class:`MaskDecodeError` for values that do not
    fit the declared encoding.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown mask encoding {encoding!r}; expected one of {ENCODINGS}")
    raw = np.asarray(raw)
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[..., 0]
    if raw.ndim == 3:
        if raw.shape[2] < 3:
            raise MaskDecodeError(path, f"unsupported mask shape {raw.shape}")
        rgb = raw[..., :3]
        if encoding == "zero_one":
            raise MaskDecodeError(path, "colour mask where the layout expects single-channel 0/1/255 labels")
        # colour-coded (Trans10K) or a colour mask under binary/auto: non-black = glass.
        glass = (rgb > 127).any(axis=2)
        return glass, np.zeros(glass.shape, dtype=bool)
    if raw.ndim != 2:
        raise MaskDecodeError(path, f"unsupported mask shape {raw.shape}")
    if raw.dtype == np.bool_:
        return raw.copy(), np.zeros(raw.shape, dtype=bool)
    if np.issubdtype(raw.dtype, np.floating):
        raise MaskDecodeError(path, "floating-point masks are not label images")
    vmax = int(raw.max(initial=0))
    big = vmax > 255  # 16-bit masks
    if encoding == "zero_one":
        bad = (raw != 0) & (raw != 1) & (raw != 255)
        if bad.any():
            vals = np.unique(raw[bad])[:5].tolist()
            raise MaskDecodeError(path, f"values {vals} outside the 0/1/255 encoding of this layout "
                                        "(a 0/255 mask? use layout 'generic' or encoding 'binary')")
        return raw == 1, raw == 255
    if encoding in ("binary", "trans10k"):
        thr = 32767 if big else 127
        return raw > thr, np.zeros(raw.shape, dtype=bool)
    # auto
    if vmax <= 1:
        return raw == 1, np.zeros(raw.shape, dtype=bool)
    if vmax == 255:
        # cheap membership test for the official 0/1/255 encoding: only these three values, with 1 present
        counts = np.bincount(raw.ravel().astype(np.intp, copy=False), minlength=256) if raw.dtype == np.uint8 else None
        if counts is not None and counts[1] > 0 and counts[2:255].sum() == 0:
            return raw == 1, raw == 255
    thr = 32767 if big else 127
    return raw > thr, np.zeros(raw.shape, dtype=bool)


def load_mask_binary(sample: Union[Sample, PathLike], encoding: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Read and decode a mask: ``(glass, ignore)`` boolean H×W arrays.

    ``sample`` is a :class:`Sample` (its ``encoding`` is used unless ``encoding`` is given) or a path (``auto``).
    ``.npy`` masks are loaded with numpy (bool or integer labels). Raises ``ImageReadError`` / ``MaskDecodeError``.
    """
    if isinstance(sample, Sample):
        path, enc = sample.mask, encoding or sample.encoding
    else:
        path, enc = Path(sample), encoding or "auto"
    if Path(path).suffix.lower() == ".npy":
        try:
            raw = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise MaskDecodeError(path, str(e)) from None
    else:
        raw = read_mask(path)
    return decode_mask(raw, enc, path)


# ----------------------------------------------------------------------------------------------------------------
# file listing and pairing


def _list_files(folder: Path, extensions: Sequence[str]) -> Dict[str, Path]:
    """Map relative path without extension ('/'-separated) → file, recursively; hidden files skipped."""
    out: Dict[str, Path] = {}
    exts = tuple(e.lower() for e in extensions)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith(".") or not fn.lower().endswith(exts):
                continue
            p = Path(dirpath) / fn
            rel = p.relative_to(folder).with_suffix("").as_posix()
            if rel in out:
                # two files with the same stem (e.g. a.jpg and a.png): keep the first in sorted order, but
                # prefer a lossless format for masks — sorted() already puts .jpg before .png, so be explicit.
                if Path(out[rel]).suffix.lower() in (".jpg", ".jpeg") and p.suffix.lower() not in (".jpg", ".jpeg"):
                    out[rel] = p
                continue
            out[rel] = p
    return out


def _strip_mask_suffix(key: str) -> str:
    for suf in MASK_STEM_SUFFIXES:
        if key.endswith(suf) and len(key) > len(suf):
            return key[: -len(suf)]
    return key


def pair_files(image_dir: PathLike, mask_dir: PathLike,
               mask_extensions: Sequence[str] = MASK_EXTENSIONS) -> Tuple[List[Tuple[str, Path, Path]], List[Path], List[Path]]:
    """Pair images and masks by relative path without extension (then by bare stem, then with ``_mask`` removed).

    Returns ``(pairs, unpaired_images, unpaired_masks)`` where ``pairs`` holds ``(key, image, mask)`` sorted by key.
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    images = _list_files(image_dir, IMAGE_EXTENSIONS)
    masks = _list_files(mask_dir, mask_extensions)
    pairs: Dict[str, Tuple[Path, Path]] = {}
    left_masks = dict(masks)
    # 1) exact relative key
    for key, img in images.items():
        if key in left_masks:
            pairs[key] = (img, left_masks.pop(key))
    # 2) normalised keys for the rest: bare stem, and the stem with a mask suffix removed
    def norm(k: str) -> str:
        return _strip_mask_suffix(k.rsplit("/", 1)[-1])

    by_norm: Dict[str, List[str]] = {}
    for k in left_masks:
        by_norm.setdefault(norm(k), []).append(k)
    for key, img in images.items():
        if key in pairs:
            continue
        cands = by_norm.get(key.rsplit("/", 1)[-1], [])
        cands = [c for c in cands if c in left_masks]
        if len(cands) == 1:  # ambiguous stems (same name in two sub-folders) are not guessed
            pairs[key] = (img, left_masks.pop(cands[0]))
    unpaired_images = [p for k, p in images.items() if k not in pairs]
    out = [(k, pairs[k][0], pairs[k][1]) for k in sorted(pairs)]
    return out, unpaired_images, sorted(left_masks.values())


def _find_child(folder: Path, names: Sequence[str]) -> Optional[Path]:
    for n in names:
        p = folder / n
        if p.is_dir():
            return p
    return None


def _resolve_split_dir(root: Path, split: str, parent_names: Sequence[str] = ()) -> Optional[str]:
    """Name of the first existing folder among ``split``'s aliases (under ``root/<parent>`` if given)."""
    for cand in _SPLIT_ALIASES.get(split, (split,)):
        bases = [root / p for p in parent_names] if parent_names else [root]
        if any((b / cand).is_dir() for b in bases):
            return cand
    return None


# ----------------------------------------------------------------------------------------------------------------
# layout readers


def _from_dirs(name: str, layout: str, split: Optional[str], root: Optional[Path], image_dir: Optional[Path],
               mask_dir: Path, encoding: str) -> Dataset:
    if not mask_dir.is_dir():
        raise DatasetError(f"mask folder not found: {mask_dir}")
    if image_dir is None:  # masks only
        masks = _list_files(mask_dir, MASK_EXTENSIONS)
        samples = [Sample(k, None, p, encoding) for k, p in sorted(masks.items())]
        return Dataset(name, layout, split, root, samples, encoding)
    if not image_dir.is_dir():
        raise DatasetError(f"image folder not found: {image_dir}")
    pairs, ui, um = pair_files(image_dir, mask_dir)
    samples = [Sample(k, i, m, encoding) for k, i, m in pairs]
    return Dataset(name, layout, split, root, samples, encoding, ui, um)


def _read_gsds(root: Path, split: Optional[str], layout: str, name: str) -> Dataset:
    split = split or _DEFAULT_EVAL_SPLIT[layout]
    sdir = _resolve_split_dir(root, split, ("images",))
    if sdir is None:
        raise DatasetError(f"{root}: no images/{split} folder (layout {layout}; splits are 'training' and "
                           "'validation')")
    ann = root / "annotations_zero_one"
    encoding = "zero_one"
    if not ann.is_dir() and (root / "annotations").is_dir():
        # the official README's layout: the masks may be 0/255 there, so decode them by their values
        ann, encoding = root / "annotations", "auto"
    return _from_dirs(name, layout, sdir, root, root / "images" / sdir, ann / sdir, encoding)


def _read_split_folders(root: Path, split: Optional[str], layout: str, name: str) -> Dataset:
    """``<root>/<split>/{image(s),mask(s)}`` (GSD, GDD, Trans10K, RGBD-GSD); Trans10K easy/hard sub-splits merged."""
    split = split or _DEFAULT_EVAL_SPLIT.get(layout, "test")
    encoding = "trans10k" if layout == "trans10k" else "auto"
    sub = None
    if split in ("test_easy", "test_hard", "validation_easy", "validation_hard") and not (root / split).is_dir():
        split, sub = split.rsplit("_", 1)
    sdir = _resolve_split_dir(root, split)
    if sdir is None:
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise DatasetError(f"{root}: no '{split}' split folder (found: {', '.join(found) or 'nothing'})")
    base = root / sdir
    parts = [base / sub] if sub else [base]
    if sub is None and _find_child(base, _IMAGE_DIR_NAMES) is None:
        parts = [p for p in (base / "easy", base / "hard") if p.is_dir()] or parts
    samples: List[Sample] = []
    ui: List[Path] = []
    um: List[Path] = []
    for part in parts:
        idir, mdir = _find_child(part, _IMAGE_DIR_NAMES), _find_child(part, _MASK_DIR_NAMES)
        if idir is None or mdir is None:
            raise DatasetError(f"{part}: expected an image(s)/ and a mask(s)/ folder")
        prefix = f"{part.name}/" if part != base else ""
        pairs, a, b = pair_files(idir, mdir)
        samples += [Sample(prefix + k, i, m, encoding) for k, i, m in pairs]
        ui += a
        um += b
    label = sdir + (f"_{sub}" if sub else "")
    return Dataset(name, layout, label, root, samples, encoding, ui, um)


def _detect_layout(root: Path) -> str:
    """Guess the layout of ``root`` from its folders (see the module docstring)."""
    if (root / "annotations_zero_one").is_dir() or ((root / "annotations").is_dir() and (root / "images").is_dir()
                                                    and _resolve_split_dir(root, "training", ("images",))):
        # `gem synth` writes the same folders plus its settings file
        return "sgsd" if (root / "synth_info.json").is_file() else "gsd-s"
    if _find_child(root, _IMAGE_DIR_NAMES) and _find_child(root, _MASK_DIR_NAMES):
        return "realdata"
    splits = [d for d in ("train", "training", "test", "validation", "val", "test_easy", "test_hard")
              if (root / d).is_dir()]
    if splits:
        if any(s in ("test_easy", "test_hard") for s in splits):
            return "trans10k"
        for s in splits:
            mdir = _find_child(root / s, _MASK_DIR_NAMES)
            if mdir is not None and next(iter(sorted(mdir.glob("*_mask.png"))), None) is not None:
                return "trans10k"
            if (root / s / "easy").is_dir():
                return "trans10k"
        return "gsd" if "gsd" in root.name.lower() else "gdd"
    raise DatasetError(
        f"cannot recognise the dataset layout of {root}: expected images/ + masks/, "
        "images/<split>/ + annotations_zero_one/<split>/ (GSD-S), or <split>/{images,masks}/ (GDD, GSD, Trans10K); "
        f"pass layout=... / --layout one of {', '.join(LAYOUTS)}")


def detectron2_datasets_root() -> Path:
    """``$DETECTRON2_DATASETS`` (default ``datasets``), as the official ``builtin.py`` resolves it."""
    return Path(os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets")))


def resolve_dataset(name_or_path: Optional[PathLike] = None, split: Optional[str] = None,
                    layout: Optional[str] = None, *, images: Optional[PathLike] = None,
                    masks: Optional[PathLike] = None, encoding: Optional[str] = None) -> Dataset:
    """Resolve a dataset name or folder to a :class:`Dataset`.

    Args:
        name_or_path: an official name (``ade20k_sem_seg_train`` / ``ade20k_sem_seg_val``, resolved under
            ``$DETECTRON2_DATASETS``) or a dataset folder. May be ``None`` with ``images``/``masks`` (generic).
        split: split name (``training``/``train``, ``validation``/``val``/``test``, Trans10K ``test_easy`` …);
            ``None`` picks the evaluation split of the layout (GSD-S: ``validation``; GDD/GSD/Trans10K: ``test``).
            Ignored for official names (they fix the split) and flat layouts.
        layout: one of :data:`LAYOUTS`; ``None`` auto-detects.
        images, masks: explicit folders (layout ``generic``); ``images`` may be ``None`` to list masks only.
        encoding: override the layout's mask encoding (one of :data:`ENCODINGS`).

    Raises :class:`DatasetError` with a message saying what was expected.
    """
    if encoding is not None and encoding not in ENCODINGS:
        raise DatasetError(f"unknown mask encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    if layout is not None and layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")

    def enc(ds: Dataset) -> Dataset:
        if encoding is not None:
            ds.encoding = encoding
            ds.samples = [Sample(s.key, s.image, s.mask, encoding) for s in ds.samples]
        return ds

    if masks is not None or (layout == "generic"):
        if masks is None:
            raise DatasetError("layout 'generic' needs a mask folder (--masks DIR)")
        mdir = Path(masks)
        idir = Path(images) if images is not None else None
        return enc(_from_dirs(str(mdir), "generic", None, None, idir, mdir, "auto"))
    if name_or_path is None:
        raise DatasetError("no dataset given: pass a dataset folder or name, or --images DIR --masks DIR")

    key = str(name_or_path)
    if key in OFFICIAL_NAMES:
        root = detectron2_datasets_root()
        if not root.is_dir():
            raise DatasetError(f"official dataset {key}: DETECTRON2_DATASETS folder {root} not found "
                               "(set DETECTRON2_DATASETS to the folder holding images/ and annotations_zero_one/)")
        return enc(_read_gsds(root, OFFICIAL_NAMES[key], layout if layout in ("gsd-s", "sgsd") else "gsd-s", key))

    root = Path(name_or_path)
    if not root.exists():
        raise DatasetError(f"dataset not found: {root} (not a folder, and not one of {', '.join(OFFICIAL_NAMES)})")
    if not root.is_dir():
        raise DatasetError(f"dataset must be a folder: {root}")
    layout = layout or _detect_layout(root)
    if layout in ("gsd-s", "sgsd"):
        return enc(_read_gsds(root, split, layout, str(root)))
    if layout in ("gsd", "gdd", "trans10k"):
        return enc(_read_split_folders(root, split, layout, str(root)))
    # realdata / generic given as a folder: images/ + masks/
    idir, mdir = _find_child(root, _IMAGE_DIR_NAMES), _find_child(root, _MASK_DIR_NAMES)
    if mdir is None:
        raise DatasetError(f"{root}: no masks/ folder (layout {layout})")
    return enc(_from_dirs(str(root), layout, None, root, idir, mdir, "auto"))


def masks_only(mask_dir: PathLike, encoding: str = "auto") -> Dataset:
    """A masks-only dataset (``Sample.image`` is ``None``): the GT side of ``gem eval --gt-dir``."""
    mdir = Path(mask_dir)
    if mdir.is_dir() and not _list_files_shallow_has_masks(mdir):
        child = _find_child(mdir, _MASK_DIR_NAMES)
        if child is not None:  # a flat dataset root (images/ + masks/) given as --gt-dir: use its masks/
            mdir = child
        else:
            # a split layout's root would be scanned recursively and mix splits: ask for --dataset instead
            try:
                layout = _detect_layout(mdir)
            except DatasetError:
                layout = None
            if layout is not None:
                raise DatasetError(f"{mdir} looks like a {layout} dataset folder, not a mask folder: pass it as "
                                   "--dataset (with --split), or give the split's mask folder as --gt-dir")
    return _from_dirs(str(mdir), "generic", None, None, None, mdir, encoding)


def _list_files_shallow_has_masks(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in MASK_EXTENSIONS for p in folder.iterdir())
