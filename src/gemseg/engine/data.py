"""Training data: a seeded, resumable sample stream sharded across ranks and micro-batches.

The whole run reads one global stream of sample *positions* 0, 1, 2, …; position ``p`` is image
``perm_e[p mod N]`` of epoch ``e = p div N`` (``perm_e`` a permutation seeded by ``(seed, e)``), augmented with
the RNG ``np.random.default_rng([seed, p])``. Optimizer step ``it`` consumes positions
``[it·IMS_PER_BATCH, (it+1)·IMS_PER_BATCH)``; within it, micro-batch ``m`` of rank ``r`` takes the slice
``it·IMS + (m·W + r)·b + [0, b)`` (W ranks, b images per rank and micro-batch).

Consequences, all by construction:

* **resume** needs only the iteration: the loader restarts at ``start_iter`` and produces the same images with the
  same augmentations as the uninterrupted run;
* **workers do not matter**: every sample's randomness comes from its position, never from a worker's RNG, so 0 or
  8 DataLoader workers give identical batches (workers are still seeded from ``(seed, rank, worker)`` for any
  third-party randomness);
* **the split does not matter**: 1 process × K accumulation steps sees the same images per optimizer step as K
  processes × 1 step (the union over micro-batches and ranks is always the step's slice).
"""
from __future__ import annotations

import random
from functools import lru_cache
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from gemseg.data.layouts import Dataset, load_mask_binary
from gemseg.data.transforms import TrainTransform, make_targets
from gemseg.errors import ConfigError, GemsegError
from gemseg.io import read_image


class TrainDataError(GemsegError):
    """A training image/mask pair cannot be read or augmented (unreadable file, image/mask size mismatch…)."""


@lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of ``epoch``: a permutation of ``range(n)`` seeded by ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch, 0x6E6D]).permutation(n)


