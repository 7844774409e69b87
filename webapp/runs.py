"""The runs of a checkpoints folder as the app shows them: each run's summary, its snapshots, its curves and the
colours of its label maps; read from the files training writes, never written to."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from data.aligned_dataset import find_pairs
from data.image_io import BadImageError, load_image
from engine.inference import checkpoint_path
from engine.run_folder import latest_epoch
from metrics import HIGHER_IS_BETTER
from options.options import TrainOptions
from reporting.plots import read_losses, read_val_log
from util.config import OptionError

VAL_LOG = "val_log.jsonl"
_SNAPSHOT = re.compile(r"(?:(\d+)|iter_(\d+)|(best))_net_G\.pth")
# The canvas's colours: read from PALETTE_IMAGES training inputs, at most PALETTE_COLOURS (facades has 12 classes),
# from pixels within FLAT levels of their neighbours, clusters within MERGE levels joined, under MIN_SHARE dropped.
PALETTE_IMAGES, PALETTE_COLOURS, FLAT, MERGE, MIN_SHARE = 16, 20, 6, 16, 0.002


@dataclass(frozen=True)
class Run:
    """One run folder: what the run list shows of it."""

    name: str
    path: str
    options: dict  # train_opt.json's flat options ({} when it cannot be read)
    snapshots: tuple[str, ...]  # "latest", "best", "<epoch>", "iter_<N>": newest epoch first

    @property
    def netG(self) -> str:
        return self.options.get("netG", "?")

    @property
    def size(self) -> str:
        crop = self.options.get("crop_size")
        return f"{crop}x{crop}" if crop else "?"

    def epochs_done(self) -> int | None:
        """The epochs trained in full: latest.pth's (read without its tensors), else the newest epoch snapshot."""
        if os.path.exists(os.path.join(self.path, "latest.pth")):
            epoch = latest_epoch(os.path.join(self.path, "latest.pth"))
            if epoch is not None:
                return epoch - 1
        epochs = [int(s) for s in self.snapshots if s.isdigit()]
        return max(epochs) if epochs else None

    def best(self) -> tuple[str, float, int] | None:
        """(metric, value, epoch) of the best validation score in val_log.jsonl, by the run's --best_metric."""
        metric = best_metric(self.options)
        scored = [
            (r["metrics"][metric], r["epoch"])
            for r in read_val_log(os.path.join(self.path, VAL_LOG))
            if "epoch" in r and _finite(r.get("metrics", {}).get(metric))
        ]
        if not scored:
            return None
        value, epoch = (max if HIGHER_IS_BETTER.get(metric, True) else min)(scored, key=lambda s: s[0])
        return metric, float(value), int(epoch)

    def describe(self) -> str:
        best = self.best()
        shown = f"{best[0]} {best[1]:.4g} (epoch {best[2]})" if best else "no validation"
        done = self.epochs_done()
        return f"{self.netG}, {self.size}, {'epoch ' + str(done) if done else 'no epoch done yet'}, {shown}"

    def snapshot_file(self, snapshot: str) -> str:
        """The checkpoint file of a snapshot name (checkpoint_path's rules: latest.pth, best_net_G.pth, ...)."""
        if snapshot.startswith("iter_"):
            return checkpoint_path(self.path, "latest", int(snapshot[len("iter_") :]))[0]
        return checkpoint_path(self.path, snapshot, 0)[0]


def best_metric(options: dict) -> str:
    """The run's --best_metric (by default the first of its --metrics), as validation chose best_net_G.pth."""
    try:
        return TrainOptions.from_flat(options).metrics.best_metric_name
    except (OptionError, TypeError, ValueError):  # options of another version: the metric validation defaults to
        return TrainOptions().metrics.best_metric_name


def _finite(v) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def list_runs(checkpoints_dir: str) -> list[Run]:
    """The runs under checkpoints_dir, by name: folders with latest.pth or a generator snapshot. Temp files of
    writes in progress are never listed (their names end in .tmp), so a run being trained shows its latest
    complete files."""
    try:
        names = sorted(os.listdir(checkpoints_dir))
    except FileNotFoundError:
        return []
    return [run for run in (read_run(checkpoints_dir, name) for name in names) if run is not None]


def read_run(checkpoints_dir: str, name: str) -> Run | None:
    """The run checkpoints_dir/name, or None when there is none (no such folder, no generator file in it)."""
    path = os.path.join(checkpoints_dir, name)
    if not name or name in (".", "..") or os.sep in name or not os.path.isdir(path):
        return None
    snaps = snapshots(path)
    return Run(name, path, read_options(path), snaps) if snaps else None


