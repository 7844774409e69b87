"""Tiled against whole-image translation: PSNR between the two outputs, and peak memory of each, on the CPU.

python scripts/tile_study.py --checkpoint checkpoints/facades/latest.pth --image datasets/facades/test/1.jpg \
    --half right --size 2048 --memory_size 4096 --tile 512 --overlap 64

The input is the image's chosen half resized to --size. Each memory figure is the peak resident set of a fresh
process that loads the generator, makes one random --memory_size input tensor and translates it whole, tiled, or
not at all (the baseline: the model and the input alone). Both outputs of each mode are saved beside the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.inference import load_translator  # noqa: E402


def make_input(image: str, half: str, size: int) -> Image.Image:
    img = Image.open(image).convert("RGB")
    w, h = img.size
    box = (0, 0, w // 2, h) if half == "left" else (w // 2, 0, w, h) if half == "right" else (0, 0, w, h)
    return img.crop(box).resize((size, size), Image.Resampling.BICUBIC)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory_child(a: argparse.Namespace, kind: str) -> None:
    t = load_translator(a.checkpoint, device="cpu", eval=True)
    # Filled in place: no decoding or conversion copies in the peak, only the model and one input.
    x = torch.empty(1, t.input_nc, a.memory_size, a.memory_size).uniform_(-1, 1)
    if kind != "baseline":
        t.translate(x, a.tile if kind == "tiled" else None, a.overlap)
    print(json.dumps({"peak_mib": peak_mib()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--half", choices=("left", "right", "whole"), default="whole")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--memory_size", type=int, default=4096)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--memory_only", action="store_true", help="skip the PSNR part")
    p.add_argument("--memory_child", choices=("baseline", "whole", "tiled"), help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    if a.memory_child:
        memory_child(a, a.memory_child)
        return
    img = make_input(a.image, a.half, a.size)
    rows = {}
    for mode, eval in () if a.memory_only else (("train", False), ("eval", True)):
        t = load_translator(a.checkpoint, device="cpu", eval=eval)
        torch.manual_seed(0)
        whole = np.asarray(t(img))
        torch.manual_seed(0)
        tiled = np.asarray(t(img, tile=a.tile, overlap=a.overlap))
        rows[mode] = psnr(tiled, whole)
        stem = os.path.join(os.path.dirname(a.checkpoint), f"tile_study_{a.size}_{mode}")
        Image.fromarray(whole).save(f"{stem}_whole.png")
        Image.fromarray(tiled).save(f"{stem}_tiled.png")
    mem = {}
    for kind in ("baseline", "whole", "tiled"):
        cmd = [sys.executable, __file__, *[x for x in sys.argv[1:] if x != "--memory_only"], "--memory_child", kind]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        mem[kind] = json.loads(out.strip().splitlines()[-1])
    print(f"PSNR tiled vs whole at {a.size}x{a.size}, tile {a.tile}, overlap {a.overlap}:")
    for mode, v in rows.items():
        print(f"  {mode} mode: {v:.2f} dB")
    print(f"peak resident memory of the process at {a.memory_size}x{a.memory_size}:")
    for kind, m in mem.items():
        print(f"  {kind}: {m['peak_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
