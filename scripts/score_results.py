"""Score a test.py result folder: mean L1, PSNR and SSIM of <stem>_fake_B.png against <stem>_real_B.png."""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def load(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def score(web_dir: str) -> dict:
    """Per-image and mean metrics on the saved 8-bit PNGs, scaled to [0, 1].

    SSIM is scikit-image's structural_similarity with its default 7x7 uniform window, data_range 1 and
    channel_axis -1 (the mean of the per-channel SSIMs); PSNR uses data_range 1.
    """
    fakes = sorted(glob.glob(os.path.join(web_dir, "images", "*_fake_B.png")))
    if not fakes:
        raise FileNotFoundError(f"no *_fake_B.png under {web_dir}/images")
    rows = {}
    for fake_path in fakes:
        stem = os.path.basename(fake_path)[: -len("_fake_B.png")]
        fake, real = load(fake_path), load(fake_path.replace("_fake_B.png", "_real_B.png"))
        with np.errstate(divide="ignore"):  # identical images: PSNR is +inf
            psnr = float(peak_signal_noise_ratio(real, fake, data_range=1.0))
        rows[stem] = {
            "L1": float(np.abs(fake - real).mean()),
            "PSNR": psnr,
            "SSIM": float(structural_similarity(real, fake, data_range=1.0, channel_axis=-1)),
        }
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in ("L1", "PSNR", "SSIM")}
    return {"n": len(rows), "mean": mean, "per_image": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("web_dir", help="a test.py output folder, e.g. results/facades/test_latest")
    p.add_argument("--json", help="also write the scores to this file")
    args = p.parse_args(argv)
    result = score(args.web_dir)
    m = result["mean"]
    print(f"{result['n']} images: L1 {m['L1']:.4f}  PSNR {m['PSNR']:.2f} dB  SSIM {m['SSIM']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
