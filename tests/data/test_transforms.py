"""Training augmentations: sizes, pad values, label values, reproducibility, flip, colour jitter, targets."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gemseg.data.transforms import (
    OFFICIAL_MIN_SIZE_TRAIN,
    ColorAugSSD,
    RandomCropCategoryAreaConstraint,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    build_train_transform,
    make_targets,
    pad_to_size,
)


def _sample(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    label = np.zeros((h, w), dtype=np.uint8)
    label[:, w // 3 :] = 1
    label[h // 2 :, : w // 5] = 255
    return image, label


def test_official_min_sizes():
    assert OFFICIAL_MIN_SIZE_TRAIN == (256, 307, 358, 409, 460, 512, 563, 614, 665, 716, 768, 819, 870, 921, 972,
                                       1024)


@pytest.mark.parametrize("shape", [(120, 90), (300, 500), (37, 410)])
def test_official_pipeline_outputs_exactly_crop_size(shape):
    t = build_train_transform()  # GEM-384 recipe
    image, label = _sample(*shape)
    for seed in range(3):
        out_img, out_lab = t(image, label, np.random.default_rng(seed))
        assert out_img.shape == (384, 384, 3) and out_img.dtype == np.uint8
        assert out_lab.shape == (384, 384) and out_lab.dtype == np.uint8
        assert set(np.unique(out_lab).tolist()) <= {0, 1, 255}


def test_padding_values_right_bottom():
    # no resize (short side already 16), crop 32 > image -> the 16 x 24 sample is padded to 32 x 32
    t = build_train_transform(min_size_train=(16,), crop_size=(32, 32), pad_size=(32, 32))
    image, label = _sample(16, 24)
    out_img, out_lab = t(image, label, np.random.default_rng(0))
    assert out_img.shape == (32, 32, 3)
    assert (out_img[16:] == 128).all() and (out_img[:, 24:] == 128).all()
    assert (out_lab[16:] == 255).all() and (out_lab[:, 24:] == 255).all()
    # the sample itself sits top-left (its labels are 0/1/255, at least some 0 and 1)
    assert {0, 1} <= set(np.unique(out_lab[:16, :24]).tolist())
    with pytest.raises(ValueError):
        pad_to_size(np.zeros((40, 10, 3), np.uint8), np.zeros((40, 10), np.uint8), (32, 32))


def test_label_values_stay_discrete_under_resize():
    rng = np.random.default_rng(1)
    label = rng.choice(np.array([0, 1, 255], dtype=np.uint8), size=(50, 70))
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    for size in (23, 64, 181):
        r = ResizeShortestEdge([size], max_size=10_000)
        out_img, out_lab = r(image, label, rng)
        assert out_lab.shape == out_img.shape[:2] and min(out_lab.shape) == size
        assert set(np.unique(out_lab).tolist()) <= {0, 1, 255}
    # nearest neighbour as torch "nearest": output pixel i reads input floor(i * in / out)
    r = ResizeShortestEdge([100], max_size=10_000)
    _, up = r(image, label, rng)
    assert up.shape == (100, 140)
    rows = np.floor(np.arange(100) * 50 / 100).astype(int)
    cols = np.floor(np.arange(140) * 70 / 140).astype(int)
    assert np.array_equal(up, label[rows][:, cols])


def test_resize_picks_from_list_and_respects_max_size():
    r = ResizeShortestEdge([256, 512], max_size=600)
    assert r.output_shape(100, 400, 256) == (150, 600)  # 256 x 1024 capped to a long side of 600
    assert r.output_shape(400, 100, 512) == (600, 150)
    assert r.output_shape(300, 200, 256) == (384, 256)
    rng = np.random.default_rng(0)
    drawn = {r.sample_size(rng) for _ in range(200)}
    assert drawn == {256, 512}
    official = ResizeShortestEdge(OFFICIAL_MIN_SIZE_TRAIN, 2048)
    drawn = {official.sample_size(rng) for _ in range(2000)}
    assert drawn == set(OFFICIAL_MIN_SIZE_TRAIN)
    image, label = _sample(90, 120)
    for seed in range(5):
        out_img, out_lab = official(image, label, np.random.default_rng(seed))
        assert min(out_img.shape[:2]) in OFFICIAL_MIN_SIZE_TRAIN and max(out_img.shape[:2]) <= 2048
    very_long = ResizeShortestEdge([1024], 2048)
    assert very_long.output_shape(100, 1000, 1024) == (205, 2048)


def test_same_seed_same_output_and_seeds_differ():
    t = build_train_transform()
    image, label = _sample(200, 260)
    a = t(image, label, np.random.default_rng(42))
    b = t(image, label, np.random.default_rng(42))
    c = t(image, label, np.random.default_rng(43))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_flip_moves_image_and_label_together():
    image, label = _sample(10, 14)
    f_img, f_lab = RandomHorizontalFlip(prob=1.0)(image, label, np.random.default_rng(0))
    assert np.array_equal(f_img, image[:, ::-1]) and np.array_equal(f_lab, label[:, ::-1])
    n_img, n_lab = RandomHorizontalFlip(prob=0.0)(image, label, np.random.default_rng(0))
    assert np.array_equal(n_img, image) and np.array_equal(n_lab, label)
    # through the whole pipeline (no resize, no colour jitter): the label keeps matching the image content
    t = build_train_transform(min_size_train=(40,), crop_size=(32, 32), pad_size=(32, 32), color_aug_ssd=False)
    lab = np.zeros((40, 60), dtype=np.uint8)
    lab[5:30, 10:25] = 1
    lab[:, 50:] = 255
    img = np.where(lab[..., None] == 1, 200, 40).astype(np.uint8).repeat(3, axis=2)
    img[:, :, 1] = np.arange(60, dtype=np.uint8)[None, :]  # a left-to-right ramp reveals flips
    flips = set()
    for seed in range(12):
        out_img, out_lab = t(img, lab, np.random.default_rng(seed))
        valid = out_lab != 255
        assert np.array_equal(out_lab[valid] == 1, out_img[..., 0][valid] == 200)
        ramp = out_img[0, :, 1].astype(int)
        flips.add(bool(ramp[1] < ramp[0]))
    assert flips == {True, False}


class _Script:
    """A stand-in RNG replaying scripted draws, to check each colour step's arithmetic."""

    def __init__(self, values):
        self.values = list(values)

    def integers(self, *args, **kwargs):
        return self.values.pop(0)

    def uniform(self, *args, **kwargs):
        return self.values.pop(0)


