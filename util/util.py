"""Small helpers: tensors to images, saving images, unique result names, logging set-up."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image


def tensor2im(t: torch.Tensor) -> np.ndarray:
    """First image of a (N, C, H, W) or (C, H, W) tensor in [-1, 1] -> uint8 (H, W, 3) array."""
    if t.dim() == 4:
        t = t[0]
    arr = t.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return arr


class WriteFailed(OSError):
    """A file could not be written (a full disk, say); the message names it. Nothing it replaces was damaged."""

    def __str__(self) -> str:
        return str(self.args[0])


def _file_mode() -> int:
    """0666 less the umask, the mode open() gives (mkstemp's 0600 would make checkpoints private)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


# Tests set this (tests/hooked.py): called with the path once the temp file is complete, before the rename.
before_replace_hook: Callable[[str], None] | None = None


def write_text(path: str, text: str) -> None:
    """A text file (options, logs' headers), atomically."""
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write(path: str, write) -> None:
    """write(f) into a temp file beside path, fsync, then rename: a crash at any moment leaves the old file or
    the new one. A failed write (a full disk, a vanished folder) raises WriteFailed naming the file, and leaves
    the old file as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except OSError as e:
        raise WriteFailed(f"cannot write {path}: {e.strerror or e}") from e
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            try:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError
                reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
                raise WriteFailed(f"cannot write {path}: {reason}") from e
        if before_replace_hook is not None:  # tests: e.g. a pause here, so a SIGKILL lands between the two
            before_replace_hook(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def unique_names(paths: Sequence[str]) -> list[str]:
    """A result name per input, unique by construction: the file name without extension (as pix2pix names its
    results), and for repeats that name with _2, _3 ... skipping any name another input has. Compared without
    case, so the files also stay apart on case-insensitive file systems."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    reserved = {s.casefold() for s in stems}
    used: set[str] = set()
    names = []
    for stem in stems:
        name, k = stem, 1
        while name.casefold() in used or (name != stem and name.casefold() in reserved):
            k += 1
            name = f"{stem}_{k}"
        used.add(name.casefold())
        names.append(name)
    return names


def save_image(arr: np.ndarray, path: str, aspect_ratio: float) -> None:
    """Save a uint8 (H, W, 3) array; aspect_ratio > 1 stretches the width, < 1 the height."""
    img = Image.fromarray(arr)
    h, w = arr.shape[:2]
    if aspect_ratio > 1.0:
        img = img.resize((int(w * aspect_ratio), h), Image.Resampling.BICUBIC)
    elif aspect_ratio < 1.0:
        img = img.resize((w, int(h / aspect_ratio)), Image.Resampling.BICUBIC)
    atomic_write(path, lambda f: img.save(f, format="PNG"))  # never a half-written PNG


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (tests and tqdm replace it)."""

    pix2pix = True

    @property  # type: ignore[override]
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(verbose: bool) -> None:
    """Log to stdout with timestamps; other handlers (a caller's, pytest's) are left in place."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not any(getattr(h, "pix2pix", False) for h in root.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"))
        root.addHandler(handler)


def mkdirs(*paths: str) -> None:
    for p in paths:
        os.makedirs(p, exist_ok=True)
