"""Images in, images out: python translate.py --name RUN INPUT... --out DIR (each result at its input's size).

What it writes: one result per input in the --out folder, under the input's file name. It never writes over a
file: if a result's path is taken (by the input itself, an earlier run's result, a link, anything), it stops before
any work with exit status 2; give a new or empty --out. A folder or pattern given as input skips the images under
--out (an earlier run's results), unless the folder itself lies in --out.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from typing import NoReturn

import torch

from data.image_folder import is_image_file, make_dataset
from data.image_io import TILE_MAX_PIXELS, BadImageError, scan
from engine import cli
from engine.inference import ImageTranslator
from options.options import TranslateOptions, given_flags, parse
from util.util import NAME_MAX, WriteFailed, atomic_write, is_inside, setup_logging, unique_names

log = logging.getLogger("translate")
_MAGIC = re.compile(r"[*?[]")


def fail(msg: str) -> NoReturn:
    cli.fail("translate", msg)


def expand_inputs(inputs: Sequence[str], out: str | None = None) -> list[str]:
    """Files as given, folders searched recursively for images, glob patterns expanded; each file once, in the
    order given. Raises FileNotFoundError naming an input that matches nothing. A folder or pattern skips the
    images under out, the results of an earlier run there (unless the folder itself lies in out): they are never
    read back as inputs."""
    paths: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found, root = make_dataset(item, None), item
        elif os.path.exists(item) or os.path.islink(item):
            found, root = [item], None  # named by the user: kept (check_outputs refuses to write over it)
        else:
            found = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p) and is_image_file(p))
            root = _pattern_root(item)
        if root is not None and out is not None and not is_inside(root, out, resolve_last=False):
            found = _skip_results(item, found, out)
        if not found:
            raise FileNotFoundError(f"{item}: no such file, and no image matches it")
        paths.extend(found)
    return list(dict.fromkeys(paths))


def _skip_results(item: str, found: list[str], out: str) -> list[str]:
    kept = [p for p in found if not is_inside(p, out, resolve_last=False)]
    if found and not kept:
        raise FileNotFoundError(f"{item}: its only images are under --out {out}, which holds results, not inputs")
    if len(kept) < len(found):
        log.info("%s: %d image(s) under --out %s skipped (results, not inputs)", item, len(found) - len(kept), out)
    return kept


def _pattern_root(pattern: str) -> str:
    """The folder a glob pattern searches: its part before the first wildcard."""
    head = pattern
    while _MAGIC.search(head):
        head = os.path.dirname(head)
    return head or "."


def output_names(paths: Sequence[str], t: ImageTranslator) -> list[str]:
    """Each input's file name with its result's extension (ImageTranslator.result_extension), made unique where
    two inputs share a stem (a.png, a_2.jpg), and cut to fit the file system's 255 bytes."""
    exts = [t.result_extension(p) for p in paths]
    stems = unique_names(paths, [NAME_MAX - len(os.fsencode(ext)) for ext in exts])
    return [stem + ext for stem, ext in zip(stems, exts, strict=True)]


def check_out_path(out: str) -> None:
    """--out names a folder: exit 2 for an existing file (or link to one), and for a new name with an image
    extension (translate.py writes one result per input into a folder, never a single file)."""
    if os.path.lexists(out) and not os.path.isdir(out):
        fail(f"--out {out}: exists and is not a folder; --out is the folder for the results")
    if not os.path.lexists(out) and is_image_file(out):
        fail(
            f"--out {out}: must be a folder (each result keeps its input's file name in it), not an image file's "
            "name; give --out DIR"
        )


def check_outputs(paths: Sequence[str], names: dict[str, str], out: str) -> None:
    """Exit 2 before any work if a result's path is taken: translate.py never writes over a file, its inputs'
    and an earlier run's included."""
    taken = [p for p in paths if os.path.lexists(os.path.join(out, names[p]))]
    if not taken:
        return
    inputs = {_identity(p) for p in paths}
    replaced = [p for p in taken if _identity(os.path.join(out, names[p])) in inputs]
    if replaced:
        fail(
            f"--out {out}: the result of {replaced[0]} would replace an input ({len(replaced)} such); translate.py "
            "never writes over a file: give another --out"
        )
    more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
    fail(
        f"--out {out}: {os.path.join(out, names[taken[0]])}{more} exist(s) already (an earlier run's results?); "
        "translate.py never replaces a file: give a new or empty --out folder, or remove them"
    )


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def prepare_out(out: str) -> None:
    """The --out folder, created and proven writable (exit 2 naming the reason: under a file, read-only ...)."""
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):  # a real write: os.access says yes to root on a read-only disk
            pass
    except OSError as e:
        fail(f"--out {out}: cannot create or write that folder: {e.strerror or e}")


