"""The 512 study: train each arm with the same budget and seeds, score it on val, and tabulate against a baseline."""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import json
import logging
import math
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data.image_folder import make_dataset  # noqa: E402
from metrics import MetricList, MetricSuite  # noqa: E402
from models import create_model  # noqa: E402
from models.registry import list_generators  # noqa: E402
from options.options import parse  # noqa: E402
from reporting.html import HTML  # noqa: E402
from util.config import OptionError  # noqa: E402

log = logging.getLogger("study")
FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "l1": "{:.4f}", "pixacc": "{:.3f}", "swd": "{:.1f}", "lpips": "{:.3f}"}

# Each arm changes one thing against the baseline (unet_512, width W, transposed convs, one PatchGAN,
# plain output, flips only). "wide" doubles W: ngf 32 -> 64 at full size, 16 -> 32 in the CPU study.
ARMS: dict[str, list[str]] = {
    "baseline": [],
    "unet_256": ["--netG", "unet_256"],
    "wide": ["WIDE"],
    "bilinear": ["--upsample", "bilinear"],
    "pixelshuffle": ["--upsample", "pixelshuffle"],
    "num_D2_feat": ["--num_D", "2", "--lambda_feat", "10"],
    "residual": ["--residual"],
    "augment": ["--aug_scale", "0.1", "--aug_rotate", "10", "--aug_color", "0.1", "--aug_color_on", "both"],
    "attention": ["--attention"],
    # The restoration round (issue 22): run with --extra "--residual" so each arm changes one thing on top of it.
    "gan0.1": ["--lambda_GAN", "0.1"],
    "gan0": ["--lambda_GAN", "0"],
    "lr2x": ["--lr", "0.0004"],
    "no_dropout": ["--no_dropout"],
    "resize572": ["--load_size", "572", "--crop_size", "512"],
    "lr5x": ["--lr", "0.001"],
    "lr10x": ["--lr", "0.002"],
    "regress": ["--lambda_GAN", "0", "--no_dropout", "--lr", "0.001", "--beta1", "0.9"],
    "regress_gan0.01": ["--lambda_GAN", "0.01", "--no_dropout", "--lr", "0.001", "--beta1", "0.9"],
    # The label-to-photo round (issue 22, maps600). Depth: unet_256 (above) has a 2x2 bottleneck at 512, depth 7
    # a 4x4 one; depth 10 does not fit a 512 crop (it needs multiples of 1024).
    "depth7": ["--num_downs", "7"],
    "n_layers_D4": ["--netD", "n_layers", "--n_layers_D", "4"],
    "n_layers_D5": ["--netD", "n_layers", "--n_layers_D", "5"],
    "num_D2": ["--num_D", "2"],
    "num_D3": ["--num_D", "3"],
    "batch4": ["--batch_size", "4", "--lr", "0.0004"],  # the same epochs; lr x sqrt(4), Adam's usual rule
    # 0.99, not 0.999: the average starts at the initial weights, and 0.999 would still hold 0.999^400 = 67% of them
    "ema": ["--ema_decay", "0.99"],
    "l1_10": ["--lambda_L1", "10"],
    "l1_300": ["--lambda_L1", "300"],
    "num_D3_l1_10": ["--num_D", "3", "--lambda_L1", "10"],  # the two map -> aerial winners together
    # The architectures round (issue 30): run with --equal_compute, so each gets the baseline's training FLOPs.
    "double_unet": ["--netG", "double_unet_512"],
    "c2f": ["--netG", "c2f_unet_512"],
}


def arm_flags(arm: str, width: int) -> list[str]:
    flags = ARMS[arm]
    if flags == ["WIDE"]:
        return ["--ngf", str(2 * width), "--ndf", str(2 * width)]
    return list(flags)


