"""Reading images robustly: mode conversion rules, EXIF orientation, full-precision files (data.arrays), and scanning
a data set for bad files."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from data.arrays import EXIF_ORIENTATION, Kind, is_array_file, oriented_tiff, probe, read_array

log = logging.getLogger(__name__)


class BadImageError(RuntimeError):
    """An image file that cannot be decoded; the message starts with 'cannot read image <path>'."""


# The pixel modes the loader reads. Not read: premultiplied alpha (La, which Pillow does not convert), and any other
# mode. 16-bit, 32-bit integer and float (F) images are read at full precision (data.arrays) by the data sets; the
# 8-bit rules below (to_8bit) are for what must be 8-bit.
READ_MODES = frozenset(
    {"1", "L", "P", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA", "I", "F"}
    | {"I;16", "I;16L", "I;16B", "I;16N"}
)
# translate.py --tile raises Pillow's decompression-bomb limit to this (2**30 pixels, e.g. 32768 x 32768: 3 GB as
# 8-bit RGB, 12 GB as the float tensor the generator reads).
TILE_MAX_PIXELS = 2**30
_OPEN_LOCK = threading.Lock()  # Pillow's limit is a module global: set for one open at a time


def check_mode(im: Image.Image) -> None:
    """Refuse (ValueError) a pixel mode the loader does not read; the header says it, nothing is decoded."""
    if im.mode not in READ_MODES:
        raise ValueError(f"pixels of mode {im.mode} are not read; save the image as 8-bit RGB or L")


def to_8bit(im: Image.Image) -> Image.Image:
    """The loader's rules, up to the channels: upright per EXIF orientation, then an 8-bit mode that Pillow
    converts to both L and RGB. Raises ValueError for what it does not read (check_mode, 32-bit values above
    65535)."""
    check_mode(im)
    if im.mode == "F":
        raise ValueError("32-bit float pixels (mode F) have no 8-bit form; the data sets read them at full precision")
    if im.getexif().get(EXIF_ORIENTATION, 1) != 1:  # no copy for the usual upright image
        im = ImageOps.exif_transpose(im)
    top = im.getextrema()[1] if im.mode == "I" else None
    if top is not None and top > 65535:
        raise ValueError("32-bit integer pixels above 65535 (mode I) are not read; save with 8 or 16 bits")
    if top is not None and top <= 255:  # 8-bit values in a 32-bit container: as they are (negative ones 0)
        return Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.uint8), mode="L")
    if im.mode.startswith("I"):  # 16-bit values (negative ones 0)
        arr = np.asarray(im, dtype=np.float64)
        return Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8), mode="L")
    if im.mode in ("RGBA", "RGBa", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        return im.convert("RGBA").convert("RGB")  # drop alpha
    return im.convert("RGB") if im.mode == "LAB" else im  # Pillow converts LAB to RGB only


def convert(im: Image.Image, nc: int) -> Image.Image:
    """An opened image (a file's, or one given to the Python API) as the loader reads it: 8-bit L (nc=1) or RGB
    (nc=3), upright per its EXIF orientation.

    Conversion rules: 16-bit images are scaled to 8 bits over the full range (value / 257, not clipped);
    alpha (RGBA, LA, palette transparency) is dropped, not composited; CMYK, LAB, palette and grayscale are
    converted by Pillow to RGB, and colour to L with the ITU-R 601-2 luma transform. Modes outside READ_MODES
    (32-bit float) and 32-bit integers above 65535 raise ValueError.
    """
    im = to_8bit(im)
    mode = "L" if nc == 1 else "RGB"
    return im if im.mode == mode else im.convert(mode)


@contextlib.contextmanager
def open_image(path: str, max_pixels: int | None = None) -> Iterator[Image.Image]:
    """Image.open(path) under a decompression-bomb limit: Pillow's (2 * Image.MAX_IMAGE_PIXELS) by default, or
    max_pixels (for translate.py --tile, TILE_MAX_PIXELS). Raises BadImageError for a larger image, naming the
    limit and how to raise it."""
    try:
        with _OPEN_LOCK:  # Pillow's check off while it opens (max_pixels is checked below), for this open only
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = saved if max_pixels is None else None
            try:
                im = Image.open(path)  # the header only: the lock is held briefly
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except Image.DecompressionBombError as e:
        raise BadImageError(f"cannot read image {path}: {str(e).rstrip('.')}; {_raise_limit_hint(max_pixels)}") from e
    with im:
        if max_pixels is not None:  # else Pillow checked its own limit when it opened the file
            check_pixels(path, im.size, max_pixels)
        yield im


def check_pixels(path: str, size: tuple[int, int], max_pixels: int | None) -> None:
    """The one decompression-bomb limit of every reader, checked from the header before anything is allocated:
    max_pixels (translate.py --tile's TILE_MAX_PIXELS), else Pillow's own (2 * Image.MAX_IMAGE_PIXELS)."""
    limit = max_pixels if max_pixels is not None else 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None
    w, h = size
    if limit is not None and w * h > limit:
        raise BadImageError(
            f"cannot read image {path}: {w}x{h} is {w * h} pixels, over the limit of {limit}; "
            + _raise_limit_hint(max_pixels)
        )


def _raise_limit_hint(max_pixels: int | None) -> str:
    if max_pixels is not None and max_pixels >= TILE_MAX_PIXELS:
        return "crop or downscale the image first"
    return f"translate.py --tile reads images of up to {TILE_MAX_PIXELS} pixels (for training, downscale it)"


def load_image(path: str, nc: int, max_pixels: int | None = None) -> Image.Image:
    """Open an image as 8-bit L (nc=1) or RGB (nc=3), upright per its EXIF orientation (see convert for the
    rules). max_pixels: the decompression-bomb limit (open_image)."""
    try:
        with open_image(path, max_pixels) as im:
            if oriented_tiff(im):  # turned by the one rule of every reader (data.arrays.upright), not Pillow's
                a = read_array(path, im)
                return convert(Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a), nc)
            out = convert(im, nc)
            return out.copy() if out is im else out  # a closed file's image is unusable
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadImageError(f"cannot read image {path}: {e}") from e


def upright_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image once turned upright, from its header: what convert() gives. EXIF
    orientations 5-8 swap the sides, unless the format's reader has already: recent Pillow reports a TIFF's size
    upright and turns its pixels on load itself, so its size then differs from the TIFF's ImageWidth and
    ImageLength (swapping again gave the size of the unturned image, and a mismatch with the decoded one)."""
    w, h = im.size
    tags = getattr(im, "tag_v2", None)  # a TIFF's tags
    turned_by_reader = tags is not None and (tags.get(256), tags.get(257)) != (w, h)
    if im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8) and not turned_by_reader:
        w, h = h, w
    return w, h


def inspect_image(path: str, decode: bool, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) as the image will be used: inspect_file's."""
    return inspect_file(path, decode, max_pixels)[0]


def inspect_file(path: str, decode: bool, max_pixels: int | None = None) -> tuple[tuple[int, int], Kind]:
    """((width, height) as the image will be used (upright_size), its Kind); decode=False reads the header only
    (and refuses a mode the loader does not read); decode=True also decodes the values (read_file), so whatever
    loading would refuse (a truncated file, say) is found here, and the size is the decoded one."""
    try:
        empty = os.path.getsize(path) == 0
    except OSError as e:  # a dangling link, a file removed since the scan
        raise BadImageError(
            f"cannot read image {path}: {e.strerror}" + (" (a dangling link)" if os.path.islink(path) else "")
        ) from e
    if empty:
        raise BadImageError(f"cannot read image {path}: the file is empty")
    try:
        with open_file(path, max_pixels) as im:
            if im is not None:
                check_mode(im)
            size, kind = probe(path, im)
            if im is not None and not oriented_tiff(im):  # an oriented TIFF's upright size is probe's
                size = upright_size(im)
            if decode and kind.eight_bit and not oriented_tiff(im):
                im.load()  # to_8bit leaves an upright RGB or L image undecoded
                size = to_8bit(im).size
            elif decode:
                a = read_array(path, im)
                size = (a.shape[1], a.shape[0])
            return size, kind
    except (OSError, ValueError, SyntaxError, ImportError, Image.DecompressionBombError) as e:
        raise BadImageError(f"cannot read image {path}: {e}") from e


@contextlib.contextmanager
def open_file(path: str, max_pixels: int | None = None) -> Iterator[Image.Image | None]:
    """open_image, or None for a file Pillow does not read (.npy, DICOM, a TIFF of many bands or 16-bit colour,
    read by data.arrays)."""
    if is_array_file(path):
        check_pixels(path, probe(path, None)[0], max_pixels)  # .npy, DICOM: their headers
        yield None
        return
    try:
        ctx = open_image(path, max_pixels)
        im = ctx.__enter__()
    except UnidentifiedImageError:
        if not path.lower().endswith((".tif", ".tiff")):
            raise
        check_pixels(path, probe(path, None)[0], max_pixels)  # a TIFF Pillow does not open: tifffile's header
        yield None
        return
    try:
        yield im
    finally:
        ctx.__exit__(None, None, None)


def read_file(path: str, max_pixels: int | None = None) -> np.ndarray:
    """A file's values at full precision, (H, W, C) in their data.arrays.VALUE_TYPES type, upright per EXIF
    orientation, channels as stored (alpha dropped). Raises BadImageError naming the file."""
    try:
        with open_file(path, max_pixels) as im:
            if im is not None:
                check_mode(im)
            return read_array(path, im)
    except (OSError, ValueError, SyntaxError, ImportError, Image.DecompressionBombError) as e:
        raise BadImageError(f"cannot read image {path}: {e}") from e


def scan(
    paths: Sequence[str], decode: bool, workers: int = 4, max_pixels: int | None = None
) -> tuple[dict[str, tuple[int, int]], dict[str, str], dict[str, Kind]]:
    """Inspect every file (threads: Pillow decodes without the GIL). Returns (sizes, errors, kinds) by path."""
    sizes: dict[str, tuple[int, int]] = {}
    errors: dict[str, str] = {}
    kinds: dict[str, Kind] = {}

    def one(p: str) -> None:
        try:
            sizes[p], kinds[p] = inspect_file(p, decode, max_pixels)
        except BadImageError as e:
            errors[p] = str(e)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(one, paths))
    return sizes, errors, kinds


def data_error(e: BaseException) -> str | None:
    """The useful line of a data-loading failure, raised here or re-raised from a loader worker."""
    for line in reversed(str(e).splitlines()):
        m = re.search(r"(cannot read image .*|image of \d+x\d+ .*smaller than --crop_size \d+)", line)
        if m:
            return m.group(1)
    return None
