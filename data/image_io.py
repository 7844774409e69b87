"""Reading images robustly: mode conversion rules, EXIF orientation, and scanning a data set for bad files."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)
_EXIF_ORIENTATION = 0x0112


class BadImageError(RuntimeError):
    """An image file that cannot be decoded; the message starts with 'cannot read image <path>'."""


def load_image(path: str, nc: int) -> Image.Image:
    """Open an image as 8-bit L (nc=1) or RGB (nc=3), upright per its EXIF orientation.

    Conversion rules: 16-bit images are scaled to 8 bits over the full range (value / 257, not clipped);
    alpha (RGBA, LA, palette transparency) is dropped, not composited; CMYK, palette and grayscale are
    converted by Pillow to RGB, and colour to L with the ITU-R 601-2 luma transform.
    """
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode == "F":  # no known value range: 0..1, 0..255 and 0..65535 are all common
                raise ValueError("32-bit float pixels (mode F) are not read; save the image with 8 or 16 bits")
            top = im.getextrema()[1] if im.mode == "I" else None
            if top is not None and top > 65535:
                raise ValueError("32-bit integer pixels above 65535 (mode I) are not read; save with 8 or 16 bits")
            if top is not None and top <= 255:  # 8-bit values in a 32-bit container: as they are
                im = Image.fromarray(np.asarray(im).astype(np.uint8), mode="L")
            elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8), mode="L")
            elif im.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA").convert("RGB")  # drop alpha
            return im.convert("L" if nc == 1 else "RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadImageError(f"cannot read image {path}: {e}") from e


def inspect_image(path: str, decode: bool) -> tuple[int, int]:
    """(width, height) as the image will be used (EXIF rotation applied); decode=True also decodes the
    pixels, which catches truncated files; decode=False reads the header only."""
    try:
        empty = os.path.getsize(path) == 0
    except OSError as e:  # a dangling link, a file removed since the scan
        raise BadImageError(
            f"cannot read image {path}: {e.strerror}" + (" (a dangling link)" if os.path.islink(path) else "")
        ) from e
    if empty:
        raise BadImageError(f"cannot read image {path}: the file is empty")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                w, h = h, w
            if decode:
                im.load()
            return w, h
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadImageError(f"cannot read image {path}: {e}") from e


def scan(paths: Sequence[str], decode: bool, workers: int = 4) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """Inspect every file (threads: Pillow decodes without the GIL). Returns (sizes, errors) by path."""
    sizes: dict[str, tuple[int, int]] = {}
    errors: dict[str, str] = {}

    def one(p: str) -> None:
        try:
            sizes[p] = inspect_image(p, decode)
        except BadImageError as e:
            errors[p] = str(e)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(one, paths))
    return sizes, errors


def data_error(e: BaseException) -> str | None:
    """The useful line of a data-loading failure, raised here or re-raised from a loader worker."""
    for line in reversed(str(e).splitlines()):
        m = re.search(r"(cannot read image .*|image of \d+x\d+ .*smaller than --crop_size \d+)", line)
        if m:
            return m.group(1)
    return None
