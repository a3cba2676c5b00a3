import os
import stat

import numpy as np
import pytest
from PIL import Image

from gemseg.io import ImageReadError, atomic_path, read_image, read_mask, write_mask


def test_atomic_write_has_normal_permissions_and_no_leftovers(tmp_path):
    target = tmp_path / "sub" / "m.png"
    write_mask(target, np.eye(4, dtype=bool))
    mode = stat.S_IMODE(os.stat(target).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    assert np.array_equal(read_mask(target), np.eye(4, dtype=np.uint8) * 255)
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]  # nothing half-written, no temp file


def test_read_image_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    cases = {
        "rgb.png": Image.fromarray(rgb),
        "gray.png": Image.fromarray(rgb[..., 0]),
        "rgba.png": Image.fromarray(np.dstack([rgb, np.full((5, 7), 255, np.uint8)])),
        "pal.png": Image.fromarray(rgb).convert("P"),
        "g16.png": Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
        out = read_image(tmp_path / name)
        assert out.shape == (5, 7, 3) and out.dtype == np.uint8, name
    assert np.array_equal(read_image(tmp_path / "rgb.png"), rgb)
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)
    assert np.array_equal(read_image(tmp_path / "gray.png")[..., 1], rgb[..., 0])
    assert np.array_equal(read_image(tmp_path / "g16.png")[..., 0], rgb[..., 0])


def test_exif_orientation_applied(tmp_path):
    im = Image.new("RGB", (6, 3), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    im.save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (6, 3, 3)


def test_bad_files_raise_with_path_and_reason(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    Image.new("RGB", (64, 64)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 3])
    for name, reason in [("empty.jpg", "empty"), ("text.jpg", "not a recognised"), ("trunc.jpg", "truncated"),
                         ("missing.jpg", "not found")]:
        with pytest.raises(ImageReadError) as e:
            read_image(tmp_path / name)
        assert name in str(e.value) and reason in str(e.value).lower(), str(e.value)
