"""A trained generator to a file: python export.py --name RUN --format onnx|torchscript|safetensors [--out FILE]."""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import torch

from engine import cli
from engine.checkpoint import save_safetensors
from engine.export import (
    EXTENSIONS,
    ONNX_INSTALL,
    ONNX_PACKAGES,
    ExportFailed,
    default_out,
    describe,
    export_network,
    missing_packages,
    size_text,
)
from options.options import ExportOptions, given_flags, parse
from util.util import WriteFailed, atomic_write, setup_logging

log = logging.getLogger("export")


# What marks a run folder (train.py's, or a reference run's): an export never goes into another run's folder.
RUN_MARKERS = ("latest.pth", ".lock")


def fail(msg: str) -> NoReturn:
    cli.fail("export", msg)


def check_out(out: str, fmt: str, checkpoint: str) -> None:
    """Exit 2 unless out is a new file of --format's extension, not in another run's folder: export.py never
    writes over a file (a checkpoint, an earlier export, a link) nor among another run's checkpoints."""
    ext = EXTENSIONS[fmt]
    if os.path.isdir(out):
        fail(f"--out {out} is a folder; give a file name")
    if os.path.exists(out) and os.path.samefile(out, checkpoint):
        fail(f"--out {out} is the checkpoint itself; give another file name")
    if out.lower().endswith(".pth"):  # latest.pth, *_net_G.pth: a checkpoint's name whether or not it exists
        fail(f"--out {out}: a checkpoint's name; --format {fmt} writes a {ext} file")
    if not out.lower().endswith(ext):
        fail(f"--out {out}: --format {fmt} writes a {ext} file; give a name ending in {ext}")
    if os.path.lexists(out):
        fail(f"--out {out} exists; export.py never replaces a file: remove it, or give another --out")
    folder = os.path.realpath(os.path.dirname(os.path.abspath(out)))
    own = os.path.realpath(os.path.dirname(os.path.abspath(checkpoint)))  # the default out goes there
    if folder != own and _is_run_folder(folder):
        fail(f"--out {out} is in {folder}, another run's folder; give a file outside it")


def _is_run_folder(folder: str) -> bool:
    """A folder with latest.pth, .lock or a *_net_G.pth (the checkpoints of train.py and of the reference)."""
    if any(os.path.lexists(os.path.join(folder, m)) for m in RUN_MARKERS):
        return True
    return bool(glob.glob(os.path.join(glob.escape(folder), "*_net_G.pth")))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opt = parse(ExportOptions, argv)
    setup_logging(opt.basic.verbose)
    if opt.export.format == "onnx":
        missing = missing_packages(ONNX_PACKAGES)
        if missing:
            fail(f"--format onnx needs {', '.join(missing)}: {ONNX_INSTALL} (or pip install -e '.[onnx]')")
    opt, ckpt, _, t = cli.load_translator_for(opt, given_flags(argv), torch.device("cpu"))
    out = opt.export.out or default_out(ckpt.path, opt.export.format)
    check_out(out, opt.export.format, ckpt.path)
    torch.manual_seed(opt.source.seed)
    weights = "EMA weights" if ckpt.ema else "weights"
    try:
        if opt.export.format == "safetensors":
            if ckpt.reference:  # a reference file's tensors in this project's layout, so the file loads as a run's
                ckpt = dataclasses.replace(ckpt, netG=t.net.state_dict(), reference=False)
            save_safetensors(ckpt, out, new=True)
            log.info(
                "wrote %s (%s): the %s and options of %s; size multiple %d; the mode is chosen when loading "
                "(eval=True / --eval)",
                out,
                size_text(os.path.getsize(out)),
                weights,
                ckpt.path,
                t.pad_multiple,
            )
            return 0
        data, meta = export_network(t, ckpt, opt.export.format, opt.source.eval, opt.export.opset)
        atomic_write(out, lambda f: f.write(data), new=True)
    except ExportFailed as e:
        log.error("%s: %s", ckpt.path, e)
        return 1
    except WriteFailed as e:  # a full disk, say: no part of the file is left
        log.error("%s", e)
        return 1
    kind = f"ONNX opset {opt.export.opset}" if opt.export.format == "onnx" else "TorchScript"
    log.info(
        "wrote %s (%s, %s, %s of %s): %s; size multiple %d (H and W of real_A must be multiples of it: padding and "
        "cropping are not in the graph)",
        out,
        size_text(len(data)),
        kind,
        weights,
        os.path.basename(ckpt.path),
        describe(meta),
        t.pad_multiple,
    )
    return 0


def command() -> NoReturn:
    """export.py's entry, and the console command pix2pix-export that pip install gives."""
    cli.run("export", main)


if __name__ == "__main__":
    command()
