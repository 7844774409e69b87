"""Full-precision images: 16-bit PNG, 8/16-bit and float TIFF of any number of bands, NumPy .npy and DICOM files
read into (H, W, C) arrays of their own value type, and written back in the data's own kind."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

# The value types data is read as and outputs are written in. Others are read as the nearest: bool as uint8,
# int8 as int16, and 32-bit integers and float16/float64 as float32.
VALUE_TYPES = ("uint8", "uint16", "int16", "float32")
ARRAY_EXTENSIONS = (".npy", ".dcm")
OUTPUT_FORMATS = ("auto", "png", "tif", "npy")
_TIFF = (".tif", ".tiff")
EXIF_ORIENTATION = 0x0112  # the EXIF tag of how an image is turned
_PIL_FULL = {"I;16": "uint16", "I;16L": "uint16", "I;16B": "uint16", "I;16N": "uint16", "I": "uint16", "F": "float32"}


@dataclass(frozen=True)
class Kind:
    """What a file holds, from its header: channels, value type, and whether it is an 8-bit image Pillow reads
    (read as it always was, through data.image_io) or data read at full precision here."""

    channels: int
    dtype: str
    eight_bit: bool

    def describe(self) -> str:
        bits = {"uint8": "8-bit", "uint16": "16-bit", "int16": "signed 16-bit", "float32": "float32"}[self.dtype]
        return f"{bits}, {self.channels} channel{'s' if self.channels != 1 else ''}"


def value_type(dtype: np.dtype) -> str:
    """The VALUE_TYPES name an array of dtype is read as."""
    dt = np.dtype(dtype)
    if dt == np.bool_ or dt == np.uint8:
        return "uint8"
    if dt == np.uint16:
        return "uint16"
    if dt in (np.int8, np.int16):
        return "int16"
    if dt.kind in "iuf":
        return "float32"
    raise ValueError(f"values of type {dt} are not read (numbers only)")


def as_value_type(a: np.ndarray) -> np.ndarray:
    return a.astype(value_type(a.dtype), copy=False)


def is_array_file(path: str) -> bool:
    """Formats only this module reads (Pillow does not)."""
    return path.lower().endswith(ARRAY_EXTENSIONS)


def probe(path: str, im: Image.Image | None = None) -> tuple[tuple[int, int], Kind]:
    """((width, height), Kind) of a file from its header; im: the file already opened by Pillow (None when Pillow
    cannot read it). Raises ValueError for what is not read."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        a = _load_npy(path, mmap=True)
        return (a.shape[1], a.shape[0]), Kind(a.shape[2], value_type(a.dtype), False)
    if ext == ".dcm":
        ds = _dicom(path, pixels=False)
        return (int(ds.Columns), int(ds.Rows)), Kind(int(getattr(ds, "SamplesPerPixel", 1)), "float32", False)
    if im is not None and not _wide_samples(im, path) and not oriented_tiff(im):
        if im.mode in _PIL_FULL:
            return im.size, Kind(1, _PIL_FULL[im.mode], False)
        return im.size, Kind(1 if im.mode in ("1", "L", "LA") else 3, "uint8", True)
    if ext == ".png" and im is not None:  # 16-bit colour: Pillow would read 8 bits of it
        w, h, _, c = _png_header(path)
        return (w, h), Kind(c - (c in (2, 4)), "uint16", False)  # alpha dropped
    if ext in _TIFF:
        shape, dtype = _tiff_header(path)
        # An oriented 8-bit grey or RGB TIFF is an 8-bit image as any other (data.image_io.load_image reads it).
        eight_bit = im is not None and oriented_tiff(im) and value_type(dtype) == "uint8" and shape[2] in (1, 3)
        return (shape[1], shape[0]), Kind(shape[2], value_type(dtype), eight_bit)
    raise ValueError("not an image file this loader reads")


def oriented_tiff(im: Image.Image) -> bool:
    """A TIFF whose Orientation tag is not upright: tifffile reads it and upright() turns it, the one orientation
    rule of every reader (Pillow turns some orientations of a TIFF on load, and scrambles 5 to 8)."""
    tags = getattr(im, "tag_v2", None) if im.format == "TIFF" else None
    return tags is not None and tags.get(274, 1) != 1


def _wide_samples(im: Image.Image, path: str) -> bool:
    """An image Pillow would not read exactly: colour of more than 8 bits per sample, which it reads as 8-bit
    (16-bit RGB PNG or TIFF), and a TIFF of 32-bit or signed integers, whose type it does not keep (tifffile
    reads those)."""
    if im.format == "TIFF" and im.mode.startswith("I") and im.mode not in ("I;16", "I;16B", "I;16L", "I;16N"):
        return path.lower().endswith(_TIFF)
    if im.mode not in ("RGB", "RGBA", "LA"):
        return False
    if im.format == "PNG":
        return path.lower().endswith(".png") and _png_header(path)[2] == 16
    tags = getattr(im, "tag_v2", None)
    bits = tags.get(258) if tags is not None else None
    return bits is not None and max(bits if isinstance(bits, tuple) else (bits,)) > 8


