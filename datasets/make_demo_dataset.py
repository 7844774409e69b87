#!/usr/bin/env python3
"""Build the offline demo set (degraded -> clean photos, see data/demo.py) from the command line."""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
from collections.abc import Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from data.demo import build_demo_dataset, demo_dir  # noqa: E402 (needs the sys.path change above)

log = logging.getLogger("make_demo_dataset")
# The defaults of --size, --train_per_photo and --seed are build_demo_dataset's own.
DEFAULTS = {name: p.default for name, p in inspect.signature(build_demo_dataset).parameters.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--out",
        default=demo_dir(),
        help="output folder, gets train/ and test/; refused if either holds anything already, as the script never "
        "replaces a file (default: %(default)s)",
    )
    parser.add_argument(
        "--size", type=int, default=DEFAULTS["size"], help="side of each half of an A|B image (default: %(default)s)"
    )
    parser.add_argument(
        "--train_per_photo",
        type=int,
        default=DEFAULTS["train_per_photo"],
        help="training crops per sample photo (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULTS["demo_seed"], help="seed of the random crops (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if args.size < 1 or args.train_per_photo < 0:
        parser.error("--size must be >= 1 and --train_per_photo >= 0")
    taken = [p for p in (os.path.join(args.out, phase) for phase in ("train", "test")) if _taken(p)]
    if taken:  # an earlier demo set, or anything else: never written over
        log.error("--out %s: %s is not empty; remove it, or give another --out", args.out, taken[0])
        return 2
    try:
        root = build_demo_dataset(args.out, size=args.size, train_per_photo=args.train_per_photo, demo_seed=args.seed)
    except OSError as e:  # a full disk, an --out under a file: one line
        log.error("cannot write the demo set: %s: %s", e.filename or args.out, e.strerror or e)
        return 1
    log.info("demo set written to %s", root)
    return 0


def _taken(path: str) -> bool:
    """Whether path is anything but an empty folder or nothing (a file, a link, a folder with files)."""
    if not os.path.lexists(path):
        return False
    return os.path.islink(path) or not os.path.isdir(path) or bool(os.listdir(path))


if __name__ == "__main__":
    sys.exit(main())
