"""A trained generator to a file: python export.py --name RUN --format onnx|torchscript|safetensors [--out FILE]."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import torch

from engine.checkpoint import CheckpointError, save_safetensors
from engine.export import (
    ONNX_INSTALL,
    ONNX_PACKAGES,
    ExportFailed,
    default_out,
    describe,
    export_network,
    missing_packages,
    size_text,
)
from engine.inference import ImageTranslator
from engine.resolve import resolve_checkpoint
from models import WeightsMismatch
from options.options import ExportOptions, given_flags, parse
from util.config import OptionError
from util.util import atomic_write, setup_logging

log = logging.getLogger("export")


def fail(msg: str) -> NoReturn:
    print(f"export.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opt = parse(ExportOptions, argv)
    setup_logging(opt.verbose)
    if opt.format == "onnx":
        missing = missing_packages(ONNX_PACKAGES)
        if missing:
            fail(f"--format onnx needs {', '.join(missing)}: {ONNX_INSTALL} (or pip install -e '.[onnx]')")
    try:
        opt, ckpt, _ = resolve_checkpoint(opt, given_flags(argv))
        t = ImageTranslator.from_checkpoint(ckpt, torch.device("cpu"), "none", False, opt.eval)
    except (FileNotFoundError, CheckpointError, OptionError) as e:
        fail(str(e))
    except WeightsMismatch as e:
        fail(f"{ckpt.path}: {e}")
    out = opt.out or default_out(ckpt.path, opt.format)
    if os.path.isdir(out):
        fail(f"--out {out} is a folder; give a file name")
    if os.path.exists(out) and os.path.samefile(out, ckpt.path):
        fail(f"--out {out} is the checkpoint itself; give another file name")
    torch.manual_seed(opt.seed)
    weights = "EMA weights" if ckpt.ema else "weights"
    try:
        if opt.format == "safetensors":
            if ckpt.reference:  # a reference file's tensors in this project's layout, so the file loads as a run's
                ckpt = dataclasses.replace(ckpt, netG=t.net.state_dict(), reference=False)
            save_safetensors(ckpt, out)
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
        data, meta = export_network(t, ckpt, opt.format, opt.eval, opt.opset)
        atomic_write(out, lambda f: f.write(data))
    except ExportFailed as e:
        log.error("%s: %s", ckpt.path, e)
        return 1
    except OSError as e:
        fail(str(e))
    kind = f"ONNX opset {opt.opset}" if opt.format == "onnx" else "TorchScript"
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


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("export.py: interrupted", file=sys.stderr)
        sys.exit(130)
