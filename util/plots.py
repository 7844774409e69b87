"""The training page's plot: loss curves from loss_log.txt and validation metrics from val_log.jsonl."""

from __future__ import annotations

import json
import math
import os
import re

_LINE = re.compile(r"\(epoch: (\d+), iters: (\d+), total_iters: (\d+),.*?\) (.*)$")


def read_loss_log(path: str) -> tuple[list[int], dict[str, list[float]]]:
    """(total_iters per line, {loss name: values}) from loss_log.txt; a restarted run's lines are kept in order."""
    steps: list[int] = []
    losses: dict[str, list[float]] = {}
    if not os.path.exists(path):
        return steps, losses
    with open(path) as f:
        for line in f:
            m = _LINE.match(line.strip())
            if not m:
                continue
            steps.append(int(m.group(3)))
            pairs = re.findall(r"(\w+): ([-+\d.eEnaif]+)", m.group(4))
            for k, v in pairs:
                losses.setdefault(k, []).append(float(v))
    return steps, losses


def read_val_log(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_training(run_dir: str, out_path: str) -> str | None:
    """Write a PNG of the losses (and validation metrics, if any, each on its own axes) against total iterations;
    None if no data."""
    steps, losses = read_loss_log(os.path.join(run_dir, "loss_log.txt"))
    val = read_val_log(os.path.join(run_dir, "val_log.jsonl"))
    if not steps and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    from util.metrics import HIGHER_IS_BETTER

    metric_names = [k for k in (val[0]["metrics"] if val else {}) if not k.startswith("swd_") and k != "n"]
    n_axes = bool(losses) + len(metric_names)
    if n_axes == 0:
        return None
    # Constrained layout leaves room for the legends outside the axes; shared x lines the panels up.
    heights = [3.2] * bool(losses) + [1.9] * len(metric_names)  # inches: the losses get the biggest panel
    fig, axes = plt.subplots(
        n_axes,
        1,
        figsize=(9, 0.4 + sum(heights)),
        sharex=True,
        squeeze=False,
        layout="constrained",
        gridspec_kw={"height_ratios": heights},
    )
    axes = [row[0] for row in axes]
    if losses:
        ax = axes[0]
        for name, values in losses.items():
            ax.plot(steps[: len(values)], values, label=name, linewidth=1)
        # G_L1 (x lambda_L1) and the GAN losses differ by two orders of magnitude: a log axis shows both; some
        # GAN objectives (wgangp) go negative, and a symlog axis (linear near 0) still shows those.
        finite = [v for vs in losses.values() for v in vs if math.isfinite(v)]
        if finite and min(finite) > 0:
            ax.set_yscale("log")
            ax.set_ylabel("loss (log scale)")
        else:
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_ylabel("loss (symlog: linear in ±1)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
        ax.set_title("training losses (mean over each print_freq window)", fontsize=10)
    for ax, name in zip(axes[bool(losses) :], metric_names, strict=True):
        points = [(v["total_iters"], v["metrics"].get(name, math.nan)) for v in val]
        ax.plot(*zip(*points, strict=True), marker="o", linewidth=1, color="tab:purple", label=name)
        better = HIGHER_IS_BETTER.get(name)
        title = f"validation {name}"
        scored = [p for p in points if math.isfinite(p[1])]
        if scored and better is not None:
            best = (max if better else min)(scored, key=lambda p: p[1])
            ax.plot(*best, marker="*", markersize=12, color="tab:orange", linestyle="", label=f"best {best[1]:.4g}")
            title += f" ({'higher' if better else 'lower'} is better; best {best[1]:.4g} at iteration {best[0]})"
        ax.set_ylabel(name)
        ax.ticklabel_format(axis="y", useOffset=False)  # 12.751, not 0.001 + 1.275e1
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
        ax.set_title(title, fontsize=10)
    axes[-1].set_xlabel("iteration (total_iters)")
    tmp = out_path + ".tmp.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, out_path)
    return out_path
