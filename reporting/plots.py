"""The training page's plot: loss curves from losses.jsonl (reporting/run_log.py) and validation metrics from
val_log.jsonl. A run from before losses.jsonl has only loss_log.txt: its lines are read instead, if the file is
small (LEGACY_LOG_MAX_BYTES)."""

from __future__ import annotations

import json
import math
import os
import re

from metrics import HIGHER_IS_BETTER
from reporting import run_log
from util.util import atomic_write

_LINE = re.compile(r"\(epoch: (\d+), iters: (\d+), total_iters: (\d+),.*?\) (.*)$")
LEGACY_LOG_MAX_BYTES = 1 << 20  # about 8000 lines of loss_log.txt; a bigger one is not parsed for the plot
Series = dict[str, tuple[list[int], list[float]]]  # loss name: (total_iters, values)


def read_losses(run_dir: str) -> Series:
    """{loss name: (total_iters, values)} of a run, from its losses.jsonl. A run begun before losses.jsonl (so
    its first records come later) gets its earlier history from loss_log.txt, if that is at most
    LEGACY_LOG_MAX_BYTES."""
    records = run_log.read(os.path.join(run_dir, run_log.LOSSES_FILE), run_log.LOSS)
    first = records[0]["total_iters"] if records else math.inf
    earlier: Series = {}
    legacy = os.path.join(run_dir, "loss_log.txt")
    if first_logged_iter(legacy) < first and os.path.getsize(legacy) <= LEGACY_LOG_MAX_BYTES:
        steps, losses = read_loss_log(legacy)
        for name, values in losses.items():
            kept = [(t, v) for t, v in zip(steps, values, strict=False) if t < first]
            earlier[name] = ([t for t, _ in kept], [v for _, v in kept])
    series = loss_series(records)
    for name, (steps, values) in earlier.items():
        later = series.get(name, ([], []))
        series[name] = (steps + later[0], values + later[1])
    return series


def first_logged_iter(path: str) -> float:
    """total_iters of loss_log.txt's first loss line (inf without one): reads only up to that line."""
    if not os.path.exists(path):
        return math.inf
    with open(path, errors="replace") as f:
        for line in f:
            m = _LINE.search(line)
            if m:
                return int(m.group(3))
    return math.inf


def loss_series(records: list[dict]) -> Series:
    """The loss records' values by name, each with the total_iters it was printed at; a restarted run's records
    are kept in order."""
    series: Series = {}
    for r in records:
        for name, value in r.get("losses", {}).items():
            steps, values = series.setdefault(name, ([], []))
            steps.append(r["total_iters"])
            values.append(math.nan if value is None else float(value))
    return series


def read_loss_log(path: str) -> tuple[list[int], dict[str, list[float]]]:
    """(total_iters per line, {loss name: values}) from loss_log.txt; a restarted run's lines are kept in order.
    For runs from before losses.jsonl only: newer runs are read from that."""
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
    """val_log.jsonl's records; a line that is not one (torn by a killed run, or being written) is left out."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [r for r in map(_record, f) if r is not None]


def _record(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def plotted_metrics(metrics: dict) -> list[str]:
    """The validation metrics that get a curve (the page, visdom, TensorBoard, W&B): not the image count n, not
    the per-scale swd_* parts of swd."""
    return [k for k in metrics if k != "n" and not k.startswith("swd_")]


def plot_training(run_dir: str, out_path: str) -> str | None:
    """Write a PNG of the losses (and validation metrics, if any, each on its own axes) against total iterations;
    None if no data."""
    series = read_losses(run_dir)
    val = read_val_log(os.path.join(run_dir, "val_log.jsonl"))
    metric_names = plotted_metrics(val[0]["metrics"]) if val else []
    if not series and not metric_names:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, axes = _figure(plt, bool(series), len(metric_names))
    if series:
        _plot_losses(axes[0], series)
    for ax, name in zip(axes[bool(series) :], metric_names, strict=True):
        _plot_metric(ax, name, val)
    axes[-1].set_xlabel("iteration (total_iters)")
    try:  # atomically, never through a link, WriteFailed on a full disk
        atomic_write(out_path, lambda f: fig.savefig(f, dpi=90, format="png"))
    finally:
        plt.close(fig)
    return out_path


def _figure(plt, losses: bool, n_metrics: int):
    """A figure of one column: a tall panel for the losses (if any), a shorter one per metric; x shared."""
    heights = [3.2] * losses + [1.9] * n_metrics  # inches: the losses get the biggest panel
    # Constrained layout leaves room for the legends outside the axes; shared x lines the panels up.
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(9, 0.4 + sum(heights)),
        sharex=True,
        squeeze=False,
        layout="constrained",
        gridspec_kw={"height_ratios": heights},
    )
    return fig, [row[0] for row in axes]


def _plot_losses(ax, series: Series) -> None:
    for name, (steps, values) in series.items():
        ax.plot(steps, values, label=name, linewidth=1)
    # G_L1 (x lambda_L1) and the GAN losses differ by two orders of magnitude: a log axis shows both; some
    # GAN objectives (wgangp) go negative, and a symlog axis (linear near 0) still shows those.
    finite = [v for _, vs in series.values() for v in vs if math.isfinite(v)]
    if finite and min(finite) > 0:
        ax.set_yscale("log")
        ax.set_ylabel("loss (log scale)")
    else:
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_ylabel("loss (symlog: linear in ±1)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    ax.set_title("training losses (mean over each print_freq window)", fontsize=10)


def _plot_metric(ax, name: str, val: list[dict]) -> None:
    """One validation metric over the validations, its best marked when the metric has a better direction."""

    points = [(v["total_iters"], _number(v["metrics"].get(name))) for v in val]
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


def _number(v) -> float:
    return math.nan if v is None else float(v)
