"""Dataset layouts: detection, splits, pairing, unpaired reporting, official names and mask decoding."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gemseg.data import (Dataset, DatasetError, MaskDecodeError, Sample, decode_mask, load_mask_binary, masks_only,
                         pair_files, resolve_dataset)
from tests.conftest import shared_path


def _img(path: Path, size=(8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 120, np.uint8)).save(path)
    return path


def _mask(path: Path, arr: np.ndarray, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path)
    return path


def _zero_one(h=6, w=8) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[:, :3] = 1
    m[0, 7] = 255
    return m


# ------------------------------------------------------------------------------------------------------------ GSD-S


def _gsds(root: Path) -> Path:
    for split, stems in (("training", ["t1", "t2"]), ("validation", ["v1", "v2", "v3"])):
        for s in stems:
            _img(root / "images" / split / f"{s}.jpg")
            _mask(root / "annotations_zero_one" / split / f"{s}.png", _zero_one())
    return root


def test_gsds_autodetect_default_split_and_decoding(tmp_path):
    root = _gsds(tmp_path / "GSD-S-D2")
    ds = resolve_dataset(root)
    assert ds.layout == "gsd-s" and ds.split == "validation" and len(ds) == 3
    assert [s.key for s in ds] == ["v1", "v2", "v3"]
    glass, ignore = ds.load_mask_binary(ds[0])
    assert glass.sum() == 6 * 3 and ignore.sum() == 1 and not (glass & ignore).any()
    assert len(resolve_dataset(root, split="train")) == 2  # alias of 'training'
    assert resolve_dataset(root, split="test").split == "validation"
    assert resolve_dataset(root, layout="sgsd").layout == "sgsd"
    (root / "synth_info.json").write_text("{}")  # what `gem synth` leaves next to the GSD-S folders
    assert resolve_dataset(root).layout == "sgsd"


def test_gsds_rejects_0_255_masks_in_zero_one_folder(tmp_path):
    root = _gsds(tmp_path / "d")
    _mask(root / "annotations_zero_one" / "validation" / "v1.png", np.array([[0, 255], [128, 0]], np.uint8))
    ds = resolve_dataset(root)
    with pytest.raises(MaskDecodeError, match="0/1/255"):
        load_mask_binary(ds[0])


def test_official_names_under_detectron2_datasets(tmp_path, monkeypatch):
    _gsds(tmp_path / "GSD-S-D2")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "GSD-S-D2"))
    val = resolve_dataset("ade20k_sem_seg_val")
    train = resolve_dataset("ade20k_sem_seg_train")
    assert (len(val), len(train)) == (3, 2) and val.split == "validation" and train.split == "training"
    # default root is ./datasets, as in the official builtin.py
    monkeypatch.delenv("DETECTRON2_DATASETS")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match="DETECTRON2_DATASETS"):
        resolve_dataset("ade20k_sem_seg_val")
    (tmp_path / "GSD-S-D2").rename(tmp_path / "datasets")
    assert len(resolve_dataset("ade20k_sem_seg_val")) == 3


# --------------------------------------------------------------------------------------------------- GDD / GSD / T10K


def test_gdd_split_folders_with_singular_and_plural_names(tmp_path):
    root = tmp_path / "GDD"
    _img(root / "train" / "image" / "a.jpg")
    _mask(root / "train" / "mask" / "a.png", np.full((6, 8), 255, np.uint8))
    for s in ("b", "c"):
        _img(root / "test" / "images" / f"{s}.jpg")
        _mask(root / "test" / "masks" / f"{s}.png", np.zeros((6, 8), np.uint8))
    ds = resolve_dataset(root)
    assert ds.layout == "gdd" and ds.split == "test" and [s.key for s in ds] == ["b", "c"]
    tr = resolve_dataset(root, split="train")
    assert len(tr) == 1 and load_mask_binary(tr[0])[0].all()
    gsd = tmp_path / "GSD"
    root.rename(gsd)
    assert resolve_dataset(gsd).layout == "gsd"


def test_trans10k_colour_masks_and_easy_hard(tmp_path):
    root = tmp_path / "Trans10K"
    colour = np.zeros((6, 8, 3), np.uint8)
    colour[0:2] = (255, 0, 0)  # things
    colour[2:4] = (255, 255, 255)  # stuff
    _img(root / "train" / "images" / "1.jpg")
    _mask(root / "train" / "masks" / "1_mask.png", colour, "RGB")
    for sub in ("easy", "hard"):
        _img(root / "test" / sub / "images" / f"{sub}1.jpg")
        _mask(root / "test" / sub / "masks" / f"{sub}1_mask.png", colour, "RGB")
    ds = resolve_dataset(root)
    assert ds.layout == "trans10k" and len(ds) == 2 and {s.key for s in ds} == {"easy/easy1", "hard/hard1"}
    glass, ignore = load_mask_binary(ds[0])
    assert glass[:4].all() and not glass[4:].any() and not ignore.any()
    assert len(resolve_dataset(root, split="test_easy")) == 1
    assert len(resolve_dataset(root, split="train")) == 1


# -------------------------------------------------------------------------------------------------- flat / generic


def test_generic_pairing_reports_unpaired(tmp_path):
    for s in ("a", "b", "only_image"):
        _img(tmp_path / "imgs" / f"{s}.jpg")
    for s in ("a", "b", "only_mask"):
        _mask(tmp_path / "gts" / f"{s}.png", np.zeros((6, 8), np.uint8))
    ds = resolve_dataset(images=tmp_path / "imgs", masks=tmp_path / "gts")
    assert ds.layout == "generic" and [s.key for s in ds] == ["a", "b"]
    assert [p.name for p in ds.unpaired_images] == ["only_image.jpg"]
    assert [p.name for p in ds.unpaired_masks] == ["only_mask.png"]
    rep = ds.pairing_report()
    assert "1 images without a mask: " in rep and "only_image.jpg" in rep and "only_mask.png" in rep


def test_pairing_by_relative_path_then_unique_stem(tmp_path):
    _img(tmp_path / "i" / "x" / "a.jpg")
    _img(tmp_path / "i" / "y" / "a.jpg")
    _img(tmp_path / "i" / "z" / "b.jpg")
    _mask(tmp_path / "m" / "x" / "a.png", np.zeros((6, 8), np.uint8))
    _mask(tmp_path / "m" / "b.png", np.zeros((6, 8), np.uint8))  # flat mask folder: pairs by unique stem
    pairs, ui, um = pair_files(tmp_path / "i", tmp_path / "m")
    assert [(k, m.relative_to(tmp_path).as_posix()) for k, _, m in pairs] == [("x/a", "m/x/a.png"),
                                                                               ("z/b", "m/b.png")]
    assert [p.relative_to(tmp_path).as_posix() for p in ui] == ["i/y/a.jpg"] and um == []


def test_realdata_sets_resolve():
    for name, n in (("curtainwall", 22), ("cleargrasp", 4), ("mirror3d_nyu", 3)):
        ds = resolve_dataset(shared_path("realdata", name))
        assert ds.layout == "realdata" and len(ds) == n and not ds.unpaired_images and not ds.unpaired_masks
        glass, ignore = load_mask_binary(ds[0])
        assert glass.any() and not ignore.any()
    cw = masks_only(shared_path("realdata", "curtainwall"))  # a dataset root given as --gt-dir
    assert len(cw) == 22 and all(s.image is None for s in cw)


def test_errors_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        resolve_dataset(tmp_path / "nope")
    (tmp_path / "weird").mkdir()
    with pytest.raises(DatasetError, match="cannot recognise"):
        resolve_dataset(tmp_path / "weird")
    _gsds(tmp_path / "g")
    with pytest.raises(DatasetError, match="no images/training2"):
        resolve_dataset(tmp_path / "g", split="training2")
    with pytest.raises(DatasetError, match="unknown layout"):
        resolve_dataset(tmp_path / "g", layout="coco")
    with pytest.raises(DatasetError, match="--dataset"):  # a GSD-S root is not a mask folder
        masks_only(tmp_path / "g")
    assert len(masks_only(tmp_path / "g" / "annotations_zero_one" / "validation")) == 3


# ---------------------------------------------------------------------------------------------------- mask decoding


def test_decode_rules():
    z1 = np.array([[0, 1], [1, 0]], np.uint8)
    assert decode_mask(z1)[0].tolist() == [[False, True], [True, False]]
    z255 = np.array([[0, 255], [255, 0]], np.uint8)
    g, i = decode_mask(z255)
    assert g.tolist() == [[False, True], [True, False]] and not i.any()  # auto: 0/255 → 255 is glass
    g, i = decode_mask(np.array([[0, 1], [255, 0]], np.uint8))  # 0/1/255: 255 is ignore
    assert g.tolist() == [[False, True], [False, False]] and i.tolist() == [[False, False], [True, False]]
    g, _ = decode_mask(np.array([[0, 127], [128, 200]], np.uint8))  # anti-aliased grey: > 127
    assert g.tolist() == [[False, False], [True, True]]
    g, _ = decode_mask(np.array([[0, 40000]], np.uint16))  # 16-bit: half range
    assert g.tolist() == [[False, True]]
    rgb = np.zeros((1, 3, 3), np.uint8)
    rgb[0, 1] = (0, 0, 255)
    assert decode_mask(rgb)[0].tolist() == [[False, True, False]]
    with pytest.raises(MaskDecodeError):
        decode_mask(rgb, "zero_one")
    # 'binary' never treats 255 as ignore, even with 1s present
    g, i = decode_mask(np.array([[0, 1], [255, 0]], np.uint8), "binary")
    assert g.tolist() == [[False, False], [True, False]] and not i.any()


def test_palette_png_decoded_by_index(tmp_path):
    idx = np.array([[0, 1, 1], [0, 0, 1]], np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    im.save(tmp_path / "p.png")
    glass, ignore = load_mask_binary(Sample("p", None, tmp_path / "p.png"))
    assert glass.tolist() == idx.astype(bool).tolist() and not ignore.any()


def test_dataset_object_api(tmp_path):
    _gsds(tmp_path / "g")
    ds = resolve_dataset(tmp_path / "g", encoding="auto")
    assert isinstance(ds, Dataset) and all(s.encoding == "auto" for s in ds)
    assert "3 pairs" in ds.describe() and ds.pairing_report() == ""
