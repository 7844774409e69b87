"""What the four scripts share: one error line and the exit codes (2 usage, 1 runtime, 130 interrupted), the
device with its precision settings, and the chain that loads a trained generator for test.py, translate.py and
export.py."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn, TypeVar

import torch

from engine.checkpoint import CheckpointError, GeneratorCheckpoint
from engine.inference import ImageTranslator
from engine.resolve import resolve_checkpoint
from engine.training import StopFlag
from models import WeightsMismatch
from reporting.progress import ProgressReport
from util.config import OptionError
from util.distributed import DeviceIds, device_ids
from util.util import printable

USAGE, RUNTIME, INTERRUPTED = 2, 1, 130
T = TypeVar("T")


def fail(script: str, msg: str) -> NoReturn:
    """Stop before any work with one line and exit status 2, like a bad flag."""
    print(f"{script}.py: error: {printable(msg)}", file=sys.stderr)
    sys.exit(USAGE)


def run(
    script: str,
    main: Callable[[], int],
    interrupted: str = "interrupted",
    kinds: Mapping[type[KeyboardInterrupt], str] | None = None,
) -> NoReturn:
    """The script's entry: exit with main()'s status; Ctrl-C that main() does not handle is one line (interrupted,
    or kinds' line for a subclass of KeyboardInterrupt) and exit status 130."""
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        line = next((text for kind, text in (kinds or {}).items() if isinstance(e, kind)), interrupted)
        print(f"{script}.py: {line}", file=sys.stderr)
        sys.exit(INTERRUPTED)


def inference_device(gpu_ids: DeviceIds | None) -> torch.device:
    """The first device of --gpu_ids (CUDA 0 if there is CUDA when it is left out, else the CPU), with TF32 tensor
    cores on CUDA (about fp32's accuracy; training uses them too)."""
    ids = device_ids(gpu_ids)
    if not ids:
        return torch.device("cpu")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return torch.device(f"cuda:{ids[0]}")


def load_translator_for(
    opt: Any, given: set[str], device: torch.device
) -> tuple[Any, GeneratorCheckpoint, str, ImageTranslator]:
    """(the options completed from the run, its checkpoint, the checkpoint's tag, the translator): the generator the
    options name, resolved (engine.resolve) and built on device with the completed options' speed (amp,
    channels_last) and values where the script has them (else fp32 and the run's values). Anything that stops it
    ends the script with one line, exit 2."""
    try:
        opt, ckpt, tag = resolve_checkpoint(opt, given)
    except (FileNotFoundError, CheckpointError, OptionError) as e:
        fail(opt.script, str(e))
    if ckpt.reference:
        g = opt.generator
        flags = f"--netG {g.netG} --ngf {g.ngf} --norm {g.norm} --input_nc {g.input_nc} --output_nc {g.output_nc}"
        logging.getLogger(opt.script).info(
            "%s is a reference generator file (weights only); its architecture is the command line's: %s",
            ckpt.path,
            flags,
        )
    speed, values = getattr(opt, "speed", None), getattr(opt, "values", None)
    amp, channels_last = (speed.amp, speed.channels_last) if speed is not None else ("none", False)
    try:
        t = ImageTranslator.from_checkpoint(ckpt, device, amp, channels_last, opt.source.eval, values)
    except WeightsMismatch as e:
        fail(opt.script, f"{ckpt.path}: {e}")
    return opt, ckpt, tag, t


class ImageLoop:
    """test.py's and translate.py's loop over images: a progress bar (or plain lines, every progress_every
    seconds), and a clean stop: SIGINT/SIGTERM lets the item in hand finish, then the loop ends (stopped is set)
    and the script writes what it has. A second signal stops at once."""

    def __init__(self, total: int, progress_every: float, desc: str, on_stop: str, log: logging.Logger) -> None:
        self.total, self.every, self.desc, self.log = total, progress_every, desc, log
        self.stop = StopFlag(on_stop)

    def __enter__(self) -> ImageLoop:
        self.report = ProgressReport(self.total, 0, 1, self.every, self.desc, self.log, what="images")
        self.stop.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.report.close()
        self.stop.uninstall()

    def each(self, items: Iterable[T], images: Callable[[T], int] = lambda _: 1) -> Iterator[T]:
        """The items, each counted as images(item) images once handled, until a signal asks to stop."""
        for item in items:
            yield item
            self.report.update(images(item))
            if self.stopped:
                return

    @property
    def stopped(self) -> bool:
        return self.stop.signum is not None
