"""Paired preprocessing: one set of random resize/crop/flip parameters applied to both A and B."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class Preprocess:
    """How images are scaled and cropped (the --preprocess, --load_size, --crop_size, --no_flip flags)."""

    preprocess: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    random: bool = True  # False at test time: centre crops, no flips


@dataclass(frozen=True)
class Params:
    size: tuple[int, int]  # (w, h) after scaling
    crop: tuple[int, int] | None  # top-left (x, y) of the crop, or None
    flip: bool


def scaled_size(p: Preprocess, w: int, h: int) -> tuple[int, int]:
    if p.preprocess == "resize_and_crop":
        return p.load_size, p.load_size
    if p.preprocess in ("scale_width", "scale_width_and_crop"):
        # Keep the aspect ratio; never let the height fall below the crop size.
        return p.load_size, max(round(p.load_size * h / w), p.crop_size)
    return w, h


def get_params(p: Preprocess, w: int, h: int, rng: np.random.Generator | None) -> Params:
    """Draw the crop position and flip for an image of size (w, h); rng=None gives centre and no flip."""
    sw, sh = scaled_size(p, w, h)
    crop = None
    if p.preprocess in ("resize_and_crop", "crop", "scale_width_and_crop"):
        if sw < p.crop_size or sh < p.crop_size:
            raise ValueError(
                f"image of {w}x{h} is {sw}x{sh} after --preprocess {p.preprocess}, smaller than "
                f"--crop_size {p.crop_size}"
            )
        if p.random and rng is not None:
            crop = (int(rng.integers(0, sw - p.crop_size + 1)), int(rng.integers(0, sh - p.crop_size + 1)))
        else:
            crop = ((sw - p.crop_size) // 2, (sh - p.crop_size) // 2)
    flip = bool(p.flip and p.random and rng is not None and rng.random() < 0.5)
    return Params((sw, sh), crop, flip)


def apply(img: Image.Image, p: Preprocess, params: Params, resample: str) -> Image.Image:
    if img.size != params.size:
        img = img.resize(params.size, FILTERS[resample])
    if params.crop is not None:
        x, y = params.crop
        img = img.crop((x, y, x + p.crop_size, y + p.crop_size))
    if params.flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image (L or RGB, 8-bit) -> float tensor (C, H, W) in [-1, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).float()
    return t.div_(127.5).sub_(1.0)
