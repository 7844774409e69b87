"""Images in, images out: python translate.py --name RUN INPUT... --out DIR (each result at its input's size)."""

from __future__ import annotations

import glob
import logging
import os
import sys
from collections import defaultdict
from collections.abc import Sequence

import torch
from PIL import Image

from data.image_folder import is_image_file, make_dataset
from data.image_io import BadImageError, load_image, scan
from engine.checkpoint import CheckpointError
from engine.inference import ImageTranslator
from engine.resolve import resolve_checkpoint
from models import WeightsMismatch
from options.options import TranslateOptions, given_flags, parse
from util.config import OptionError
from util.progress import ProgressReport
from util.util import WriteFailed, atomic_write, setup_logging, unique_names

log = logging.getLogger("translate")


def fail(msg: str) -> None:
    print(f"translate.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Files as given, folders searched recursively for images, glob patterns expanded; each file once, in the
    order given. Raises FileNotFoundError naming an input that matches nothing."""
    paths: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = make_dataset(item, None)
        elif os.path.exists(item) or os.path.islink(item):
            found = [item]
        else:
            found = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p) and is_image_file(p))
        if not found:
            raise FileNotFoundError(f"{item}: no such file, and no image matches it")
        paths.extend(found)
    return list(dict.fromkeys(paths))


def output_names(paths: Sequence[str]) -> list[str]:
    """Each input's file name, made unique where two inputs share a stem (a.png, a_2.jpg)."""
    return [stem + os.path.splitext(p)[1] for stem, p in zip(unique_names(paths), paths, strict=True)]


def save(img: Image.Image, path: str) -> None:
    """In the format the file name's extension says; atomically."""
    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower(), "PNG")
    extra = {"quality": 95} if fmt == "JPEG" else {}
    atomic_write(path, lambda f: img.save(f, format=fmt, **extra))


def batches(paths: Sequence[str], sizes: dict[str, tuple[int, int]], batch_size: int) -> list[list[str]]:
    """Same-size images together, at most batch_size per batch, in input order within a size."""
    by_size: dict[tuple[int, int], list[str]] = defaultdict(list)
    for p in paths:
        by_size[sizes[p]].append(p)
    return [group[i : i + batch_size] for group in by_size.values() for i in range(0, len(group), batch_size)]


def translate_batch(t: ImageTranslator, opt: TranslateOptions, batch: list[str], names: dict[str, str]) -> dict:
    """Translate and write one batch; {path: error message} for the inputs that failed."""
    failed, images = {}, {}
    for p in batch:
        try:
            images[p] = t.to_tensor(load_image(p, t.input_nc))
        except BadImageError as e:
            failed[p] = str(e)
    if not images:
        return failed
    fake = t.translate(torch.cat(list(images.values())), opt.tile, opt.overlap)
    for i, p in enumerate(images):
        try:
            save(t.to_image(fake[i]), os.path.join(opt.out, names[p]))
        except (WriteFailed, OSError, ValueError, KeyError) as e:
            failed[p] = f"cannot write {names[p]}: {e}"
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opt = parse(TranslateOptions, argv)
    setup_logging(opt.verbose)
    try:
        paths = expand_inputs(opt.inputs)
        opt, ckpt, _ = resolve_checkpoint(opt, given_flags(argv))
        device = torch.device(f"cuda:{opt.gpu_ids_list[0]}" if opt.gpu_ids_list else "cpu")
        t = ImageTranslator.from_checkpoint(ckpt, device, opt.amp, opt.channels_last, opt.eval)
    except (FileNotFoundError, CheckpointError, OptionError) as e:
        fail(str(e))
    except WeightsMismatch as e:
        fail(f"{ckpt.path}: {e}")
    if opt.tile is not None and opt.tile % t.pad_multiple:
        m = t.pad_multiple
        fail(
            f"--tile {opt.tile}: must be a multiple of {m}, the generator's size multiple "
            f"(e.g. {max(m, opt.tile // m * m)})"
        )
    batch_size = opt.batch_size
    if t.batch_statistics and batch_size > 1:
        log.info("one image per batch: in train-mode testing batch norm normalises with each batch's statistics")
        batch_size = 1
    os.makedirs(opt.out, exist_ok=True)
    sizes, failed = scan(paths, decode=False)
    readable = [p for p in paths if p in sizes]
    names = dict(zip(paths, output_names(paths), strict=True))
    torch.manual_seed(opt.seed)  # dropout is on unless --eval
    log.info("translating %d images with %s on %s into %s", len(readable), ckpt.path, device, opt.out)
    report = ProgressReport(len(readable), 0, 1, opt.progress_every, "translate", log, what="images")
    try:
        for batch in batches(readable, sizes, batch_size):
            failed.update(translate_batch(t, opt, batch, names))
            report.update(len(batch))
    finally:
        report.close()
    done = len(paths) - len(failed)
    log.info("%d of %d images written to %s", done, len(paths), opt.out)
    if failed:
        log.error("%d failed:\n  %s", len(failed), "\n  ".join(failed[p] for p in paths if p in failed))
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("translate.py: interrupted", file=sys.stderr)
        sys.exit(130)
