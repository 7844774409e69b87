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
RESIZE_FILTERS = tuple(FILTERS)  # --filter_A, --filter_B

# --preprocess: each mode's rules, written once. CROP_MODES cut a crop_size square (every image of a batch then
# has one size); of those, RESIZE_CROP_MODES first scale to load_size, so the crop must fit inside it.
PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
CROP_MODES = ("resize_and_crop", "crop", "scale_width_and_crop")
RESIZE_CROP_MODES = ("resize_and_crop", "scale_width_and_crop")
SCALE_WIDTH_MODES = ("scale_width", "scale_width_and_crop")


@dataclass(frozen=True)
class Preprocess:
    """How images are scaled and cropped (the --preprocess, --load_size, --crop_size, --no_flip flags)."""

    preprocess: str
    load_size: int
    crop_size: int
    flip: bool
    random: bool  # False at test time: centre crops, no flips


@dataclass(frozen=True)
class Params:
    size: tuple[int, int]  # (w, h) after scaling
    crop: tuple[int, int] | None  # top-left (x, y) of the crop, or None
    flip: bool


def scaled_size(p: Preprocess, w: int, h: int) -> tuple[int, int]:
    if p.preprocess == "resize_and_crop":
        return p.load_size, p.load_size
    if p.preprocess in SCALE_WIDTH_MODES:
        # Keep the aspect ratio; never let the height fall below the crop size.
        return p.load_size, max(round(p.load_size * h / w), p.crop_size)
    return w, h


def get_params(p: Preprocess, w: int, h: int, rng: np.random.Generator | None) -> Params:
    """Draw the crop position and flip for an image of size (w, h); rng=None gives centre and no flip."""
    sw, sh = scaled_size(p, w, h)
    crop = None
    if p.preprocess in CROP_MODES:
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


def apply_array(a: np.ndarray, p: Preprocess, params: Params, resample: str) -> np.ndarray:
    """apply() for full-precision data: (H, W, C) float32 in [-1, 1], each channel resampled by Pillow's float
    (mode F) filters, the 8-bit path's filters without its rounding, and clipped to [-1, 1] as 8-bit images are
    (bicubic and Lanczos overshoot at edges)."""
    if (a.shape[1], a.shape[0]) != params.size:
        chans = [Image.fromarray(np.ascontiguousarray(a[:, :, c])) for c in range(a.shape[2])]
        a = np.stack([np.asarray(ch.resize(params.size, FILTERS[resample])) for ch in chans], axis=2)
        a = np.clip(a, -1.0, 1.0)
    if params.crop is not None:
        x, y = params.crop
        a = a[y : y + p.crop_size, x : x + p.crop_size]
    if params.flip:
        a = a[:, ::-1]
    return a


def array_to_tensor(a: np.ndarray) -> torch.Tensor:
    """(H, W, C) float32 in [-1, 1] -> (C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image (L or RGB, 8-bit) -> float tensor (C, H, W) in [-1, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).float()
    return t.div_(127.5).sub_(1.0)


@dataclass(frozen=True)
class Augment:
    """Extra training augmentation (off by default): random scale and rotation with one set of parameters
    for A and B, and photometric jitter on the input only or on both."""

    scale: float = 0.0  # zoom factor drawn from [1 - scale, 1 + scale]
    rotate: float = 0.0  # degrees, drawn from [-rotate, rotate]
    color: float = 0.0  # brightness, contrast and saturation jitter strength; hue gets a quarter of it
    color_on: str = "input"  # "input" (real_A only) or "both"
    nearest: bool = False  # label maps: resample without blending colours

    @property
    def enabled(self) -> bool:
        return bool(self.scale or self.rotate or self.color)


def augment(A: torch.Tensor, B: torch.Tensor, aug: Augment, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A, B: (C, H, W) in [-1, 1]. torchvision's v2 transforms draw one set of parameters for both images;
    they draw them from torch's RNG, so it is seeded per sample (from (seed, epoch, index)) inside fork_rng,
    which leaves the caller's random state as it was."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if aug.scale or aug.rotate:
            mode = v2.InterpolationMode.NEAREST if aug.nearest else v2.InterpolationMode.BILINEAR
            geo = v2.RandomAffine(
                degrees=aug.rotate, scale=(1 - aug.scale, 1 + aug.scale), interpolation=mode, fill=-1.0
            )  # black outside the image
            A, B = geo(tv_tensors.Image(A), tv_tensors.Image(B))
        if aug.color:

            def jitter(channels: int) -> v2.ColorJitter:
                colour = channels == 3  # saturation and hue need colour
                return v2.ColorJitter(
                    brightness=aug.color,
                    contrast=aug.color,
                    saturation=aug.color if colour else 0,
                    hue=min(0.5, aug.color / 4) if colour else 0,
                )

            # ColorJitter works on [0, 1] images.
            a01 = tv_tensors.Image((A + 1) / 2)
            if aug.color_on == "both" and A.shape[0] == B.shape[0]:
                a01, b01 = jitter(A.shape[0])(a01, tv_tensors.Image((B + 1) / 2))
                B = b01 * 2 - 1
            else:
                a01 = jitter(A.shape[0])(a01)
            A = a01 * 2 - 1
    return A.as_subclass(torch.Tensor), B.as_subclass(torch.Tensor)