def snapshots(run_dir: str) -> tuple[str, ...]:
    """The run's generator files by name: latest (latest.pth, or a reference run's latest_net_G.pth), best, then
    epoch snapshots newest first, then iteration snapshots newest first."""
    files = set(os.listdir(run_dir))
    epochs, iters, found = [], [], []
    if "latest.pth" in files or "latest_net_G.pth" in files:
        found.append("latest")
    for f in files:
        m = _SNAPSHOT.fullmatch(f)
        if m and m.group(1):
            epochs.append(int(m.group(1)))
        elif m and m.group(2):
            iters.append(int(m.group(2)))
        elif m:
            found.append("best")
    found += [str(e) for e in sorted(epochs, reverse=True)]
    return tuple(found + [f"iter_{i}" for i in sorted(iters, reverse=True)])


def read_options(run_dir: str) -> dict:
    """train_opt.json's options (flat), or {} for a run without one (a reference run's folder)."""
    try:
        with open(os.path.join(run_dir, "train_opt.json")) as f:
            return dict(json.load(f).get("options", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def curves(run_dir: str) -> tuple[dict[str, tuple[list[int], list[float]]], list[dict]]:
    """(loss series by name, validation records) from the run's logs, as the training page plots them."""
    return read_losses(run_dir), read_val_log(os.path.join(run_dir, VAL_LOG))


def label_palette(options: dict, seed: int = 0) -> list[tuple[int, int, int]] | None:
    """The colours of the run's training inputs (the input side of --direction), most used first: at most
    PALETTE_COLOURS, read from up to PALETTE_IMAGES inputs. For a label map these are its classes' colours. None
    when the inputs are not 3-channel or not on this machine."""
    dataroot, phase = options.get("dataroot"), options.get("phase", "train")
    if not dataroot or options.get("input_nc", 3) != 3:
        return None
    try:
        pairs = find_pairs(dataroot, phase, None)
    except (FileNotFoundError, OSError):
        return None
    pick = np.random.default_rng(seed).permutation(len(pairs))[:PALETTE_IMAGES]
    pixels = []
    for i in sorted(pick):
        try:
            pixels.append(flat_pixels(_input_half(pairs[i], options.get("direction", "AtoB"))))
        except (BadImageError, OSError, ValueError):
            continue
    return palette_of(np.concatenate(pixels)) if pixels else None


def _input_half(pair: tuple[str, str | None], direction: str) -> np.ndarray:
    """The input half of a training pair as (H, W, 3) uint8 RGB."""
    left, right = pair
    a = np.asarray(load_image(right if right and direction == "BtoA" else left, 3))
    if right is None:
        half = a.shape[1] // 2
        a = a[:, half : 2 * half] if direction == "BtoA" else a[:, :half]
    return a


def flat_pixels(a: np.ndarray) -> np.ndarray:
    """(N, 3) int64: the pixels of a (H, W, 3) image that differ by at most FLAT from their right and lower
    neighbours, every other one. A label map's class interiors, not the blends at its edges (anti-aliasing, JPEG)."""
    a = a.astype(np.int64)
    right = np.abs(a[:-1, 1:] - a[:-1, :-1]).max(axis=2)
    down = np.abs(a[1:, :-1] - a[:-1, :-1]).max(axis=2)
    flat = (right <= FLAT) & (down <= FLAT)
    flat[1::2] = False
    return a[:-1, :-1][flat]


def palette_of(pixels: np.ndarray) -> list[tuple[int, int, int]]:
    """The main colours of (N, 3) int64 RGB pixels, most used first: median-cut clusters, each named by its most
    frequent exact colour (a class colour, not an average of JPEG noise around it); clusters whose colours are
    within MERGE levels are one; clusters under MIN_SHARE of the pixels are left out."""
    if not len(pixels):
        return []
    img = Image.fromarray(pixels.reshape(-1, 1, 3).astype(np.uint8))
    cluster = np.asarray(img.quantize(64, method=Image.Quantize.MEDIANCUT)).reshape(-1)
    codes = pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2]
    found: list[list] = []  # [rgb array, pixel count], most used first
    for c in np.unique(cluster):
        values, counts = np.unique(codes[cluster == c], return_counts=True)
        mode = int(values[counts.argmax()])
        found.append([np.array([mode >> 16, mode >> 8 & 255, mode & 255]), int(counts.sum())])
    merged: list[list] = []
    for rgb, n in sorted(found, key=lambda f: -f[1]):
        near = next((m for m in merged if np.abs(m[0] - rgb).max() <= MERGE), None)
        if near is None:
            merged.append([rgb, n])
        else:
            near[1] += n
    merged.sort(key=lambda m: -m[1])
    kept = [m for m in merged if m[1] >= MIN_SHARE * len(pixels)][:PALETTE_COLOURS]
    return [(int(r), int(g), int(b)) for (r, g, b), _ in kept]
