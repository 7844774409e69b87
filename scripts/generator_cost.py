"""What a generator costs at each image size, from synthetic inputs: parameters, training FLOPs, memory, step time.

    python scripts/generator_cost.py [--netG unet_512 double_unet_512 c2f_unet_512] [--sizes 256 512 1024]
        [--ngf 64] [--time 2] [--flags=--grad_checkpoint] [--json cost.json]

Per generator and size, one training step of train.py's model (G and the default PatchGAN D, batch 1, the given
--ngf = --ndf) on random pairs:
- parameters of G;
- FLOPs of the step (forward and backward of both networks, counted by torch.utils.flop_counter);
- activation memory: the bytes of the distinct tensors autograd saves for the step's backward passes, the weights
  left out (what grows with the image; --flags=--grad_checkpoint lowers it);
- weights, gradients and Adam's two moments of G and D (16 bytes per parameter in float32);
- with --time N, the median of N timed steps on the CPU after one warm-up.
Parameters, FLOPs and memory are counted on PyTorch's meta device (shapes without data), so they take seconds at any
width and size. Sizes a generator does not take (its size multiple) are left out with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models import create_model  # noqa: E402
from options import rules  # noqa: E402
from options.options import parse  # noqa: E402
from util.config import OptionError  # noqa: E402


def saved_bytes(step, model) -> int:
    """Bytes of the distinct storages autograd saves for backward while step() runs, the networks' own weights left
    out (a conv saves its weight too). Each is held until the end, so that no address is reused and counted as the
    same storage."""
    own = {t.untyped_storage()._cdata for net in (model.netG, model.netD) for t in (*net.parameters(), *net.buffers())}
    seen: dict[int, torch.UntypedStorage] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st._cdata not in own:
            seen[st._cdata] = st
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(st.nbytes() for st in seen.values())


def training_step(opt, size: int, device: str):
    """One train.py training step of opt's model on random size x size pairs (batch 1), as a function."""
    torch.manual_seed(0)
    model = create_model(opt.model_config(), torch.device(device))
    x = {"A": torch.rand(1, 3, size, size), "B": torch.rand(1, 3, size, size), "A_paths": [""]}
    batch = {k: v.to(device) * 2 - 1 for k, v in x.items() if k != "A_paths"} | {"A_paths": [""]}
    model.set_epoch(1)
    return model, lambda: model.train_step([batch])


def cost(netG: str, size: int, ngf: int, flags: list[str], timed: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    argv = ["--netG", netG, "--ngf", str(ngf), "--ndf", str(ngf), "--crop_size", str(size), "--load_size", str(size)]
    opt = parse(True, [*argv, "--display_id", "0", *flags])
    rules.check(opt, values=False)  # the size rule among them: OptionError for a size the generator does not take
    # Counted on the meta device: shapes without data, so any width and size count in moments
    model, step = training_step(opt, size, "meta")
    with FlopCounterMode(display=False) as fc:
        step()
    activations = saved_bytes(step, model)
    n_G = sum(p.numel() for p in model.netG.parameters())
    n_D = sum(p.numel() for p in model.netD.parameters())
    row = {
        "netG": netG,
        "size": size,
        "params_G_M": n_G / 1e6,
        "train_gflop": fc.get_total_flops() / 1e9,
        "activations_GB": activations / 1e9,
        "weights_adam_GB": 16 * (n_G + n_D) / 1e9,
    }
    if timed:  # on the CPU, for real
        _, step = training_step(opt, size, "cpu")
        step()  # warm-up
        times = []
        for _ in range(timed):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        row["s_per_step"] = statistics.median(times)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--netG", nargs="+", default=["unet_512", "double_unet_512", "c2f_unet_512"])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--ngf", type=int, default=64, help="--ngf and --ndf")
    p.add_argument("--time", type=int, default=0, help="time this many steps after a warm-up (0: no timing)")
    p.add_argument("--flags", default="", help="more train.py flags, e.g. '--grad_checkpoint'")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    rows = []
    print("| netG | size | G params (M) | train GFLOP/step | activations (GB) | weights+grads+Adam (GB) | s/step |")
    print("|---|---|---|---|---|---|---|")
    for netG in args.netG:
        for size in args.sizes:
            try:
                row = cost(netG, size, args.ngf, args.flags.split(), args.time)
            except OptionError as e:  # a size the generator does not take: say so and go on
                print(f"| {netG} | {size} | refused: {str(e).split(':')[0]} | | | | |")
                continue
            rows.append(row)
            s = f"{row['s_per_step']:.2f}" if "s_per_step" in row else ""
            print(
                f"| {netG} | {size} | {row['params_G_M']:.1f} | {row['train_gflop']:.0f} | {row['activations_GB']:.2f}"
                f" | {row['weights_adam_GB']:.2f} | {s} |",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
