"""Writing a synthetic dataset in the official GSD-S layout: resumable, multi-process, deterministic.

Layout (what ``DETECTRON2_DATASETS=DIR`` and ``gemseg.data`` read)::

    DIR/images/{training,validation}/<stem>.jpg
    DIR/annotations_zero_one/{training,validation}/<stem>.png   # 8-bit, 0 = background, 1 = glass, 255 = ignore
    DIR/preview/{training,validation}/<stem>.png                # optional, 0/255 (ignore shown as 128)
    DIR/manifest.jsonl                                           # one JSON object per image, sorted by index
    DIR/synth_info.json                                          # the run's settings (checked when resuming)

Image ``i`` is a pure function of ``(seed, i)`` and the engine settings: its own seed is derived with
``numpy.random.SeedSequence([seed, i])``, its split from ``i`` and the validation fraction, so the files are
byte-identical whatever the number of workers and whichever images already existed.

Shards (``gem synth --shard K/N``, ``WriteOptions.shard``): shard ``K`` of ``N`` (0-based) makes the images whose
index ``i`` has ``i mod N == K`` (round robin, so every shard gets an even share of any prefix and of both splits).
Shards write into one tree without clashing: images have distinct names, ``synth_info.json`` has the same content
for all of them, and each shard keeps its own manifest part (``manifest.part-K-of-N.jsonl``, and a
``.manifest.partial.part-K-of-N.jsonl`` while it runs). The shard that finds all ``N`` parts present when it
finishes merges them into ``manifest.jsonl`` and removes the parts (:func:`merge_shards`, also ``gem synth
--merge DIR``), so the finished tree is byte-identical to the unsharded run with the same seed.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image

from gemseg.io import atomic_path, write_mask
from gemseg.synthesis.errors import SynthError

GSD_S_TRAIN_IMAGES = 3911  # GSD-S training split; S-GSD-kx = k generated variants per training image
SCALES = {"1x": 1, "5x": 5, "10x": 10, "20x": 20}
STEM_PREFIX = "synth_"
STEM_RE = re.compile(r"^synth_\d{7,}$")
MANIFEST = "manifest.jsonl"
PARTIAL_MANIFEST = ".manifest.partial.jsonl"
PART_RE = re.compile(r"^manifest\.part-(\d+)-of-(\d+)\.jsonl$")
TEMP_RE = re.compile(r"^\.synth_(\d{7,})\..*\.tmp")  # a temporary of atomic_path, see _clean_temporaries
INFO = "synth_info.json"
SPLITS = ("training", "validation")



def images_for_scale(scale: str) -> int:
    """Number of images of an S-GSD scale name (``1x`` = 3,911 = the GSD-S training split)."""
    if scale not in SCALES:
        raise SynthError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    return SCALES[scale] * GSD_S_TRAIN_IMAGES


def stem_of(index: int) -> str:
    return f"{STEM_PREFIX}{index:07d}"


def split_of(index: int, val_fraction: float) -> str:
    """``validation`` for an evenly spread ``val_fraction`` of indices (exact count over any prefix), else
    ``training``. Depends only on the index, so growing a dataset never moves existing images between splits."""
    if val_fraction <= 0:
        return "training"
    return "validation" if math.floor((index + 1) * val_fraction) > math.floor(index * val_fraction) else "training"


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` in a run seeded ``seed`` (independent streams via ``SeedSequence``)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


def relpaths(stem: str, split: str) -> Dict[str, str]:
    return {
        "image": f"images/{split}/{stem}.jpg",
        "mask": f"annotations_zero_one/{split}/{stem}.png",
        "preview": f"preview/{split}/{stem}.png",
    }


def estimate_bytes(width: int, height: int, n: int, preview: bool) -> int:
    """Rough upper estimate of the disk space ``n`` images need (JPEG q90 of busy scenes ≈ 0.12 byte/px/channel,
    label PNGs ≈ 0.03 byte/px), plus slack for the manifest."""
    per = width * height * 3 * 0.12 + width * height * 0.03 * (2 if preview else 1) + 2048
    return int(per * n * 1.1) + (16 << 20)


def check_disk_space(root: Path, needed: int) -> None:
    """Fail early (before writing anything) if the file system holding ``root`` lacks ``needed`` bytes."""
    probe = root
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise SynthError(f"not enough disk space in {probe}: this run needs about {needed / 2**30:.2f} GiB, "
                         f"{free / 2**30:.2f} GiB free (use fewer images or a smaller --size)")


@dataclass
class WriteOptions:
    """How to write a run (the engine decides what each image looks like)."""

    output: Path
    num_images: int
    seed: int = 0
    val_fraction: float = 0.0
    workers: int = 1
    skip_existing: bool = False
    overwrite: bool = False
    preview_masks: bool = False
    jpeg_quality: int = 90
    progress: bool = True
    check_space: bool = True
    shard: Optional[Tuple[int, int]] = None  # (K, N): make only the images i with i mod N == K


def parse_shard(text: str) -> Tuple[int, int]:
    """``"K/N"`` (0 <= K < N) → ``(K, N)``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise SynthError(f"--shard must look like K/N with 0 <= K < N (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def in_shard(index: int, shard: Optional[Tuple[int, int]]) -> bool:
    return shard is None or index % shard[1] == shard[0]


def part_name(shard: Tuple[int, int]) -> str:
    """The manifest part of a shard (merged into ``manifest.jsonl`` once all parts exist)."""
    return f"manifest.part-{shard[0]}-of-{shard[1]}.jsonl"


def partial_name(shard: Optional[Tuple[int, int]]) -> str:
    """The file a run appends finished records to while it runs (one per shard: shards never share a file)."""
    return PARTIAL_MANIFEST if shard is None else f".manifest.partial.part-{shard[0]}-of-{shard[1]}.jsonl"


# ----------------------------------------------------------------------------------------------------------------
# workers

_ENGINE = None


def build_engine(spec: Tuple[str, object]):
    """Instantiate an engine from a picklable ``(name, options)`` spec."""
    name, options = spec
    if name == "procedural":
        from gemseg.synthesis.procedural import ProceduralEngine

        return ProceduralEngine(options)
    if name == "diffusion":
        from gemseg.synthesis.diffusion import DiffusionEngine

        return DiffusionEngine(options)
    raise SynthError(f"unknown engine {name!r}")


def _init_worker(spec) -> None:
    global _ENGINE
    import cv2

    # One process per core: OpenCV's own thread pool would only oversubscribe the machine.
    cv2.setNumThreads(1)
    _ENGINE = build_engine(spec)


def _work(task) -> Optional[Dict]:
    return render_and_write(_ENGINE, *task)


def render_and_write(engine, root: str, index: int, seed: int, split: str, preview: bool, quality: int
                     ) -> Optional[Dict]:
    """Render image ``index`` and write its files atomically; returns its manifest record (``None`` if the engine
    rejected it, e.g. by the CLIP filter)."""
    stem = stem_of(index)
    s = image_seed(seed, index)
    out = engine.render(s, index=index)
    if out is None:
        return None
    image, label, params = out
    if image.shape[:2] != label.shape or image.dtype != np.uint8 or label.dtype != np.uint8:
        raise RuntimeError(f"engine returned inconsistent arrays: {image.shape} {image.dtype} / {label.shape}")
    rp = relpaths(stem, split)
    rootp = Path(root)
    with atomic_path(rootp / rp["image"], suffix=".jpg") as tmp:
        # Fixed encoder settings (no optimisation passes that could vary) keep files byte-identical.
        Image.fromarray(image, mode="RGB").save(tmp, format="JPEG", quality=quality)
    write_mask(rootp / rp["mask"], label)
    rec = {"index": index, "stem": stem, "split": split, "seed": s, "engine": engine.name,
           "width": int(image.shape[1]), "height": int(image.shape[0]),
           "image": rp["image"], "mask": rp["mask"],
           "glass_fraction": round(float((label == 1).mean()), 5), "params": params}
    if preview:
        pv = np.where(label == 1, 255, np.where(label == 255, 128, 0)).astype(np.uint8)
        write_mask(rootp / rp["preview"], pv)
        rec["preview"] = rp["preview"]
    return rec


# ----------------------------------------------------------------------------------------------------------------
# output folder management


def _read_jsonl(path: Path) -> Iterator[Dict]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        yield from _parse_jsonl(f)


def read_manifest(root: Path) -> List[Dict]:
    """The records of ``root/manifest.jsonl`` (empty when there is none)."""
    return list(_read_jsonl(Path(root) / MANIFEST))


def _parse_jsonl(lines: Iterable[str]) -> Iterator[Dict]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:  # a line cut by an interruption: that image is simply redone
            continue


def _our_files(root: Path) -> Iterable[Path]:
    for top, ext in (("images", ".jpg"), ("annotations_zero_one", ".png"), ("preview", ".png")):
        for split in SPLITS:
            d = root / top / split
            if d.is_dir():
                for p in d.iterdir():
                    if p.suffix == ext and STEM_RE.match(p.stem):
                        yield p


def _only_synthesis_files(root: Path) -> bool:
    """Whether ``root`` holds nothing but what synthesis runs write (the tree sibling shards are filling)."""
    ours = {"images", "annotations_zero_one", "preview", MANIFEST, PARTIAL_MANIFEST, INFO}
    # (dot-names: partial manifests and the temporaries of atomic writes of the manifest, its parts and the info)
    return all(p.name in ours or PART_RE.match(p.name) or p.name.startswith((".manifest.", f".{INFO}."))
               for p in root.iterdir())


def _clean_temporaries(root: Path, shard: Optional[Tuple[int, int]]) -> None:
    """Temp files of workers killed mid-write (atomic_path cleans up after exceptions, not after SIGKILL); their
    names end in .jpg/.png, so a glob-based reader would pick them up as images. A shard removes only its own:
    its siblings may be writing theirs right now."""
    for top in ("images", "annotations_zero_one", "preview"):
        for split in SPLITS:
            d = root / top / split
            if d.is_dir():
                for p in d.glob(f".{STEM_PREFIX}*.tmp*"):
                    m = TEMP_RE.match(p.name)
                    if shard is None or (m and in_shard(int(m.group(1)), shard)):
                        p.unlink(missing_ok=True)


def prepare_output(root: Path, info: Dict, overwrite: bool, skip_existing: bool,
                   shard: Optional[Tuple[int, int]] = None) -> Dict[str, Dict]:
    """Check/prepare the output folder; returns the manifest records to keep (by stem) when resuming.

    A shard may start in a folder its siblings are filling (one that holds only synthesis files of the same
    settings); ``overwrite`` then removes only the shard's own images."""
    if overwrite and skip_existing:
        raise SynthError("--overwrite and --skip-existing exclude each other")
    if root.exists() and not root.is_dir():
        raise SynthError(f"output {root} exists and is not a folder")
    nonempty = root.is_dir() and any(root.iterdir())
    sibling_tree = shard is not None and nonempty and _only_synthesis_files(root)
    if nonempty and not (overwrite or skip_existing or sibling_tree):
        raise SynthError(f"output folder {root} is not empty; pass --skip-existing to resume/extend it or "
                         f"--overwrite to replace its synthetic images")
    keep: Dict[str, Dict] = {}
    if nonempty:
        _clean_temporaries(root, shard)
    if nonempty and overwrite:
        # Remove only what a synthesis run writes (synth_NNNNNNN files, manifest, info): never other user data.
        for p in _our_files(root):
            if shard is None or in_shard(int(p.stem[len(STEM_PREFIX):]), shard):
                p.unlink()
        own = (MANIFEST, PARTIAL_MANIFEST, INFO) if shard is None else (MANIFEST, part_name(shard),
                                                                        partial_name(shard))
        for name in own:
            (root / name).unlink(missing_ok=True)
    elif nonempty and (skip_existing or sibling_tree):
        old_info_path = root / INFO
        if old_info_path.exists():
            old = json.loads(old_info_path.read_text(encoding="utf-8"))
            for key in ("engine", "seed", "width", "height", "val_fraction", "options"):
                if old.get(key) != info.get(key):
                    raise SynthError(f"{root} was made with a different {key} ({old.get(key)!r} vs "
                                     f"{info.get(key)!r}); use another output folder or --overwrite")
        sources = [MANIFEST, PARTIAL_MANIFEST] if shard is None else [MANIFEST, part_name(shard),
                                                                      partial_name(shard)]
        for rec in (r for name in sources for r in _read_jsonl(root / name)):
            if isinstance(rec, dict) and "stem" in rec:
                keep[rec["stem"]] = rec
        if not skip_existing:  # a shard without --skip-existing makes all its images again
            keep = {}
    root.mkdir(parents=True, exist_ok=True)
    return keep


def _complete(root: Path, rec: Dict, preview: bool) -> bool:
    """An image counts as done only if its record and all its files exist (a deleted file means: redo it)."""
    files = [rec.get("image"), rec.get("mask")] + ([rec.get("preview")] if preview else [])
    return all(f and (root / f).is_file() and (root / f).stat().st_size > 0 for f in files)


def write_manifest(root: Path, records: Dict[int, Dict], name: str = MANIFEST) -> None:
    """Write ``manifest.jsonl`` (or a shard's part ``name``) atomically, sorted by index, one compact JSON object
    per line."""
    with atomic_path(root / name) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for idx in sorted(records):
                f.write(json.dumps(records[idx], sort_keys=True, separators=(",", ":")) + "\n")


def generate_dataset(engine_spec: Tuple[str, object], opts: WriteOptions, info_options: Dict,
                     size: Tuple[int, int], engine=None,
                     on_progress: Optional[Callable[[int], None]] = None) -> Dict:
    """Render ``opts.num_images`` images into ``opts.output``; returns a summary dict.

    ``engine_spec`` builds the engine in worker processes; ``engine`` (optional) is an already built engine used
    when ``workers == 1`` (the diffusion engine is always run in-process).
    """
    from tqdm import tqdm

    root = Path(opts.output)
    width, height = size
    if opts.num_images < 1:
        raise SynthError("--num-images must be at least 1")
    if not 0.0 <= opts.val_fraction < 1.0:
        raise SynthError("--val-fraction must lie in [0, 1)")
    info = {"engine": engine_spec[0], "seed": int(opts.seed), "width": width, "height": height,
            "val_fraction": float(opts.val_fraction), "options": info_options}
    shard = opts.shard
    keep = prepare_output(root, info, opts.overwrite, opts.skip_existing, shard)

    records: Dict[int, Dict] = {}
    todo: List[int] = []
    mine = [i for i in range(opts.num_images) if in_shard(i, shard)]
    for i in mine:
        rec = keep.get(stem_of(i))
        if rec is not None and rec.get("index") == i and _complete(root, rec, opts.preview_masks):
            records[i] = rec
        else:
            todo.append(i)
    # Records of images beyond num_images (an earlier, larger run) stay in the manifest if their files exist.
    # (A shard leaves them to the merge, which starts from the manifest.)
    for rec in keep.values() if shard is None else ():
        i = rec.get("index")
        if isinstance(i, int) and i >= opts.num_images and _complete(root, rec, False):
            records[i] = rec

    if opts.check_space and todo:
        check_disk_space(root, estimate_bytes(width, height, len(todo), opts.preview_masks))
    prev_info = {**info, "num_images": max([opts.num_images] + [i + 1 for i in records])}
    with atomic_path(root / INFO) as tmp:
        tmp.write_text(json.dumps(prev_info, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    tasks = [(str(root), i, int(opts.seed), split_of(i, opts.val_fraction), opts.preview_masks, opts.jpeg_quality)
             for i in todo]
    rejected = 0
    partial_path = root / partial_name(shard)
    partial = open(partial_path, "a", encoding="utf-8")
    bar = tqdm(total=len(tasks), unit="img", disable=not opts.progress, desc="gem synth", dynamic_ncols=True)
    try:
        def consume(rec: Optional[Dict]) -> None:
            nonlocal rejected
            bar.update(1)
            if on_progress is not None:
                on_progress(bar.n)
            if rec is None:
                rejected += 1
                return
            records[rec["index"]] = rec
            # Appended as soon as an image is done, so an interrupted run can be resumed without redoing it.
            partial.write(json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n")
            partial.flush()

        workers = max(1, int(opts.workers))
        if workers == 1 or len(tasks) <= 1 or engine_spec[0] == "diffusion":
            eng = engine if engine is not None else build_engine(engine_spec)
            for t in tasks:
                consume(render_and_write(eng, *t))
        else:
            # "spawn": workers start clean (no inherited torch/OpenMP thread state, which can deadlock after fork).
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(workers, len(tasks)), initializer=_init_worker, initargs=(engine_spec,)) as pool:
                for rec in pool.imap_unordered(_work, tasks, chunksize=max(1, min(8, len(tasks) // (4 * workers)))):
                    consume(rec)
    finally:
        bar.close()
        partial.close()
        # Even after an interruption the manifest (a shard: its part) reflects every finished image.
        write_manifest(root, records, MANIFEST if shard is None else part_name(shard))
        partial_path.unlink(missing_ok=True)

    merged = shard is None or merge_shards(root, shard[1], require_all=False) is not None
    counts = {s: sum(1 for r in records.values() if r["split"] == s) for s in SPLITS}
    return {"output": str(root), "generated": len(tasks) - rejected, "skipped": len(mine) - len(tasks),
            "rejected": rejected, "total": len(records), "merged": merged, **counts}


def merge_shards(root: Path, num_shards: Optional[int] = None, require_all: bool = True) -> Optional[Dict[int, Dict]]:
    """Merge the shards' manifest parts (and the records of an existing ``manifest.jsonl``) into
    ``manifest.jsonl`` and remove the parts; returns the merged records.

    ``num_shards`` defaults to the N of the parts present. Parts missing: a SynthError naming them
    (``require_all``) or None. Two shards finishing together may both merge: the result is the same file, and a
    shard that finds a part already removed leaves the merge to the other one (None)."""
    root = Path(root)
    found: Dict[int, set] = {}
    for p in root.iterdir() if root.is_dir() else ():
        m = PART_RE.match(p.name)
        if m:
            found.setdefault(int(m.group(2)), set()).add(int(m.group(1)))
    if num_shards is None:
        if len(found) != 1:
            if not require_all:
                return None
            what = "no manifest parts" if not found else f"parts of several shard counts ({sorted(found)})"
            raise SynthError(f"{root}: cannot merge: {what}")
        num_shards = next(iter(found))
    missing = sorted(set(range(num_shards)) - found.get(num_shards, set()))
    if missing:
        if not require_all:
            return None
        raise SynthError(f"{root}: shard(s) {', '.join(f'{k}/{num_shards}' for k in missing)} have not finished "
                         f"(run them, with --skip-existing to resume)")
    parts = []
    for k in range(num_shards):
        try:
            parts.append((root / part_name((k, num_shards))).read_text(encoding="utf-8"))
        except FileNotFoundError:  # merged and removed by a sibling meanwhile
            return None
    # records of an earlier, larger run stay if their files exist (as in an unsharded run)
    records = {r["index"]: r for r in _read_jsonl(root / MANIFEST)
               if isinstance(r.get("index"), int) and _complete(root, r, False)}
    for text in parts:
        records.update({r["index"]: r for r in _parse_jsonl(text.splitlines())})
    write_manifest(root, records)
    for k in range(num_shards):
        (root / part_name((k, num_shards))).unlink(missing_ok=True)
    return records


def default_workers() -> int:
    """Worker processes to use when not told: the CPUs this process may run on (at most 8)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))
