"""The option groups: one dataclass per group of flags, each field with its type, default, help and bounds."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from models.networks import DOWNSAMPLE_MODES, NETG_CHOICES, UPSAMPLE_MODES, size_multiple, unet_depth

RESIZE_FILTERS = ("bicubic", "bilinear", "lanczos", "nearest")
PREPROCESS_CHOICES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
CROP_PREPROCESS = ("resize_and_crop", "crop", "scale_width_and_crop")


class OptionError(ValueError):
    """A bad option value; the message starts with the flag and says what is valid."""


def arg(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    lo: float | None = None,
    below: float | None = None,
    hi: float | None = None,
    positive: bool = False,
    note: str = "",
    unet_only: bool = False,
    positional: bool = False,
) -> Any:
    """A dataclass field that is also a flag: default, help and, for numbers, bounds (lo <= v, v < below,
    v <= hi, or positive: v > 0), all checked once by check_bounds; note follows the bound in the message.
    unet_only: a value other than the default is refused with a ResNet generator. positional: a list of one or
    more values without a flag. The flag's type is the field's annotation."""
    meta = {"help": help, "choices": choices, "lo": lo, "below": below, "hi": hi, "positive": positive, "note": note}
    meta.update(unet_only=unet_only, positional=positional)
    return field(default=default, metadata=meta)


def need(cond: bool, msg: str) -> None:
    if not cond:
        raise OptionError(msg)


def plain_name(flag: str, value: str, examples: str) -> None:
    need(
        value not in ("", ".", "..") and "/" not in value and "\\" not in value,
        f"--{flag} {value!r}: must be a plain folder name such as {examples}",
    )


class Group:
    """Base of the groups. key: the group's name in saved options; title: its heading in --help.
    check(o): cross-field rules of this group; o is the whole option set (a TrainOptions or TestOptions)."""

    key: ClassVar[str]
    title: ClassVar[str]

    def check(self, o: Any) -> None:
        """Rules that involve more than one field's bounds; the default has none."""


@dataclass
class BasicOptions(Group):
    key: ClassVar[str] = "basic"
    title: ClassVar[str] = "basic"

    name: str = arg("experiment_name", "run name; files go to checkpoints_dir/name")
    checkpoints_dir: str = arg("./checkpoints", "where runs are stored")
    gpu_ids: str | None = arg(
        None, "comma-separated CUDA device ids, -1 for the CPU (default: CUDA 0 if available, else CPU)"
    )
    model: str = arg("pix2pix", "accepted for reference compatibility", choices=("pix2pix",))
    verbose: bool = arg(False, "print network structures and debug messages")
    progress_every: float = arg(
        60.0, "seconds between progress lines (speed, elapsed, ETA) when the output is not a terminal", positive=True
    )

    def check(self, o: Any) -> None:
        plain_name("name", self.name, "facades")
        ids = gpu_id_list(self.gpu_ids)  # raises OptionError on a bad list
        if ids:
            import torch

            need(
                torch.cuda.is_available(),
                f"--gpu_ids {self.gpu_ids}: CUDA is not available on this machine; use --gpu_ids -1 for the CPU",
            )
            n = torch.cuda.device_count()
            need(
                all(i < n for i in ids),
                f"--gpu_ids {self.gpu_ids}: this machine has {n} CUDA device(s), ids 0..{n - 1}",
            )
        need(
            o.norm != "syncbatch" or bool(ids),
            "--norm syncbatch: SyncBatchNorm runs on CUDA only; on the CPU use --norm batch or instance",
        )


def gpu_id_list(value: str | None) -> list[int]:
    """'0,1' -> [0, 1]; '-1' -> []; None -> [0] if CUDA is available else []."""
    if value is None:
        import torch

        return [0] if torch.cuda.is_available() else []
    try:
        ids = [int(v) for v in value.split(",") if v.strip() != ""]
    except ValueError:
        ids = [-2]  # reported below
    if any(i < -1 for i in ids) or (-1 in ids and len(ids) > 1):
        raise OptionError(
            f"--gpu_ids {value!r}: expected comma-separated integers such as 0 or 0,1 (CUDA ids, 0 or more), or -1 for "
            "the CPU"
        )
    return [i for i in ids if i >= 0]


