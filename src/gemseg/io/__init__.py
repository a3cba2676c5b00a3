"""Image and mask I/O shared by every command (predict, eval, train, synth).

One reader for images, one for masks, one atomic writer: a fix for 16-bit TIFFs or palette masks lands everywhere.
"""
from gemseg.io.atomic import atomic_path, atomic_write_bytes
from gemseg.io.images import IMAGE_EXTENSIONS, ImageReadError, read_image, to_rgb_uint8
from gemseg.io.masks import read_mask, write_mask

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "atomic_path",
    "atomic_write_bytes",
    "read_image",
    "read_mask",
    "to_rgb_uint8",
    "write_mask",
]
