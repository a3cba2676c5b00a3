"""The training data stream: sharding across ranks and micro-batches, resume, worker independence, labels."""
import numpy as np
import pytest
import torch

from gemseg.config import get_config
from gemseg.data.layouts import resolve_dataset
from gemseg.data.transforms import build_train_transform
from gemseg.engine.data import (StreamBatchSampler, StreamDataset, binary_label, build_train_loader,
                                per_rank_batch_size, resolve_train_dataset)
from gemseg.errors import ConfigError

from .helpers import make_dataset, tiny_opts


def _positions(ims, accum, world, start, stop):
    """{iteration: sorted positions over all ranks and micro-batches}"""
    out = {}
    for r in range(world):
        s = StreamBatchSampler(ims, accum, r, world, start, stop)
        for i, batch in enumerate(s):
            out.setdefault(start + i // accum, []).extend(batch)
    return {k: sorted(v) for k, v in out.items()}


def test_every_split_of_a_step_reads_the_same_images():
    ref = _positions(8, 1, 1, 0, 3)
    assert ref == {0: list(range(8)), 1: list(range(8, 16)), 2: list(range(16, 24))}
    for accum, world in ((2, 1), (1, 2), (2, 2), (4, 2), (8, 1)):
        assert _positions(8, accum, world, 0, 3) == ref, (accum, world)
    # resume at iteration 2 continues the same stream
    assert _positions(8, 2, 2, 2, 3) == {2: ref[2]}


def test_batch_split_must_be_even():
    assert per_rank_batch_size(32, 4, 2) == 4
    with pytest.raises(ConfigError, match="multiple"):
        per_rank_batch_size(6, 4, 1)


def test_binary_label():
    glass = np.array([[True, False], [True, True]])
    ignore = np.array([[False, False], [True, False]])
    assert binary_label(glass, ignore).tolist() == [[1, 0], [255, 1]]


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp("d") / "data", n=5, size=64, ignore_strip=True)
    cfg = get_config("gem-tiny", tiny_opts(64) + ["INPUT.MIN_SIZE_TRAIN", "(64, 80)", "INPUT.COLOR_AUG_SSD", "True"])
    return resolve_dataset(root, split="training"), build_train_transform(cfg)


def test_stream_is_a_seeded_permutation_per_epoch(stream):
    ds, tf = stream
    s = StreamDataset(ds, tf, seed=3)
    epoch0 = [s.sample_of(p).key for p in range(5)]
    epoch1 = [s.sample_of(p).key for p in range(5, 10)]
    assert sorted(epoch0) == sorted(epoch1) == sorted(x.key for x in ds.samples)
    assert [StreamDataset(ds, tf, seed=3).sample_of(p).key for p in range(10)] == epoch0 + epoch1
    assert [StreamDataset(ds, tf, seed=4).sample_of(p).key for p in range(10)] != epoch0 + epoch1
    item = s[7]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.uint8
    assert set(torch.unique(item["label"]).tolist()) <= {0, 1, 255}
    assert torch.equal(s[7]["image"], item["image"])  # augmentation randomness is a function of the position


def test_loader_batches_do_not_depend_on_workers_or_restart(stream):
    ds, tf = stream

    def batches(workers, start):
        loader = build_train_loader(ds, tf, seed=11, ims_per_batch=4, accum_steps=2, rank=0, world_size=1,
                                    start_iter=start, max_iter=3, num_workers=workers)
        return [(b["positions"], b["images"].clone(), b["labels"].clone()) for b in loader]

    straight = batches(0, 0)
    assert [b[0] for b in straight] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    with_worker = batches(1, 1)
    for (pa, ia, la), (pb, ib, lb) in zip(straight[2:], with_worker):
        assert pa == pb and torch.equal(ia, ib) and torch.equal(la, lb)


def test_train_dataset_names(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "gsds", n=2, size=32, splits=("training", "validation"))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    official = resolve_train_dataset(("ade20k_sem_seg_train",))
    assert len(official) == 2 and official.split == "training"
    both = resolve_train_dataset((str(root), "ade20k_sem_seg_train"))
    assert len(both) == 4
    with pytest.raises(ConfigError, match="empty"):
        resolve_train_dataset(())


def test_a_bad_pair_is_one_error_naming_it(tmp_path):
    from PIL import Image

    from gemseg.engine.data import TrainDataError

    root = make_dataset(tmp_path / "data", n=1, size=32)
    mask = next((root / "annotations_zero_one" / "training").glob("*.png"))
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(mask)  # size differs from the image
    ds = resolve_dataset(root, split="training")
    cfg = get_config("gem-tiny", tiny_opts(32))
    with pytest.raises(TrainDataError, match="img_000"):
        StreamDataset(ds, build_train_transform(cfg), seed=0)[0]