def test_color_aug_step_semantics():
    aug = ColorAugSSD("RGB")
    img = np.array([[[250, 10, 0], [100, 100, 100]]], dtype=np.uint8)
    # brightness +10 (clipped, truncated), order flag 1 -> contrast x1.5, saturation off, hue off
    out = aug.apply_image(img, _Script([1, 10.0, 1, 1, 1.5, 0, 0]))
    expected = np.clip((np.clip(img.astype(np.float32) + 10, 0, 255).astype(np.uint8)).astype(np.float32) * 1.5,
                       0, 255).astype(np.uint8)
    assert np.array_equal(out, expected)
    # hue on OpenCV's 0..180 scale: pure red (H = 0) shifted by +18 -> H = 18 (36 degrees) -> orange
    red = np.array([[[255, 0, 0]]], dtype=np.uint8)
    out = aug.apply_image(red, _Script([0, 0, 0, 1, 18, 0]))  # no brightness, sat/hue first: sat off, hue +18
    assert out[0, 0, 0] == 255 and out[0, 0, 2] == 0 and 150 <= out[0, 0, 1] <= 156
    # saturation x0.5 on a pure colour halves S (V kept): (255, 0, 0) -> (255, 127/128, 127/128)
    out = aug.apply_image(red, _Script([0, 0, 1, 0.5, 0, 0]))
    assert out[0, 0, 0] == 255 and abs(int(out[0, 0, 1]) - 128) <= 1 and out[0, 0, 1] == out[0, 0, 2]
    # hue wraps modulo 180: H = 0 shifted by -18 -> 162 (magenta side: blue rises, green stays 0)
    out = aug.apply_image(red, _Script([0, 0, 0, 1, -18, 0]))
    assert out[0, 0, 0] == 255 and out[0, 0, 1] == 0 and 150 <= out[0, 0, 2] <= 156


