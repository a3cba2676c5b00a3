"""Huge images: no PIL DecompressionBombWarning, a stated pixel limit, bounded-memory decoding for the network."""
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gemseg.io import images
from gemseg.io.images import ImageReadError, read_image, read_image_reduced

REPO = Path(__file__).resolve().parents[2]

# runs in a fresh interpreter; VmHWM is the peak RSS of this process image (ru_maxrss would include the RSS of the
# forked test session before exec)
_PROBE = r"""
import json, pathlib, re, sys, warnings
warnings.simplefilter("error")  # any warning (PIL's DecompressionBombWarning included) fails the probe
from gemseg.io.images import read_image_reduced
rgb, size = read_image_reduced(sys.argv[1], 448)
peak_kib = int(re.search(r"VmHWM:\s*(\d+) kB", pathlib.Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"shape": list(rgb.shape), "size": list(size), "peak_mib": peak_kib / 1024}))
"""


def _make_big_jpeg(path: Path, w: int, h: int) -> None:
    code = ("import sys; from PIL import Image; "
            f"Image.linear_gradient('L').resize(({w}, {h})).convert('RGB').save(sys.argv[1], quality=60)")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc (Linux)")
def test_12000x9000_jpeg_decodes_reduced_with_bounded_memory_and_no_warning(tmp_path):
    big = tmp_path / "big.jpg"
    _make_big_jpeg(big, 12000, 9000)  # 108 megapixels: above PIL's warning limit (89 MP)
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", _PROBE, str(big)], capture_output=True, text=True, env=env)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    out = json.loads(res.stdout)
    assert out["size"] == [9000, 12000]  # the original size, for the mask
    assert min(out["shape"][:2]) >= 2 * 448 and out["shape"][0] * out["shape"][1] <= 12000 * 9000 // 16
    assert out["peak_mib"] < 250, out  # the full decode alone is 309 MiB of pixels (peak > 1 GiB before)


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG that claims w×h pixels (no image data): enough for PIL's size check."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_images_above_the_pixel_limit_are_refused_in_one_line(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 20000, 20000)  # 400 MP: PIL itself would raise DecompressionBombError
    with pytest.raises(ImageReadError, match=r"image is too large .*gemseg decodes at most 150 megapixels"):
        read_image(bomb)
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(small)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageReadError, match=r"too large \(40×30 = 0 megapixels; gemseg decodes at most 0 mega"):
        read_image(small)


def test_reduced_decode_keeps_the_mask_at_the_original_size(tmp_path, monkeypatch, capsys):
    """gem predict on a JPEG decoded in draft mode: the mask is written at the file's full size."""
    from gemseg.cli.main import main
    from tests.inference.tiny import tiny_weights

    photo = tmp_path / "in" / "wide.jpg"
    photo.parent.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (600, 1000, 3), np.uint8)).save(photo, quality=80)
    monkeypatch.setattr(images, "REDUCED_DECODE_PIXELS", 100_000)  # treat 0.6 MP as "huge"
    reduced, size = read_image_reduced(photo, 64)
    assert size == (600, 1000) and reduced.shape == (150, 250, 3)  # libjpeg 1/4 scale, still ≥ 2 × 64
    out = tmp_path / "out"
    assert main(["predict", str(photo.parent), "-w", str(tiny_weights(tmp_path)), "-o", str(out), "-q"]) == 0
    assert Image.open(out / "wide.png").size == (1000, 600)
    capsys.readouterr()