def run(cmd: list[str], log_path: str, threads: int | None) -> float:
    """Runs cmd with its output in log_path; returns the wall time. A failure raises with the log's tail."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    t0 = time.perf_counter()
    with open(log_path, "w") as f:
        f.write(shlex.join(cmd) + "\n")
        f.flush()
        rc = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"exit {rc}: {shlex.join(cmd)}\n{tail}")
    return time.perf_counter() - t0


def identity_scores(args: argparse.Namespace) -> dict[str, float]:
    """The metrics of output = input on the val images as test.py sees them (scaled to --load_size, centre crop
    --size): the score a restoration must beat, and for translations a reminder of how far apart A and B are."""
    suite = MetricSuite([m for m in args.metric_list if m != "kid"], "cpu", None, None, seed=0)
    for path in sorted(glob.glob(os.path.join(args.dataroot, args.val_phase, "*"))):
        ab = Image.open(path).convert("RGB")
        w = ab.width // 2
        a, b = (
            half.resize((args.load_size,) * 2, Image.BICUBIC)
            for half in (ab.crop((0, 0, w, ab.height)), ab.crop((w, 0, 2 * w, ab.height)))
        )
        x0 = (args.load_size - args.size) // 2
        t = [
            torch.from_numpy(
                np.asarray(im.crop((x0, x0, x0 + args.size, x0 + args.size)), dtype=np.float32) / 127.5 - 1
            )
            for im in (a, b)
        ]
        a, b = (x.permute(2, 0, 1)[None] for x in t)  # (1, 3, size, size)
        suite.update(a, b) if args.direction == "AtoB" else suite.update(b, a)
    return suite.compute()


def train_flags(args: argparse.Namespace, arm: str) -> list[str]:
    """The flags that shape an arm's training step (networks, losses, batch), without data, schedule or seed."""
    return [
        "--netG", args.netG, "--ngf", str(args.width), "--ndf", str(args.width),
        *arm_flags(arm, args.width), *shlex.split(args.extra),
    ]  # fmt: skip


def step_flops(flags: list[str], size: int) -> float:
    """FLOPs of one training step of train.py with flags (D's and G's forward and backward passes, the whole batch)
    on random size x size pairs, counted by torch.utils.flop_counter on the CPU, not estimated."""
    from torch.utils.flop_counter import FlopCounterMode

    opt = parse(True, [*flags, "--crop_size", str(size), "--load_size", str(size), "--display_id", "0"])
    torch.manual_seed(0)
    model = create_model(opt.model_config(), torch.device("cpu"))
    n = opt.data.batch_size
    batch = {"A": torch.rand(n, 3, size, size) * 2 - 1, "B": torch.rand(n, 3, size, size) * 2 - 1, "A_paths": [""] * n}
    model.set_epoch(1)
    with FlopCounterMode(display=False) as fc:
        model.train_step([batch] * opt.run.accum_steps)
    return float(fc.get_total_flops())


_BUDGET_LOCK = threading.Lock()


def budget(args: argparse.Namespace, arm: str) -> tuple[str, list[int], float]:
    """(dataroot, [epochs, decay epochs], FLOPs per step) of an arm. Without --equal_compute: the study's own.
    With it, the arm gets the baseline's training FLOPs: iterations = the baseline's x baseline FLOPs per step /
    the arm's, as whole multiples of the study's epochs over a subset of the baseline's training pairs (the same
    random subset, drawn with seed 0, for every seed of the arm; linked, not copied, under OUT/subsets/ARM_N)."""
    with _BUDGET_LOCK:  # --jobs: arms are planned in threads, which share the cache and the subsets
        return _budget(args, arm)


def _budget(args: argparse.Namespace, arm: str) -> tuple[str, list[int], float]:
    cache = os.path.join(args.out, "flops.json")
    flops = json.load(open(cache)) if os.path.exists(cache) else {}
    for a in ("baseline", arm):
        if a not in flops:
            flops[a] = step_flops(train_flags(args, a), args.size)
            os.makedirs(args.out, exist_ok=True)
            with open(cache, "w") as f:
                json.dump(flops, f, indent=2)
    if not args.equal_compute or arm == "baseline":
        return args.dataroot, list(args.epochs), flops[arm]
    # the pairs the baseline trains on: all, or the first --max_dataset_size of them (--extra)
    extra = shlex.split(args.extra)
    limit = int(extra[extra.index("--max_dataset_size") + 1]) if "--max_dataset_size" in extra else None
    pairs = make_dataset(os.path.join(args.dataroot, "train"), limit)
    per_pass = sum(args.epochs)
    target = len(pairs) * per_pass * flops["baseline"] / flops[arm]  # iterations at the baseline's FLOPs
    k = max(1, math.ceil(target / (len(pairs) * per_pass)))
    m = max(1, min(len(pairs), round(target / (k * per_pass))))
    if m == len(pairs):
        return args.dataroot, [e * k for e in args.epochs], flops[arm]
    root = os.path.join(os.path.abspath(args.out), "subsets", f"{arm}_{m}")
    if not os.path.isdir(root):
        chosen = sorted(np.random.default_rng(0).choice(len(pairs), m, replace=False))
        tmp = root + ".partial"
        os.makedirs(os.path.join(tmp, "train"))
        for i in chosen:
            os.symlink(os.path.abspath(pairs[i]), os.path.join(tmp, "train", os.path.basename(pairs[i])))
        os.symlink(os.path.abspath(os.path.join(args.dataroot, args.val_phase)), os.path.join(tmp, args.val_phase))
        os.rename(tmp, root)
    return root, [e * k for e in args.epochs], flops[arm]


