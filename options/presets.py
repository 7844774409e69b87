"""--preset NAME: a documented group of train.py flags for a task type, each measured in docs/going-to-512.md.
A flag given on the command line wins over the preset's; train.py says at start-up what the preset set, and the
values are saved with the run like every option."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# name -> {flag: value}; docs/going-to-512.md gives each one's measurements and the command that reproduces them.
PRESETS: dict[str, dict[str, Any]] = {
    # Restoration (denoising, deblurring: B is A with something removed), at 512: the coarse-to-fine generator,
    # which beat unet_512 at equal training FLOPs on every measure with both seeds (polyu512); G predicts B - A;
    # a 5x learning rate, the one lever that moved PSNR at the reference's budget; crops at the images' native
    # resolution (as good as resizing to 572, and any size works).
    "restore": {"netG": "c2f_unet_512", "residual": True, "lr": 0.001, "preprocess": "crop", "crop_size": 512},
    # Label or map to photo at 512 (G must invent texture, realism is the measure): three PatchGAN scales
    # (pix2pixHD's) and an L1 weight of 10, the two switches that each lowered map -> aerial SWD for both seeds
    # (maps600 study), together lowest on average; they give up some L1 and PSNR, which reward the blurry mean.
    # Native 512 crops.
    "label2photo": {"netG": "unet_512", "num_D": 3, "lambda_L1": 10.0, "preprocess": "crop", "crop_size": 512},
}


def preset_values(name: str, given: set[str]) -> dict[str, Any]:
    """The flags preset `name` sets ("none": none), leaving out those given on the command line."""
    if name == "none":
        return {}
    return {k: v for k, v in PRESETS[name].items() if k not in given}


def describe(name: str, values: Mapping[str, Any], given: set[str]) -> str:
    """One line for the start-up: what the preset set, and which of its flags the command line overrode."""
    shown = " ".join(f"--{k}" if v is True else f"--{k} {v}" for k, v in values.items())
    kept = sorted(k for k in PRESETS[name] if k in given)
    tail = f" (given on the command line, kept: {', '.join('--' + k for k in kept)})" if kept else ""
    return f"--preset {name} sets {shown or 'nothing the command line left out'}{tail}"
