"""Small helpers: tensors to images, saving images, unique result names, logging set-up."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image


def tensor2im(t: torch.Tensor, channels: tuple[int, ...] = ()) -> np.ndarray:
    """First image of a (N, C, H, W) or (C, H, W) tensor in [-1, 1] -> uint8 (H, W, 3) array, an 8-bit preview:
    [-1, 1] (the data's declared range) to 0..255, grey images grey. An image of other than 1 or 3 channels shows
    `channels` (one: grey, three: RGB; default: the first, grey)."""
    if t.dim() == 4:
        t = t[0]
    if t.shape[0] not in (1, 3):
        t = t[list(channels or (0,))]
    arr = t.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return arr


class WriteFailed(OSError):
    """A file could not be written (a full disk, say); the message names it. Nothing it replaces was damaged.
    errno is the system error's (ENOSPC, EEXIST ...), None when the writer itself refused (an image mode a format
    cannot hold, say)."""

    def __str__(self) -> str:
        return str(self.args[0])


def write_failed(path: str, e: BaseException) -> WriteFailed:
    """WriteFailed naming path with the reason of e (an OSError's strerror, else the first line of its text)."""
    if isinstance(e, OSError) and e.errno == errno.ELOOP:
        reason = "it is a symbolic link (never written through)"
    elif isinstance(e, OSError) and e.strerror:
        reason = e.strerror
    else:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
    err = WriteFailed(f"cannot write {path}: {reason}")
    err.errno = e.errno if isinstance(e, OSError) else None
    return err


def _file_mode() -> int:
    """0666 less the umask, the mode open() gives (mkstemp's 0600 would make checkpoints private)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def is_inside(path: str, folder: str, resolve_last: bool = True) -> bool:
    """Whether path is folder or lies under it, links resolved. resolve_last=False leaves path's last component
    as it is, so a link placed in folder counts as inside it wherever it points."""
    if resolve_last:
        path = os.path.realpath(path)
    else:
        path = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(path))), os.path.basename(path))
    folder = os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


# Tests set this (tests/hooked.py): called with the path once the temp file is complete, before the rename.
before_replace_hook: Callable[[str], None] | None = None
NAME_MAX = 255  # bytes in a file name (ext4, XFS, btrfs, APFS, NTFS in UTF-16 units)
# A temp file is <name>.<8 random characters>.tmp beside its file, <name> cut to this many bytes: the temp name
# then fits NAME_MAX whatever the file's name, even where it is smaller (eCryptfs: 143). Run folders' file names
# are shorter, so engine/run_folder.py recognises their temp files by the name.
TEMP_PREFIX_BYTES = 100


def write_text(path: str, text: str) -> None:
    """A text file (options, logs' headers), atomically."""
    atomic_write(path, lambda f: f.write(text.encode()))


class _FdWriter(io.RawIOBase):
    """The temp file's raw writes, each an os.write (a short write is retried by the buffer above it). No
    fileno(): Pillow then writes through write() too, instead of its encoder writing to the descriptor. error:
    the first failed write's OSError (torch.save reports it as a RuntimeError of its own)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, b) -> int:
        try:
            return os.write(self.fd, b)
        except OSError as e:
            self.error = self.error or e
            raise

    def seek(self, pos: int, whence: int = 0) -> int:
        return os.lseek(self.fd, pos, whence)

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self.fd)
            finally:
                super().close()


def make_dirs_below(root: str, path: str) -> str:
    """path, a folder at or below root, created folder by folder. root is a folder the user named (it may well be a
    link to a bigger disk) and is taken as it is; every folder below it that exists already is looked at with
    lstat, and one that is a link (made by someone else) is never followed: WriteFailed naming it."""
    rel = os.path.relpath(path, root)
    current = root
    try:
        if os.path.lexists(root) and not os.path.isdir(root):  # the named folder may be a link to one, not a file
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        os.makedirs(root, exist_ok=True)
        for part in [] if rel == "." else rel.split(os.sep):
            current = os.path.join(current, part)
            try:
                os.mkdir(current)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(current).st_mode):  # a link, or a file
                    code = errno.ELOOP if os.path.islink(current) else errno.ENOTDIR
                    raise OSError(code, os.strerror(code)) from None
    except OSError as e:
        raise write_failed(current, e) from e
    return path


def atomic_write(path: str, write, new: bool = False) -> None:
    """write(f) into a temp file beside path, fsync, then rename: a crash at any moment leaves the old file or
    the new one. A failed write (a full disk, a vanished folder) raises WriteFailed naming the file, and leaves
    the old file as it was. A link at path is replaced, never written through. new: path must not exist (a link
    counts): WriteFailed with errno EEXIST instead of replacing it, for the commands that never write over a
    file they did not create."""
    folder = os.path.dirname(os.path.abspath(path))
    prefix = os.fsdecode(os.fsencode(os.path.basename(path))[:TEMP_PREFIX_BYTES]) + "."
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    except OSError as e:
        raise write_failed(path, e) from e
    try:
        _fill(fd, path, write)
        if before_replace_hook is not None:  # tests: e.g. a pause here, so a SIGKILL lands between the two
            before_replace_hook(path)
        _place(tmp, path, new)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _fill(fd: int, path: str, write) -> None:
    """write(f), flushed and fsynced to fd, then closed. On failure the buffer is dropped, not flushed: a second
    error from flushing it (the disk is still full) would replace the WriteFailed that names the file."""
    raw = _FdWriter(fd)
    f = io.BufferedWriter(raw)
    try:
        os.fchmod(fd, _file_mode())
        write(f)
        f.flush()
        os.fsync(fd)
        f.close()
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError
        raise write_failed(path, raw.error or e) from e
    finally:
        if not f.closed:
            with contextlib.suppress(OSError):
                f.raw.close()  # the raw file only: nothing left in the buffer is written


def _place(tmp: str, path: str, new: bool) -> None:
    """The complete temp file renamed to path; new: linked there, which fails if anything is at path."""
    try:
        if not new:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path, follow_symlinks=False)  # atomic: fails with EEXIST if anything is at path
        except OSError as e:  # a file system without hard links (FAT, some shares): check, then rename
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
                raise
            if os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path) from None
            os.replace(tmp, path)
            return
        os.remove(tmp)
    except FileExistsError as e:
        err = WriteFailed(f"cannot write {path}: it exists, and this command never replaces a file it did not write")
        err.errno = errno.EEXIST
        raise err from e
    except OSError as e:
        raise write_failed(path, e) from e


def append_text(path: str, text: str) -> None:
    """Append text to a log file (loss_log.txt, losses.jsonl, val_log.jsonl), created if missing. Never through a
    link (O_NOFOLLOW) and only to a regular file; a failed write (a full disk) raises WriteFailed naming it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o666)
    except OSError as e:
        raise write_failed(path, e) from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise WriteFailed(f"cannot write {path}: not a regular file")
        data = memoryview(text.encode())
        while data:
            data = data[os.write(fd, data) :]
    except WriteFailed:
        raise
    except OSError as e:
        raise write_failed(path, e) from e
    finally:
        os.close(fd)


def unique_names(paths: Sequence[str], max_bytes: int | Sequence[int] | None = None) -> list[str]:
    """A result name per input, unique by construction: the file name without extension (as pix2pix names its
    results), and for repeats that name with _2, _3 ... skipping any name another input has. Compared without
    case, so the files also stay apart on case-insensitive file systems. max_bytes (one for all, or one per path):
    each name cut to at most that many bytes (file names hold at most NAME_MAX), the _k of a repeat included."""
    limits = list(max_bytes) if isinstance(max_bytes, Sequence) else [max_bytes] * len(paths)
    stems = [fit_bytes(os.path.splitext(os.path.basename(p))[0], n) for p, n in zip(paths, limits, strict=True)]
    reserved = {s.casefold() for s in stems}
    used: set[str] = set()
    names = []
    for stem, limit in zip(stems, limits, strict=True):
        name, k = stem, 1
        while name.casefold() in used or (name != stem and name.casefold() in reserved):
            k += 1
            name = fit_bytes(stem, None if limit is None else limit - len(f"_{k}")) + f"_{k}"
        used.add(name.casefold())
        names.append(name)
    return names


_SURROGATES = re.compile("[\ud800-\udfff]")


def printable(text: str) -> str:
    """text with the bytes of a file name that are not UTF-8 (kept by os.fsdecode as lone surrogates, which no
    UTF-8 stream or page can hold) written as \\xNN escapes; other text as it is."""
    if _SURROGATES.search(text) is None:
        return text
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def fit_bytes(name: str, max_bytes: int | None) -> str:
    """name cut, at a character, to at most max_bytes bytes as the file system stores it (os.fsencode)."""
    if max_bytes is None:
        return name
    while len(os.fsencode(name)) > max_bytes:
        name = name[:-1]
    return name


def save_image(arr: np.ndarray, path: str, aspect_ratio: float, new: bool = False) -> None:
    """Save a uint8 (H, W, 3) array; aspect_ratio > 1 stretches the width, < 1 the height. new: as atomic_write's."""
    img = Image.fromarray(arr)
    h, w = arr.shape[:2]
    if aspect_ratio > 1.0:
        img = img.resize((int(w * aspect_ratio), h), Image.Resampling.BICUBIC)
    elif aspect_ratio < 1.0:
        img = img.resize((w, int(h / aspect_ratio)), Image.Resampling.BICUBIC)
    atomic_write(path, lambda f: img.save(f, format="PNG"), new=new)  # never a half-written PNG


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (tests and tqdm replace it); file names that are not UTF-8
    escaped (printable), so that logging them never fails."""

    pix2pix = True

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))

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