def _png_header(path: str) -> tuple[int, int, int, int]:
    """(width, height, bit depth, channels) from a PNG's IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(26)
    w, h, depth, colour = struct.unpack(">IIBB", head[16:26])
    return w, h, depth, {0: 1, 2: 3, 4: 2, 6: 4}.get(colour, 3)


def read_array(path: str, im: Image.Image | None = None) -> np.ndarray:
    """The file's values, (H, W, C) in their VALUE_TYPES type, upright per EXIF orientation; im: the file opened by
    Pillow (None when Pillow cannot read it). Raises ValueError for what is not read, ImportError naming the package
    a format needs."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        a = np.array(_load_npy(path, mmap=False))
    elif ext == ".dcm":
        a = _read_dicom(path)
    elif im is not None and not _wide_samples(im, path) and not oriented_tiff(im):
        a = _read_pil(im)
    elif ext == ".png" and im is not None:
        a = _read_png16(path)
    elif ext in _TIFF:
        a = _read_tiff(path)
    else:
        raise ValueError("not an image file this loader reads")
    a = a[:, :, None] if a.ndim == 2 else a
    return as_value_type(a)


def _read_pil(im: Image.Image) -> np.ndarray:
    if im.getexif().get(EXIF_ORIENTATION, 1) != 1:
        im = ImageOps.exif_transpose(im)
    if im.mode in _PIL_FULL:
        a = np.asarray(im)
        if im.mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
            return a.astype(np.float32)  # 32-bit integers beyond 16 bits: float values
        return a.astype(np.uint16) if im.mode == "I" else a
    if im.mode in ("RGBA", "RGBa", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA").convert("RGB")  # alpha dropped, as the 8-bit loader does
    return np.asarray(im if im.mode in ("L", "RGB") else im.convert("RGB"))


def _load_npy(path: str, mmap: bool) -> np.ndarray:
    try:
        a = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)  # never unpickles
    except EOFError as e:  # a truncated header
        raise ValueError(f"not a complete .npy file ({e})") from e
    return as_hwc(a)


def as_hwc(a: np.ndarray) -> np.ndarray:
    """An (H, W) or (H, W, C) array of numbers as (H, W, C); ValueError for anything else."""
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.dtype.kind not in "biuf":
        raise ValueError(f"an image must be numbers shaped (H, W) or (H, W, C), not {a.dtype} {a.shape}")
    if not a.size:
        raise ValueError(f"the image is empty: {a.shape[0]}x{a.shape[1]} pixels, {a.shape[2]} channels")
    return a


def _read_png16(path: str) -> np.ndarray:
    import png  # pypng: Pillow reads only 8 bits of 16-bit colour PNGs

    w, h, rows, info = png.Reader(filename=path).asDirect()
    a = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, info["planes"])
    return a[:, :, :-1] if info["alpha"] else a  # alpha dropped, as for 8-bit images


def _tiff_axes(shape: tuple[int, ...], axes: str) -> tuple[tuple[int, int, int], Callable[[np.ndarray], np.ndarray]]:
    """The (H, W, C) shape of a TIFF series and how to turn its array into it: one axis besides Y and X (samples,
    channels or pages) becomes C; others must have length 1."""
    extra = [i for i, ax in enumerate(axes) if ax not in "YX" and shape[i] != 1]
    if len(extra) > 1 or "Y" not in axes or "X" not in axes:
        raise ValueError(f"a TIFF of shape {shape} (axes {axes}) is not one image of one or more bands")
    y, x = axes.index("Y"), axes.index("X")
    c = shape[extra[0]] if extra else 1
    order = [y, x, *extra] + [i for i in range(len(shape)) if i not in (y, x, *extra)]  # length-1 axes last

    def to_hwc(a: np.ndarray) -> np.ndarray:
        return np.transpose(a, order).reshape(shape[y], shape[x], c)

    return (shape[y], shape[x], c), to_hwc


@contextlib.contextmanager
def _tifffile_errors() -> Iterator[None]:
    """What tifffile raises for a file it cannot read, as ValueError (a damaged file) or ImportError naming the
    package a compression needs, never a bare traceback."""
    try:
        yield
    except ImportError as e:  # ZSTD, LZW, JPEG ...: codecs tifffile takes from imagecodecs
        raise ImportError(f"its compression needs imagecodecs ({e}): pip install imagecodecs") from e
    except (zlib.error, TypeError, KeyError, IndexError, struct.error) as e:  # a corrupt strip, a broken header
        raise ValueError(f"a damaged or unsupported TIFF ({type(e).__name__}: {e})") from e


def _tiff_header(path: str) -> tuple[tuple[int, int, int], np.dtype]:
    """The (H, W, C) shape of a TIFF read by tifffile, upright (as _read_tiff gives it), and its type."""
    import tifffile

    with _tifffile_errors(), tifffile.TiffFile(path) as tif:
        s = tif.series[0]
        (h, w, c), swap = _tiff_axes(s.shape, s.axes)[0], _orientation(tif) in (5, 6, 7, 8)
        return ((w, h, c) if swap else (h, w, c)), s.dtype


