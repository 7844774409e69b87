#!/usr/bin/env python3
"""Build the two data sets of the 512 study (docs/going-to-512.md) from their public sources.

    python datasets/build_study_data.py maps --source datasets/maps --out datasets/maps600
    python datasets/build_study_data.py polyu --cropped PolyU/CroppedImages --originals PolyU/OriginalImages \\
        --out datasets/polyu512

maps600: the pix2pix "maps" pairs at their native 600x600. --source is the unpacked pix2pix maps archive
(`bash datasets/download_pix2pix_dataset.sh maps` puts it in datasets/maps): train/1.jpg .. 1096.jpg and
val/1.jpg .. 1098.jpg, each a 1200x600 JPEG, aerial photo (A) | map (B). The files are taken in numeric order of
their names, and every third training file (1, 4, 7, ...: 366 files) and every eleventh validation file (1, 12,
23, ...: 100 files) is copied unchanged, byte for byte.

polyu512: the PolyU Real-World Noisy Images Dataset (Xu et al., arXiv:1804.02603), a clone or download of
github.com/csjunxu/PolyU-Real-World-Noisy-Images-Dataset. Each pair is written as a 1024x512 JPEG (quality 95,
no chroma subsampling): the noisy shot (A) on the left, the clean mean image (B) on the right, native pixels.
    * --cropped: the official 512x512 crops, <name>_real.JPG (noisy) and <name>_mean.JPG (clean).
    * --originals (optional): the full-size pairs, <name>_Real.JPG and <name>_mean.JPG, cut into 512x512
      non-overlapping tiles from the top-left corner (<name>_x<X>_y<Y>.jpg). By default only the tiles listed in
      datasets/polyu512_tiles.txt are cut (8 per original of 28 training scenes, 224 in all: the study's set; none
      of Canon600_book, Canon600_water, SonyA7II_toy, SonyA7II_water); --all_tiles cuts every tile. A truncated
      JPEG is read as far as it goes, with a warning (PolyU's Canon5D2_toy_mean.JPG lacks its last rows, below
      every listed tile).
    * Scenes decide the split, so no scene is in both train/ and val/. A file's scene is its camera and the first
      five letters of its scene word, the last word of letters in its name: Canon5D2_5_160_6400_desk_4 and
      Canon5D2_desk are both canon5d2/desk. Camera names are unified (Nikon800, NikonD800 and Nikon_800 are
      nikond800; Sony and SonyA7II are sonya7ii; Canon600 and Canon600D are canon600d), and "planandsofa" is the
      originals' "plaso".
    * val/ holds the crops of the --val_scenes (default: canon5d2/desk, nikond800/wall, sonya7ii/door: 10 pairs);
      the originals of those scenes are not tiled. The --held_out_scenes (default: canon5d2/recie, canon600d/toy,
      canon80d/ball, nikond800/class, sonya7ii/plant; 27 crops) are left out of both. Every other crop (63) and
      tile (224) goes to train/.
    * The source's License.txt, when found next to --cropped, is copied to LICENSE.txt: the data are for
      non-commercial use only.

The script never writes over a file: the output's train/ and val/ must be empty or new. Exit status: 0 when
everything asked for was written, 1 when a file could not be read or written or a listed tile's original is
missing, 2 for a bad argument, an output that exists or a source with nothing to take.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import shutil
import sys
from collections.abc import Sequence
from typing import NamedTuple

from PIL import Image, ImageFile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from util.util import atomic_write  # noqa: E402 (needs the sys.path change above)

log = logging.getLogger("build_study_data")

MAPS_SIZE = (1200, 600)
TILE = 512
JPEG_OPTIONS = {"quality": 95, "subsampling": 0}  # the study set's files: quality 95, 4:4:4
DEFAULT_TILE_LIST = os.path.join(REPO_ROOT, "datasets", "polyu512_tiles.txt")
VAL_SCENES = ("canon5d2/desk", "nikond800/wall", "sonya7ii/door")
HELD_OUT_SCENES = ("canon5d2/recie", "canon600d/toy", "canon80d/ball", "nikond800/class", "sonya7ii/plant")

# Camera spellings in PolyU's file names -> one name per camera.
_CAMERA = re.compile(r"^(Canon5D2|Canon80D|Cano?n?600D?|Nikon_?D?800|Sony(?:A7II)?)_(.+)$", re.IGNORECASE)
_CAMERA_NAMES = (("canon5d2", "canon5d2"), ("canon80d", "canon80d"), ("600", "canon600d"), ("nikon", "nikond800"))
_SCENE_ALIASES = {"planandsofa": "plaso"}
_PAIR_FILE = re.compile(r"^(?P<stem>.+)_(?P<kind>real|mean)\.jpe?g$", re.IGNORECASE)
_TILE_NAME = re.compile(r"^(?P<stem>.+)_x(?P<x>\d+)_y(?P<y>\d+)$")


class BuildError(Exception):
    """A problem that stops the build before anything is written (exit status 2)."""


class ImageError(Exception):
    """A source image that cannot be read whole, e.g. a truncated download (exit status 1)."""


def _camera(token: str) -> str:
    lowered = token.lower()
    for part, name in _CAMERA_NAMES:
        if part in lowered:
            return name
    return "sonya7ii"  # the pattern leaves Sony as the only other camera


def scene_key(stem: str) -> str:
    """The scene of a PolyU file name without its _real/_mean suffix, as camera/first-five-letters-of-the-scene."""
    match = _CAMERA.match(stem)
    if match is None:
        raise BuildError(f"{stem}: not a PolyU file name (no known camera at its start)")
    words = [w for w in match.group(2).split("_") if w.isalpha()]
    if not words:
        raise BuildError(f"{stem}: not a PolyU file name (no scene word)")
    word = words[-1].lower()
    return f"{_camera(match.group(1))}/{_SCENE_ALIASES.get(word, word)[:5]}"


# --- maps600 ------------------------------------------------------------------------------------------------------


def every_nth(folder: str, step: int) -> list[str]:
    """The .jpg files of folder in numeric order of their names, then the 1st, (step+1)th, (2*step+1)th ..."""
    names = [n for n in os.listdir(folder) if n.lower().endswith(".jpg") and os.path.splitext(n)[0].isdigit()]
    names.sort(key=lambda n: int(os.path.splitext(n)[0]))
    return names[::step]


def build_maps(source: str, out: str, train_step: int = 3, val_step: int = 11) -> dict[str, int]:
    """Copy every train_step-th training and val_step-th validation pair of the pix2pix maps set into out."""
    chosen = {}
    for phase, step in (("train", train_step), ("val", val_step)):
        folder = os.path.join(source, phase)
        if not os.path.isdir(folder):
            raise BuildError(f"--source {source}: no {phase}/ folder (is it the unpacked pix2pix maps archive?)")
        chosen[phase] = every_nth(folder, step)
        if not chosen[phase]:
            raise BuildError(f"{folder}: no numbered .jpg files")
        for name in chosen[phase]:
            with Image.open(os.path.join(folder, name)) as im:
                if im.size != MAPS_SIZE:
                    raise BuildError(f"{folder}/{name} is {im.size[0]}x{im.size[1]}, not 1200x600: not the maps set")
    _refuse_taken(out)
    for phase, names in chosen.items():
        os.makedirs(os.path.join(out, phase), exist_ok=True)
        for name in names:
            target = os.path.join(out, phase, name)
            with open(os.path.join(source, phase, name), "rb") as f:
                data = f.read()
            atomic_write(target, lambda g, data=data: g.write(data), new=True)
    return {phase: len(names) for phase, names in chosen.items()}


# --- polyu512 -----------------------------------------------------------------------------------------------------


class Pair(NamedTuple):
    stem: str
    noisy: str
    clean: str


def find_pairs(folder: str) -> list[Pair]:
    """The <stem>_real / <stem>_mean JPEG pairs of folder (either letter case), sorted by stem."""
    sides: dict[str, dict[str, str]] = {}
    for name in sorted(os.listdir(folder)):
        match = _PAIR_FILE.match(name)
        if match and os.path.isfile(os.path.join(folder, name)):
            sides.setdefault(match["stem"], {})[match["kind"].lower()] = os.path.join(folder, name)
    pairs = []
    for stem, found in sorted(sides.items()):
        if set(found) == {"real", "mean"}:
            pairs.append(Pair(stem, found["real"], found["mean"]))
        else:
            log.warning("%s: %s has no %s file; skipped", folder, stem, "mean" if "real" in found else "real")
    return pairs


def read_tile_list(path: str) -> dict[str, list[tuple[int, int]]]:
    """{original's stem: [(x, y), ...]} from a list of <stem>_x<X>_y<Y> names, one a line, # for comments."""
    tiles: dict[str, list[tuple[int, int]]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            match = _TILE_NAME.match(line)
            if match is None:
                raise BuildError(f"{path}:{number}: {line!r} is not <original>_x<X>_y<Y>")
            tiles.setdefault(match["stem"], []).append((int(match["x"]), int(match["y"])))
    return tiles


def grid(size: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left corners of the non-overlapping TILE x TILE tiles of an image of size (width, height)."""
    width, height = size
    return [(x, y) for y in range(0, height - TILE + 1, TILE) for x in range(0, width - TILE + 1, TILE)]


class Job(NamedTuple):
    phase: str  # train or val
    name: str  # the output's stem
    pair: Pair
    corner: tuple[int, int] | None  # a tile's top-left corner; None: the whole (512x512) crop


def _size(path: str) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as e:
        raise ImageError(f"cannot read {path}: {e}") from e


def _crop_jobs(cropped: str, val_scenes: set[str], held_out: set[str]) -> list[Job]:
    pairs = find_pairs(cropped)
    if not pairs:
        raise BuildError(f"--cropped {cropped}: no <name>_real.JPG / <name>_mean.JPG pairs")
    jobs = []
    for pair in pairs:
        scene = scene_key(pair.stem)
        if scene not in held_out:
            jobs.append(Job("val" if scene in val_scenes else "train", pair.stem, pair, None))
    return jobs


def _tile_jobs(originals: str, tile_list: dict | None, skip: set[str]) -> tuple[list[Job], list[str]]:
    """The tiles to cut (from tile_list, or every tile when it is None), and the listed originals not found."""
    full = {pair.stem: pair for pair in find_pairs(originals)}
    wanted = tile_list if tile_list is not None else {stem: None for stem in full if scene_key(stem) not in skip}
    jobs, missing = [], []
    for stem, corners in sorted(wanted.items()):
        if scene_key(stem) in skip:
            raise BuildError(f"the tile list names {stem}, of scene {scene_key(stem)}: a validation or held-out scene")
        if stem not in full:
            missing.append(stem)
            continue
        pair = full[stem]
        size = _size(pair.noisy)
        if _size(pair.clean) != size:
            raise BuildError(f"{pair.noisy} and {pair.clean} differ in size")
        for x, y in corners if corners is not None else grid(size):
            if x % TILE or y % TILE or x + TILE > size[0] or y + TILE > size[1]:
                raise BuildError(f"{stem}_x{x}_y{y}: not a {TILE}x{TILE} grid tile of a {size[0]}x{size[1]} image")
            jobs.append(Job("train", f"{stem}_x{x}_y{y}", pair, (x, y)))
    return jobs, missing


def plan_polyu(
    cropped: str,
    originals: str | None,
    tile_list: dict | None,
    val_scenes: Sequence[str] = VAL_SCENES,
    held_out: Sequence[str] = HELD_OUT_SCENES,
) -> tuple[list[Job], list[str]]:
    """What to write: the crops split by scene and, with originals, the training tiles; and the missing originals."""
    val_set, held_set = set(val_scenes), set(held_out)
    jobs = _crop_jobs(cropped, val_set, held_set)
    missing: list[str] = []
    if originals is not None:
        tiles, missing = _tile_jobs(originals, tile_list, val_set | held_set)
        jobs += tiles
    scenes = {phase: {scene_key(job.pair.stem) for job in jobs if job.phase == phase} for phase in ("train", "val")}
    crossing = scenes["train"] & scenes["val"]
    if crossing:  # cannot happen with the rules above; a guard for later changes of them
        raise BuildError(f"scenes in both train and val: {sorted(crossing)}")
    return jobs, missing


@functools.lru_cache(maxsize=2)  # the tiles of one original come one after another: decode it once
def read_rgb(path: str) -> Image.Image:
    """The image at path as RGB. A truncated JPEG is read as far as it goes, with a warning: PolyU's own
    OriginalImages/Canon5D2_toy_mean.JPG lacks its last rows, below every tile the study cuts from it."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as e:
        if "truncated" not in str(e):
            raise ImageError(f"cannot read {path}: {e}") from e
    log.warning("%s is truncated: the rows it lacks read as grey", path)
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as e:
        raise ImageError(f"cannot read {path}: {e}") from e
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def write_pair(job: Job, out: str) -> str:
    """The job's A|B image (noisy | clean) written as out/<phase>/<name>.jpg; returns the path."""
    halves = []
    for path in (job.pair.noisy, job.pair.clean):
        im = read_rgb(path)
        if job.corner is not None:
            x, y = job.corner
            im = im.crop((x, y, x + TILE, y + TILE))
        elif im.size != (TILE, TILE):
            raise ImageError(f"{path} is {im.size[0]}x{im.size[1]}, not a {TILE}x{TILE} crop")
        halves.append(im)
    pair = Image.new("RGB", (2 * TILE, TILE))
    pair.paste(halves[0], (0, 0))
    pair.paste(halves[1], (TILE, 0))
    target = os.path.join(out, job.phase, job.name + ".jpg")
    atomic_write(target, lambda f: pair.save(f, "JPEG", **JPEG_OPTIONS), new=True)
    return target


def build_polyu(
    cropped: str,
    out: str,
    originals: str | None = None,
    tile_list: dict | None = None,
    val_scenes: Sequence[str] = VAL_SCENES,
    held_out: Sequence[str] = HELD_OUT_SCENES,
) -> tuple[dict[str, int], list[str]]:
    """Write the polyu512-style set into out; returns {phase: pairs written} and the listed originals not found."""
    jobs, missing = plan_polyu(cropped, originals, tile_list, val_scenes, held_out)
    _refuse_taken(out)
    for phase in ("train", "val"):
        os.makedirs(os.path.join(out, phase), exist_ok=True)
    for job in jobs:
        write_pair(job, out)
    licence = os.path.join(os.path.dirname(os.path.abspath(cropped)), "License.txt")
    if os.path.isfile(licence) and not os.path.lexists(os.path.join(out, "LICENSE.txt")):
        shutil.copyfile(licence, os.path.join(out, "LICENSE.txt"))
    return {phase: sum(job.phase == phase for job in jobs) for phase in ("train", "val")}, missing


# --- command line -------------------------------------------------------------------------------------------------


def _refuse_taken(out: str) -> None:
    for phase in ("train", "val"):
        path = os.path.join(out, phase)
        if os.path.lexists(path) and (not os.path.isdir(path) or os.listdir(path)):
            raise BuildError(f"--out {out}: {path} is not empty; remove it, or give another --out")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sets = parser.add_subparsers(dest="set", required=True)
    maps = sets.add_parser("maps", help="maps600 from the pix2pix maps archive")
    maps.add_argument("--source", required=True, help="the unpacked maps archive: holds train/ and val/")
    maps.add_argument("--out", required=True, help="output folder; gets train/ and val/")
    maps.add_argument("--train_step", type=int, default=3, help="take every Nth training file (default: %(default)s)")
    maps.add_argument("--val_step", type=int, default=11, help="take every Nth validation file (default: %(default)s)")
    polyu = sets.add_parser("polyu", help="polyu512 from the PolyU Real-World Noisy Images Dataset")
    polyu.add_argument("--cropped", required=True, help="PolyU's CroppedImages folder (*_real.JPG, *_mean.JPG)")
    polyu.add_argument("--originals", help="PolyU's OriginalImages folder, for the extra training tiles (optional)")
    polyu.add_argument("--out", required=True, help="output folder; gets train/ and val/")
    polyu.add_argument("--tile_list", default=DEFAULT_TILE_LIST, help="the tiles to cut (default: %(default)s)")
    polyu.add_argument("--all_tiles", action="store_true", help="cut every 512x512 tile, not those of --tile_list")
    polyu.add_argument("--val_scenes", nargs="+", default=list(VAL_SCENES), help="(default: %(default)s)")
    polyu.add_argument("--held_out_scenes", nargs="*", default=list(HELD_OUT_SCENES), help="(default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    missing: list[str] = []
    try:
        if args.set == "maps":
            if args.train_step < 1 or args.val_step < 1:
                raise BuildError("--train_step and --val_step must be >= 1")
            counts = build_maps(args.source, args.out, args.train_step, args.val_step)
        else:
            tiles = None if args.all_tiles or args.originals is None else read_tile_list(args.tile_list)
            counts, missing = build_polyu(
                args.cropped, args.out, args.originals, tiles, args.val_scenes, args.held_out_scenes
            )
    except BuildError as e:
        log.error("%s", e)
        return 2
    except ImageError as e:
        started = any(os.path.isdir(p) and os.listdir(p) for p in (os.path.join(args.out, d) for d in ("train", "val")))
        log.error("%s%s", e, f"; {args.out} is incomplete: remove it before running again" if started else "")
        return 1
    except OSError as e:  # a full disk, an --out under a file: one line
        log.error("%s: %s", getattr(e, "filename", None) or args.out, getattr(e, "strerror", None) or e)
        return 1
    log.info("%s: %d train and %d val pairs written to %s", args.set, counts["train"], counts["val"], args.out)
    if missing:
        log.error("%d originals of the tile list not found, their tiles not cut: %s", len(missing), ", ".join(missing))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
