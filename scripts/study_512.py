"""The 256-to-512 study: train each arm with the same budget and seeds, score it on val, and tabulate."""

from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import shlex
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from util.html import HTML  # noqa: E402
from util.metrics import MetricSuite  # noqa: E402

log = logging.getLogger("study")
METRICS = ("psnr", "ssim", "swd")

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
}


def arm_flags(arm: str, width: int) -> list[str]:
    flags = ARMS[arm]
    if flags == ["WIDE"]:
        return ["--ngf", str(2 * width), "--ndf", str(2 * width)]
    return list(flags)


def run(cmd: list[str], log_path: str) -> float:
    """Runs cmd with its output in log_path; returns the wall time. A failure raises with the log's tail."""
    t0 = time.perf_counter()
    with open(log_path, "w") as f:
        f.write(shlex.join(cmd) + "\n")
        f.flush()
        rc = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"exit {rc}: {shlex.join(cmd)}\n{tail}")
    return time.perf_counter() - t0


def identity_scores(dataroot: str, phase: str, direction: str) -> dict[str, float]:
    """The metrics of output = input: the score a model must beat."""
    suite = MetricSuite(list(METRICS), "cpu", None, None, seed=0)
    for path in sorted(glob.glob(os.path.join(dataroot, phase, "*"))):
        ab = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 127.5 - 1
        t = torch.from_numpy(ab).permute(2, 0, 1)[None]  # (1, 3, H, 2W)
        w = t.shape[-1] // 2
        a, b = t[..., :w], t[..., w:]
        suite.update(a, b) if direction == "AtoB" else suite.update(b, a)
    return {k: v for k, v in suite.compute().items() if k in METRICS}


def run_arm(args: argparse.Namespace, arm: str, seed: int) -> dict:
    """Trains and tests one (arm, seed); reuses a finished result so an interrupted study can be rerun."""
    name = f"{arm}_s{seed}"
    ckpt_dir, res_dir = os.path.join(args.out, "checkpoints"), os.path.join(args.out, "results")
    record_path = os.path.join(args.out, "runs", f"{name}.json")
    if os.path.exists(record_path):
        with open(record_path) as f:
            return json.load(f)
    os.makedirs(os.path.dirname(record_path), exist_ok=True)
    # fmt: off
    train = [
        sys.executable, "train.py", "--dataroot", args.dataroot, "--name", name, "--checkpoints_dir", ckpt_dir,
        "--netG", "unet_512", "--ngf", str(args.width), "--ndf", str(args.width),
        "--load_size", str(args.size), "--crop_size", str(args.size), "--direction", args.direction,
        "--n_epochs", str(args.epochs[0]), "--n_epochs_decay", str(args.epochs[1]), "--seed", str(seed),
        "--display_id", "0", "--no_html", "--print_freq", "100", "--save_epoch_freq", "1000",
        *arm_flags(arm, args.width), *shlex.split(args.extra),
    ]
    test = [
        sys.executable, "test.py", "--name", name, "--checkpoints_dir", ckpt_dir, "--results_dir", res_dir,
        "--phase", args.val_phase, "--metrics", ",".join(METRICS),
        # every arm scored on the same val images, at --size: an arm that trains on resized crops (resize572)
        # would otherwise be tested on resized images, whose smoothed noise scores higher
        "--load_size", str(args.size), "--crop_size", str(args.size), *shlex.split(args.extra_test),
    ]
    # fmt: on
    log.info("%s: training", name)
    train_s = run(train, os.path.join(args.out, "runs", f"{name}_train.log"))
    run(test, os.path.join(args.out, "runs", f"{name}_test.log"))
    with open(os.path.join(res_dir, name, f"{args.val_phase}_latest", "metrics.json")) as f:
        scores = json.load(f)["summary"]
    iters, params_G = _iterations_and_params(ckpt_dir, name)
    record = {
        "arm": arm,
        "seed": seed,
        "flags": arm_flags(arm, args.width),
        "scores": {k: scores[k] for k in METRICS},
        "train_s": train_s,
        "iterations": iters,
        "s_per_iter": train_s / iters if iters else math.nan,
        "params_G": params_G,
    }
    with open(record_path, "w") as f:
        json.dump(record, f, indent=2)
    log.info("%s: %s (%.0f s)", name, ", ".join(f"{k} {v:.4g}" for k, v in record["scores"].items()), train_s)
    return record