def test_color_jitter_leaves_labels_untouched():
    image, label = _sample(20, 30)
    aug = ColorAugSSD()
    changed = False
    for seed in range(10):
        out_img, out_lab = aug(image, label.copy(), np.random.default_rng(seed))
        assert np.array_equal(out_lab, label)
        assert out_img.shape == image.shape and out_img.dtype == np.uint8
        changed |= not np.array_equal(out_img, image)
    assert changed


def test_category_area_constraint_retries():
    # a crop containing only one category is rejected when the max area is < 1 (at most 10 tries)
    label = np.zeros((20, 40), dtype=np.uint8)
    label[:, 36:] = 1
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    crop = RandomCropCategoryAreaConstraint("absolute", (20, 8), single_category_max_area=0.9, ignored_category=255)
    hits = 0
    for seed in range(20):
        _, out = crop(image, label, np.random.default_rng(seed))
        assert out.shape == (20, 8)
        hits += len(np.unique(out)) > 1
    plain = RandomCropCategoryAreaConstraint("absolute", (20, 8), single_category_max_area=1.0)
    plain_hits = sum(len(np.unique(plain(image, label, np.random.default_rng(s))[1])) > 1 for s in range(20))
    assert hits > plain_hits


def test_build_from_config():
    cfg = SimpleNamespace(
        INPUT=SimpleNamespace(MIN_SIZE_TRAIN=[64, 80], MAX_SIZE_TRAIN=2048, MIN_SIZE_TRAIN_SAMPLING="choice",
                              CROP=SimpleNamespace(ENABLED=True, TYPE="absolute", SIZE=(48, 48),
                                                   SINGLE_CATEGORY_MAX_AREA=1.0),
                              COLOR_AUG_SSD=True, FORMAT="RGB", SIZE_DIVISIBILITY=48, RANDOM_FLIP="horizontal"),
        MODEL=SimpleNamespace(SEM_SEG_HEAD=SimpleNamespace(IGNORE_VALUE=255)),
    )
    t = build_train_transform(cfg)
    assert t.cfg.pad_size == (48, 48) and tuple(t.cfg.min_size_train) == (64, 80)
    out_img, out_lab = t(*_sample(30, 50), np.random.default_rng(0))
    assert out_img.shape == (48, 48, 3) and out_lab.shape == (48, 48)


def test_make_targets():
    label = torch.full((4, 6), 255, dtype=torch.uint8)
    label[0:2, 0:3] = 0
    label[1:4, 4:6] = 1
    t = make_targets(label)
    assert t["labels"].tolist() == [0, 1] and t["labels"].dtype == torch.int64
    assert t["masks"].dtype == torch.bool and t["masks"].shape == (2, 4, 6)
    assert torch.equal(t["masks"][1], label == 1)
    # background box x 0..2, y 0..1 -> xyxy (0, 0, 3, 2); glass x 4..5, y 1..3 -> (4, 1, 6, 4); / (W=6, H=4)
    expected = torch.tensor([[1.5 / 6, 1.0 / 4, 3 / 6, 2 / 4], [5.0 / 6, 2.5 / 4, 2 / 6, 3 / 4]])
    torch.testing.assert_close(t["boxes"], expected)
    only_glass = make_targets(torch.ones(3, 3, dtype=torch.uint8))
    assert only_glass["labels"].tolist() == [1]
    torch.testing.assert_close(only_glass["boxes"], torch.tensor([[0.5, 0.5, 1.0, 1.0]]))
    empty = make_targets(torch.full((3, 5), 255, dtype=torch.uint8))
    assert empty["labels"].numel() == 0 and empty["masks"].shape == (0, 3, 5) and empty["boxes"].shape == (0, 4)


def test_build_from_shipped_gem_config():
    from gemseg.config import get_config

    t = build_train_transform(get_config("gem-tiny"))
    assert t.cfg == build_train_transform().cfg  # the defaults are the GEM-384 recipe
    t1024 = build_train_transform(get_config("gem-tiny-1024"))
    assert t1024.cfg.crop_size == (1024, 1024) and t1024.cfg.pad_size == (1024, 1024)