@dataclass
class GeneratorOptions(Group):
    """Everything that defines the generator and what it translates; saved with the run, and test.py rebuilds
    the generator from the saved values (these flags on test.py's command line are ignored, with a warning)."""

    key: ClassVar[str] = "generator"
    title: ClassVar[str] = "generator (saved with the run; test.py rebuilds it from the checkpoint)"

    input_nc: int = arg(3, "channels of real_A", choices=(1, 3))
    output_nc: int = arg(3, "channels of real_B / fake_B", choices=(1, 3))
    direction: str = arg("AtoB", "AtoB: the left half is the input; BtoA: the right half", choices=("AtoB", "BtoA"))
    netG: str = arg("unet_256", "generator architecture", choices=NETG_CHOICES)
    ngf: int = arg(64, "generator filters in the first conv layer", lo=1)
    num_downs: int | None = arg(
        None,
        "U-Net depth (number of 2x downsamplings); overrides the depth of --netG unet_* (default: 7, 8, 9 for "
        "unet_128, unet_256, unet_512)",
        lo=5,
        note="(the U-Net has 5 fixed levels)",
    )
    norm: str = arg(
        "batch",
        "normalization layer of G and D; syncbatch shares batch statistics across torchrun processes (CUDA only)",
        choices=("batch", "instance", "none", "syncbatch"),
    )
    no_dropout: bool = arg(False, "no dropout in the generator")
    dropout: float = arg(0.5, "dropout rate of the U-Net's inner blocks", lo=0, below=1)
    upsample: str = arg(
        "transpose",
        "U-Net upsampling: the paper's transposed conv, or resize / sub-pixel then conv (no checkerboard)",
        choices=UPSAMPLE_MODES,
        unet_only=True,
    )
    downsample: str = arg(
        "conv",
        "U-Net downsampling: the paper's strided conv, or a binomial blur before it (anti-aliased)",
        choices=DOWNSAMPLE_MODES,
        unet_only=True,
    )
    attention: bool = arg(False, "attention gates on the U-Net's skip connections (Attention U-Net)", unet_only=True)
    max_mult: int = arg(
        8,
        "cap on the U-Net channel multiplier (inner blocks have ngf * max_mult channels; 8 in the paper)",
        lo=1,
        unet_only=True,
    )
    residual: bool = arg(
        False, "G predicts B - A and A is added back (for tasks where A and B are close, such as denoising)"
    )
    spectral_norm: str = arg(
        "none", "spectral normalisation on the convolutions of D, G or both", choices=("none", "D", "G", "both")
    )

    def check(self, o: Any) -> None:
        need(
            not self.residual or self.input_nc == self.output_nc,
            f"--residual adds real_A to G's output: --input_nc {self.input_nc} and --output_nc {self.output_nc} "
            "must match",
        )
        unet = self.netG.startswith("unet")
        need(self.num_downs is None or unet, f"--num_downs applies to U-Net generators only, not --netG {self.netG}")


