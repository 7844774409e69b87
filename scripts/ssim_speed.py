"""SSIM's cost per pixel from small to large images, beside a plain separable box-filter SSIM on the same inputs.

    python scripts/ssim_speed.py [--sizes 256x256 512x512 512x1024 1024x1024 512x2048 2048x1024] [--threads 2]

Prints, per size, the median time of metrics.ssim and of the plain version (five statistics, avg_pool2d rows then
columns, float32) in ms and ns per pixel, and their ratio: the two interleaved, at least 2 s of calls per size.
Time it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from metrics import SSIM_K1, SSIM_K2, SSIM_WIN, ssim  # noqa: E402


def plain_ssim(fake: torch.Tensor, real: torch.Tensor, data_range: float = 1.0, win: int = SSIM_WIN) -> torch.Tensor:
    """(N,) SSIM as a plain separable box filter computes it: E[x^2] - E[x]^2 in float32, no care for precision."""
    x, y = fake.float(), real.float()
    c = x.shape[1]
    stats = torch.cat([x, y, x * x, y * y, x * y], 1)
    m = F.avg_pool2d(F.avg_pool2d(stats, (1, win), stride=1), (win, 1), stride=1)
    mx, my, exx, eyy, exy = m.split(c, 1)
    sample = win * win / (win * win - 1)
    vx, vy, cov = (exx - mx * mx) * sample, (eyy - my * my) * sample, (exy - mx * my) * sample
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * cov + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))).mean((1, 2, 3))


def median_seconds(fns, x: torch.Tensor, y: torch.Tensor, repeats: int, min_seconds: float) -> list[float]:
    """Median time of each of fns on (x, y), the calls interleaved: at least repeats rounds, and more while a
    round's total is under min_seconds (small images need many calls for a stable median)."""
    for fn in fns:
        fn(x, y)  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    while len(times[0]) < repeats or time.perf_counter() - start < min_seconds:
        for fn, own in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn(x, y)
            own.append(time.perf_counter() - t0)
    return [sorted(own)[len(own) // 2] for own in times]


def size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: HxW, such as 512x1024") from None
    if min(h, w) < SSIM_WIN:
        raise argparse.ArgumentTypeError(f"{text}: both sides at least {SSIM_WIN}")
    return h, w


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ["256x256", "512x512", "512x1024", "1024x1024", "512x2048", "2048x1024"]
    p.add_argument("--sizes", type=size, nargs="+", default=[size(s) for s in default])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="at least this many calls of each per size")
    p.add_argument("--min_seconds", type=float, default=2.0, help="and more calls until this long per size")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    for h, w in args.sizes:
        x, y = torch.rand(1, 3, h, w, generator=gen), torch.rand(1, 3, h, w, generator=gen)
        ours, plain = median_seconds((ssim, plain_ssim), x, y, args.repeats, args.min_seconds)
        print(
            f"{h}x{w}: ssim {ours * 1e3:.1f} ms ({ours / (h * w) * 1e9:.1f} ns/px), plain box filter "
            f"{plain * 1e3:.1f} ms ({plain / (h * w) * 1e9:.1f} ns/px), ratio {ours / plain:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
