"""Paired data: combined A|B images split at half width, or A/ and B/ folders of same-named files."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from PIL import Image, ImageOps

from data.image_folder import IMG_EXTENSIONS, make_dataset
from data.transforms import Preprocess, apply, get_params, to_tensor

log = logging.getLogger(__name__)


def load_image(path: str, nc: int) -> Image.Image:
    """Open an image as 8-bit L (nc=1) or RGB (nc=3), upright per its EXIF orientation.

    16-bit images are scaled to 8 bits over the full range (not clipped); alpha is dropped.
    """
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8), mode="L")
            return im.convert("L" if nc == 1 else "RGB")
    except (OSError, ValueError, SyntaxError) as e:
        raise RuntimeError(f"cannot read image {path}: {e}") from e


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
        phase: str = "train",
        direction: str = "AtoB",
        input_nc: int = 3,
        output_nc: int = 3,
        preprocess: Preprocess = Preprocess(),
        filter_A: str = "bicubic",
        filter_B: str = "bicubic",
        seed: int = 0,
        max_dataset_size: int | None = None,
    ) -> None:
        self.direction, self.input_nc, self.output_nc = direction, input_nc, output_nc
        self.preprocess, self.filter_A, self.filter_B, self.seed = preprocess, filter_A, filter_B, seed
        self.pairs = find_pairs(dataroot, phase, max_dataset_size)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = split_key(key)
        left_path, right_path = self.pairs[index]
        # On disk: left = A, right = B. The model input is real_A, so BtoA swaps them.
        in_nc, out_nc = (self.input_nc, self.output_nc) if self.direction == "AtoB" else (self.output_nc, self.input_nc)
        if right_path is None:
            ab = load_image(left_path, 3)
            w, h = ab.size
            w2 = w // 2
            left, right = ab.crop((0, 0, w2, h)), ab.crop((w2, 0, 2 * w2, h))
            if in_nc == 1:
                left = left.convert("L")
            if out_nc == 1:
                right = right.convert("L")
            right_path = left_path
        else:
            left, right = load_image(left_path, in_nc), load_image(right_path, out_nc)
            if left.size != right.size:
                raise RuntimeError(
                    f"A and B differ in size: {left_path} is {left.size[0]}x{left.size[1]}, "
                    f"{right_path} is {right.size[0]}x{right.size[1]}"
                )
        if self.direction == "BtoA":
            left, right, left_path, right_path = right, left, right_path, left_path
        params = get_params(self.preprocess, *left.size, sample_rng(self.seed, epoch, index))
        A = to_tensor(apply(left, self.preprocess, params, self.filter_A))
        B = to_tensor(apply(right, self.preprocess, params, self.filter_B))
        return {"A": A, "B": B, "A_paths": left_path, "B_paths": right_path}


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
        return {os.path.splitext(os.path.relpath(p, folder))[0]: p for p in make_dataset(folder)}

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
