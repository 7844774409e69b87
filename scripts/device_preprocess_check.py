"""How close --device_preprocess comes to the loader's preprocessing on a real data set: per training pair, the same
(epoch, index) through both paths (on the CPU), and the difference in 8-bit levels.

    python scripts/device_preprocess_check.py --dataroot DATA/facades --load_size 286 --crop_size 256
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data import create_dataset  # noqa: E402
from data.device_preprocess import DevicePreprocess, collate_raw  # noqa: E402
from options.options import parse  # noqa: E402


def compare(dataroot: str, flags: list[str], n: int) -> dict[str, float]:
    """Max and mean |difference| in levels of 256, and the share of equal values, over the first n pairs."""
    opt = parse(True, ["--dataroot", dataroot, *flags])
    ds = create_dataset(opt.data, opt.preprocess, opt.generator, opt.augment, 0, True, opt.values)
    ds.check(False, 0.05, workers=2)
    device_step = DevicePreprocess.of(ds, torch.device("cpu"))
    worst, total, equal, count = 0.0, 0.0, 0, 0
    for i in range(min(n, len(ds))):
        ds.raw = False
        plain = ds[(1, i)]
        ds.raw = True
        dev = device_step(collate_raw([ds[(1, i)]]))
        for k in ("A", "B"):
            d = (plain[k] - dev[k][0]).abs() * 127.5
            worst, total = max(worst, float(d.max())), total + float(d.sum())
            equal, count = equal + int((d < 1e-3).sum()), count + d.numel()
    return {"pairs": min(n, len(ds)), "max_levels": worst, "mean_levels": total / count, "equal": equal / count}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", required=True)
    p.add_argument("--pairs", type=int, default=100)
    args, flags = p.parse_known_args(argv)  # the rest: train.py's flags (--load_size, --filter_A, --direction ...)
    r = compare(args.dataroot, flags, args.pairs)
    print(
        f"{r['pairs']} pairs, {' '.join(flags)}: max {r['max_levels']:.2f} levels, mean {r['mean_levels']:.5f}, "
        f"{100 * r['equal']:.3f}% of values equal"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
