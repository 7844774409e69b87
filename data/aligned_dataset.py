"""Paired data: combined A|B images split at half width, or A/ and B/ folders of same-named files."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from data.arrays import Kind
from data.image_cache import ImageCache, available_memory, human
from data.image_folder import IMG_EXTENSIONS, make_dataset
from data.image_io import BadImageError, load_image, read_file, scan
from data.transforms import (
    CROP_MODES,
    Augment,
    Preprocess,
    apply,
    apply_array,
    array_to_tensor,
    augment,
    get_params,
    scaled_size,
    to_tensor,
)
from data.values import EIGHT_BIT, RangeSpec, ValueRange, fit_channels, fit_problem, range_for

log = logging.getLogger(__name__)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Each sample's crop and flip depend only on (seed, epoch, index): resumable and worker-independent."""
    return np.random.default_rng([seed, epoch, index])


def split_key(key: int | tuple[int, int]) -> tuple[int, int]:
    """Samplers give (epoch, index); plain integer indices mean epoch 0."""
    return (int(key[0]), int(key[1])) if isinstance(key, tuple) else (0, int(key))


@dataclass(frozen=True)
class Side:
    """How the images of one side (left = A on disk, right = B) are read: nc channels; full: at full precision,
    mapped to [-1, 1] by `range` (else an 8-bit image read through Pillow as it always was)."""

    nc: int
    range: ValueRange
    full: bool

    def unit(self, a: np.ndarray) -> np.ndarray:
        """(H, W, C) file values -> (H, W, nc) float32 in [-1, 1]."""
        return self.range.to_unit(fit_channels(a, self.nc))


def settle_side(paths: list[str], kinds: dict[str, Kind], nc: int, spec: RangeSpec, flag: str, nc_flag: str) -> Side:
    """The Side of files that must share one value type (the first file's); ValueError naming a file that does not,
    or whose channels cannot be read as nc, or float data without a range."""
    first = kinds[paths[0]]
    for p in paths:
        k = kinds[p]
        if (k.dtype, k.eight_bit) != (first.dtype, first.eight_bit):
            raise ValueError(
                f"{p} is {k.describe()}, but {paths[0]} is {first.describe()}: the images of one side must "
                "share one value type"
            )
        problem = None if k.eight_bit else fit_problem(k.channels, nc)
        if problem:
            raise ValueError(f"--{nc_flag} {nc}: {p} {problem}")
    rng = range_for(spec, first, flag)
    return Side(nc, rng, full=not (first.eight_bit and rng == EIGHT_BIT))


def size_of(x: Image.Image | np.ndarray) -> tuple[int, int]:
    return x.size if isinstance(x, Image.Image) else (x.shape[1], x.shape[0])


