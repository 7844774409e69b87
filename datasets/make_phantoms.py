#!/usr/bin/env python3
"""Build a small medical demo set offline: synthetic head phantoms in Hounsfield units, for two tasks.

    python datasets/make_phantoms.py --out datasets/phantoms              # both tasks
    python datasets/make_phantoms.py --out datasets/phantoms --size 128 --n_train 200

Each phantom is a random head: an elliptical skull (bone, about +1000 HU) around brain tissue (+20..+45 HU),
with ventricles (cerebrospinal fluid, +5 HU), fat (-100 HU) and lesions, in air (-1000 HU); every shape, value
and position is drawn at random, so no test phantom is seen in training. Two tasks are written:

    denoise/{train,test}/{A,B}/NNNN.tif   A: the slice at a simulated low dose (Gaussian noise of 80 HU, the
                                          kind a dose cut adds), B: the clean slice; int16 TIFFs in HU.
    mr2ct/{train,test}/{A,B}/NNNN.npy     A: two MR-like contrasts (T1- and T2-weighted intensities of the same
                                          tissues, float32, shape (H, W, 2)), B: the CT slice in HU (int16).

The script never writes over anything: it exits with status 2 when --out exists and is not empty.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np

# tissue: (CT HU, T1-weighted, T2-weighted) -- MR intensities in arbitrary units, contrasts as in the clinic:
# fluid dark in T1 and bright in T2, fat bright in T1, bone dark in both.
TISSUES = {
    "air": (-1000, 0.0, 0.0),
    "bone": (1000, 0.15, 0.1),
    "fat": (-100, 0.9, 0.6),
    "brain": (35, 0.55, 0.45),
    "csf": (5, 0.2, 1.0),
    "lesion": (60, 0.4, 0.8),
}


def ellipse(size: int, cx: float, cy: float, rx: float, ry: float, angle: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    c, s = np.cos(angle), np.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1


def phantom(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) tissue labels (indices into TISSUES)."""
    names = list(TISSUES)
    lab = np.full((size, size), names.index("air"), np.int8)
    cx, cy = 0.5 + rng.uniform(-0.04, 0.04, 2)
    rx, ry, ang = rng.uniform(0.36, 0.44), rng.uniform(0.40, 0.46), rng.uniform(-0.3, 0.3)
    lab[ellipse(size, cx, cy, rx + 0.03, ry + 0.03, ang)] = names.index("fat")  # scalp
    lab[ellipse(size, cx, cy, rx, ry, ang)] = names.index("bone")  # skull
    lab[ellipse(size, cx, cy, rx - 0.04, ry - 0.04, ang)] = names.index("brain")
    for side in (-1, 1):  # two ventricles
        lab[ellipse(size, cx + side * 0.06, cy, 0.04, rng.uniform(0.08, 0.14), ang + side * 0.3)] = names.index("csf")
    for _ in range(rng.integers(0, 4)):  # lesions
        r = rng.uniform(0.02, 0.07)
        lab[ellipse(size, cx + rng.uniform(-0.2, 0.2), cy + rng.uniform(-0.25, 0.25), r, r, 0)] = names.index("lesion")
    return lab


def contrasts(lab: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(CT in HU, int16; MR T1 and T2, float32 (H, W, 2)) of a phantom, each tissue a little different per head."""
    table = np.array(list(TISSUES.values()), np.float64)
    ct = table[lab, 0] + rng.normal(0, 8, len(table))[lab] * (lab != 0)
    ct += np.add.outer(np.linspace(-10, 10, lab.shape[0]), np.zeros(lab.shape[1])) * (lab == 3)  # a gentle gradient
    mr = table[lab][:, :, 1:] * rng.uniform(0.9, 1.1, 2)  # each scan's own gain
    mr += rng.normal(0, 0.01, mr.shape)
    return np.clip(np.round(ct), -1024, 3071).astype(np.int16), mr.astype(np.float32)


def write_pair(root: str, task: str, phase: str, i: int, a: np.ndarray, b: np.ndarray) -> None:
    import tifffile

    for side, arr in (("A", a), ("B", b)):
        folder = os.path.join(root, task, phase, side)
        os.makedirs(folder, exist_ok=True)
        if task == "denoise":
            tifffile.imwrite(os.path.join(folder, f"{i:04d}.tif"), arr)
        else:
            np.save(os.path.join(folder, f"{i:04d}.npy"), arr, allow_pickle=False)


def build(out: str, size: int, n_train: int, n_test: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for phase, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            ct, mr = contrasts(phantom(size, rng), rng)
            low_dose = np.clip(np.round(ct + rng.normal(0, 80, ct.shape)), -1024, 3071).astype(np.int16)
            write_pair(out, "denoise", phase, i, low_dose, ct)
            write_pair(out, "mr2ct", phase, i, mr, ct)


def bounded(lo: int, hi: int):
    """An argparse type: an integer from lo to hi, else one line naming the bounds (exit 2)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is not in {lo}..{hi}")
        return v

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="datasets/phantoms", help="folder to create (must not exist or be empty)")
    p.add_argument("--size", type=bounded(16, 4096), default=64, help="slice size in pixels, 16 to 4096")
    p.add_argument("--n_train", type=bounded(1, 100000), default=64, help="training pairs, 1 or more")
    p.add_argument("--n_test", type=bounded(0, 100000), default=8, help="test pairs, 0 or more")
    p.add_argument("--seed", type=bounded(0, 2**63 - 1), default=0, help="0 or more")
    a = p.parse_args(argv)
    if os.path.exists(a.out) and (not os.path.isdir(a.out) or os.listdir(a.out)):
        print(f"make_phantoms.py: error: {a.out} exists and is not empty; choose another --out", file=sys.stderr)
        return 2
    build(a.out, a.size, a.n_train, a.n_test, a.seed)
    print(f"wrote {a.n_train} + {a.n_test} phantoms of {a.size}x{a.size} to {a.out}/denoise and {a.out}/mr2ct")
    return 0


if __name__ == "__main__":
    sys.exit(main())