def _iterations_and_params(ckpt_dir: str, name: str) -> tuple[int, int]:
    state = torch.load(os.path.join(ckpt_dir, name, "latest.pth"), map_location="cpu", weights_only=True)
    netG = state["model"]["netG"]
    params = sum(t.numel() for k, t in netG.items() if not k.endswith(("running_mean", "running_var", "_tracked")))
    return int(state["total_iters"]), params


def summarise(records: list[dict], identity: dict[str, float], arms: list[str]) -> list[dict]:
    rows = []
    base = [r for r in records if r["arm"] == "baseline"]
    base_mean = {k: statistics.fmean(r["scores"][k] for r in base) for k in METRICS} if base else None
    for arm in arms:
        rs = sorted((r for r in records if r["arm"] == arm), key=lambda r: r["seed"])
        row = {"arm": arm, "flags": " ".join(rs[0]["flags"]) or "(baseline)", "seeds": [r["seed"] for r in rs]}
        for k in METRICS:
            vals = [r["scores"][k] for r in rs]
            row[k] = statistics.fmean(vals)
            row[f"{k}_seeds"] = vals
            row[f"{k}_vs_base"] = row[k] - base_mean[k] if base_mean else math.nan
        row["beats_identity"] = row["psnr"] > identity["psnr"]
        row["s_per_iter"] = statistics.median(r["s_per_iter"] for r in rs)
        rows.append(row)
    return rows


def markdown(rows: list[dict], identity: dict[str, float]) -> str:
    lines = [
        "| arm | flags | PSNR dB (seeds) | vs base | SSIM (seeds) | vs base | SWD (seeds) | vs base | s/iter |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| identity | output = input | {identity['psnr']:.2f} | | {identity['ssim']:.4f} | | "
        f"{identity['swd']:.1f} | | |",
    ]
    for r in rows:
        cells = [r["arm"], f"`{r['flags']}`"]
        for k, fmt in (("psnr", "{:.2f}"), ("ssim", "{:.4f}"), ("swd", "{:.1f}")):
            seeds = ", ".join(fmt.format(v) for v in r[f"{k}_seeds"])
            cells += [f"{fmt.format(r[k])} ({seeds})", ("{:+" + fmt[2:]).format(r[f"{k}_vs_base"])]
        cells.append(f"{r['s_per_iter']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_page(args: argparse.Namespace, arms: list[str], seed: int, max_images: int = 4) -> str:
    """index.html: per val image, real_A, each arm's fake_B (one seed) and real_B side by side."""
    page = HTML(args.out, "256-to-512 study: val images per arm")
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataroot", default=os.path.join(ROOT, "..", "shared", "data", "polyu512"))
    p.add_argument("--out", default="study512", help="folder for runs, results, study.json, study.md, index.html")
    first_round = list(ARMS)[: list(ARMS).index("attention")]  # the default: the first round's arms
    p.add_argument("--arms", default=",".join(first_round), help=f"from {', '.join(ARMS)}")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--width", type=int, default=16, help="baseline ngf = ndf (the wide arm doubles it)")
    p.add_argument("--size", type=int, default=512, help="load and crop size")
    p.add_argument("--epochs", type=int, nargs=2, default=[2, 2], metavar=("N", "DECAY"), help="the same for every arm")
    p.add_argument("--direction", default="AtoB")
    p.add_argument("--val_phase", default="val")
    p.add_argument("--extra", default="", help="more train.py flags for every arm, e.g. '--amp bf16 --batch_size 4'")
    p.add_argument("--extra_test", default="", help="more test.py flags")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [a for a in arms if a not in ARMS]
    if bad:
        p.error(f"--arms: unknown {', '.join(bad)}; choose from {', '.join(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    os.makedirs(args.out, exist_ok=True)
    identity = identity_scores(args.dataroot, args.val_phase, args.direction)
    log.info("identity on %s: %s", args.val_phase, identity)
    records = [run_arm(args, arm, seed) for seed in seeds for arm in arms]
    rows = summarise(records, identity, arms)
    with open(os.path.join(args.out, "study.json"), "w") as f:
        json.dump({"args": vars(args), "identity": identity, "rows": rows, "runs": records}, f, indent=2)
    table = markdown(rows, identity)
    with open(os.path.join(args.out, "study.md"), "w") as f:
        f.write(table)
    print(table)
    log.info("example images: %s", comparison_page(args, arms, seeds[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
