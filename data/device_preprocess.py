"""--device_preprocess: the training pairs' resize, crop, flip and augmentation, batched on the training device."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F

from data.transforms import Augment, Preprocess, augment

# --filter_A/--filter_B -> torch's modes. Antialiased bilinear and bicubic follow Pillow's kernels (bicubic a = -0.5);
# nearest picks Pillow's pixels (pillow_nearest); Lanczos has no torch kernel (refused by the option's check).
TORCH_MODES = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest-exact"}


def pillow_nearest(n_in: int, n_out: int) -> list[int]:
    """The source index of each output pixel of Pillow's nearest-neighbour resize: the centre of pixel i maps to
    (i + 0.5) * n_in / n_out, summed step by step in float64 as Pillow does (at exact halves the rounding decides,
    and torch's 'nearest-exact' sometimes decides otherwise), then truncated."""
    step, pos, out = n_in / n_out, 0.5 * n_in / n_out, []
    for _ in range(n_out):
        out.append(min(int(pos), n_in - 1))
        pos += step
    return out


def collate_raw(samples: list[dict]) -> dict:
    """The loader's batch of raw samples: tensors of one shape stacked, images of different sizes kept as a list,
    paths as lists."""
    out: dict = {}
    for key in samples[0]:
        vals = [s[key] for s in samples]
        same = torch.is_tensor(vals[0]) and all(v.shape == vals[0].shape for v in vals)
        out[key] = torch.stack(vals) if same else vals
    return out


class DevicePreprocess:
    """Turns a raw batch from the loader into {'A', 'B', 'A_paths', 'B_paths'} on `device`.

    The raw batch holds each sample's images as read (uint8 (H, W, C), or float32 (H, W, C) in [-1, 1] for
    full-precision data) and the parameters the dataset drew for it from (seed, epoch, index): 'size' (N, 2) the
    (w, h) to scale to, 'crop' (N, 2) the crop's top-left (x, y) or -1, 'flip' (N,), 'aug_seed' (N,). They are CPU
    tensors, read on the host without waiting for the device. Resizing is one batched call when the images share
    a size (the usual case), and per image otherwise."""

    def __init__(self, preprocess: Preprocess, filter_A: str, filter_B: str, aug: Augment, device: torch.device):
        for f in (filter_A, filter_B):
            if f not in TORCH_MODES:
                raise ValueError(f"--device_preprocess: no torch resampling filter for {f!r}")
        self.pre, self.filters, self.aug, self.device = preprocess, (filter_A, filter_B), aug, torch.device(device)

    @classmethod
    def of(cls, dataset, device: torch.device) -> DevicePreprocess:
        """The preprocessing of an AlignedDataset (its crops, filters and augmentation)."""
        return cls(dataset.preprocess, dataset.filter_A, dataset.filter_B, dataset.aug, device)

    def __call__(self, batch: dict) -> dict:
        sizes, crops, flips = batch["size"].tolist(), batch["crop"].tolist(), batch["flip"]
        A, B = (self._side(batch[k], sizes, crops, flips, f) for k, f in zip("AB", self.filters, strict=True))
        if self.aug.enabled and self.pre.random:
            pairs = [augment(a, b, self.aug, s) for a, b, s in zip(A, B, batch["aug_seed"].tolist(), strict=True)]
            A, B = torch.stack([a for a, _ in pairs]), torch.stack([b for _, b in pairs])
        return {"A": A, "B": B, "A_paths": batch["A_paths"], "B_paths": batch["B_paths"]}

    def _side(self, images, sizes: list, crops: list, flips: torch.Tensor, filt: str) -> torch.Tensor:
        if torch.is_tensor(images) and all(s == sizes[0] for s in sizes):
            x = self._unit(self._resize(self._to_device(images), sizes[0], filt))  # (N, C, h, w)
            out = [self._crop(x[i], c) for i, c in enumerate(crops)]
        else:
            out = [
                self._crop(self._unit(self._resize(self._to_device(img[None]), s, filt))[0], c)
                for img, s, c in zip(images, sizes, crops, strict=True)
            ]
        x = torch.stack(out)  # (N, C, crop, crop): a batch has one size after preprocessing (check_batchable)
        if bool(flips.any()):  # a CPU tensor: no device sync
            mask = flips.to(self.device, non_blocking=True).view(-1, 1, 1, 1)
            x = torch.where(mask, x.flip(-1), x)
        return x

    def _to_device(self, images: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """(N, H, W, C) uint8 or float32 -> ((N, C, H, W) float32 on the device, whether it holds 8-bit levels
        0..255); the copy is asynchronous from pinned memory."""
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        return x.float(), x.dtype == torch.uint8

    @staticmethod
    def _unit(x: tuple[torch.Tensor, bool]) -> torch.Tensor:
        """-> [-1, 1], as data.transforms.to_tensor maps 8-bit levels."""
        t, eight_bit = x
        return t.div_(127.5).sub_(1.0) if eight_bit else t

    def _resize(self, x: tuple[torch.Tensor, bool], size: list[int], filt: str) -> tuple[torch.Tensor, bool]:
        """Scale (N, C, H, W) to size (w, h) as Pillow does. For 8-bit levels that means Pillow's two passes,
        horizontal then vertical, each rounded (halves up) and clipped to 0..255: then 99.7% of values or more come
        out identical to the loader's and none differs by more than 2 levels (docs/performance.md). Full-precision
        values are scaled in one pass and clipped to [-1, 1], as data.transforms.apply_array does."""
        t, eight_bit = x
        w, h = size
        mode = TORCH_MODES[filt]
        if (t.shape[-1], t.shape[-2]) == (w, h):
            return x
        if mode == "nearest-exact":
            rows = torch.tensor(pillow_nearest(t.shape[-2], h), device=t.device)
            cols = torch.tensor(pillow_nearest(t.shape[-1], w), device=t.device)
            return t.index_select(-2, rows).index_select(-1, cols), eight_bit
        if not eight_bit:
            return F.interpolate(t, size=(h, w), mode=mode, align_corners=False, antialias=True).clamp_(-1, 1), False
        for out in ((t.shape[-2], w), (h, w)):
            if out != tuple(t.shape[-2:]):
                t = (
                    F.interpolate(t, size=out, mode=mode, align_corners=False, antialias=True)
                    .add_(0.5)
                    .floor_()
                    .clamp_(0, 255)
                )
        return t, True

    def _crop(self, x: torch.Tensor, crop: list[int]) -> torch.Tensor:
        """x (C, H, W); crop (x, y) of the top-left corner, or (-1, -1) for none."""
        if crop[0] < 0:
            return x
        c, (x0, y0) = self.pre.crop_size, crop
        return x[:, y0 : y0 + c, x0 : x0 + c]


class DeviceLoader:
    """The training loader with DevicePreprocess applied to each batch; len() and iteration as the loader's."""

    def __init__(self, loader: Iterable, preprocess: DevicePreprocess) -> None:
        self.loader, self.preprocess = loader, preprocess

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            yield self.preprocess(batch)