def run_arm(args: argparse.Namespace, arm: str, seed: int) -> dict:
    """Trains and tests one (arm, seed); reuses a finished result so an interrupted study can be rerun."""
    name = f"{arm}_s{seed}"
    ckpt_dir, res_dir = os.path.join(args.out, "checkpoints"), os.path.join(args.out, "results")
    record_path = os.path.join(args.out, "runs", f"{name}.json")
    if os.path.exists(record_path):
        with open(record_path) as f:
            return json.load(f)
    os.makedirs(os.path.dirname(record_path), exist_ok=True)
    dataroot, epochs, flops = budget(args, arm)
    # fmt: off
    train = [
        sys.executable, "train.py", "--dataroot", dataroot, "--name", name, "--checkpoints_dir", ckpt_dir,
        "--load_size", str(args.load_size), "--crop_size", str(args.size), "--direction", args.direction,
        "--n_epochs", str(epochs[0]), "--n_epochs_decay", str(epochs[1]), "--seed", str(seed),
        "--display_id", "0", "--no_html", "--print_freq", "100", "--save_epoch_freq", "1000",
        "--start_over",  # an arm interrupted before its record: trained again, the partial run kept aside
        *train_flags(args, arm),
    ]
    test = [
        sys.executable, "test.py", "--name", name, "--checkpoints_dir", ckpt_dir, "--results_dir", res_dir,
        "--phase", args.val_phase, "--metrics", ",".join(args.metric_list),
        # every arm scored on the same val images, scaled to --load_size and centre-cropped to --size: an arm that
        # trains on resized crops (resize572) would otherwise be tested on resized images
        "--load_size", str(args.load_size), "--crop_size", str(args.size), *shlex.split(args.extra_test),
    ]
    # fmt: on
    log.info("%s: training", name)
    train_s = run(train, os.path.join(args.out, "runs", f"{name}_train.log"), args.threads)
    run(test, os.path.join(args.out, "runs", f"{name}_test.log"), args.threads)
    with open(os.path.join(res_dir, name, f"{args.val_phase}_latest", "metrics.json")) as f:
        scores = json.load(f)["summary"]
    iters, params_G = _iterations_and_params(ckpt_dir, name)
    record = {
        "arm": arm,
        "seed": seed,
        "flags": arm_flags(arm, args.width),
        "scores": {k: v for k, v in scores.items() if k != "n"},
        "train_s": train_s,
        "iterations": iters,
        "s_per_iter": train_s / iters if iters else math.nan,
        "params_G": params_G,
        "gflop_per_iter": flops / 1e9,
        "train_tflop": flops * iters / 1e12,
    }
    with open(record_path, "w") as f:
        json.dump(record, f, indent=2)
    shown = ", ".join(f"{k} {record['scores'][k]:.4g}" for k in args.metric_list if k in record["scores"])
    log.info("%s: %s (%.0f s)", name, shown, train_s)
    return record


def _iterations_and_params(ckpt_dir: str, name: str) -> tuple[int, int]:
    state = torch.load(os.path.join(ckpt_dir, name, "latest.pth"), map_location="cpu", weights_only=True)
    netG = state["model"]["netG"]
    params = sum(t.numel() for k, t in netG.items() if not k.endswith(("running_mean", "running_var", "_tracked")))
    return int(state["total_iters"]), params


