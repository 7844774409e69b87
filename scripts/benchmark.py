"""Training and inference speed of pix2pix configurations, always against a plain fp32 eager batch-1 baseline.

    python scripts/benchmark.py --netG unet_256 --crop_size 256 --configs bs1 bf16,bs1 cl,bs4 --json out.json

A configuration is a comma-separated list of: bsN (batch size), bf16 / fp16 (autocast), cl (channels_last),
compile (torch.compile's default mode), ro (torch.compile with mode reduce-overhead), graph (--cuda_graph: the
whole step as one CUDA graph), gc (--grad_checkpoint). The baseline (fp32, eager, batch 1) runs first and last in
the same process; each configuration's speed is printed as a ratio to the baseline's mean, because absolute
times on shared machines drift.
FLOPs are counted with torch.utils.flop_counter on one step, not estimated.

    python scripts/benchmark.py --netG unet_512 --crop_size 512 --configs bf16,gc --max_batch 24

finds, per configuration, the largest batch whose training step fits in 24 GB of CUDA memory (a cap set
on a larger GPU; the CUDA context itself is outside it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data import EpochSampler, create_dataloader, create_dataset  # noqa: E402
from models import create_model  # noqa: E402
from models.graphed_step import GraphedStep  # noqa: E402
from options.options import parse  # noqa: E402

BASELINE = "bs1"


def parse_config(text: str) -> dict:
    cfg = {"batch_size": 1, "amp": "none", "channels_last": False, "compile": None, "grad_checkpoint": False}
    cfg["cuda_graph"] = False
    for tok in text.split(","):
        if tok.startswith("bs") and tok[2:].isdigit():
            cfg["batch_size"] = int(tok[2:])
        elif tok in ("bf16", "fp16"):
            cfg["amp"] = tok
        elif tok == "cl":
            cfg["channels_last"] = True
        elif tok == "compile":
            cfg["compile"] = "default"
        elif tok == "ro":
            cfg["compile"] = "reduce-overhead"
        elif tok == "graph":
            cfg["cuda_graph"] = True
        elif tok == "gc":
            cfg["grad_checkpoint"] = True
        elif tok not in ("fp32", "eager"):
            raise SystemExit(
                f"benchmark.py: unknown config token {tok!r} (use bsN, bf16, fp16, cl, compile, ro, graph, gc)"
            )
    return cfg


def build(args: argparse.Namespace, cfg: dict, device: torch.device):
    flags = [
        "--netG",
        args.netG,
        "--ngf",
        str(args.ngf),
        "--ndf",
        str(args.ndf),
        "--crop_size",
        str(args.crop_size),
        "--load_size",
        str(args.crop_size),
        "--batch_size",
        str(cfg["batch_size"]),
        "--amp",
        cfg["amp"],
        "--display_id",
        "0",
        "--gpu_ids",
        "-1" if device.type == "cpu" else "0",
    ]
    flags += ["--num_downs", str(args.num_downs)] if args.num_downs else []
    flags += ["--channels_last"] if cfg["channels_last"] else []
    flags += ["--compile", "--compile_mode", cfg["compile"]] if cfg["compile"] else []
    flags += ["--cuda_graph"] if cfg["cuda_graph"] else []
    flags += ["--grad_checkpoint"] if cfg["grad_checkpoint"] else []
    opt = parse(True, flags)
    torch.manual_seed(0)
    model = create_model(opt.model_config(), device)
    n, s = cfg["batch_size"], args.crop_size
    batch = {"A": torch.rand(n, 3, s, s) * 2 - 1, "B": torch.rand(n, 3, s, s) * 2 - 1, "A_paths": ["x"] * n}
    model.set_input(batch)
    model.batch = batch  # the step's input, for step() below
    model.run_step = GraphedStep(model) if cfg["cuda_graph"] else model.train_step
    return model


def step(model) -> None:
    """One training step on the model's fixed batch (through the CUDA graph with 'graph')."""
    model.run_step([model.batch])


def forward(model) -> None:
    """The generator's forward pass on the model's batch."""
    model.translate(model.real_A)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, steps: int, repeats: int) -> list[float]:
    """Seconds per call, one value per repeat."""
    out = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        sync(device)
        out.append((time.perf_counter() - t0) / steps)
    return out


