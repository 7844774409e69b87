"""--device_preprocess: the same crops, flips and augmentation as the loader, pixels within the stated tolerance after
resizing, resume and torchrun with it."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

import train
from conftest import aligned, make_dataroot, make_pairs, prep, train_args
from data.device_preprocess import DevicePreprocess, collate_raw
from data.transforms import Augment
from engine import checkpoint
from options import rules
from options.options import parse
from util.config import OptionError


def smooth_pairs(folder, n, w, h, seed=0):
    """A|B pairs of smooth gradients with a few sharp edges: what photos look like to a resampling filter."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        a = np.stack([(xx * rng.uniform(1, 4) + yy * rng.uniform(1, 4)) % 256 for _ in range(3)], axis=2)
        a[h // 3 : h // 2, w // 4 : w // 2] = rng.integers(0, 256, 3)  # a flat block with sharp edges
        a = a.astype(np.uint8)
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(os.path.join(folder, f"s{i:03d}.png"))


def both_paths(ds, keys, filters=("bicubic", "bicubic"), aug=Augment()):
    """The loader's batch and the device path's batch (on the CPU) for the same (epoch, index) keys."""
    ds.raw = False
    plain = [ds[k] for k in keys]
    ds.raw = True
    raw = collate_raw([ds[k] for k in keys])
    dev = DevicePreprocess(ds.preprocess, *filters, aug, torch.device("cpu"))(raw)
    A, B = torch.stack([s["A"] for s in plain]), torch.stack([s["B"] for s in plain])
    assert dev["A_paths"] == [s["A_paths"] for s in plain] and dev["B_paths"] == [s["B_paths"] for s in plain]
    return (A, B), (dev["A"], dev["B"])


KEYS = [(e, i) for e in (1, 2, 3) for i in range(3)]  # enough draws for both flips and several crop positions


@pytest.mark.parametrize(
    "layout, direction, input_nc, aug",
    [
        ("combined", "AtoB", 3, Augment()),
        ("folders", "BtoA", 1, Augment()),
        ("combined", "AtoB", 3, Augment(scale=0.2, rotate=15, color=0.2, color_on="both")),
    ],
)
def test_crops_flips_and_augmentation_equal_the_loaders(tmp_path, layout, direction, input_nc, aug):
    """Without resizing the device path must give the loader's tensors bit for bit: then every crop box, flip and
    augmentation parameter is the same."""
    if layout == "combined":
        make_pairs(str(tmp_path / "train"), 3, w=40, h=44, seed=1)
    else:
        for side in "AB":
            os.makedirs(tmp_path / "train" / side)
        for i, p in enumerate(make_pairs(str(tmp_path / "tmp"), 3, w=40, h=44, seed=1)):
            ab = Image.open(p)
            ab.crop((0, 0, 40, 44)).save(tmp_path / "train" / "A" / f"{i}.png")
            ab.crop((40, 0, 80, 44)).save(tmp_path / "train" / "B" / f"{i}.png")
    ds = aligned(str(tmp_path), direction=direction, input_nc=input_nc, preprocess=prep("crop", 40, 32), aug=aug)
    ds.check(False, 0.05, workers=1)
    (A, B), (dA, dB) = both_paths(ds, KEYS, aug=aug)
    assert dA.shape == (len(KEYS), input_nc, 32, 32) and dB.shape == (len(KEYS), 3, 32, 32)
    assert torch.equal(A, dA) and torch.equal(B, dB)


@pytest.mark.parametrize("filt", ["bicubic", "bilinear", "nearest"])
def test_resized_pixels_within_two_levels(tmp_path, filt):
    """Pillow resizes 8-bit images in two rounded passes; the device path copies that, so pixels agree to 2 levels
    of 256 at most, and nearly all exactly (the figures in docs/performance.md come from real photos). Nearest
    picks Pillow's pixels exactly."""
    smooth_pairs(str(tmp_path / "train"), 3, 48, 48)
    ds = aligned(str(tmp_path), preprocess=prep("resize_and_crop", 58, 48), filter_A=filt, filter_B=filt)
    ds.check(False, 0.05, workers=1)
    (A, B), (dA, dB) = both_paths(ds, KEYS, filters=(filt, filt))
    for x, y in ((A, dA), (B, dB)):
        levels = (x - y).abs() * 127.5
        assert levels.max() <= 2.0 + 1e-3
        assert (levels < 1e-3).float().mean() > 0.98 if filt != "nearest" else torch.equal(x, y)


def test_images_of_different_sizes_are_resized_one_by_one(tmp_path):
    make_pairs(str(tmp_path / "train"), 2, w=40, h=40, seed=1)
    smooth_pairs(str(tmp_path / "train"), 1, 52, 44)
    ds = aligned(str(tmp_path), preprocess=prep("resize_and_crop", 36, 32), filter_A="nearest", filter_B="nearest")
    ds.check(False, 0.05, workers=1)
    keys = [(1, i) for i in range(3)]
    ds.raw = True
    assert isinstance(collate_raw([ds[k] for k in keys])["A"], list)  # 40x40 and 52x44 do not stack
    (A, B), (dA, dB) = both_paths(ds, keys, filters=("nearest", "nearest"))
    assert torch.equal(A, dA) and torch.equal(B, dB)


def test_lanczos_is_refused_with_the_flag():
    with pytest.raises(OptionError, match="--device_preprocess: --filter_A lanczos has no torch kernel"):
        rules.check(parse(True, ["--device_preprocess", "--filter_A", "lanczos"]))


def run_args(data, ck, name):
    args = train_args(data, ck, name, "--n_epochs", "1", "--n_epochs_decay", "1", "--no_html")
    return args + ["--device_preprocess", "--batch_size", "2"]


def test_resume_with_device_preprocessing_is_bit_exact(tmp_path):
    data = make_dataroot(tmp_path / "data", train=4)
    extra = ["--aug_rotate", "10", "--aug_color", "0.1"]
    assert train.main([*run_args(data, tmp_path, "ref"), *extra]) == 0
    assert train.main([*run_args(data, tmp_path, "half"), *extra, "--stop_after_iters", "3"]) == 0
    assert train.main([*run_args(data, tmp_path, "half"), *extra, "--continue_train"]) == 0
    a, b = (checkpoint.load(str(tmp_path / n / "latest.pth"))["model"] for n in ("ref", "half"))
    for part in ("netG", "netD"):
        assert all(torch.equal(v, b[part][k]) for k, v in a[part].items()), part
