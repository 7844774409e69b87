"""train.py with test hooks set: a process that dies at a given step, or a pause inside each checkpoint write.

    python tests/hooked.py [--die_at RANK:ITER] [--save_pause SECONDS] -- <train.py's arguments> [-- <more> ...]
    python -m torch.distributed.run --nproc_per_node 2 ... tests/hooked.py --die_at 1:3 -- <train.py's arguments>

--die_at: the process of that rank ends with os._exit(3) right after training step ITER (counted from 1 over the
whole run), as a crash or an OOM kill would: nothing is saved, no handler runs.
--save_pause: sleep that long between a complete temporary *.pth file and its rename over the real one, so that a
test can kill the process in between.

The hooks are engine.training.step_hook and util.util.before_replace_hook. train.py itself then runs as the main
module (runpy), so its exit statuses and its signal handling are train.py's own. The one difference: a Ctrl-C while
this script imports the hooked modules, before train.py's start-up handler is in place, is Python's default.

Several argument lists (each after a --) are several runs of train.py, one after the other in the same processes: one
torchrun launch for several runs. Under torchrun they share one process group (train.py finds it set up), which the
last run leaves. The first run that fails ends the script with its status. Under torchrun give a hook option first
(--save_pause 0 is none): torchrun's own parser drops a -- that comes right after the script.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import time
from collections.abc import Callable, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "train.py")
DIE_STATUS = 3


def rank_and_iter(text: str) -> tuple[int, int]:
    """'1:3' -> (1, 3)."""
    rank, sep, it = text.partition(":")
    if not sep or not rank.isdigit() or not it.isdigit():
        raise argparse.ArgumentTypeError(f"expected RANK:ITER, e.g. 1:3, got {text!r}")
    return int(rank), int(it)


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[list[str]]]:
    """(this script's options, train.py's arguments of each run): each run's follow a '--'."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--die_at", type=rank_and_iter, default=None, metavar="RANK:ITER")
    p.add_argument("--save_pause", type=float, default=0.0, metavar="SECONDS")
    argv = list(argv)
    if "--" not in argv:
        p.error("put -- before train.py's arguments")
    cut = argv.index("--")
    runs: list[list[str]] = [[]]
    for a in argv[cut + 1 :]:
        if a == "--":
            runs.append([])
        else:
            runs[-1].append(a)
    return p.parse_args(argv[:cut]), runs


def die_at(rank: int, iteration: int) -> Callable[[int, int], None]:
    """A step hook: the process of `rank` ends at once after step `iteration`."""

    def hook(step_rank: int, total_iters: int) -> None:
        if (step_rank, total_iters) == (rank, iteration):
            os._exit(DIE_STATUS)

    return hook


def pause_before_replace(seconds: float) -> Callable[[str], None]:
    """A before-replace hook: a pause before a checkpoint (*.pth) replaces the previous one; other files go on."""

    def hook(path: str) -> None:
        if path.endswith(".pth"):
            time.sleep(seconds)

    return hook


def install(opts: argparse.Namespace) -> None:
    """Set the hooks the options ask for (the modules' defaults, None, otherwise)."""
    from engine import training
    from util import util

    training.step_hook = die_at(*opts.die_at) if opts.die_at else None
    util.before_replace_hook = pause_before_replace(opts.save_pause) if opts.save_pause > 0 else None


def main(argv: Sequence[str] | None = None) -> None:
    opts, runs = parse(sys.argv[1:] if argv is None else argv)
    install(opts)
    from util import distributed

    leave_group = distributed.cleanup
    for i, train_args in enumerate(runs, start=1):
        last = i == len(runs)
        # before the last run, the process group stays for the next one (train.py joins it only if there is none)
        distributed.cleanup = leave_group if last else lambda d, together: None
        sys.argv = [TRAIN, *train_args]
        try:
            runpy.run_path(TRAIN, run_name="__main__")  # train.py's __main__ block: sys.exit(main()) and its handlers
        except SystemExit as e:
            if last or e.code not in (0, None):
                raise


if __name__ == "__main__":
    sys.path[0] = ROOT  # as `python train.py` has it (this script's own folder is tests/)
    main()