def count_flops(model) -> tuple[float, float]:
    """FLOPs of one training step and of one generator forward (whole batch)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:  # eagerly: a graph's replay dispatches no operators to count
        model.train_step([model.batch])
    train = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        forward(model)
    return float(train), float(fc.get_total_flops())


_LOADERS: dict = {}  # batch size -> (loader, sampler, data set), built once per process, workers kept


def training_loader(args: argparse.Namespace, device: torch.device, batch_size: int):
    """train.py's loader over --dataroot at batch_size (with --cache_images and --device_preprocess as given) and
    its sampler. The data set (and its cache) is built once and shared by every batch size; each loader keeps its
    workers between rows."""
    if batch_size in _LOADERS:
        return _LOADERS[batch_size][:2]
    argv = ["--dataroot", args.dataroot, "--direction", args.direction, "--netG", args.netG]
    argv += ["--crop_size", str(args.crop_size), "--load_size", str(args.load_size or args.crop_size)]
    argv += ["--batch_size", str(batch_size), "--num_threads", str(args.num_threads), "--seed", "0"]
    argv += ["--num_downs", str(args.num_downs)] if args.num_downs else []
    argv += ["--device_preprocess"] if args.device_preprocess else []
    opt = parse(True, argv)
    if _LOADERS:
        ds = next(iter(_LOADERS.values()))[2]
    else:
        ds = create_dataset(opt.data, opt.preprocess, opt.generator, opt.augment, opt.run.seed, True, opt.values)
        ds.check(False, opt.data.max_bad_fraction, workers=max(1, args.num_threads))
        if args.cache_images:
            t0 = time.perf_counter()
            ds.cache_images(workers=max(1, args.num_threads))
            print(f"  cached {len(ds)} pairs in {time.perf_counter() - t0:.1f} s", flush=True)
    sampler = EpochSampler(len(ds), 0, True)
    _LOADERS[batch_size] = (create_dataloader(ds, batch_size, args.num_threads, sampler, device), sampler, ds)
    return _LOADERS[batch_size][:2]


def data_share(args: argparse.Namespace, model, device: torch.device, batch_size: int) -> float | None:
    """Share of the step time spent waiting for the data loader (real images from --dataroot); with
    --device_preprocess the wait includes the preprocessing on the device."""
    if not args.dataroot:
        return None
    loader, sampler = training_loader(args, device, batch_size)
    wait = step = 0.0
    epoch = 1
    sampler.set_epoch(epoch)
    it = iter(loader)
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        b = next(it, None)
        if b is None:  # the next epoch, as training does (workers are persistent)
            epoch += 1
            sampler.set_epoch(epoch)
            it = iter(loader)
            b = next(it)
        sync(device)  # with --device_preprocess the batch is made on the device
        t1 = time.perf_counter()
        model.train_step([b])
        sync(device)
        t2 = time.perf_counter()
        if i >= args.warmup:
            wait, step = wait + t1 - t0, step + t2 - t1
    return wait / (wait + step)


def roofline(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Per conv layer of G (fp32, batch 1, forward): FLOPs, bytes moved (input + output + weights) and their
    ratio, the arithmetic intensity. Layers far below the device's FLOP/byte balance are memory-bound."""
    from torch import nn

    model = build(args, parse_config(BASELINE), device)
    rows: list[dict] = []

    def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        x = inp[0]
        k = mod.weight.numel() // (mod.weight.shape[0] if isinstance(mod, nn.Conv2d) else mod.weight.shape[1])
        # Each output element of a conv costs 2 * C_in * kh * kw FLOPs; a transposed conv spreads each input
        # element over C_out * kh * kw outputs, so count it from the input side.
        flops = 2 * out.numel() * k if isinstance(mod, nn.Conv2d) else 2 * x.numel() * mod.weight[0].numel()
        moved = 4 * (x.numel() + out.numel() + mod.weight.numel())
        rows.append(
            {
                "layer": f"{type(mod).__name__} {tuple(x.shape[1:])}->{tuple(out.shape[1:])}",
                "gflop": flops / 1e9,
                "mbytes": moved / 2**20,
                "flop_per_byte": flops / moved,
            }
        )

    handles = [
        m.register_forward_hook(hook) for m in model.netG.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ]
    with torch.no_grad():
        forward(model)
    for h in handles:
        h.remove()
    return rows


def saved_mb(fn) -> float:
    """MB of tensors autograd keeps for the backward pass while fn runs (distinct storages)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values()) / 2**20


def activation_memory(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Activation memory per image kept for backward by G and by one D pass, with and without --grad_checkpoint.
    A training step holds G's graph and two D passes at once (the D update), so the step's activation
    memory is about G + 2 D. Device-independent, so it can be measured on the CPU for a GPU's budget."""
    out = {}
    for recompute in (False, True):
        model = build(args, parse_config("bs1,gc" if recompute else "bs1"), device)
        suffix = "_grad_checkpoint" if recompute else ""
        out["G" + suffix] = saved_mb(lambda m=model: forward(m))
        out["D_pass" + suffix] = saved_mb(lambda m=model: m.D(torch.cat([m.real_A, m.real_B], 1)))
    return out


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; the process's peak so far


