"""Training pairs per second that the data loader delivers, with and without --cache_images.

    python scripts/loader_speed.py --dataroot DATA/facades --direction BtoA --load_size 286 --crop_size 256
    python scripts/loader_speed.py --dataroot DATA/polyu512 --load_size 572 --crop_size 512

"per worker" is one process doing a worker's whole job (decode or cache read, resize, crop, flip, to tensor)
for every sample of an epoch in turn; "loader" is the real DataLoader with --workers processes and batch 1,
after its first batch. Each figure is the median of --repeats epochs (different crops and flips each).
Results go to stdout as a markdown table and, with --json, to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data import EpochSampler, create_dataloader, create_dataset  # noqa: E402
from options.options import parse  # noqa: E402


def build(args: argparse.Namespace, cache: bool):
    flags = ["--dataroot", args.dataroot, "--direction", args.direction, "--seed", "0", "--display_id", "0"]
    # The loader does not depend on the generator: a ResNet's size rule (multiples of 4) is the loosest.
    flags += ["--load_size", str(args.load_size), "--crop_size", str(args.crop_size), "--netG", "resnet_6blocks"]
    opt = parse(True, flags + (["--max_dataset_size", str(args.n)] if args.n else []))
    ds = create_dataset(opt.data, opt.preprocess, opt.generator, opt.augment, opt.run.seed, True, opt.values)
    ds.check(False, opt.data.max_bad_fraction, workers=2)
    t0 = time.perf_counter()
    if cache:
        ds.cache_images(workers=2)
    return ds, time.perf_counter() - t0


def per_worker(ds, repeats: int) -> list[float]:
    rates = []
    for epoch in range(1, repeats + 1):
        t0 = time.perf_counter()
        for i in range(len(ds)):
            ds[(epoch, i)]
        rates.append(len(ds) / (time.perf_counter() - t0))
    return rates


def loader(ds, workers: int, repeats: int) -> list[float]:
    rates = []
    sampler = EpochSampler(len(ds), 0, True)
    for epoch in range(1, repeats + 1):
        sampler.set_epoch(epoch)
        it = iter(create_dataloader(ds, 1, workers, sampler))
        next(it)  # worker start-up is paid once per run, not per step
        t0 = time.perf_counter()
        n = sum(1 for _ in it)
        rates.append(n / (time.perf_counter() - t0))
    return rates


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", required=True)
    p.add_argument("--direction", default="AtoB")
    p.add_argument("--load_size", type=int, default=286)
    p.add_argument("--crop_size", type=int, default=256)
    p.add_argument("--n", type=int, default=None, help="use the first N pairs (default: all)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for the loader figure")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = []
    for cache in (False, True):
        ds, cache_s = build(args, cache)
        pw = per_worker(ds, args.repeats)
        ld = loader(ds, args.workers, args.repeats)
        rows.append(
            {
                "cache_images": cache,
                "pairs": len(ds),
                "per_worker_pairs_s": statistics.median(pw),
                "loader_pairs_s": statistics.median(ld),
                "workers": args.workers,
                "cache_build_s": cache_s if cache else None,
                "cache_mb": ds.cache.nbytes / 2**20 if cache else None,
            }
        )
    size = f"{args.load_size}->{args.crop_size}"
    print(f"| data | {size} | --cache_images | pairs/s, one worker | pairs/s, loader ({args.workers} workers) |")
    print("|---|---|---|---|---|")
    name = os.path.basename(os.path.normpath(args.dataroot))
    for r in rows:
        cache = f"on ({r['cache_mb']:.0f} MB, built in {r['cache_build_s']:.1f} s)" if r["cache_images"] else "off"
        print(
            f"| {name} ({r['pairs']}) | {size} | {cache} | {r['per_worker_pairs_s']:.1f} | {r['loader_pairs_s']:.1f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataroot": args.dataroot, "size": size, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