def summarise(records: list[dict], identity: dict[str, float], arms: list[str], metrics: list[str]) -> list[dict]:
    """Per arm: each metric's mean over seeds, the seeds' values, the difference to the baseline's mean, and
    whether the arm's seeds all lie on one side of the baseline's (`{k}_apart`, given 2 seeds or more: a difference
    the seeds agree on; overlapping seeds are not a finding)."""
    rows = []
    base = [r for r in records if r["arm"] == "baseline"]
    for arm in arms:
        rs = sorted((r for r in records if r["arm"] == arm), key=lambda r: r["seed"])
        row = {"arm": arm, "flags": " ".join(rs[0]["flags"]) or "(baseline)", "seeds": [r["seed"] for r in rs]}
        for k in sorted({k for r in rs for k in r["scores"]}):
            vals = [r["scores"][k] for r in rs]
            row[k] = statistics.fmean(vals)
            row[f"{k}_seeds"] = vals
            base_vals = [r["scores"][k] for r in base if k in r["scores"]]
            row[f"{k}_vs_base"] = row[k] - statistics.fmean(base_vals) if base_vals else math.nan
            if k in metrics and min(len(vals), len(base_vals)) >= 2 and arm != "baseline":
                row[f"{k}_apart"] = min(vals) > max(base_vals) or max(vals) < min(base_vals)
        if "psnr" in identity and "psnr" in row:
            row["beats_identity"] = row["psnr"] > identity["psnr"]
        row["s_per_iter"] = statistics.median(r["s_per_iter"] for r in rs)
        row["iterations"] = rs[0].get("iterations", 0)
        row["gflop_per_iter"] = rs[0].get("gflop_per_iter", math.nan)
        rows.append(row)
    return rows