def largest_batch(fits: Callable[[int], bool], limit: int) -> int:
    """The largest n <= limit with fits(n), for a fits that is true up to some n and false beyond: doubling
    from 1, then bisection between the last fit and the first failure. 0 when even 1 does not fit."""
    lo, n = 0, 1
    while n <= limit and fits(n):
        lo, n = n, n * 2
    hi = min(n, limit + 1)  # the first failure, or just past the limit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def fits_in_memory(args: argparse.Namespace, name: str, device: torch.device, batch_size: int) -> bool:
    """Whether two training steps of config `name` at batch_size run within the process's CUDA memory cap
    (the second step holds Adam's moments too)."""
    cfg = {**parse_config(name), "batch_size": batch_size}
    model = None
    try:
        model = build(args, cfg, device)
        for _ in range(2):
            step(model)
        sync(device)
        return True
    except torch.OutOfMemoryError:
        return False
    except RuntimeError as e:  # cuDNN and cuBLAS report a failed allocation as their own error
        if "ALLOC_FAILED" in str(e) or "out of memory" in str(e):
            return False
        raise
    finally:
        del model
        gc.collect()
        torch.cuda.empty_cache()


def max_batch(args: argparse.Namespace, names: list[str], device: torch.device) -> list[dict]:
    """Per config, the largest batch whose training step fits in --max_batch GB: the cap is set with
    torch.cuda.set_per_process_memory_fraction, so a large GPU answers for a smaller one."""
    total = torch.cuda.get_device_properties(device).total_memory
    cap = args.max_batch * 2**30
    if cap > total:
        raise SystemExit(f"benchmark.py: --max_batch {args.max_batch} GB is more than the device's {total / 2**30:.0f}")
    torch.cuda.set_per_process_memory_fraction(cap / total, device)
    rows = []
    for name in names:
        n = largest_batch(lambda b, name=name: fits_in_memory(args, name, device, b), args.max_batch_limit)
        rows.append({"config": name, "max_batch": n, "memory_gb": args.max_batch})
        print(f"{name:<18} largest batch in {args.max_batch:g} GB: {n}", flush=True)
    return rows


def run(args: argparse.Namespace, name: str, device: torch.device) -> dict:
    cfg = parse_config(name)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = build(args, cfg, device)
    for _ in range(args.warmup):
        step(model)
    train_flops, infer_flops = count_flops(model)
    train_s = timed(lambda: step(model), device, args.steps, args.repeats)

    def infer() -> None:
        with torch.no_grad():
            forward(model)

    infer_s = timed(infer, device, args.steps, args.repeats)
    n = cfg["batch_size"]
    med = statistics.median(train_s)
    row = {
        "config": name,
        **cfg,
        "train_img_s": n / med,
        "train_img_s_spread": [n / max(train_s), n / min(train_s)],
        "infer_img_s": n / statistics.median(infer_s),
        "train_gflop_per_img": train_flops / n / 1e9,
        "infer_gflop_per_img": infer_flops / n / 1e9,
        "train_tflops": train_flops / med / 1e12,
        "peak_mem_mb": peak_memory_mb(device),
        "data_share": data_share(args, model, device, n),
    }
    if args.peak_tflops:
        row["share_of_peak"] = row["train_tflops"] / args.peak_tflops
    return row


def arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--netG", default="unet_256")
    p.add_argument("--crop_size", type=int, default=256)
    p.add_argument("--load_size", type=int, default=None, help="for --dataroot (default: crop_size)")
    p.add_argument("--num_downs", type=int, default=None, help="U-Net depth override")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--configs", nargs="*", default=[], help="configurations besides the baseline")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--peak_tflops", type=float, default=None, help="the device's peak, for the share column")
    p.add_argument("--dataroot", default=None, help="also measure the data-loading share on real images")
    p.add_argument("--direction", default="AtoB")
    p.add_argument("--num_threads", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--cache_images", action="store_true", help="with --dataroot: train.py's --cache_images")
    p.add_argument("--device_preprocess", action="store_true", help="with --dataroot: train.py's --device_preprocess")
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--roofline", action="store_true", help="also print FLOPs, bytes and intensity per G layer")
    p.add_argument(
        "--activation_memory", action="store_true", help="also print the activation MB per image kept for backward"
    )
    p.add_argument(
        "--max_batch",
        type=float,
        default=None,
        metavar="GB",
        help="instead of timing: the largest batch of each config (batch size ignored) whose training step fits "
        "in GB of CUDA memory",
    )
    p.add_argument("--max_batch_limit", type=int, default=256, help="stop the --max_batch search here")
    return p


def open_device(name: str) -> torch.device:
    """The device, with cuDNN autotuning and TF32 on CUDA."""
    device = torch.device(name)
    if device.type == "cuda":
        if device.index is None:  # memory calls (set_per_process_memory_fraction) refuse a device without an index
            device = torch.device("cuda", torch.cuda.current_device())
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return device


def max_batch_main(p: argparse.ArgumentParser, args: argparse.Namespace, device: torch.device) -> int:
    """--max_batch: the largest batch per config (no timing), printed and written to --json."""
    if device.type != "cuda":
        p.error("--max_batch measures CUDA memory: it needs --device cuda")
    if any(parse_config(c)["compile"] for c in args.configs):
        p.error("--max_batch: leave compile out (a failed allocation would look like a failed compile)")
    rows = max_batch(args, [BASELINE, *args.configs], device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"netG": args.netG, "crop_size": args.crop_size, "max_batch": rows}, f, indent=2)
    return 0


