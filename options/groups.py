"""The option groups of the scripts themselves (run, checkpoints, display, metrics, testing, translate, export),
frozen like the consumer configs they sit beside: models.config (generator, discriminator, init, speed, loss,
optim) and data.config (data, preprocess, augment), which options.options composes into each script's flags."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import ClassVar

import torch

from data.config import plain_name
from metrics import METRICS, MetricList
from options.presets import PRESETS
from util.config import Config, arg, need
from util.distributed import DeviceIds


@dataclass(frozen=True)
class BasicOptions(Config):
    key: ClassVar[str] = "basic"
    title: ClassVar[str] = "basic"

    name: str = arg("experiment_name", "run name; files go to checkpoints_dir/name")
    checkpoints_dir: str = arg("./checkpoints", "where runs are stored")
    gpu_ids: DeviceIds | None = arg(
        None, "comma-separated CUDA device ids, -1 for the CPU (default: CUDA 0 if available, else CPU)"
    )
    model: str = arg("pix2pix", "accepted for reference compatibility", choices=("pix2pix",))
    verbose: bool = arg(False, "print network structures and debug messages")
    progress_every: float = arg(
        60.0, "seconds between progress lines (speed, elapsed, ETA) when the output is not a terminal", positive=True
    )

    def check(self) -> None:
        plain_name("name", self.name, "facades")
        ids = self.gpu_ids
        if ids:
            need(
                torch.cuda.is_available(),
                f"--gpu_ids {self.gpu_ids}: CUDA is not available on this machine; use --gpu_ids -1 for the CPU",
            )
            n = torch.cuda.device_count()
            need(
                all(i < n for i in ids),
                f"--gpu_ids {self.gpu_ids}: this machine has {n} CUDA device(s), ids 0..{n - 1}",
            )


@dataclass(frozen=True)
class MetricOptions(Config):
    key: ClassVar[str] = "metrics"
    title: ClassVar[str] = "metrics"

    metrics: MetricList = arg(
        MetricList(("psnr", "ssim")), f"comma-separated: {', '.join(METRICS)} (see docs/metrics.md)"
    )
    fid_weights: str | None = arg(None, "local InceptionV3 weights file for fid and kid (default: the torch hub cache)")
    lpips_weights: str | None = arg(None, "local backbone weights file for lpips (default: the torch hub cache)")

    def check(self) -> None:
        for flag in ("fid_weights", "lpips_weights"):
            path = getattr(self, flag)
            need(path is None or os.path.isfile(path), f"--{flag} {path}: no such file")


@dataclass(frozen=True)
class ValidationOptions(MetricOptions):
    title: ClassVar[str] = "metrics and validation"

    val_phase: str | None = arg(
        None, "validate on dataroot/<val_phase>, e.g. val (default: no validation folder)", resume="source"
    )
    val_split: float = arg(
        0.0,
        "hold out this seeded fraction of the training images for validation (when there is no val folder)",
        lo=0,
        below=1,
        resume="source",
    )
    val_freq: int = arg(1, "validate every N epochs", lo=1)
    val_max: int | None = arg(None, "validate on at most N images (default: all)", lo=1)
    best_metric: str | None = arg(
        None, "keep best_net_G.pth by this validation metric (default: the first of --metrics)"
    )

    def check(self) -> None:
        super().check()
        need(not (self.val_phase and self.val_split), "--val_phase and --val_split: give one, not both")
        if self.val_phase is not None:
            plain_name("val_phase", self.val_phase, "val")
        need(bool(self.metrics), f"--metrics: name at least one of {', '.join(METRICS)}")
        need(
            self.best_metric is None or self.best_metric in self.metrics,
            f"--best_metric {self.best_metric}: must be one of --metrics ({', '.join(self.metrics)})",
        )

    @property
    def best_metric_name(self) -> str:
        """--best_metric, or the first of --metrics."""
        return self.best_metric or self.metrics[0]


@dataclass(frozen=True)
class TestMetricOptions(MetricOptions):
    sort_by: str | None = arg(
        None, "order the page's rows by this per-image metric, worst first (default: file name order)"
    )
    score_input: bool = arg(
        False,
        "also score real_A itself against real_B, the no-op baseline the model must beat (always on for a "
        "--residual generator, whose input and output are alike)",
    )

    def check(self) -> None:
        super().check()
        per_image = self.metrics.per_image
        need(
            self.sort_by is None or self.sort_by in per_image,
            f"--sort_by {self.sort_by}: must be a per-image metric of --metrics ({', '.join(per_image) or 'none'})",
        )


@dataclass(frozen=True)
class RunOptions(Config):
    key: ClassVar[str] = "run"
    title: ClassVar[str] = "training"

    seed: int | None = arg(None, "random seed (default: drawn at random and saved)", lo=0, below=2**63)
    preset: str = arg(
        "none",
        "a measured group of flags for a task type (docs/going-to-512.md); flags given on the command line win",
        choices=("none", *PRESETS),
    )
    pool_size: int = arg(0, "accepted for reference compatibility; must be 0")
    accum_steps: int = arg(
        1, "accumulate gradients over K batches per optimiser step (effective batch K x batch_size)", lo=1
    )
    stop_after_iters: int = arg(
        0, "stop after this many iterations in this process, saving latest (0 = run to the end)", lo=0
    )

    def check(self) -> None:
        need(self.pool_size == 0, f"--pool_size {self.pool_size}: pix2pix uses no image pool; only 0 is accepted")


@dataclass(frozen=True)
class CheckpointOptions(Config):
    key: ClassVar[str] = "checkpoints"
    title: ClassVar[str] = "checkpoints and resume"

    continue_train: bool = arg(
        False,
        "resume from checkpoints_dir/name/latest.pth; the data options left out are the checkpoint's",
    )
    new_data: bool = arg(
        False,
        "with --continue_train: continue on other data (another --dataroot, --phase, --max_dataset_size ...) than "
        "the checkpoint's; each change is warned about and recorded in train_opt.json, and an epoch the checkpoint "
        "was in the middle of restarts on the new data",
    )
    start_over: bool = arg(
        False,
        "start a new run under a --name whose folder holds a run: its files are moved aside, into a new folder "
        "NAME.old-<date>-<time> beside it, never deleted (without this train.py refuses such a folder, naming the run)",
    )
    init_from: str | None = arg(
        None,
        "start from another run's weights (a latest.pth or *_net_G.pth), loading every tensor whose name and shape "
        "match (e.g. a unet_256 into a unet_512) with fresh optimisers; what is skipped is listed",
    )
    epoch: str = arg(
        "latest",
        "with --continue_train: latest resumes the full state; a number N starts from the generator snapshot "
        "N_net_G.pth at epoch N+1 (the discriminator and optimisers start afresh)",
    )
    save_latest_freq: int = arg(5000, "save latest every N iterations", lo=1)
    save_epoch_freq: int = arg(5, "save a generator snapshot every N epochs", lo=1)
    save_by_iter: bool = arg(False, "also keep iter_<N>_net_G.pth at each latest save")
    keep_last: int = arg(0, "keep only the newest N snapshots (0 = keep all)", lo=0)

    def check(self) -> None:
        need(self.epoch == "latest" or self.epoch.isdigit(), f"--epoch {self.epoch!r}: must be 'latest' or a number")
        if self.init_from is not None:
            need(os.path.isfile(self.init_from), f"--init_from {self.init_from}: no such file")
            need(not self.continue_train, "--init_from starts a new run; it cannot be used with --continue_train")
        need(not self.new_data or self.continue_train, "--new_data applies to --continue_train only")
        need(not (self.start_over and self.continue_train), "--start_over starts a new run; --continue_train resumes")


@dataclass(frozen=True)
class TestingOptions(Config):
    key: ClassVar[str] = "testing"
    title: ClassVar[str] = "testing"

    results_dir: str = arg(
        "./results",
        "where result pages are written: results_dir/NAME/PHASE_EPOCH must be empty or new, and outside "
        "--dataroot (test.py never replaces a file; remove an earlier run's results first)",
    )
    num_test: int | None = arg(None, "translate at most N images (default: all)", lo=1)
    aspect_ratio: float = arg(1.0, "width/height of saved result images", lo=0.01, hi=100)
    display_winsize: int = arg(256, "image width on the HTML page", lo=1)


@dataclass(frozen=True)
class CheckpointFileOptions(Config):
    key: ClassVar[str] = "checkpoint_file"
    title: ClassVar[str] = "checkpoint file"

    checkpoint: str | None = arg(
        None,
        "a generator file to use instead of --checkpoints_dir/--name/--epoch: latest.pth, *_net_G.pth, an exported "
        ".safetensors, or a reference implementation's *_net_G.pth",
    )

    def check(self) -> None:
        if self.checkpoint is not None:
            need(os.path.isfile(self.checkpoint), f"--checkpoint {self.checkpoint}: no such file")


@dataclass(frozen=True)
class TranslateGroup(Config):
    key: ClassVar[str] = "translate"
    title: ClassVar[str] = "images in, images out"

    inputs: list[str] = arg(
        None,
        "image files, folders (searched recursively) or glob patterns: plain images, not A|B pairs",
        positional=True,
    )
    out: str | None = arg(
        None,
        "folder for the results, one per input under its file name (required; a folder, not an image file's name). "
        "Nothing is written over: if a result's path exists (an input, an earlier run's result, a link), "
        "translate.py stops before any work (exit 2). Images under it are never read as inputs",
    )
    batch_size: int = arg(
        4,
        "images of the same size per batch (1 in train-mode testing with batch norm, whose statistics are per batch)",
        lo=1,
    )
    tile: int | None = arg(
        None,
        "translate in tiles of TILE x TILE pixels (a multiple of the network's size multiple): for images too "
        "large for memory; images over Pillow's decompression-bomb limit are then read, up to 2**30 pixels",
        lo=1,
    )
    overlap: int = arg(
        32, "with --tile: pixels by which neighbouring tiles overlap, blended with a smooth window", lo=0
    )

    def check(self) -> None:
        need(self.out is not None, "--out DIR: the folder for the results is required")
        if self.tile is not None:
            need(self.overlap < self.tile, f"--overlap {self.overlap}: must be smaller than --tile {self.tile}")


@dataclass(frozen=True)
class AppGroup(Config):
    key: ClassVar[str] = "app"
    title: ClassVar[str] = "the browser app"

    checkpoints_dir: str = arg(BasicOptions.checkpoints_dir, "the runs to offer: each folder in it is one run")
    host: str = arg(
        "127.0.0.1",
        "address to serve on: 127.0.0.1 is this machine only; 0.0.0.0 lets every machine that reaches this one in "
        "(the app has no login)",
    )
    port: int = arg(7860, "port to serve on", lo=1, hi=65535)
    device: str | None = arg(None, "cpu, cuda or cuda:N (default: CUDA if available, else the CPU)")
    cache_size: int = arg(
        2, "generators kept loaded (one per run and snapshot; the least recently used is dropped)", lo=1
    )
    tile: int = arg(
        1024,
        "images with a side over TILE pixels are translated in TILE x TILE tiles, as translate.py --tile TILE",
        lo=64,
    )
    overlap: int = arg(TranslateGroup.overlap, "pixels by which neighbouring tiles overlap", lo=0)
    max_pixels: int = arg(
        64 * 2**20, "the largest image accepted, in pixels (a larger upload gets a message, not a translation)", lo=1
    )

    def check(self) -> None:
        need(self.overlap < self.tile, f"--overlap {self.overlap}: must be smaller than --tile {self.tile}")
        d = self.device
        need(
            d is None or d == "cpu" or re.fullmatch(r"cuda(:\d+)?", d) is not None,
            f"--device {d}: must be cpu, cuda or cuda:N",
        )


EXPORT_FORMATS = ("onnx", "torchscript", "safetensors")


@dataclass(frozen=True)
class ExportGroup(Config):
    key: ClassVar[str] = "export"
    title: ClassVar[str] = "export"

    format: str = arg(
        "onnx",
        "onnx and torchscript: the network with dynamic height and width; safetensors: "
        "the weights and the run's options, no pickle",
        choices=EXPORT_FORMATS,
    )
    out: str | None = arg(
        None,
        "output file (default: beside the checkpoint, its name with .onnx / .pt / .safetensors): a new file with "
        "--format's extension, outside other runs' folders; an existing file is refused (exit 2), never replaced",
    )
    opset: int = arg(18, "ONNX opset (18 or newer: the exporter cannot convert down)", lo=18)