@dataclass
class DiscriminatorOptions(Group):
    key: ClassVar[str] = "discriminator"
    title: ClassVar[str] = "discriminator"

    netD: str = arg(
        "basic",
        "basic = 70x70 PatchGAN; n_layers = PatchGAN with --n_layers_D; pixel = 1x1 PatchGAN",
        choices=("basic", "n_layers", "pixel"),
    )
    ndf: int = arg(64, "discriminator filters in the first conv layer", lo=1)
    n_layers_D: int = arg(3, "layers of the n_layers discriminator", lo=1)
    num_D: int = arg(1, "PatchGAN scales (2 or 3 as in pix2pixHD; each sees a half-size input)", lo=1)

    @property
    def patch_layers(self) -> int:
        """Stride-2 convs of the PatchGAN."""
        return {"basic": 3, "n_layers": self.n_layers_D, "pixel": 0}[self.netD]

    @property
    def min_side(self) -> int:
        """The smallest image side the discriminator takes: n stride-2 convs, then two 4x4 stride-1 convs that
        take 1 and 2 pixels off; with --num_D scales the coarsest one sees the input halved num_D - 1 times."""
        return 2 ** (self.patch_layers + 2) * 2 ** (self.num_D - 1)


@dataclass
class InitOptions(Group):
    key: ClassVar[str] = "init"
    title: ClassVar[str] = "weight initialisation"

    init_type: str = arg("normal", "weight initialization", choices=("normal", "xavier", "kaiming", "orthogonal"))
    init_gain: float = arg(0.02, "scale for normal, xavier and orthogonal init", positive=True)


@dataclass
class SpeedOptions(Group):
    key: ClassVar[str] = "speed"
    title: ClassVar[str] = "speed and memory"

    amp: str = arg(
        "none",
        "mixed precision (torch.autocast); fp16 adds a GradScaler per network. bf16 needs hardware support to be "
        "faster (most CPUs lack it)",
        choices=("none", "bf16", "fp16"),
    )
    channels_last: bool = arg(False, "NHWC memory layout (faster convs on GPUs)")


@dataclass
class TrainSpeedOptions(SpeedOptions):
    compile: bool = arg(False, "torch.compile the networks (falls back to eager)")
    grad_checkpoint: bool = arg(
        False,
        "recompute activations of the U-Net generator and the PatchGAN discriminator in the backward pass instead "
        "of storing them (less memory, more time)",
        unet_only=True,
    )


def default_threads() -> int:
    return min(4, os.cpu_count() or 1)


@dataclass
class DataOptions(Group):
    key: ClassVar[str] = "data"
    title: ClassVar[str] = "data"

    dataroot: str | None = arg(
        None,
        "folder with train/, test/ ... sub-folders of A|B images, or A/ and B/ folders (default: a small demo set "
        "built offline on first use under datasets/demo)",
    )
    dataset_mode: str = arg("aligned", "aligned pairs or A only", choices=("aligned", "single"))
    phase: str = arg("train", "sub-folder of --dataroot to read")
    batch_size: int = arg(1, "images per batch", lo=1)
    no_flip: bool = arg(False, "no random horizontal flips")
    num_threads: int = arg(default_threads(), "data loader worker processes (0 = main)", lo=0)
    serial_batches: bool = arg(False, "take images in order, not shuffled")
    skip_bad_images: bool = arg(
        False, "decode every image first and skip unreadable ones (default: stop at the first, naming it)"
    )
    max_bad_fraction: float = arg(
        0.05, "with --skip_bad_images, stop if more than this share of the images is unreadable", lo=0, below=1
    )
    max_dataset_size: int | None = arg(None, "use at most this many images (default: all)", lo=1)

    def check(self, o: Any) -> None:
        plain_name("phase", self.phase, "train, test or val")
        if self.dataroot is not None:
            need(os.path.isdir(self.dataroot), f"--dataroot {self.dataroot}: no such folder")


@dataclass
class TrainDataOptions(DataOptions):
    cache_images: bool = arg(
        False,
        "decode every training image once into shared memory that all loader workers read (resizing, cropping "
        "and flips stay per sample; the data order and resume are unchanged); stops at start if they do not fit",
    )


@dataclass
class TestDataOptions(DataOptions):
    """test.py's data flags: the same, with test.py's own --dataroot default and phase."""

    dataroot: str | None = arg(
        None,
        "folder with test/ ... sub-folders of A|B images, or A/ and B/ folders (default: the training run's "
        "--dataroot)",
    )
    phase: str = arg("test", "sub-folder of --dataroot to read")