def _read_tiff(path: str) -> np.ndarray:
    import tifffile

    with _tifffile_errors(), tifffile.TiffFile(path) as tif:
        s = tif.series[0]
        try:
            a = s.asarray()
        except ValueError as e:  # a compression tifffile decodes only with imagecodecs (LZW, JPEG ...)
            raise ImportError(f"{e} (pip install imagecodecs)") from e
        return upright(_tiff_axes(s.shape, s.axes)[1](a), _orientation(tif))


def _orientation(tif: Any) -> int:
    """A TIFF's Orientation tag (274, the same as EXIF's), 1 (upright) when it has none."""
    tag = tif.pages[0].tags.get(274)
    try:
        return int(tag.value) if tag is not None else 1
    except (TypeError, ValueError):
        return 1


def upright(a: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) turned upright as an EXIF/TIFF orientation says, as Pillow's ImageOps.exif_transpose turns an
    image: one rule for every reader (Pillow applies it to what it reads)."""
    turns = {
        2: lambda x: x[:, ::-1],  # mirrored
        3: lambda x: x[::-1, ::-1],  # rotated 180
        4: lambda x: x[::-1],  # flipped
        5: lambda x: x.transpose(1, 0, 2),  # transposed
        6: lambda x: np.rot90(x, -1),  # rotated 90 clockwise to be upright
        7: lambda x: np.rot90(x, 2).transpose(1, 0, 2),  # transversed
        8: lambda x: np.rot90(x, 1),  # rotated 90 counter-clockwise to be upright
    }
    turn = turns.get(orientation)
    return np.ascontiguousarray(turn(a)) if turn is not None else a


def _dicom(path: str, pixels: bool):
    try:
        import pydicom
    except ImportError as e:
        raise ImportError("DICOM files need pydicom: pip install -r requirements-dicom.txt") from e
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
    except pydicom.errors.InvalidDicomError as e:  # not an OSError or ValueError
        raise ValueError(f"not a DICOM file ({e})") from e
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise ValueError("a multi-frame DICOM file; one slice per file is read")
    return ds


def _read_dicom(path: str) -> np.ndarray:
    """The slice's values in the modality's units (rescale slope and intercept applied: Hounsfield units for CT)."""
    from pydicom.pixels import apply_rescale

    ds = _dicom(path, pixels=True)
    try:
        pixels = ds.pixel_array
    except (AttributeError, NotImplementedError, RuntimeError) as e:  # no pixel data, a codec pydicom lacks
        raise ValueError(f"cannot decode the DICOM pixel data ({e})") from e
    return np.asarray(apply_rescale(pixels, ds), dtype=np.float32)


# ---- writing ---------------------------------------------------------------------------------------------------
def output_format(fmt: str, dtype: str, channels: int) -> str:
    """The file format --output_format gives for outputs of dtype and channels: auto is PNG for 8- and 16-bit
    unsigned images of 1 or 3 channels, TIFF otherwise (signed, float, other channel counts)."""
    if fmt != "auto":
        return fmt
    return "png" if png_problem(dtype, channels) is None else "tif"


def png_problem(dtype: str, channels: int) -> str | None:
    """Why a PNG would not read back as written, or None: a PNG's second or fourth band is alpha, which readers
    (this project's too) drop, so outputs of 2 or 4 channels go to TIFF or .npy."""
    if dtype not in ("uint8", "uint16"):
        return f"PNG holds 8- and 16-bit unsigned values, not {dtype}"
    if channels not in (1, 3):
        return f"PNG holds 1 (grey) or 3 (RGB) channels that read back as written, not {channels}"
    return None


def encode(a: np.ndarray, fmt: str) -> bytes:
    """An (H, W, C) array as a file's bytes in fmt ("png", "tif" or "npy"), values as they are."""
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, a[:, :, 0] if a.shape[2] == 1 else a, allow_pickle=False)
        return buf.getvalue()
    if fmt == "tif":
        import tifffile

        buf = io.BytesIO()
        if a.shape[2] == 1:
            tifffile.imwrite(buf, a[:, :, 0], photometric="minisblack", compression="zlib")
        else:  # one page of C samples per pixel (YXS), colour-tagged only for 8-bit RGB
            rgb = a.shape[2] == 3 and a.dtype == np.uint8
            tifffile.imwrite(
                buf, a, photometric="rgb" if rgb else "minisblack", planarconfig="contig", compression="zlib"
            )
        return buf.getvalue()
    problem = png_problem(str(a.dtype), a.shape[2])
    if problem:
        raise ValueError(problem)
    import png  # pypng writes 16-bit grey and colour PNGs alike

    buf = io.BytesIO()
    h, w, c = a.shape
    png.Writer(w, h, greyscale=c < 3, alpha=c in (2, 4), bitdepth=a.dtype.itemsize * 8).write(
        buf, a.reshape(h, w * c).astype(">u2" if a.dtype == np.uint16 else np.uint8)
    )
    return buf.getvalue()