def binary_label(glass: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """``(glass, ignore)`` bool H×W → the uint8 label the transforms expect: 0 background, 1 glass, 255 ignore."""
    label = glass.astype(np.uint8)
    label[ignore] = 255
    return label


class StreamDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by *stream position* (see the module docstring).

    ``__getitem__(p)`` returns ``{"image": uint8 [3, S, S] (RGB), "label": uint8 [S, S] (0/1/255),
    "position": p, "key": sample key}``, already augmented and padded by ``transform``.
    """

    def __init__(self, dataset: Dataset, transform: TrainTransform, seed: int) -> None:
        if len(dataset) == 0:
            raise ConfigError(f"training dataset {dataset.name} has no image/mask pairs")
        missing = [s.key for s in dataset.samples if s.image is None]
        if missing:
            raise ConfigError(f"training dataset {dataset.name}: {len(missing)} mask(s) without an image "
                              f"(first: {missing[0]})")
        self.dataset = dataset
        self.transform = transform
        self.seed = int(seed)

    def __len__(self) -> int:  # the stream is unbounded; len is the dataset size (for information only)
        return len(self.dataset)

    def sample_of(self, position: int):
        """The dataset sample at stream ``position``."""
        epoch, k = divmod(int(position), len(self.dataset))
        return self.dataset.samples[int(epoch_permutation(self.seed, epoch, len(self.dataset))[k])]

    def __getitem__(self, position: int) -> Dict[str, Any]:
        sample = self.sample_of(position)
        try:
            image = read_image(sample.image)
            glass, ignore = load_mask_binary(sample)
            rng = np.random.default_rng([self.seed, int(position)])
            image, label = self.transform(image, binary_label(glass, ignore), rng)
        except (GemsegError, ValueError, OSError) as e:
            # one message naming the pair (also survives the trip out of a DataLoader worker)
            raise TrainDataError(f"training sample {sample.key} ({sample.image}, {sample.mask}): {e}") from None
        return {
            "image": torch.from_numpy(image).permute(2, 0, 1).contiguous(),
            "label": torch.from_numpy(label),
            "position": int(position),
            "key": sample.key,
        }


class StreamBatchSampler(torch.utils.data.Sampler):
    """Yields the position lists of this rank's micro-batches, iterations ``start_iter .. max_iter - 1``.

    Args:
        ims_per_batch: images per optimizer step over all ranks and micro-batches (``SOLVER.IMS_PER_BATCH``).
        accum_steps: micro-batches per optimizer step (``SOLVER.GRAD_ACCUM_STEPS``).
        rank, world_size: this process and the number of processes.
        start_iter, max_iter: the iterations to produce.
    """

    def __init__(self, ims_per_batch: int, accum_steps: int, rank: int, world_size: int, start_iter: int,
                 max_iter: int) -> None:
        self.ims, self.accum, self.rank, self.world = int(ims_per_batch), int(accum_steps), int(rank), int(world_size)
        self.batch = per_rank_batch_size(self.ims, self.accum, self.world)
        self.start_iter, self.max_iter = int(start_iter), int(max_iter)

    def positions(self, it: int, micro: int) -> List[int]:
        """Stream positions of micro-batch ``micro`` of iteration ``it`` on this rank."""
        base = it * self.ims + (micro * self.world + self.rank) * self.batch
        return list(range(base, base + self.batch))

    def __iter__(self) -> Iterator[List[int]]:
        for it in range(self.start_iter, self.max_iter):
            for m in range(self.accum):
                yield self.positions(it, m)

    def __len__(self) -> int:
        return max(0, self.max_iter - self.start_iter) * self.accum


def per_rank_batch_size(ims_per_batch: int, accum_steps: int, world_size: int) -> int:
    """Images per rank and micro-batch; ``IMS_PER_BATCH`` must split evenly."""
    if accum_steps < 1:
        raise ConfigError(f"SOLVER.GRAD_ACCUM_STEPS must be >= 1, got {accum_steps}")
    div = accum_steps * world_size
    if ims_per_batch < div or ims_per_batch % div:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH {ims_per_batch} must be a multiple of processes × "
                          f"GRAD_ACCUM_STEPS = {world_size} × {accum_steps}")
    return ims_per_batch // div


def collate(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack a micro-batch: ``images`` uint8 [B, 3, S, S], ``labels`` uint8 [B, S, S], ``positions``, ``keys``.

    Images stay uint8 until they reach the device (4× less to copy between workers and to the GPU).
    """
    return {
        "images": torch.stack([x["image"] for x in items]),
        "labels": torch.stack([x["label"] for x in items]),
        "positions": [x["position"] for x in items],
        "keys": [x["key"] for x in items],
    }


def to_model_inputs(batch: Dict[str, Any], device: torch.device, ignore_value: int = 255):
    """A collated micro-batch → ``(images float [B, 3, S, S] on 0–255, targets)`` on ``device``.

    ``targets`` are the per-class masks / labels / boxes of :func:`gemseg.data.transforms.make_targets`.
    """
    images = batch["images"].to(device, non_blocking=True).float()
    labels = batch["labels"].to(device, non_blocking=True)
    return images, [make_targets(lbl, ignore_value) for lbl in labels]


def _worker_init(worker_id: int, seed: int, rank: int) -> None:
    """Seed python/numpy/torch in a worker from (seed, rank, worker) — only for third-party randomness: the
    augmentations use their own per-sample RNG."""
    s = int(np.random.SeedSequence([seed, rank, worker_id]).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


class _WorkerInit:
    """Picklable ``worker_init_fn`` (spawned workers cannot pickle a lambda)."""

    def __init__(self, seed: int, rank: int) -> None:
        self.seed, self.rank = seed, rank

    def __call__(self, worker_id: int) -> None:
        _worker_init(worker_id, self.seed, self.rank)


def build_train_loader(dataset: Dataset, transform: TrainTransform, seed: int, ims_per_batch: int,
                       accum_steps: int, rank: int, world_size: int, start_iter: int, max_iter: int,
                       num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """The training DataLoader: yields this rank's collated micro-batches from ``start_iter`` on."""
    stream = StreamDataset(dataset, transform, seed)
    sampler = StreamBatchSampler(ims_per_batch, accum_steps, rank, world_size, start_iter, max_iter)
    # a private generator: the DataLoader must not draw its base seed from the global torch RNG, which the
    # matcher and the denoising noise use (resume restores that RNG exactly)
    gen = torch.Generator().manual_seed(int(seed) + 1009 * rank)
    kwargs: Dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(worker_init_fn=_WorkerInit(int(seed), int(rank)), prefetch_factor=2,
                      persistent_workers=False)
    return DataLoader(stream, batch_sampler=sampler, num_workers=int(num_workers), collate_fn=collate,
                      pin_memory=pin_memory, generator=gen, **kwargs)


def resolve_train_dataset(names: Any, layout: Optional[str] = None) -> Dataset:
    """``DATASETS.TRAIN`` (a name/path or a tuple of them) → one :class:`Dataset` (samples concatenated).

    Official names (``ade20k_sem_seg_train``) resolve under ``$DETECTRON2_DATASETS``; a folder uses its layout's
    training split.
    """
    from gemseg.data.layouts import OFFICIAL_NAMES, resolve_dataset

    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names:
        raise ConfigError("DATASETS.TRAIN is empty: name a dataset (e.g. ade20k_sem_seg_train or a folder)")
    parts = [resolve_dataset(n, split=None if n in OFFICIAL_NAMES else "training", layout=layout) for n in names]
    if len(parts) == 1:
        return parts[0]
    samples = [s for p in parts for s in p.samples]
    return Dataset("+".join(p.name for p in parts), "mixed", "training", None, samples)