def batches(paths: Sequence[str], sizes: dict[str, tuple[int, int]], batch_size: int) -> list[list[str]]:
    """Same-size images together, at most batch_size per batch, in input order within a size."""
    by_size: dict[tuple[int, int], list[str]] = defaultdict(list)
    for p in paths:
        by_size[sizes[p]].append(p)
    return [group[i : i + batch_size] for group in by_size.values() for i in range(0, len(group), batch_size)]


def max_pixels(opt: TranslateOptions) -> int | None:
    """The image size limit: with --tile, images over Pillow's decompression-bomb limit are read (up to
    TILE_MAX_PIXELS), since they are what tiles are for; without it, Pillow's limit."""
    return TILE_MAX_PIXELS if opt.translate.tile is not None else None


def translate_batch(t: ImageTranslator, opt: TranslateOptions, batch: list[str], names: dict[str, str]) -> dict:
    """Translate and write one batch; {path: error message} for the inputs that failed. A write that fails for
    the system's reason (a full disk, a vanished folder: errno set) raises WriteFailed: every later one would too."""
    failed, images = {}, {}
    for p in batch:
        try:
            images[p] = t.read(p, max_pixels(opt))
        except BadImageError as e:
            failed[p] = str(e)
        except ValueError as e:  # channels or a range that do not fit the run's
            failed[p] = f"cannot read image {p}: {e}"
    if not images:
        return failed
    fake = t.translate(torch.cat(list(images.values())), opt.translate.tile, opt.translate.overlap)
    for i, p in enumerate(images):
        try:
            data = t.result_bytes(fake[i], os.path.splitext(names[p])[1])  # 16-bit, float: the data's own kind
            atomic_write(os.path.join(opt.translate.out, names[p]), lambda f, data=data: f.write(data), new=True)
        except WriteFailed as e:
            if e.errno is not None:
                raise
            failed[p] = str(e)  # this image only: a mode its format cannot hold, say
        except (OSError, ValueError, KeyError) as e:
            failed[p] = f"cannot write {names[p]}: {e}"
    return failed


def load(opt: TranslateOptions, argv: list[str]) -> tuple[TranslateOptions, list[str], ImageTranslator, str]:
    """(options completed from the run, inputs, translator, checkpoint path); exit 2 for what stops it."""
    try:
        paths = expand_inputs(opt.translate.inputs, opt.translate.out)
    except FileNotFoundError as e:
        fail(str(e))
    device = cli.inference_device(opt.basic.gpu_ids)
    opt, ckpt, _, t = cli.load_translator_for(opt, given_flags(argv), device)
    return opt, paths, t, ckpt.path


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opt = parse(TranslateOptions, argv)
    setup_logging(opt.basic.verbose)
    check_out_path(opt.translate.out)
    opt, paths, t, ckpt_path = load(opt, argv)
    names = dict(zip(paths, output_names(paths, t), strict=True))
    check_outputs(paths, names, opt.translate.out)
    prepare_out(opt.translate.out)
    batch_size = opt.translate.batch_size
    if t.batch_statistics and batch_size > 1:
        log.info("one image per batch: in train-mode testing batch norm normalises with each batch's statistics")
        batch_size = 1
    sizes, failed, _ = scan(paths, decode=False, max_pixels=max_pixels(opt))
    readable = [p for p in paths if p in sizes]
    torch.manual_seed(opt.source.seed)  # dropout is on unless --eval
    log.info("translating %d images with %s on %s into %s", len(readable), ckpt_path, t.device, opt.translate.out)
    return translate_all(t, opt, paths, batches(readable, sizes, batch_size), names, failed)


def translate_all(t: ImageTranslator, opt: TranslateOptions, paths: list[str], todo: list, names: dict, failed: dict):
    """Every batch of todo, until a write fails for the system's reason or a SIGINT/SIGTERM asks to stop (the
    batch being written is finished, so no temp file is left); the exit status."""
    out = opt.translate.out
    loop = cli.ImageLoop(
        sum(map(len, todo)), opt.basic.progress_every, "translate", "finishing this batch, then stopping", log
    )
    try:
        with loop:
            for batch in loop.each(todo, len):
                failed.update(translate_batch(t, opt, batch, names))
    except WriteFailed as e:
        done = sum(os.path.lexists(os.path.join(out, names[p])) for p in paths)  # none existed at the start
        log.error("%s; stopped: %d of %d images written to %s", e, done, len(paths), out)
        return 1
    done = sum(os.path.lexists(os.path.join(out, names[p])) for p in paths)
    log.info("%d of %d images written to %s", done, len(paths), out)
    if loop.stopped:
        log.warning("interrupted: %d of %d images written", done, len(paths))
        return 130
    if failed:
        log.error("%d failed:\n  %s", len(failed), "\n  ".join(failed[p] for p in paths if p in failed))
        return 1
    return 0


def command() -> NoReturn:
    """translate.py's entry, and the console command pix2pix-translate that pip install gives."""
    cli.run("translate", main)


if __name__ == "__main__":
    command()
