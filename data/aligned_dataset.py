"""Paired data: combined A|B images split at half width, or A/ and B/ folders of same-named files."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from PIL import Image

from data.image_cache import ImageCache, available_memory, human
from data.image_folder import IMG_EXTENSIONS, make_dataset
from data.image_io import BadImageError, load_image, scan
from data.transforms import CROP_MODES, Augment, Preprocess, apply, augment, get_params, scaled_size, to_tensor

log = logging.getLogger(__name__)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Each sample's crop and flip depend only on (seed, epoch, index): resumable and worker-independent."""
    return np.random.default_rng([seed, epoch, index])


def split_key(key: int | tuple[int, int]) -> tuple[int, int]:
    """Samplers give (epoch, index); plain integer indices mean epoch 0."""
    return (int(key[0]), int(key[1])) if isinstance(key, tuple) else (0, int(key))


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
    ) -> None:
        self.direction, self.input_nc, self.output_nc = direction, input_nc, output_nc
        self.preprocess, self.filter_A, self.filter_B, self.seed = preprocess, filter_A, filter_B, seed
        self.aug = aug
        self.pairs = find_pairs(dataroot, phase, max_dataset_size)
        self.cache: ImageCache | None = None

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
        sizes, errors = scan(files, decode=skip_bad, workers=workers)
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
        self.file_sizes = sizes  # each file as decoded
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

    def disk_channels(self) -> tuple[int, int]:
        """Channels of the left (A) and right (B) images on disk: the model input is real_A, so BtoA swaps."""
        return (self.input_nc, self.output_nc) if self.direction == "AtoB" else (self.output_nc, self.input_nc)

    def cache_images(self, workers: int) -> None:
        """--cache_images: decode every file once, now (after check(), which measured them), into shared memory.
        Raises data.image_cache.CacheTooLarge when they would not fit."""
        in_nc, out_nc = self.disk_channels()
        items = []
        for left, right in self.pairs:
            items += [(left, 3)] if right is None else [(left, in_nc), (right, out_nc)]
        self.cache = ImageCache(items, self.file_sizes, workers)

    def input_path(self, index: int) -> str:
        """The file that sample index's real_A comes from (A_paths)."""
        left, right = self.pairs[index]
        return right if right is not None and self.direction == "BtoA" else left

    def _load(self, path: str, nc: int) -> Image.Image:
        return self.cache.image(path, nc) if self.cache is not None else load_image(path, nc)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = split_key(key)
        left_path, right_path = self.pairs[index]
        # On disk: left = A, right = B.
        in_nc, out_nc = self.disk_channels()
        if right_path is None:
            ab = self._load(left_path, 3)
            w, h = ab.size
            w2 = w // 2
            left, right = ab.crop((0, 0, w2, h)), ab.crop((w2, 0, 2 * w2, h))
            if in_nc == 1:
                left = left.convert("L")
            if out_nc == 1:
                right = right.convert("L")
            right_path = left_path
        else:
            left, right = self._load(left_path, in_nc), self._load(right_path, out_nc)
            if left.size != right.size:
                raise RuntimeError(
                    f"A and B differ in size: {left_path} is {left.size[0]}x{left.size[1]}, "
                    f"{right_path} is {right.size[0]}x{right.size[1]}"
                )
        if self.direction == "BtoA":
            left, right, left_path, right_path = right, left, right_path, left_path
        rng = sample_rng(self.seed, epoch, index)
        params = get_params(self.preprocess, *left.size, rng)
        A = to_tensor(apply(left, self.preprocess, params, self.filter_A))
        B = to_tensor(apply(right, self.preprocess, params, self.filter_B))
        if self.aug.enabled and self.preprocess.random:
            A, B = augment(A, B, self.aug, int(rng.integers(2**31)))
        return {"A": A, "B": B, "A_paths": left_path, "B_paths": right_path}


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
