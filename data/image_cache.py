"""--cache_images: every image of a data set decoded once into one shared-memory buffer that all loader workers
read, so the step no longer waits on JPEG decoding. Resizing, cropping and flipping stay per sample."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)


class CacheTooLarge(ValueError):
    """The decoded images do not fit in the memory the cache may use; the message says how much is needed."""


def available_memory() -> int | None:
    """Bytes of memory the OS reports available (Linux's MemAvailable), or None where it is not known."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def cache_budget() -> tuple[int, str]:
    """Bytes the cache may take, and how that was decided: half the memory the OS reports available, and no more
    than 90% of the free shared memory (/dev/shm), where torch keeps shared tensors on Linux."""
    limits = []
    avail = available_memory()
    if avail is not None:
        limits.append((avail // 2, f"half of the {avail / 2**30:.1f} GB of available memory"))
    if os.path.isdir("/dev/shm"):
        st = os.statvfs("/dev/shm")
        free = st.f_bavail * st.f_frsize
        limits.append((int(free * 0.9), f"90% of the {free / 2**30:.1f} GB free in /dev/shm"))
    if not limits:
        return 2**62, "no limit known on this system"
    return min(limits)


def human(n: int) -> str:
    """A byte count for people: 24 KB, 452 MB, 3.1 GB."""
    if n < 2**20:
        return f"{n / 2**10:.0f} KB"
    return f"{n / 2**20:.0f} MB" if n < 2**30 else f"{n / 2**30:.1f} GB"


class ImageCache:
    """Decoded images, key -> array views into one shared tensor. items: key -> (shape, dtype) of each, known up
    front from the data set's check (so the size is checked before anything is decoded and nothing is copied
    twice); load(key) decodes one, as the data set would without the cache."""

    def __init__(
        self,
        items: dict[Hashable, tuple[tuple[int, ...], str]],
        load: Callable[[Hashable], np.ndarray],
        workers: int,
    ) -> None:
        self.index: dict[Hashable, tuple[int, tuple[int, ...], str]] = {}
        self.load = load
        offset = 0
        for key, (shape, dtype) in items.items():
            offset = -(-offset // 8) * 8  # each array aligned for its value type
            self.index[key] = (offset, shape, dtype)
            offset += int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.nbytes = offset
        budget, why = cache_budget()
        if offset > budget:
            raise CacheTooLarge(
                f"--cache_images: the {len(self.index)} decoded images need {human(offset)}, more than the "
                f"{human(budget)} the cache may use ({why}); train without --cache_images, or on fewer images "
                "(--max_dataset_size)"
            )
        t0 = time.perf_counter()
        # One shared-memory tensor: loader workers (forked or spawned) see the same pages, no copy per worker.
        self.buffer = torch.empty(offset, dtype=torch.uint8).share_memory_()
        with ThreadPoolExecutor(max(1, workers)) as pool:  # decoding releases the GIL
            list(pool.map(self._fill, self.index))
        elapsed = time.perf_counter() - t0
        log.info(
            "--cache_images: %d images decoded into %s of shared memory in %.1f s",
            len(self.index),
            human(offset),
            elapsed,
        )

    def array(self, key: Hashable) -> np.ndarray:
        """The cached array, exactly as load(key) decoded it (a read-only view)."""
        offset, shape, dtype = self.index[key]
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.buffer[offset : offset + n].numpy().view(dtype).reshape(shape)

    def _fill(self, key: Hashable) -> None:
        arr = np.asarray(self.load(key))
        view = self.array(key)
        if arr.shape != view.shape:  # the header's size disagrees with the pixels (a file changed since the check)
            raise RuntimeError(f"{key[0]} decoded to {arr.shape[1]}x{arr.shape[0]}, not the size its header gave")
        view[...] = arr

    def image(self, path: str, nc: int) -> Image.Image:
        """A cached 8-bit image, exactly as load_image(path, nc) decodes it."""
        return Image.fromarray(self.array((path, nc)))  # (H, W) -> L, (H, W, 3) -> RGB
