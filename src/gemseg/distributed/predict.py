"""Prediction at dataset scale with Ray Data: ``gem predict --engine ray`` and :func:`predict_dataset`.

The pipeline is read → predict → write on a pool of Ray actors (``map_batches`` with a fixed pool), each of which
builds the model once: a row holds an input file's path, an actor decodes it, runs the network and writes the
outputs itself (workers read and write a shared file system), and sends back only a small record. Ray Data
streams the rows through the pool with back-pressure, so memory stays bounded however many files there are; a
restarted actor (a lost worker) gets its batch again, and every output is written atomically, so a retried file is
never left half-written.

``gem predict --engine ray`` writes exactly what the local engine (:func:`gemseg.inference.pipeline.run_predict`)
writes: the same planning (:func:`~gemseg.inference.pipeline.plan_items`: collisions, ``--skip-existing``), the
same output names and writers, the same summary file. Videos run as one Ray task each; cameras stay local.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from gemseg.errors import GemsegError
from gemseg.inference.loader import batched
from gemseg.inference.pipeline import (
    ItemRecord,
    PredictOptions,
    RunSummary,
    check_output_dir,
    close_summary,
    image_output_paths,
    item_outputs,
    load_resized,
    mark_failed,
    plan_items,
    progress_bar,
    remove_files,
    write_image_outputs,
)
from gemseg.inference.sources import InputItem

PathLike = Union[str, os.PathLike]
# the per-image numbers an actor sends back (everything else of an ItemRecord is known to the driver)
_RESULT_FIELDS = ("status", "error", "width", "height", "glass_fraction", "decode_ms", "infer_ms", "frames")


@dataclass
class SegmentorSpec:
    """How to build a :class:`~gemseg.inference.predictor.GlassSegmentor` (the arguments of ``from_pretrained``
    plus the resize mode): small and picklable, so every Ray actor builds the same model as the driver."""

    source: Optional[str] = None  # bundled model name or weights path; None: ``config`` alone (random weights)
    config: Optional[str] = None
    device: str = "auto"
    precision: str = "fp32"
    size: Optional[int] = None
    backend: str = "torch"
    tta: bool = False
    threshold: Optional[float] = None
    batch_size: int = 1
    optimize: bool = True
    opts: List[str] = field(default_factory=list)
    threads: Optional[int] = None
    resize: str = "cv2"

    def weights_file(self) -> Optional[Path]:
        """The weights file to ship to workers that may not see it (None for a bundled name or no weights)."""
        if self.source is None:
            return None
        p = Path(self.source)
        return p if p.is_file() else None

    def build(self, weights_blob: Optional[bytes] = None):
        """The segmentor; ``weights_blob`` (the weights file's bytes) is used when this machine lacks the file."""
        import torch

        from gemseg.inference.predictor import GlassSegmentor

        if self.threads:
            torch.set_num_threads(int(self.threads))
        source = self.source
        if weights_blob is not None and source is not None and not Path(source).is_file():
            tmp = Path(tempfile.mkdtemp(prefix="gemseg-weights-")) / Path(source).name
            tmp.write_bytes(weights_blob)
            source = str(tmp)
        seg = GlassSegmentor.from_pretrained(
            source, config=self.config, device=self.device, precision=self.precision, size=self.size,
            backend=self.backend, tta=self.tta, threshold=self.threshold, batch_size=self.batch_size,
            optimize=self.optimize, opts=self.opts or None, threads=self.threads)
        seg.resize = self.resize
        return seg


# ----------------------------------------------------------------------------------------------------------------
# actors (built once per worker by Ray Data; called with numpy batches: dict of column → array)
class _Predictor:
    """Shared actor body: decode, square-resize and predict a batch of images; failures are per image."""

    def __init__(self, spec: SegmentorSpec, weights_blob: Optional[bytes], keep_rgb: bool):
        self.seg = spec.build(weights_blob)
        self.keep_rgb = keep_rgb

    def predict(self, sources: Sequence) -> List[Tuple[Optional[object], Optional[tuple], Optional[BaseException]]]:
        """``(prediction, (rgb or None, (H, W), square, decode_ms), error)`` per source, with ``infer_ms`` added to
        the loaded tuple; a source that fails to decode or predict carries its error instead."""
        seg = self.seg
        results: List = [None] * len(sources)
        good = []
        for j, src in enumerate(sources):
            try:
                good.append((j, load_resized(src, seg.img_size, seg.resize, self.keep_rgb)))
            except Exception as e:  # noqa: BLE001 - a broken file fails alone
                results[j] = (None, None, e)
        for chunk in batched(good, seg.batch_size):
            t = time.perf_counter()
            try:
                preds = seg.predict_resized([r[2] for _, r in chunk], [r[1] for _, r in chunk])
            except Exception as e:  # noqa: BLE001 - e.g. out of memory: fail this chunk, keep going
                for j, _ in chunk:
                    results[j] = (None, None, e)
                continue
            per = (time.perf_counter() - t) * 1000 / len(chunk)
            for (j, loaded), pred in zip(chunk, preds):
                results[j] = (pred, loaded + (per,), None)
        return results


class _FileWorker(_Predictor):
    """``gem predict --engine ray``: writes each image's outputs where the local engine would; returns records."""

    def __init__(self, spec: SegmentorSpec, weights_blob: Optional[bytes], out_dir: str, opts: PredictOptions):
        super().__init__(spec, weights_blob, keep_rgb=opts.save_overlay)
        self.out_dir = Path(out_dir)
        self.opts = opts

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        items = [InputItem(Path(s), Path(r), "image") for s, r in zip(batch["source"], batch["rel"])]
        records = []
        for item, (pred, loaded, err) in zip(items, self.predict([it.source for it in items])):
            rec = ItemRecord(file=str(item.source), output="")
            if err is None:
                rgb, (h, w), _, dec_ms, infer_ms = loaded
                try:
                    write_image_outputs(image_output_paths(item, self.out_dir, self.opts), rgb, pred,
                                        self.opts.overlay_quality)
                    rec.width, rec.height = int(w), int(h)
                    rec.glass_fraction = round(float(pred.mask.mean()), 6)
                    rec.decode_ms, rec.infer_ms = round(dec_ms, 2), round(infer_ms, 2)
                except Exception as e:  # noqa: BLE001 - e.g. disk full: this file fails
                    err = e
            if err is not None:
                mark_failed(rec, err)
            records.append(json.dumps({k: getattr(rec, k) for k in _RESULT_FIELDS}))
        return {"key": np.asarray(batch["key"]), "record": np.asarray(records, dtype=object)}


class _ArrayWorker(_Predictor):
    """:func:`predict_dataset`: adds ``mask`` (H×W uint8 0/1), optionally ``probability`` (H×W float32),
    ``glass_fraction``, ``width``, ``height`` and ``error`` columns; drops the ``image``/``bytes`` column."""

    def __init__(self, spec: SegmentorSpec, weights_blob: Optional[bytes], column: str, probability: bool):
        super().__init__(spec, weights_blob, keep_rgb=False)
        self.column = column
        self.probability = probability

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import io

        col = batch[self.column]
        if self.column == "bytes":
            sources = [io.BytesIO(bytes(b)) for b in col]
        elif self.column == "path":
            sources = [Path(str(p)) for p in col]
        else:
            sources = list(col)
        out = {k: v for k, v in batch.items() if k not in ("image", "bytes")}
        masks, probs, fractions, widths, heights, errors = [], [], [], [], [], []
        for pred, loaded, err in self.predict(sources):
            if err is None:
                h, w = loaded[1]
                masks.append(pred.mask.astype(np.uint8))
                probs.append(pred.probability.astype(np.float32))
                fractions.append(float(pred.mask.mean()))
                errors.append("")
            else:
                rec = ItemRecord(file="", output="")
                mark_failed(rec, err)
                h = w = 0
                masks.append(np.zeros((0, 0), np.uint8))
                probs.append(np.zeros((0, 0), np.float32))
                fractions.append(float("nan"))
                errors.append(rec.error)
            widths.append(int(w))
            heights.append(int(h))
        out["mask"] = _column(masks)
        if self.probability:
            out["probability"] = _column(probs)
        out["glass_fraction"] = np.asarray(fractions, np.float64)
        out["width"] = np.asarray(widths, np.int64)
        out["height"] = np.asarray(heights, np.int64)
        out["error"] = np.asarray(errors, dtype=object)
        return out


def _column(arrays: List[np.ndarray]) -> np.ndarray:
    """A tensor column: stacked when all shapes agree, else an object array (Ray's variable-shaped tensors)."""
    if len({a.shape for a in arrays}) == 1:
        return np.stack(arrays)
    col = np.empty(len(arrays), dtype=object)
    col[:] = arrays
    return col


def _video_task(spec: SegmentorSpec, weights_blob: Optional[bytes], item: InputItem, out_dir: str,
                opts: PredictOptions, rec: ItemRecord) -> ItemRecord:
    """One video, start to end, on one worker (frames depend on their order in the stream)."""
    from gemseg.inference.pipeline import _run_video

    _run_video(spec.build(weights_blob), item, Path(out_dir), opts, rec, False, mark_failed)
    return rec


# ----------------------------------------------------------------------------------------------------------------
def _ship_weights(ray, spec: SegmentorSpec, address: Optional[str]):
    """On a cluster, the weights file's bytes in Ray's object store (workers on other machines need not see the
    file); a local Ray reads the file itself."""
    path = spec.weights_file()
    return ray.put(path.read_bytes()) if path is not None and address else None


def _actor_resources(spec: SegmentorSpec, gpus_per_worker: float) -> Dict[str, float]:
    res: Dict[str, float] = {"num_cpus": float(spec.threads or 1)}
    if gpus_per_worker:
        res["num_gpus"] = float(gpus_per_worker)
    return res


def remove_stale_temporaries(paths: Iterable[Path]) -> int:
    """Delete the temporary files (``.<name>.*.tmp*``, see :func:`gemseg.io.atomic.atomic_path`) that a worker
    killed mid-write left next to any of ``paths``; returns how many. Only temporaries of these outputs are touched."""
    by_dir: Dict[Path, set] = {}
    for p in paths:
        by_dir.setdefault(p.parent, set()).add(p.name)
    removed = 0
    for folder, names in by_dir.items():
        if not folder.is_dir():
            continue
        with os.scandir(folder) as it:
            for entry in it:
                n = entry.name
                if n.startswith(".") and ".tmp" in n and n[1:].split(".tmp")[0].rsplit(".", 1)[0] in names:
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
    return removed


def run_predict_ray(spec: SegmentorSpec, items: List[InputItem], out_dir: PathLike,
                    opts: Optional[PredictOptions] = None, *, address: Optional[str] = None, workers: int = 2,
                    gpus_per_worker: float = 0.0, progress: bool = True,
                    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
                    info: Optional[Dict[str, object]] = None) -> RunSummary:
    """:func:`gemseg.inference.pipeline.run_predict` on Ray: same outputs, same summary, ``workers`` model replicas.

    ``address`` joins a running cluster (all workers must see ``items`` and ``out_dir`` at the same paths: a shared
    file system); without it a local Ray with ``workers`` CPUs is started (or a running connection reused).
    """
    opts = opts or PredictOptions()
    out_dir = Path(out_dir)
    if workers < 1:
        raise GemsegError("--workers must be >= 1 with --engine ray")
    if gpus_per_worker < 0:
        raise GemsegError("--gpus-per-worker must be >= 0")
    if any(it.kind == "camera" for it in items):
        raise GemsegError("a camera is read on this machine: use the local engine (leave out --engine ray)")
    check_output_dir(out_dir, opts.overwrite, opts.skip_existing)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = RunSummary(info=dict(info or {}, engine="ray", workers=workers))
    t0 = time.perf_counter()
    todo, records, stale = plan_items(items, out_dir, opts, summary, log)
    images = [it for it in todo if it.kind == "image"]
    videos = [it for it in todo if it.kind == "video"]
    outputs = [p for it in images for p in item_outputs(it, out_dir, opts)]
    remove_stale_temporaries(outputs)  # of a run killed mid-write (SIGKILL leaves them): redone now

    def take(rec: ItemRecord, result: Dict, item) -> None:
        for k, v in result.items():
            setattr(rec, k, v)
        if rec.status == "failed":
            log(f"gem predict: FAILED {rec.file}: {rec.error}")
        else:  # --overwrite: side outputs of an earlier run that this run did not write (as the local engine)
            old = stale.get(id(item), [])
            summary.removed_stale += len(old)
            remove_files(old)

    bar = None
    finished = False
    try:
        if images or videos:
            ray = connect_for(address, workers * int(spec.threads or 1))
            blob = _ship_weights(ray, spec, address)
            res = _actor_resources(spec, gpus_per_worker)
            bar = progress_bar(len(images), "predict (ray)", progress and bool(images))
            if images:
                rows = [{"key": k, "source": str(it.source), "rel": str(it.rel)} for k, it in enumerate(images)]
                ds = ray.data.from_items(rows).map_batches(
                    _FileWorker, fn_constructor_args=(spec, blob, str(out_dir), opts), batch_size=spec.batch_size,
                    compute=ray.data.ActorPoolStrategy(size=min(workers, len(images))), batch_format="numpy",
                    **res)
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
                    for key, js in zip(batch["key"], batch["record"]):
                        take(records[id(images[int(key)])], json.loads(js), images[int(key)])
                    if bar is not None:
                        bar.update(len(batch["key"]))
                if bar is not None:
                    bar.close()
                    bar = None
            if videos:
                task = ray.remote(_video_task).options(**res)
                refs = [task.remote(spec, blob, it, str(out_dir), opts, records[id(it)]) for it in videos]
                for it, ref in zip(videos, refs):
                    try:
                        done = ray.get(ref)
                    except ray.exceptions.RayError as e:  # e.g. the worker died: this video fails alone
                        done = ItemRecord(file=str(it.source), output="")
                        mark_failed(done, e)
                    take(records[id(it)], {k: getattr(done, k) for k in _RESULT_FIELDS}, it)
        finished = True
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    except Exception as e:
        if not type(e).__module__.startswith("ray."):
            raise
        # the pipeline itself failed (e.g. no replica could load the model): one line, not Ray's traceback
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise GemsegError(f"the Ray pipeline failed: {reason}") from None
    finally:
        if bar is not None:
            bar.close()
        if finished:
            remove_stale_temporaries(outputs)  # a worker killed mid-write whose file was redone by its retry
        close_summary(summary, out_dir, t0, log)
    return summary


def connect_for(address: Optional[str], cpus: int):
    """Ray for a run: joins ``address`` or starts a local Ray with ``cpus`` CPUs (replicas × threads)."""
    from gemseg.distributed.runtime import connect

    return connect(address, num_cpus=None if address else cpus)


def predict_dataset(data, model: Optional[PathLike] = None, *, config: Optional[str] = None,
                    workers: int = 2, gpus_per_worker: float = 0.0, batch_size: int = 1, probability: bool = False,
                    recursive: bool = True, address: Optional[str] = None, **segmentor_kwargs):
    """A lazy Ray Dataset of predictions, for pipelines that already use Ray.

    Args:
        data: a ``ray.data.Dataset`` with an ``image`` column (H×W×C arrays, e.g. ``ray.data.read_images(...,
            include_paths=True)``), a ``bytes`` column (``ray.data.read_binary_files``: any pyarrow file system,
            e.g. ``s3://``) or a ``path`` column; or a folder / file / glob / list of them (read by the workers).
        model: a bundled model name (e.g. ``"gem-lite-synth"``) or weights path; ``config`` as for
            :meth:`GlassSegmentor.from_pretrained`, as are the other keyword arguments (``size``, ``device``, ...).
        workers: model replicas (Ray actors); ``gpus_per_worker`` GPUs each.
        probability: also return the float32 glass probability.

    Returns:
        the input columns (``image``/``bytes`` dropped) plus ``mask`` (H×W uint8, 1 = glass, at the image's size),
        ``glass_fraction``, ``width``, ``height``, ``error`` ("" when fine; a failed image has a 0×0 mask) and,
        with ``probability``, ``probability`` (H×W float32). Nothing runs until the dataset is consumed or written.
    """
    if model is None and config is None:
        raise GemsegError("give model= (a bundled name such as gem-lite-synth, or a weights file) or config=")
    spec = SegmentorSpec(source=None if model is None else str(model), config=config, batch_size=batch_size,
                         **segmentor_kwargs)
    ray = connect_for(address, workers * int(spec.threads or 1))
    if isinstance(data, ray.data.Dataset):
        names = data.schema().names
        column = next((c for c in ("image", "bytes", "path") if c in names), None)
        if column is None:
            raise GemsegError(f"the dataset needs an image, bytes or path column; it has {', '.join(names)}")
        ds = data
    else:
        from gemseg.inference.sources import expand_inputs

        inputs = [str(d) for d in (data if isinstance(data, (list, tuple)) else [data])]
        found = [it for it in expand_inputs(inputs, recursive=recursive) if it.kind == "image"]
        if not found:
            raise GemsegError(f"no input images found in {', '.join(inputs)}")
        ds, column = ray.data.from_items([{"path": str(it.source)} for it in found]), "path"
    args = (spec, _ship_weights(ray, spec, address), column, probability)
    return ds.map_batches(_ArrayWorker, fn_constructor_args=args, batch_size=batch_size,
                          compute=ray.data.ActorPoolStrategy(size=workers), batch_format="numpy",
                          **_actor_resources(spec, gpus_per_worker))
