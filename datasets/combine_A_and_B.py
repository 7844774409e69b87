#!/usr/bin/env python3
"""Combine same-named images from two folders into side-by-side A|B pairs, the aligned pix2pix format.

Usage:
    python datasets/combine_A_and_B.py --fold_A DIR --fold_B DIR --fold_AB DIR [--no_multiprocessing]

Layouts:
    * If fold_A has sub-folders (e.g. train/, val/, test/), each sub-folder present in both fold_A and
      fold_B is combined into fold_AB/<sub>/; sub-folders present on one side only are reported and skipped.
    * Otherwise the files of fold_A and fold_B are paired directly into fold_AB.

Pairs are files with the same stem (name without extension) and any of the extensions
.jpg .jpeg .png .bmp .tif .tiff .webp, in any letter case, so A/1.jpg pairs with B/1.png.
Files of A with no partner in B are reported (first 10 listed) and skipped; files only in B are ignored.

Output: one RGB image per pair, A on the left and B on the right, saved as <stem>.png. PNG is chosen
over keeping A's extension because it is lossless: writing JPEG again would add a second round of
compression artefacts on top of the inputs', and the pair would not hold exactly the pixels of A and B.
If B's size differs from A's, B is resized to A's size (bicubic) and a warning names the file.

The script never writes over a file: if any <stem>.png it would write exists already (an earlier run's
output, an input, a link), nothing is written and it exits with status 2; remove them or choose another
--fold_AB. fold_AB must not be fold_A or fold_B, and a sub-folder of fold_A or fold_B that is fold_AB (or
lies in it) is never read as input. Each file is written to a temp file and renamed, so a full disk leaves
no half-written image (exit status 1, one line naming the file).

Exit status: 0 when at least one pair was written, 2 when there were no pairs, a folder is missing or an
output exists, 1 when an image could not be read or written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple

from PIL import Image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from util.util import atomic_write, is_inside  # noqa: E402 (needs the sys.path change above)

log = logging.getLogger("combine_A_and_B")

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_LISTED = 10


class Job(NamedTuple):
    path_A: str
    path_B: str
    path_AB: str


def _images_by_stem(folder: str) -> dict[str, str]:
    """{stem: path} of the image files directly inside folder; a stem seen twice keeps the first name."""
    found: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        stem, ext = os.path.splitext(name)
        if not os.path.isfile(path) or ext.lower() not in IMG_EXTENSIONS:
            continue
        if stem in found:
            log.warning("%s: several images named %s.*; using %s, ignoring %s", folder, stem, found[stem], name)
            continue
        found[stem] = path
    return found


class OutputExists(FileExistsError):
    """An output file exists already; nothing was written."""


def _subfolders(folder: str, fold_AB: str) -> list[str]:
    """The sub-folders of folder, less fold_AB and what lies in it (outputs are never read back as inputs)."""
    paths = {d: os.path.join(folder, d) for d in os.listdir(folder) if not d.startswith(".")}
    return sorted(d for d, p in paths.items() if os.path.isdir(p) and not is_inside(p, fold_AB))


def _jobs_for(dir_A: str, dir_B: str, dir_AB: str) -> list[Job]:
    """The pairs of one folder level; warns about (and drops) A files with no partner in B."""
    images_A, images_B = _images_by_stem(dir_A), _images_by_stem(dir_B)
    missing = [images_A[s] for s in sorted(images_A) if s not in images_B]
    if missing:
        listed = ", ".join(os.path.basename(p) for p in missing[:MAX_LISTED])
        more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        log.warning("%d file(s) in %s have no partner in %s, skipped: %s%s", len(missing), dir_A, dir_B, listed, more)
    return [Job(images_A[s], images_B[s], os.path.join(dir_AB, s + ".png")) for s in sorted(images_A) if s in images_B]


def _combine_one(job: Job) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """Write one A|B image; returns (path_B, A's size, B's original size) so the caller can report resizes."""
    with Image.open(job.path_A) as im_A, Image.open(job.path_B) as im_B:
        a, b = im_A.convert("RGB"), im_B.convert("RGB")
    size_B = b.size
    if b.size != a.size:
        b = b.resize(a.size, Image.Resampling.BICUBIC)
    pair = Image.new("RGB", (a.width * 2, a.height))
    pair.paste(a, (0, 0))
    pair.paste(b, (a.width, 0))
    atomic_write(job.path_AB, lambda f: pair.save(f, format="PNG"), new=True)  # never over an existing file
    return job.path_B, a.size, size_B


def _all_jobs(levels: list[tuple[str, str, str]]) -> list[Job]:
    """The pairs of every level; OutputExists if any output is there already (checked before any is written)."""
    jobs: list[Job] = []
    for dir_A, dir_B, dir_AB in levels:
        if os.path.realpath(dir_AB) in (os.path.realpath(dir_A), os.path.realpath(dir_B)):
            raise FileExistsError(f"--fold_AB {dir_AB} is an input folder; the pairs would mix with the inputs")
        level_jobs = _jobs_for(dir_A, dir_B, dir_AB)
        log.info("%s: %d pair(s)", dir_A, len(level_jobs))
        jobs.extend(level_jobs)
    taken = [j.path_AB for j in jobs if os.path.lexists(j.path_AB)]
    if taken:
        more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
        raise OutputExists(
            f"{taken[0]}{more} exist(s) already; combine_A_and_B.py never replaces a file: remove them, or choose "
            "another --fold_AB"
        )
    for dir_AB in dict.fromkeys(os.path.dirname(j.path_AB) for j in jobs):
        os.makedirs(dir_AB, exist_ok=True)
    return jobs


def combine(fold_A: str, fold_B: str, fold_AB: str, workers: int | None = None) -> int:
    """Combine fold_A and fold_B into fold_AB (see the module docstring); returns the number of pairs written.

    workers: processes to use; None means one per CPU, 1 (or less) means no multiprocessing.
    """
    for folder in (fold_A, fold_B):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder} is not a folder")
    subs_A = _subfolders(fold_A, fold_AB)
    if subs_A:
        subs_B = set(_subfolders(fold_B, fold_AB))
        only_A = [s for s in subs_A if s not in subs_B]
        if only_A:
            log.warning("sub-folder(s) of %s with no counterpart in %s, skipped: %s", fold_A, fold_B, ", ".join(only_A))
        levels = [(os.path.join(fold_A, s), os.path.join(fold_B, s), os.path.join(fold_AB, s)) for s in subs_A]
        levels = [level for level in levels if os.path.isdir(level[1])]
    else:
        levels = [(fold_A, fold_B, fold_AB)]

    jobs = _all_jobs(levels)
    if not jobs:
        return 0

    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        results = [_combine_one(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_combine_one, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
    for path_B, size_A, size_B in results:
        if size_A != size_B:
            log.warning("%s is %dx%d, resized to A's %dx%d", path_B, *size_B, *size_A)
    log.info("wrote %d pair(s) into %s", len(results), fold_AB)
    return len(results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--fold_A", required=True, help="folder of A images (or of train/, test/, ... sub-folders)")
    parser.add_argument("--fold_B", required=True, help="folder of B images, same names and layout as fold_A")
    parser.add_argument(
        "--fold_AB",
        required=True,
        help="output folder for the A|B images; nothing is written over: if any <stem>.png exists there already, "
        "nothing is written (exit 2)",
    )
    parser.add_argument("--no_multiprocessing", action="store_true", help="combine in this process only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        n = combine(args.fold_A, args.fold_B, args.fold_AB, workers=1 if args.no_multiprocessing else None)
    except (FileNotFoundError, FileExistsError) as e:  # before any output is written
        log.error("%s", e)
        return 2
    except OSError as e:  # an unreadable image (Pillow names it), a full disk (WriteFailed names the file)
        log.error("%s", e)
        return 1
    if n == 0:
        log.error("no pairs found: no file of %s has a same-named partner in %s", args.fold_A, args.fold_B)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