def timed_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """The baseline, each config, the baseline again; each row's speed as a ratio to the two baselines' mean."""
    names = [BASELINE, *args.configs, BASELINE]  # the baseline again at the end: the drift between the two is the noise
    rows = []
    for i, name in enumerate(names, start=1):
        t0 = time.perf_counter()
        rows.append(run(args, name, device))
        speed = f"{rows[-1]['train_img_s']:.3f} img/s"
        print(f"  [{i}/{len(names)}] {name}: {speed} ({time.perf_counter() - t0:.0f} s)", flush=True)
    base = statistics.mean([rows[0]["train_img_s"], rows[-1]["train_img_s"]])
    for r in rows:
        r["train_vs_baseline"] = r["train_img_s"] / base
    return rows


def print_rows(args: argparse.Namespace, device: torch.device, rows: list[dict]) -> None:
    head = f"{'config':<18}{'train img/s':>12}{'x base':>8}{'infer img/s':>12}{'TFLOP/s':>9}{'GFLOP/img':>10}"
    head += f"{'peak MB':>9}{'data %':>8}" + (f"{'% peak':>8}" if args.peak_tflops else "")
    print(f"{args.netG} at {args.crop_size}px on {device} (torch {torch.__version__})")
    print(head)
    for r in rows:
        line = f"{r['config']:<18}{r['train_img_s']:>12.3f}{r['train_vs_baseline']:>8.2f}{r['infer_img_s']:>12.3f}"
        line += f"{r['train_tflops']:>9.3f}{r['train_gflop_per_img']:>10.1f}{r['peak_mem_mb']:>9.0f}"
        data = "" if r["data_share"] is None else f"{100 * r['data_share']:.1f}"
        line += f"{data:>8}"
        if args.peak_tflops:
            line += f"{100 * r['share_of_peak']:>8.2f}"
        print(line)


def print_roofline(layers: list[dict]) -> None:
    if not layers:
        return
    print(f"\n{'generator layer (fp32, batch 1, forward)':<52}{'GFLOP':>8}{'MB moved':>10}{'FLOP/B':>8}")
    for r in layers:
        print(f"{r['layer']:<52}{r['gflop']:>8.3f}{r['mbytes']:>10.1f}{r['flop_per_byte']:>8.1f}")


def print_activation_memory(act: dict[str, float]) -> None:
    if not act:
        return
    step = act["G"] + 2 * act["D_pass"]
    step_gc = act["G_grad_checkpoint"] + 2 * act["D_pass_grad_checkpoint"]
    print(
        f"\nactivations kept for backward, MB per image (plain -> --grad_checkpoint): "
        f"G {act['G']:.0f} -> {act['G_grad_checkpoint']:.0f}, one D pass {act['D_pass']:.0f} -> "
        f"{act['D_pass_grad_checkpoint']:.0f}; a step holds about G + 2 D: {step:.0f} -> {step_gc:.0f} "
        f"({step / step_gc:.2f}x)"
    )


def write_json(
    args: argparse.Namespace, device: torch.device, rows: list[dict], layers: list[dict], act: dict[str, float]
) -> None:
    record = {
        "activation_mb": act,
        "netG": args.netG,
        "crop_size": args.crop_size,
        "device": str(device),
        "torch": torch.__version__,
    }
    with open(args.json, "w") as f:
        json.dump({**record, "rows": rows, "roofline": layers}, f, indent=2)


def main(argv: list[str] | None = None) -> int:
    p = arg_parser()
    args = p.parse_args(argv)
    _LOADERS.clear()  # a second main() in one process (tests) reads its own --dataroot
    device = open_device(args.device)
    if args.max_batch is not None:
        return max_batch_main(p, args, device)
    rows = timed_rows(args, device)
    print_rows(args, device, rows)
    layers = roofline(args, device) if args.roofline else []
    print_roofline(layers)
    act = activation_memory(args, device) if args.activation_memory else {}
    print_activation_memory(act)
    if args.json:
        write_json(args, device, rows, layers, act)
    return 0


if __name__ == "__main__":
    sys.exit(main())