def markdown(rows: list[dict], identity: dict[str, float], metrics: list[str]) -> str:
    """The main table: per metric, the mean (seeds) and the difference to the baseline; '*' marks a difference
    whose seeds do not overlap the baseline's."""
    shown = [k for k in metrics if any(k in r for r in rows)]
    head = "| arm | flags | " + " | ".join(f"{k} (seeds) | vs base" for k in shown) + " | iterations | GFLOP/iter |"
    head += " s/iter |"
    lines = [head, "|---|---|" + "---|---|" * len(shown) + "---|---|---|"]
    if identity:
        cells = ["identity", "output = input"]
        for k in shown:
            cells += [FORMATS.get(k, "{:.4g}").format(identity[k]) if k in identity else "", ""]
        lines.append("| " + " | ".join(cells) + " | | | |")
    for r in rows:
        cells = [r["arm"], f"`{r['flags']}`"]
        for k in shown:
            fmt = FORMATS.get(k, "{:.4g}")
            seeds = ", ".join(fmt.format(v) for v in r[f"{k}_seeds"])
            diff = ("{:+" + fmt[2:]).format(r[f"{k}_vs_base"]) + ("*" if r.get(f"{k}_apart") else "")
            cells += [f"{fmt.format(r[k])} ({seeds})", "" if r["arm"] == "baseline" else diff]
        cells += [str(r["iterations"]), f"{r['gflop_per_iter']:.1f}", f"{r['s_per_iter']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def swd_levels_markdown(rows: list[dict]) -> str:
    """SWD at each pyramid level (x1e3, mean over seeds; finest level first): where in scale an arm differs."""
    levels = sorted({k for r in rows for k in r if k.startswith("swd_") and k[4:].isdigit()}, key=lambda k: -int(k[4:]))
    if not levels:
        return ""
    lines = ["| arm | " + " | ".join(levels) + " |", "|---|" + "---|" * len(levels)]
    for r in rows:
        lines.append(f"| {r['arm']} | " + " | ".join(f"{r[k]:.1f}" if k in r else "" for k in levels) + " |")
    return "\n".join(lines) + "\n"


def comparison_page(args: argparse.Namespace, arms: list[str], seed: int, max_images: int = 4) -> str:
    """index.html: per val image, real_A, each arm's fake_B (one seed) and real_B side by side."""
    page = HTML(
        args.out,
        f"512 study ({os.path.basename(os.path.normpath(args.dataroot))}, {args.direction}): val images per arm",
    )
    # add_images takes paths relative to out/images
    res = os.path.join("..", "results", "{name}", f"{args.val_phase}_latest", "images")
    first = os.path.join(args.out, "images", res.format(name=f"{arms[0]}_s{seed}"))
    stems = sorted(p[: -len("_real_A.png")] for p in os.listdir(first) if p.endswith("_real_A.png"))[:max_images]
    for stem in stems:
        page.add_header(stem)
        ims = [os.path.join(res.format(name=f"{arms[0]}_s{seed}"), f"{stem}_real_A.png")]
        ims += [os.path.join(res.format(name=f"{a}_s{seed}"), f"{stem}_fake_B.png") for a in arms]
        ims += [os.path.join(res.format(name=f"{arms[0]}_s{seed}"), f"{stem}_real_B.png")]
        page.add_images(ims, ["real_A", *arms, "real_B"], ims, width=256)
    return page.save()


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[int]:
    """Every argument checked before any run starts (one line and exit 2, as argparse's own errors); the seeds."""
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        seeds = []
    numbers = {"--width": args.width, "--size": args.size, "--jobs": args.jobs, "--load_size": args.load_size or 1}
    problems = [
        (not seeds or min(seeds) < 0, f"--seeds {args.seeds!r}: comma-separated integers, 0 or more"),
        (not os.path.isdir(args.dataroot), f"--dataroot {args.dataroot}: no such folder"),
        (args.netG not in list_generators(), f"--netG {args.netG}: one of {', '.join(list_generators())}"),
        (args.direction not in ("AtoB", "BtoA"), f"--direction {args.direction}: AtoB or BtoA"),
        (min(args.epochs) < 0 or sum(args.epochs) < 1, f"--epochs {args.epochs}: 0 or more each, 1 or more in all"),
        *((v < 1, f"{k} {v}: a positive integer") for k, v in numbers.items()),
    ]
    for bad, message in problems:
        if bad:
            p.error(message)
    try:
        MetricList.parse(args.metrics, "metrics")
    except OptionError as e:
        p.error(str(e))
    return seeds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument(
        "--dataroot",
        default=os.path.join(ROOT, "datasets", "polyu512"),
        help="built by datasets/build_study_data.py (docs/going-to-512.md, The study)",
    )
    p.add_argument("--out", default="study512", help="folder for runs, results, study.json, study.md, index.html")
    first_round = list(ARMS)[: list(ARMS).index("attention")]  # the default: the first round's arms
    p.add_argument("--arms", default=",".join(first_round), help=f"from {', '.join(ARMS)}")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--width", type=int, default=16, help="baseline ngf = ndf (the wide arm doubles it)")
    p.add_argument("--netG", default="unet_512", help="the baseline's generator")
    p.add_argument("--size", type=int, default=512, help="crop size (training crops, centre crops for val)")
    p.add_argument("--load_size", type=int, default=None, help="scale to this size before cropping (default: --size)")
    p.add_argument("--epochs", type=int, nargs=2, default=[2, 2], metavar=("N", "DECAY"), help="the same for every arm")
    p.add_argument("--direction", default="AtoB")
    p.add_argument("--val_phase", default="val")
    p.add_argument("--metrics", default="psnr,ssim,swd", help="test.py --metrics; the table shows them in this order")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, each with (CPU cores / jobs) threads")
    p.add_argument("--extra", default="", help="more train.py flags for every arm, e.g. '--amp bf16 --batch_size 4'")
    p.add_argument("--extra_test", default="", help="more test.py flags")
    p.add_argument(
        "--equal_compute",
        action="store_true",
        help="every arm trains with the baseline's FLOPs (counted per step): fewer or more iterations than --epochs",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [a for a in arms if a not in ARMS]
    if bad:
        p.error(f"--arms: unknown {', '.join(bad)}; choose from {', '.join(ARMS)}")
    seeds = check_args(p, args)
    args.load_size = args.load_size or args.size
    args.metric_list = [m.strip().lower() for m in args.metrics.split(",") if m.strip()]
    args.threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    os.makedirs(args.out, exist_ok=True)
    identity = identity_scores(args)
    log.info("identity on %s: %s", args.val_phase, identity)
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:  # threads that wait on subprocesses
        records = list(pool.map(lambda job: run_arm(args, *job), [(arm, seed) for seed in seeds for arm in arms]))
    rows = summarise(records, identity, arms, args.metric_list)
    saved = {k: v for k, v in vars(args).items() if k not in ("metric_list", "threads")}
    with open(os.path.join(args.out, "study.json"), "w") as f:
        json.dump({"args": saved, "identity": identity, "rows": rows, "runs": records}, f, indent=2)
    table = markdown(rows, identity, args.metric_list) + "\n" + swd_levels_markdown(rows)
    with open(os.path.join(args.out, "study.md"), "w") as f:
        f.write(table)
    print(table)
    log.info("example images: %s", comparison_page(args, arms, seeds[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