@dataclass
class PreprocessOptions(Group):
    """How images are scaled and cropped; test.py inherits these from the training run unless given."""

    key: ClassVar[str] = "preprocess"
    title: ClassVar[str] = "preprocessing (test.py takes the training run's unless given)"

    load_size: int = arg(286, "scale images to this size before cropping", lo=1)
    crop_size: int = arg(256, "then crop to this size", lo=1)
    preprocess: str = arg("resize_and_crop", "how images are scaled and cropped", choices=PREPROCESS_CHOICES)
    filter_A: str = arg("bicubic", "resampling filter for real_A (input)", choices=RESIZE_FILTERS)
    filter_B: str = arg("bicubic", "resampling filter for real_B (target)", choices=RESIZE_FILTERS)

    def check(self, o: Any) -> None:
        check_sizes(self, o.netG, o.num_downs)


def check_sizes(p: PreprocessOptions, netG: str, num_downs: int | None) -> None:
    """Crops must fit the generator's depth and fit inside the loaded image (test.py calls this again with the
    training run's generator)."""
    if p.preprocess in CROP_PREPROCESS:
        m = size_multiple(netG, num_downs)
        if p.crop_size % m:
            lo, hi = (p.crop_size // m) * m, (p.crop_size // m + 1) * m
            valid = f"{lo} or {hi}" if lo > 0 else f"{hi}"
            depth = unet_depth(netG, num_downs)
            what = f"{netG} ({depth} downsamplings)" if depth else netG
            raise OptionError(
                f"--crop_size {p.crop_size} does not fit {what}: it must be a multiple of {m} "
                f"(for example {valid}), or use a generator with fewer downsamplings (--num_downs)"
            )
    if p.preprocess in ("resize_and_crop", "scale_width_and_crop"):
        need(
            p.crop_size <= p.load_size,
            f"--crop_size {p.crop_size} is larger than --load_size {p.load_size}: "
            f"the crop must fit inside the resized image (use --load_size >= {p.crop_size})",
        )


@dataclass
class MetricOptions(Group):
    key: ClassVar[str] = "metrics"
    title: ClassVar[str] = "metrics"

    metrics: str = arg("psnr,ssim", "comma-separated: psnr, ssim, lpips, fid, kid, swd (see docs/metrics.md)")
    fid_weights: str | None = arg(None, "local InceptionV3 weights file for fid and kid (default: the torch hub cache)")
    lpips_weights: str | None = arg(None, "local backbone weights file for lpips (default: the torch hub cache)")

    def check(self, o: Any) -> None:
        self.metric_list  # noqa: B018  (parses, raising OptionError on a bad name)
        for flag in ("fid_weights", "lpips_weights"):
            path = getattr(self, flag)
            need(path is None or os.path.isfile(path), f"--{flag} {path}: no such file")

    @property
    def metric_list(self) -> list[str]:
        from util.metrics import parse_metrics

        try:
            return parse_metrics(self.metrics)
        except ValueError as e:
            raise OptionError(f"--metrics {self.metrics!r}: {e}") from None

    @property
    def per_image_metrics(self) -> list[str]:
        return [m for m in self.metric_list if m in ("psnr", "ssim", "lpips")]


@dataclass
class ValidationOptions(MetricOptions):
    title: ClassVar[str] = "metrics and validation"

    val_phase: str | None = arg(None, "validate on dataroot/<val_phase>, e.g. val (default: no validation folder)")
    val_split: float = arg(
        0.0,
        "hold out this seeded fraction of the training images for validation (when there is no val folder)",
        lo=0,
        below=1,
    )
    val_freq: int = arg(1, "validate every N epochs", lo=1)
    val_max: int | None = arg(None, "validate on at most N images (default: all)", lo=1)
    best_metric: str | None = arg(
        None, "keep best_net_G.pth by this validation metric (default: the first of --metrics)"
    )

    def check(self, o: Any) -> None:
        MetricOptions.check(self, o)  # explicitly: super() would follow the flat class's order
        need(not (self.val_phase and self.val_split), "--val_phase and --val_split: give one, not both")
        if self.val_phase is not None:
            plain_name("val_phase", self.val_phase, "val")
        need(bool(self.metric_list), "--metrics: name at least one of psnr, ssim, lpips, fid, kid, swd")
        need(
            self.best_metric is None or self.best_metric in self.metric_list,
            f"--best_metric {self.best_metric}: must be one of --metrics ({', '.join(self.metric_list)})",
        )

    @property
    def best_metric_name(self) -> str:
        """--best_metric, or the first of --metrics."""
        return self.best_metric or self.metric_list[0]


@dataclass
class TestMetricOptions(MetricOptions):
    sort_by: str | None = arg(
        None, "order the page's rows by this per-image metric, worst first (default: file name order)"
    )
    score_input: bool = arg(
        False,
        "also score real_A itself against real_B, the no-op baseline the model must beat (always on for a "
        "--residual generator, whose input and output are alike)",
    )

    def check(self, o: Any) -> None:
        MetricOptions.check(self, o)
        per_image = self.per_image_metrics
        need(
            self.sort_by is None or self.sort_by in per_image,
            f"--sort_by {self.sort_by}: must be a per-image metric of --metrics ({', '.join(per_image) or 'none'})",
        )


@dataclass
class AugmentOptions(Group):
    key: ClassVar[str] = "augment"
    title: ClassVar[str] = "augmentation (off by default; same geometry for A and B)"

    aug_scale: float = arg(0.0, "random zoom in [1 - S, 1 + S]", lo=0, below=1)
    aug_rotate: float = arg(0.0, "random rotation in [-D, D] degrees", lo=0, hi=180, note="degrees")
    aug_color: float = arg(0.0, "brightness/contrast/saturation jitter (hue a quarter of it)", lo=0, hi=1)
    aug_color_on: str = arg("input", "jitter real_A only, or A and B alike", choices=("input", "both"))


@dataclass
class LossOptions(Group):
    key: ClassVar[str] = "loss"
    title: ClassVar[str] = "losses"

    gan_mode: str = arg("vanilla", "GAN objective", choices=("vanilla", "lsgan", "wgangp", "hinge"))
    lambda_L1: float = arg(100.0, "weight of the L1 loss", lo=0)
    lambda_gp: float = arg(10.0, "weight of the wgangp gradient penalty", lo=0)
    lambda_feat: float = arg(
        0.0, "weight of the discriminator feature-matching loss (pix2pixHD uses 10; 0 = off)", lo=0
    )
    lambda_vgg: float = arg(
        0.0,
        "weight of the VGG19 perceptual loss (pix2pixHD uses 10; 0 = off); needs --vgg_weights or the weights in "
        "the torch hub cache",
        lo=0,
    )
    vgg_weights: str | None = arg(
        None,
        "torchvision's ImageNet VGG19 state dict (vgg19-dcbb9e9d.pth) for --lambda_vgg, never downloaded "
        "(default: the torch hub cache)",
    )

    def check(self, o: Any) -> None:
        need(
            o.netD != "pixel" or (o.num_D == 1 and self.lambda_feat == 0),
            "--num_D and --lambda_feat need a PatchGAN (--netD basic or n_layers), not --netD pixel",
        )
        if self.lambda_vgg > 0:  # find the weights now, not after the data set has been scanned
            from models.perceptual import WeightsMissing, find_vgg_weights

            try:
                find_vgg_weights(self.vgg_weights)
            except WeightsMissing as e:
                raise OptionError(str(e)) from None


@dataclass
class OptimOptions(Group):
    key: ClassVar[str] = "optim"
    title: ClassVar[str] = "optimiser and learning rate"

    lr: float = arg(0.0002, "initial Adam learning rate", positive=True)
    lr_D: float | None = arg(None, "the discriminator's learning rate (default: --lr)", positive=True)
    beta1: float = arg(0.5, "Adam beta1", lo=0, below=1)
    weight_decay: float = arg(0.0, "Adam weight decay (L2) for G and D", lo=0)
    ema_decay: float = arg(
        0.0,
        "keep an exponential moving average of G's weights with this decay (e.g. 0.999; 0 = off); test.py uses it "
        "when the checkpoint has one",
        lo=0,
        below=1,
    )
    n_epochs: int = arg(100, "epochs at the initial learning rate", lo=0)
    n_epochs_decay: int = arg(100, "epochs of linear decay (the rate reaches 0 one epoch after the last)", lo=0)
    lr_policy: str = arg("linear", "lr schedule", choices=("linear", "step", "cosine"))
    lr_decay_iters: int = arg(50, "step policy: multiply lr by 0.1 every N epochs", lo=1)
    epoch_count: int = arg(1, "first epoch number of a new run", lo=1)

    def check(self, o: Any) -> None:
        need(self.n_epochs + self.n_epochs_decay >= 1, "--n_epochs + --n_epochs_decay: must be at least 1 epoch")

    @property
    def last_epoch(self) -> int:
        return self.n_epochs + self.n_epochs_decay


@dataclass
class RunOptions(Group):
    key: ClassVar[str] = "run"
    title: ClassVar[str] = "training"

    seed: int | None = arg(None, "random seed (default: drawn at random and saved)", lo=0, below=2**63)
    pool_size: int = arg(0, "accepted for reference compatibility; must be 0")
    accum_steps: int = arg(
        1, "accumulate gradients over K batches per optimiser step (effective batch K x batch_size)", lo=1
    )
    skip_nonfinite: bool = arg(
        False, "skip (and count) steps whose loss is NaN or inf instead of stopping; costs a host sync per step"
    )
    stop_after_iters: int = arg(
        0, "stop after this many iterations in this process, saving latest (0 = run to the end)", lo=0
    )

    def check(self, o: Any) -> None:
        need(self.pool_size == 0, f"--pool_size {self.pool_size}: pix2pix uses no image pool; only 0 is accepted")
        need(o.dataset_mode == "aligned", "--dataset_mode single has no targets; it is for test.py only")
        need(not (self.accum_steps > 1 and self.skip_nonfinite), "--skip_nonfinite works with --accum_steps 1 only")
        if o.preprocess in CROP_PREPROCESS:  # other preprocessing: checked per image (check_min_size)
            n, need_px = o.patch_layers, o.min_side
            need(
                o.crop_size >= need_px,
                f"--crop_size {o.crop_size} is too small for --netD {o.netD} with {n} layers and --num_D {o.num_D}: "
                f"it needs at least {need_px} pixels (or fewer --n_layers_D / --num_D)",
            )


@dataclass
class CheckpointOptions(Group):
    key: ClassVar[str] = "checkpoints"
    title: ClassVar[str] = "checkpoints and resume"

    continue_train: bool = arg(False, "resume from checkpoints_dir/name/latest.pth")
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

    def check(self, o: Any) -> None:
        need(self.epoch == "latest" or self.epoch.isdigit(), f"--epoch {self.epoch!r}: must be 'latest' or a number")
        if self.init_from is not None:
            need(os.path.isfile(self.init_from), f"--init_from {self.init_from}: no such file")
            need(not self.continue_train, "--init_from starts a new run; it cannot be used with --continue_train")


@dataclass
class DisplayOptions(Group):
    """Logging and display. logger is the one field the code reads for TensorBoard or W&B; the reference's
    --use_wandb is resolved into it once, in check (--use_wandb == --logger wandb)."""

    key: ClassVar[str] = "display"
    title: ClassVar[str] = "logging and display"

    print_freq: int = arg(100, "log losses every N iterations", lo=1)
    display_freq: int = arg(400, "show images in visdom every N iterations", lo=1)
    update_html_freq: int = arg(1000, "add images to the HTML page every N iterations", lo=1)
    no_html: bool = arg(False, "do not write checkpoints_dir/name/web/")
    display_id: int = arg(1, "visdom window id; 0 turns visdom off")
    display_server: str = arg("http://localhost", "visdom server")
    display_port: int = arg(8097, "visdom port", lo=0, hi=65535)
    display_env: str = arg("main", "visdom environment")
    display_winsize: int = arg(256, "visdom image size", lo=1)
    display_ncols: int = arg(3, "images per row in visdom")
    logger: str = arg(
        "none",
        "also log losses, validation scores and images to TensorBoard (checkpoints_dir/name/tensorboard) or to "
        "Weights & Biases (project --wandb_project_name; WANDB_MODE=offline logs locally)",
        choices=("none", "tensorboard", "wandb"),
    )
    use_wandb: bool = arg(False, "the reference's flag: the same as --logger wandb")
    wandb_project_name: str = arg("CycleGAN-and-pix2pix", "Weights & Biases project of --logger wandb")

    def check(self, o: Any) -> None:
        if self.use_wandb:  # resolved here, once: the rest of the code reads only logger
            need(
                self.logger in ("none", "wandb"),
                f"--use_wandb means --logger wandb; it cannot be combined with --logger {self.logger}",
            )
            self.logger = "wandb"
        if self.logger == "tensorboard":
            try:
                import torch.utils.tensorboard  # noqa: F401
            except ImportError:
                raise OptionError(
                    "--logger tensorboard: the tensorboard package is not installed (pip install tensorboard)"
                ) from None
        if self.logger == "wandb":
            flag = "--use_wandb" if self.use_wandb else "--logger wandb"
            try:
                import wandb  # noqa: F401
            except Exception as e:  # not installed, or installed but broken (a protobuf it cannot use, say)
                missing = isinstance(e, ImportError) and e.name == "wandb"
                why = "is not installed" if missing else f"cannot be imported ({type(e).__name__}: {e})"
                raise OptionError(f"{flag}: the wandb package {why} (pip install wandb)") from None
            need(self.wandb_project_name.strip() != "", "--wandb_project_name: must not be empty")


@dataclass
class SourceOptions(Group):
    """Which generator of a run, and how it runs (test.py, translate.py, export.py)."""

    key: ClassVar[str] = "source"
    title: ClassVar[str] = "which generator"

    seed: int = arg(0, "seed for dropout and the batch statistics of train-mode testing", lo=0, below=2**63)
    epoch: str = arg("latest", "which checkpoint: latest, best or an epoch number")
    load_iter: int = arg(0, "load iter_<N>_net_G.pth instead of --epoch", lo=0)
    eval: bool = arg(False, "eval mode: running batch-norm stats, no dropout")
    no_ema: bool = arg(False, "use the trained G even if the checkpoint has an EMA")

    def check(self, o: Any) -> None:
        need(
            self.epoch in ("latest", "best") or self.epoch.isdigit(),
            f"--epoch {self.epoch!r}: must be 'latest', 'best' or a number",
        )


@dataclass
class TestingOptions(Group):
    key: ClassVar[str] = "testing"
    title: ClassVar[str] = "testing"

    results_dir: str = arg("./results", "where result pages are written")
    num_test: int | None = arg(None, "translate at most N images (default: all)", lo=1)
    aspect_ratio: float = arg(1.0, "width/height of saved result images", lo=0.01, hi=100)
    display_winsize: int = arg(256, "image width on the HTML page", lo=1)


@dataclass
class CheckpointFileOptions(Group):
    key: ClassVar[str] = "checkpoint_file"
    title: ClassVar[str] = "checkpoint file"

    checkpoint: str | None = arg(
        None,
        "a generator file to use instead of --checkpoints_dir/--name/--epoch: latest.pth, *_net_G.pth, an exported "
        ".safetensors, or a reference implementation's *_net_G.pth",
    )

    def check(self, o: Any) -> None:
        if self.checkpoint is not None:
            need(os.path.isfile(self.checkpoint), f"--checkpoint {self.checkpoint}: no such file")


@dataclass
class TranslateGroup(Group):
    key: ClassVar[str] = "translate"
    title: ClassVar[str] = "images in, images out"

    inputs: list[str] = arg(
        None,
        "image files, folders (searched recursively) or glob patterns: plain images, not A|B pairs",
        positional=True,
    )
    out: str | None = arg(None, "folder for the results, one per input under its file name (required)")
    batch_size: int = arg(
        4,
        "images of the same size per batch (1 in train-mode testing with batch norm, whose statistics are per batch)",
        lo=1,
    )
    tile: int | None = arg(
        None,
        "translate in tiles of TILE x TILE pixels (a multiple of the network's size multiple): for images too "
        "large for memory",
        lo=1,
    )
    overlap: int = arg(
        32, "with --tile: pixels by which neighbouring tiles overlap, blended with a smooth window", lo=0
    )

    def check(self, o: Any) -> None:
        need(self.out is not None, "--out DIR: the folder for the results is required")
        if self.tile is not None:
            need(self.overlap < self.tile, f"--overlap {self.overlap}: must be smaller than --tile {self.tile}")


EXPORT_FORMATS = ("onnx", "torchscript", "safetensors")


@dataclass
class ExportGroup(Group):
    key: ClassVar[str] = "export"
    title: ClassVar[str] = "export"

    format: str = arg(
        "onnx",
        "onnx and torchscript: the network with dynamic height and width; safetensors: "
        "the weights and the run's options, no pickle",
        choices=EXPORT_FORMATS,
    )
    out: str | None = arg(
        None, "output file (default: beside the checkpoint, its name with .onnx / .pt / .safetensors)"
    )
    opset: int = arg(18, "ONNX opset (18 or newer: the exporter cannot convert down)", lo=18)


def check_bounds(cls: type, o: Any) -> None:
    """Every numeric field of cls within the bounds its arg() gives, and finite; U-Net-only fields at their
    default unless the generator is a U-Net."""
    for f in fields(cls):
        v = getattr(o, f.name)
        if f.metadata["unet_only"] and v != f.default and not o.netG.startswith("unet"):
            shown = f"--{f.name}" if v is True else f"--{f.name} {v}"
            raise OptionError(f"{shown}: applies to U-Net generators only, not --netG {o.netG}")
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        m = f.metadata
        shown = f"--{f.name} {v}"
        if isinstance(v, float):
            need(math.isfinite(v), f"{shown}: must be a finite number")
        lo, below, hi = m["lo"], m["below"], m["hi"]
        ok = (lo is None or v >= lo) and (below is None or v < below) and (hi is None or v <= hi)
        if m["positive"]:
            ok = v > 0
        if not ok:
            raise OptionError(f"{shown}: must be {describe_bounds(m, isinstance(v, int))}")


def describe_bounds(m: Any, integer: bool) -> str:
    """'a positive integer', '0 or more', 'in [0, 1)', ... from an arg()'s bounds."""
    lo, below, hi, note = m["lo"], m["below"], m["hi"], m["note"]
    if m["positive"]:
        text = "positive"
    elif hi is not None and hi >= 2**16 - 1:
        text = f"{lo:g}..{hi:g}"
    elif hi is not None:
        text = f"in [{lo:g}, {hi:g}]"
    elif below is not None and below < 2**62:  # a seed's 2**63 is not worth saying
        text = f"in [{lo:g}, {below:g})"
    elif lo == 1 and integer:
        text = "a positive integer"
    else:
        text = f"{lo:g} or more"
    return f"{text} {note}" if note else text
