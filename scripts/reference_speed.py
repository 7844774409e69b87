"""This project's train.py beside the pix2pix reference implementation's, on one machine with the same flags.

    python scripts/reference_speed.py --reference /path/to/pytorch-CycleGAN-and-pix2pix \\
        --dataroot DATA/facades --flags "--direction BtoA" --iters 5 25 --repeats 2 --json ref256.json

Each training run is timed end to end at two lengths (--iters SHORT LONG, through --max_dataset_size with one
epoch and no decay); the difference divided by LONG - SHORT is the time per iteration without start-up, data set
scan or model building. The runs are interleaved (reference, this project, each --run, then again) and the median
over --repeats is reported, so a drifting machine affects every run alike. --run NAME=FLAGS adds runs of this
project with more flags (e.g. 'graph=--cuda_graph --amp bf16 --channels_last').
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wall_seconds(cmd: list[str], cwd: str, env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"reference_speed.py: exit {r.returncode}: {shlex.join(cmd)}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0


def commands(args: argparse.Namespace, n: int, out: str) -> dict[str, tuple[list[str], str]]:
    """name -> (command, working folder) of each run at n iterations."""
    common = ["--dataroot", os.path.abspath(args.dataroot), "--max_dataset_size", str(n), "--n_epochs", "1"]
    common += ["--n_epochs_decay", "0", "--print_freq", "1000000", "--save_epoch_freq", "1000", "--no_html"]
    common += shlex.split(args.flags)
    ref = [sys.executable, "train.py", "--model", "pix2pix", "--name", f"ref{n}", "--checkpoints_dir", out]
    ours = [sys.executable, "train.py", "--name", f"ours{n}", "--checkpoints_dir", out, "--display_id", "0"]
    runs = {"reference": ([*ref, *common], args.reference), "this project": ([*ours, *common], ROOT)}
    for spec in args.run:
        name, flags = spec.split("=", 1)
        runs[name] = ([*ours[:3], f"{name}{n}", *ours[4:], *common, *shlex.split(flags)], ROOT)
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, help="a checkout of the reference implementation")
    p.add_argument("--dataroot", required=True)
    p.add_argument("--flags", default="", help="train.py flags for both (both programs know them)")
    p.add_argument("--run", action="append", default=[], help="NAME=FLAGS: another run of this project")
    p.add_argument("--iters", type=int, nargs=2, default=[5, 25], metavar=("SHORT", "LONG"))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    short, long = args.iters
    # The reference imports wandb whether or not it logs to it: an empty module stands in where it is missing.
    env = dict(os.environ)
    if importlib.util.find_spec("wandb") is None:
        stub = tempfile.mkdtemp(prefix="refstub")
        with open(os.path.join(stub, "wandb.py"), "w") as f:
            f.write("")
        env["PYTHONPATH"] = stub
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="refspeed") as out:
        for rep in range(args.repeats):
            for name in commands(args, short, out):
                t = []
                for n in (short, long):
                    cmd, cwd = commands(args, n, out)[name]
                    t.append(wall_seconds(cmd, cwd, env))
                    shutil.rmtree(
                        os.path.join(out, cmd[cmd.index("--name") + 1]), ignore_errors=True
                    )  # the next repeat starts afresh
                times.setdefault(name, []).append((t[1] - t[0]) / (long - short))
                print(f"[{rep + 1}/{args.repeats}] {name}: {1000 * times[name][-1]:.1f} ms/iter", flush=True)
    result = {
        "ms_per_iter": {k: 1000 * statistics.median(v) for k, v in times.items()},
        "runs_ms": {k: [1000 * x for x in v] for k, v in times.items()},
        "flags": args.flags,
        "iters": args.iters,
    }
    for name, ms in result["ms_per_iter"].items():
        print(f"{name:<16} {ms:10.1f} ms per iteration (median of {args.repeats})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