class AlignedDataset(torch.utils.data.Dataset):
    """Yields {'A', 'B', 'A_paths', 'B_paths'}; 'A' is always the model input (direction applied)."""

    def __init__(
        self,
        dataroot: str,
        phase: str,
        *,
        direction: str,
        input_nc: int,
        output_nc: int,
        preprocess: Preprocess,
        filter_A: str,
        filter_B: str,
        seed: int,
        max_dataset_size: int | None,
        aug: Augment,
        range_A: RangeSpec,
        range_B: RangeSpec,
        raw: bool = False,
    ) -> None:
        """raw (--device_preprocess): samples are the images as read and their drawn parameters (raw_sample),
        which data.device_preprocess.DevicePreprocess finishes on the training device."""
        self.direction, self.input_nc, self.output_nc = direction, input_nc, output_nc
        self.preprocess, self.filter_A, self.filter_B, self.seed = preprocess, filter_A, filter_B, seed
        self.aug, self.range_A, self.range_B = aug, range_A, range_B
        self.pairs = find_pairs(dataroot, phase, max_dataset_size)
        self.cache: ImageCache | None = None
        self._sides: tuple[Side, Side] | None = None  # left, right: settled by check()
        self.raw = raw

    def __len__(self) -> int:
        return len(self.pairs)

    def check_batchable(self, batch_size: int) -> None:
        check_batchable(self, batch_size)

    def check_min_size(self, min_side: int, skip_bad: bool, max_bad_fraction: float) -> None:
        check_min_size(self, min_side, skip_bad, max_bad_fraction)

    def check(self, skip_bad: bool, max_bad_fraction: float, workers: int) -> None:
        """Look at every file before any work: stop at the first unreadable one (or, with skip_bad, decode
        all, drop the bad pairs and stop only if more than max_bad_fraction are bad); warn about combined
        images whose halves look wrong; check --preprocess crop against the image sizes."""
        files = [p for pair in self.pairs for p in pair if p is not None]
        sizes, errors, kinds = scan(files, decode=skip_bad, workers=workers)
        for a, b in self.pairs:  # a combined image needs two halves of at least a pixel each
            if b is None and a in sizes and min(sizes[a][0] // 2, sizes[a][1]) < 1:
                w, h = sizes[a]
                errors[a] = f"cannot read image {a}: {w}x{h} is too small to hold an A|B pair (two halves)"
        self.pairs = drop_bad(self.pairs, errors, skip_bad, max_bad_fraction)
        mismatched = [(a, b) for a, b in self.pairs if b is not None and sizes[a] != sizes[b]]
        if mismatched:
            a, b = mismatched[0]
            raise ValueError(
                f"A and B differ in size: {a} is {sizes[a][0]}x{sizes[a][1]}, {b} is {sizes[b][0]}x{sizes[b][1]}"
                + (f" (and {len(mismatched) - 1} more pairs)" if len(mismatched) > 1 else "")
            )
        self.file_sizes, self.file_kinds = sizes, kinds  # each file as decoded
        self._sides = self.settle_sides()
        # Size of each image (one half of a combined A|B image), as it is read.
        self.sizes = {a: (sizes[a][0] // 2 if b is None else sizes[a][0], sizes[a][1]) for a, b in self.pairs}
        odd = [a for a, b in self.pairs if b is None and sizes[a][0] % 2]
        narrow = [a for a, b in self.pairs if b is None and sizes[a][0] < sizes[a][1]]
        warn_files(odd, "the width is odd, so the halves differ by a pixel and the last column is dropped")
        warn_files(narrow, "narrower than tall: is it really A and B side by side (A|B)?")
        check_resized_memory(self.preprocess, self.sizes.values())
        if self.preprocess.preprocess == "crop":
            crop = self.preprocess.crop_size
            for a, _ in self.pairs:
                w, h = self.sizes[a]
                if w < crop or h < crop:
                    raise ValueError(
                        f"{a}: each image is {w}x{h}, smaller than --crop_size {crop} with --preprocess crop "
                        f"(use --preprocess resize_and_crop, or a smaller --crop_size)"
                    )

    @property
    def sides(self) -> tuple[Side, Side]:
        """How the left and right images are read: settled by check(), or here from the files' headers."""
        if self._sides is None:
            files = [p for pair in self.pairs for p in pair if p is not None]
            self.file_kinds = scan(files, decode=False)[2]
            self._sides = self.settle_sides()
        return self._sides

    def settle_sides(self) -> tuple[Side, Side]:
        """How the left (A) and right (B) images are read, from their kinds and the ranges of real_A and real_B."""
        in_nc, out_nc = self.disk_channels()
        flags = (("range_A", "input_nc"), ("range_B", "output_nc"))
        specs = (self.range_A, self.range_B)
        if self.direction == "BtoA":
            flags, specs = flags[::-1], specs[::-1]
        left = [a for a, _ in self.pairs]
        right = [b if b is not None else a for a, b in self.pairs]
        return (
            settle_side(left, self.file_kinds, in_nc, specs[0], *flags[0]),
            settle_side(right, self.file_kinds, out_nc, specs[1], *flags[1]),
        )

    def disk_channels(self) -> tuple[int, int]:
        """Channels of the left (A) and right (B) images on disk: the model input is real_A, so BtoA swaps."""
        return (self.input_nc, self.output_nc) if self.direction == "AtoB" else (self.output_nc, self.input_nc)

    def cache_images(self, workers: int) -> None:
        """--cache_images: decode every file once, now (after check(), which measured them), into shared memory.
        Raises data.image_cache.CacheTooLarge when they would not fit."""
        items = {}
        for left, right in self.pairs:
            for path, side in ((left, self.sides[0]), (right, self.sides[1])) if right else ((left, None),):
                key = self._key(path, side)
                (w, h), kind = self.file_sizes[path], self.file_kinds[path]
                if key[1] is None:
                    items[key] = ((h, w, kind.channels), kind.dtype)
                else:
                    items[key] = ((h, w) if key[1] == 1 else (h, w, 3), "uint8")
        self.cache = ImageCache(items, self._decode, workers)

    def _key(self, path: str, side: Side | None) -> tuple[str, int | None]:
        """The cache's key of a file read for side (None: a combined A|B file): (path, channels) for an 8-bit
        image, (path, None) for full-precision values."""
        full = side.full if side is not None else any(s.full for s in self.sides)
        return (path, None) if full else (path, 3 if side is None else side.nc)

    def _decode(self, key: tuple[str, int | None]) -> np.ndarray:
        path, nc = key
        return read_file(path) if nc is None else np.asarray(load_image(path, nc))

    def input_path(self, index: int) -> str:
        """The file that sample index's real_A comes from (A_paths)."""
        left, right = self.pairs[index]
        return right if right is not None and self.direction == "BtoA" else left

    def _read(self, path: str, side: Side | None) -> Image.Image | np.ndarray:
        """A file as an 8-bit Pillow image, or its full-precision values (H, W, C)."""
        key = self._key(path, side)
        if self.cache is not None:
            return self.cache.array(key) if key[1] is None else self.cache.image(*key)
        return read_file(path) if key[1] is None else load_image(path, key[1])

    def _read_pair(self, left_path: str, right_path: str | None) -> tuple:
        """(left, right): each an 8-bit image or a full-precision (H, W, nc) array in [-1, 1]."""
        ls, rs = self.sides
        if right_path is None:
            ab = self._read(left_path, None)
            w2 = size_of(ab)[0] // 2
            if isinstance(ab, np.ndarray):
                return ls.unit(ab[:, :w2]), rs.unit(ab[:, w2 : 2 * w2])
            left, right = ab.crop((0, 0, w2, ab.size[1])), ab.crop((w2, 0, 2 * w2, ab.size[1]))
            return (left.convert("L") if ls.nc == 1 else left), (right.convert("L") if rs.nc == 1 else right)
        left, right = self._read(left_path, ls), self._read(right_path, rs)
        if size_of(left) != size_of(right):
            (lw, lh), (rw, rh) = size_of(left), size_of(right)
            raise RuntimeError(f"A and B differ in size: {left_path} is {lw}x{lh}, {right_path} is {rw}x{rh}")
        left = ls.unit(left) if isinstance(left, np.ndarray) else left
        right = rs.unit(right) if isinstance(right, np.ndarray) else right
        return left, right

    def _finish(self, x: Image.Image | np.ndarray, params, resample: str) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            return array_to_tensor(apply_array(x, self.preprocess, params, resample))
        return to_tensor(apply(x, self.preprocess, params, resample))

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = split_key(key)
        left_path, right_path = self.pairs[index]
        left, right = self._read_pair(left_path, right_path)  # on disk: left = A, right = B
        right_path = right_path or left_path
        if self.direction == "BtoA":
            left, right, left_path, right_path = right, left, right_path, left_path
        rng = sample_rng(self.seed, epoch, index)
        params = get_params(self.preprocess, *size_of(left), rng)
        if self.raw:
            aug_seed = int(rng.integers(2**31)) if self.aug.enabled and self.preprocess.random else 0
            return raw_sample(left, right, params, aug_seed, left_path, right_path)
        A = self._finish(left, params, self.filter_A)
        B = self._finish(right, params, self.filter_B)
        if self.aug.enabled and self.preprocess.random:
            A, B = augment(A, B, self.aug, int(rng.integers(2**31)))
        return {"A": A, "B": B, "A_paths": left_path, "B_paths": right_path}


def raw_sample(left, right, params, aug_seed: int, left_path: str, right_path: str) -> dict:
    """A sample for DevicePreprocess: A and B as read ((H, W, C) uint8, or float32 in [-1, 1]) and the parameters
    drawn for them, as CPU tensors (crop (-1, -1): none)."""

    def hwc(x: Image.Image | np.ndarray) -> torch.Tensor:
        a = np.array(x)  # a copy: the loader's batch must own its memory
        return torch.from_numpy(a[:, :, None] if a.ndim == 2 else a)

    return {
        "A": hwc(left),
        "B": hwc(right),
        "size": torch.tensor(params.size),
        "crop": torch.tensor(params.crop if params.crop is not None else (-1, -1)),
        "flip": torch.tensor(params.flip),
        "aug_seed": torch.tensor(aug_seed),
        "A_paths": left_path,
        "B_paths": right_path,
    }


def check_min_size(dataset, min_side: int, skip_bad: bool, max_bad_fraction: float) -> None:
    """Pairs whose images, as preprocessed, are smaller than min_side (the discriminator's smallest input) are bad
    files: named and refused, or skipped with --skip_bad_images."""
    errors = {}
    for a, _ in dataset.pairs:
        w, h = scaled_size(dataset.preprocess, *dataset.sizes[a])
        if min(w, h) < min_side:
            errors[a] = f"cannot read image {a}: {w}x{h} as preprocessed, smaller than the {min_side} pixels D needs"
    dataset.pairs = drop_bad(dataset.pairs, errors, skip_bad, max_bad_fraction)


def check_resized_memory(pre: Preprocess, sizes) -> None:
    """A --load_size so large that one resized image would not fit in memory stops here, before any work: the
    largest image after scaling, as an 8-bit RGB image and as the float tensor, against the available memory."""

    w, h = max((scaled_size(pre, *s) for s in sizes), key=lambda s: s[0] * s[1], default=(0, 0))
    need = w * h * 3 * (1 + 4) * 2  # uint8 image and float32 tensor, for A and B
    avail = available_memory()
    if avail is not None and need > avail:
        raise ValueError(
            f"--load_size {pre.load_size}: images would be resized to {w}x{h}, {human(need)} per pair in memory, "
            f"more than the {human(avail)} available; use a smaller --load_size"
        )


def check_batchable(dataset, batch_size: int) -> None:
    """Batches need one image size: without a fixed crop (--preprocess none or scale_width) sizes must agree."""
    pre = dataset.preprocess
    if batch_size == 1 or pre.preprocess in CROP_MODES:
        return
    seen: dict[tuple[int, int], str] = {}
    for path, (w, h) in dataset.sizes.items():
        seen.setdefault(scaled_size(pre, w, h), path)
        if len(seen) > 1:
            (s1, p1), (s2, p2) = list(seen.items())[:2]
            raise ValueError(
                f"--batch_size {batch_size} with --preprocess {pre.preprocess} needs images of one size, but "
                f"{p1} gives {s1[0]}x{s1[1]} and {p2} gives {s2[0]}x{s2[1]}; use --batch_size 1 or a --preprocess "
                f"that crops"
            )


def drop_bad(pairs: list, errors: dict[str, str], skip_bad: bool, max_bad_fraction: float) -> list:
    """Pairs without unreadable files; raises BadImageError unless skip_bad and few enough are bad."""
    if not errors:
        return pairs
    msgs = [errors[p] for p in sorted(errors)]
    if not skip_bad:
        more = f" (and {len(msgs) - 1} more)" if len(msgs) > 1 else ""
        raise BadImageError(f"{msgs[0]}{more}; --skip_bad_images skips unreadable files")
    for m in msgs:
        log.warning("skipping a bad file: %s", m)
    good = [pair for pair in pairs if not any(p in errors for p in pair if p is not None)]
    share = 1 - len(good) / len(pairs)
    if share > max_bad_fraction or not good:
        raise BadImageError(
            f"{len(pairs) - len(good)} of {len(pairs)} images are unreadable ({share:.1%}), more than "
            f"--max_bad_fraction {max_bad_fraction}"
        )
    return good


def warn_files(paths: list[str], why: str, limit: int = 10) -> None:
    for p in paths[:limit]:
        log.warning("%s: %s", p, why)
    if len(paths) > limit:
        log.warning("... and %d more files: %s", len(paths) - limit, why)


def find_pairs(dataroot: str, phase: str, max_dataset_size: int | None) -> list[tuple[str, str | None]]:
    """(left, right) paths: (combined, None) for A|B images, or (A file, B file) from A/ and B/ folders.

    Looks for dataroot/phase/A + dataroot/phase/B, then dataroot/A/phase + dataroot/B/phase, then
    combined images under dataroot/phase.
    """
    for a_dir, b_dir in (
        (os.path.join(dataroot, phase, "A"), os.path.join(dataroot, phase, "B")),
        (os.path.join(dataroot, "A", phase), os.path.join(dataroot, "B", phase)),
    ):
        if os.path.isdir(a_dir) and os.path.isdir(b_dir):
            return _folder_pairs(a_dir, b_dir, max_dataset_size)
    folder = os.path.join(dataroot, phase)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"no '{phase}' folder in --dataroot {dataroot}: expected {folder} with A|B images, "
            f"or A/ and B/ folders (see --phase)"
        )
    paths = make_dataset(folder, max_dataset_size)
    if not paths:
        raise FileNotFoundError(f"no images in {folder} (accepted extensions: {', '.join(IMG_EXTENSIONS)})")
    return [(p, None) for p in paths]


def _folder_pairs(a_dir: str, b_dir: str, max_dataset_size: int | None) -> list[tuple[str, str | None]]:
    def by_stem(folder: str) -> dict[str, str]:
        return {os.path.splitext(os.path.relpath(p, folder))[0]: p for p in make_dataset(folder, None)}

    a, b = by_stem(a_dir), by_stem(b_dir)
    if not a:
        raise FileNotFoundError(f"no images in {a_dir} (accepted extensions: {', '.join(IMG_EXTENSIONS)})")
    missing = sorted(set(a) ^ set(b))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) have no partner of the same name in {a_dir} and {b_dir}, "
            f"for example: {', '.join(missing[:5])}"
        )
    pairs: list[tuple[str, str | None]] = [(a[k], b[k]) for k in sorted(a)]
    return pairs[:max_dataset_size] if max_dataset_size is not None else pairs
