"""The app's translation service: trained generators loaded once and kept (a bounded cache), one translation at a
time (no two requests share a GPU's memory), files read and results written as translate.py reads and writes
them, and every fault as one message for the page."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from data.image_io import TILE_MAX_PIXELS, BadImageError, inspect_file, read_file
from data.values import ValueRange
from engine import CheckpointError, ImageTranslator, WeightsMismatch, load_translator
from metrics import psnr
from webapp import runs


class AppError(Exception):
    """What the page says instead of a result: one plain sentence, never a stack trace."""


@dataclass(frozen=True)
class Window:
    """How data values become 8-bit preview pixels: "run" (the run's --range_A / --range_B), "image" (each image's
    0.5 to 99.5 percentiles) or "custom" (lo..hi in the data's units, for every image shown)."""

    mode: str = "run"
    lo: float = 0.0
    hi: float = 255.0

    def bounds(self, a: np.ndarray, run_range: ValueRange) -> tuple[float, float]:
        if self.mode == "custom":
            return self.lo, self.hi
        if self.mode == "image":
            finite = a[np.isfinite(a)]
            lo, hi = np.percentile(finite, (0.5, 99.5)) if finite.size else (0.0, 1.0)
            return float(lo), float(hi)
        return run_range.lo, run_range.hi


def preview(a: np.ndarray, lo: float, hi: float, channels: tuple[int, ...] | None) -> np.ndarray:
    """(H, W, C) data values -> (H, W, 3) uint8: lo..hi to 0..255 (clipped); 1 channel grey, 3 RGB, other counts
    the run's --preview_channels (default the first, grey)."""
    if a.shape[2] not in (1, 3):
        a = a[..., list(channels or (0,))]
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    u8 = np.clip((np.nan_to_num(a.astype(np.float64), nan=lo) - lo) * scale, 0, 255).round().astype(np.uint8)
    return np.repeat(u8, 3, axis=2) if u8.shape[2] == 1 else u8


@dataclass
class Translation:
    """One translation, ready for the page."""

    input: np.ndarray  # (H, W, 3) uint8 previews
    output: np.ndarray
    target: np.ndarray | None
    file_name: str  # the result's name: the input's stem, translate.py's extension
    data: bytes  # the result file's bytes, as translate.py writes them
    seconds: float  # the translation itself, the model already loaded
    load_seconds: float | None  # the model's load, when this request loaded it
    tiles: tuple[int, int] | None  # (tile, overlap) when the image was translated in tiles
    psnr: float | None  # against the target, when there is one
    exact: bool = True  # data holds the bytes translate.py writes for the same input file

    def summary(self, label: str) -> str:
        parts = [f"{label}: translated in {self.seconds:.2f} s"]
        if self.load_seconds is not None:
            parts.append(f"model loaded in {self.load_seconds:.2f} s")
        if self.tiles:
            parts.append("in tiles, as translate.py --tile {} --overlap {}".format(*self.tiles))
        if self.psnr is not None:
            parts.append(f"PSNR {self.psnr:.2f} dB against the target")
        return ", ".join(parts)


class ModelCache:
    """Loaded generators by checkpoint file, at most `size`, the least recently used dropped first. A file
    written again (a run still training replaces latest.pth) is a new entry: the key is the file's identity."""

    def __init__(self, device: torch.device, size: int) -> None:
        self.device, self.size = device, size
        self.models: OrderedDict[tuple, ImageTranslator] = OrderedDict()

    def get(self, path: str) -> tuple[ImageTranslator, float | None]:
        """(translator, load seconds, None when it was cached); AppError for a missing or unreadable file."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise AppError(f"{path} does not exist (a snapshot removed since the list was read?)") from None
        key = (os.path.realpath(path), st.st_ino, st.st_mtime_ns, st.st_size)
        if key in self.models:
            self.models.move_to_end(key)
            return self.models[key], None
        for old in [k for k in self.models if k[0] == key[0]]:  # an older version of the same file
            del self.models[old]
        while len(self.models) >= self.size:
            self.models.popitem(last=False)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # the dropped generators' memory, before the next one is loaded
        start = time.perf_counter()
        try:
            t = load_translator(path, device=self.device)
        except (CheckpointError, WeightsMismatch, ValueError, OSError, KeyError, TypeError) as e:
            text = str(e) if str(e).startswith("cannot") else f"cannot load {path}: {e}"  # once, not twice
            raise AppError(text) from None
        self.models[key] = t
        return t, time.perf_counter() - start


class TranslationService:
    """Translate files with the runs of a checkpoints folder, one request at a time."""

    def __init__(
        self, checkpoints_dir: str, device: torch.device, cache_size: int, tile: int, overlap: int, max_pixels: int
    ) -> None:
        self.checkpoints_dir = checkpoints_dir
        self.cache = ModelCache(device, cache_size)
        self.tile, self.overlap, self.max_pixels = tile, overlap, max_pixels
        self.lock = threading.Lock()  # one translation at a time: concurrent requests wait here, in order

    @property
    def device(self) -> torch.device:
        return self.cache.device

    def run(self, name: str) -> runs.Run:
        run = runs.read_run(self.checkpoints_dir, name)
        if run is None:
            raise AppError(f"no run {name!r} in {self.checkpoints_dir}")
        return run

    def load(self, name: str, snapshot: str) -> float | None:
        """Load a run's snapshot ahead of its first request (the page does when one is chosen): the seconds it
        took, None when it was loaded already. AppError as translate_file."""
        with self.lock:
            return self.translator(name, snapshot)[1]

    def translator(self, name: str, snapshot: str) -> tuple[ImageTranslator, float | None]:
        run = self.run(name)
        if snapshot not in run.snapshots:
            raise AppError(f"run {name} has no snapshot {snapshot!r} (it has {', '.join(run.snapshots)})")
        return self.cache.get(run.snapshot_file(snapshot))

    def translate_file(
        self,
        name: str,
        snapshot: str,
        path: str,
        *,
        pair: bool = False,
        target: str | None = None,
        eval: bool = False,
        window: Window = Window(),
    ) -> Translation:
        """Translate an image file (pair: an A|B image, its other half the target; target: a target file) with a
        run's snapshot, as translate.py would with --tile and --overlap set to the app's."""
        file_name = os.path.basename(path)
        dtype = self.check_size(path, file_name)
        if target is not None:
            self.check_size(target, os.path.basename(target))
        with self.lock:
            t, load_seconds = self.translator(name, snapshot)
            x, tgt = self.read(t, path, file_name, pair)
            if target is not None:
                tgt = self.read_data(target, os.path.basename(target))
            result = self.finish(t, x, t.input_range(dtype), tgt, file_name, eval, window, load_seconds)
            # Half of a pair is read as an array: the file translate.py writes for that half saved alone may
            # differ where Pillow would convert its channels (RGB to grey rounds differently).
            return dataclasses.replace(result, exact=not pair)

    def translate_drawing(
        self, name: str, snapshot: str, rgb: np.ndarray, *, eval: bool = False, window: Window = Window()
    ) -> Translation:
        """Translate a drawn (H, W, 3) uint8 label map, as the same image saved as drawing.png would be."""
        self.check_pixels(rgb.shape[1], rgb.shape[0], "the drawing")
        with self.lock:
            t, load_seconds = self.translator(name, snapshot)
            if t.input_nc not in (1, 3):
                raise AppError(f"this run takes {t.input_nc}-channel input; a drawing has 3 channels")
            x = t.to_tensor(Image.fromarray(rgb))
            return self.finish(t, x, t.input_range("uint8"), None, "drawing.png", eval, window, load_seconds)

    def check_size(self, path: str, file_name: str) -> str:
        """The file's value type (uint8, uint16, float32 ...); AppError for a file that is not an image, or one over
        max_pixels (its header only is read)."""
        try:
            (w, h), kind = inspect_file(path, decode=False, max_pixels=TILE_MAX_PIXELS)
        except (BadImageError, ValueError, OSError) as e:
            raise AppError(f"{file_name} is not an image this app reads: {_reason(e, path)}") from None
        self.check_pixels(w, h, file_name)
        return kind.dtype

    def check_pixels(self, w: int, h: int, what: str) -> None:
        if w * h > self.max_pixels:
            raise AppError(
                f"{what}: {w}x{h} is {w * h} pixels, over this app's limit of {self.max_pixels} "
                "(app.py --max_pixels); translate.py --tile translates it from the command line"
            )

    def read(self, t: ImageTranslator, path: str, file_name: str, pair: bool) -> tuple[torch.Tensor, np.ndarray | None]:
        """(real_A (1, C, H, W) in [-1, 1], the target's data values or None). A plain file is read by
        ImageTranslator.read, as translate.py reads it."""
        try:
            if not pair:
                return t.read(path, TILE_MAX_PIXELS), None
            a = read_file(path, TILE_MAX_PIXELS)
            half = a.shape[1] // 2
            left, right = a[:, :half], a[:, half : 2 * half]
            inp, tgt = (left, right) if t.direction == "AtoB" else (right, left)
            return t.array_to_tensor(inp, label=file_name), tgt
        except (BadImageError, ValueError) as e:
            raise AppError(f"{file_name}: {_reason(e, path)}") from None

    def read_data(self, path: str, file_name: str) -> np.ndarray:
        try:
            return read_file(path, TILE_MAX_PIXELS)
        except (BadImageError, ValueError) as e:
            raise AppError(f"{file_name}: {_reason(e, path)}") from None

    def finish(
        self,
        t: ImageTranslator,
        x: torch.Tensor,
        x_range: ValueRange,
        target: np.ndarray | None,
        file_name: str,
        eval: bool,
        window: Window,
        load_seconds: float | None,
    ) -> Translation:
        """Translate x (seeded as translate.py seeds), and make the previews and the result file. x_range: the
        range that mapped the input's data values to x."""
        if target is not None and target.shape[:2] != tuple(x.shape[-2:]):
            (th, tw), (h, w) = target.shape[:2], x.shape[-2:]
            raise AppError(f"the target is {tw}x{th} pixels, the input {w}x{h}: they must be the same size")
        t.set_eval(eval)
        torch.manual_seed(t.checkpoint.seed)  # dropout in train-mode testing: translate.py's draw
        start = time.perf_counter()
        try:
            fake = t.translate(x, self.tile, self.overlap)  # one tile when the image fits in one, as translate.py
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise AppError(f"out of memory on {self.device}: start the app with a smaller --tile") from None
        out = t.to_array(fake)  # on the host: the time includes the copy back
        seconds = time.perf_counter() - start
        ext = t.result_extension(file_name)
        try:
            data = t.result_bytes(fake, ext)
        except (OSError, ValueError) as e:  # an output its format cannot hold (translate.py: "cannot write")
            raise AppError(f"cannot write the output as {ext}: {e}") from None
        inp = x_range.from_unit(x[0].permute(1, 2, 0).cpu().numpy())
        return Translation(
            input=self.shown(inp, window, x_range, t),
            output=self.shown(out, window, t.output_range, t),
            target=None if target is None else self.shown(target, window, t.output_range, t),
            file_name=os.path.splitext(file_name)[0] + ext,
            data=data,
            seconds=seconds,
            load_seconds=load_seconds,
            tiles=(self.tile, self.overlap) if max(x.shape[-2:]) > self.tile else None,
            psnr=None if target is None else target_psnr(t, fake, target),
        )

    @staticmethod
    def shown(a: np.ndarray, window: Window, run_range: ValueRange, t: ImageTranslator) -> np.ndarray:
        lo, hi = window.bounds(a, run_range)
        return preview(a, lo, hi, t.values.preview_channels)


def target_psnr(t: ImageTranslator, fake: torch.Tensor, target: np.ndarray) -> float | None:
    """PSNR (dB) of the output against the target, both in [0, 1] as test.py scores them; None when the target's
    channels do not fit the run's output."""
    if target.shape[2] != fake.shape[1]:
        return None
    real = torch.from_numpy(t.output_range.to_unit(target)).permute(2, 0, 1)[None]
    return float(psnr((fake.cpu().clamp(-1, 1) + 1) / 2, (real + 1) / 2))


def _reason(e: BaseException, path: str) -> str:
    """The error's text without the temporary path the upload was stored under."""
    text = str(e).replace(f"cannot read image {path}: ", "")
    return text.replace(f" '{path}'", "").replace(path, "the file")
