"""The training page's plot: loss curves from loss_log.txt and validation metrics from val_log.jsonl."""

from __future__ import annotations

import json
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
    """Write a PNG of the losses (and validation metrics, if any) against total iterations; None if no data."""
    steps, losses = read_loss_log(os.path.join(run_dir, "loss_log.txt"))
    val = read_val_log(os.path.join(run_dir, "val_log.jsonl"))
    if not steps and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    metric_names = [k for k in (val[0]["metrics"] if val else {}) if not k.startswith("swd_") and k != "n"]
    n_axes = 1 + len(metric_names)
    fig, axes = plt.subplots(n_axes, 1, figsize=(8, 2.6 * n_axes), squeeze=False)
    ax = axes[0][0]
    for name, values in losses.items():
        ax.plot(steps[: len(values)], values, label=name, linewidth=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("symlog")  # G_L1 (x lambda_L1) and the GAN losses differ by two orders of magnitude
    if losses:
        ax.legend(loc="upper right", fontsize=8)
    ax.set_title("training losses (mean over each print_freq window)")
    for i, name in enumerate(metric_names, start=1):
        ax = axes[i][0]
        ax.plot(
            [v["total_iters"] for v in val],
            [v["metrics"].get(name, float("nan")) for v in val],
            marker="o",
            linewidth=1,
        )
        ax.set_xlabel("iteration")
        ax.set_title(f"validation {name}")
    fig.tight_layout()
    tmp = out_path + ".tmp.png"
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, out_path)
    return out_path
