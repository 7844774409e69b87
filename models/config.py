"""The frozen configs models/ consumes: generator, discriminator, initialisation, losses, optimiser and speed.
Each field is also a flag (options/ generates them); the valid values come from the code that implements them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from models.discriminators import NETD_TYPES
from models.generators import DOWNSAMPLE_MODES, UPSAMPLE_MODES
from models.layers import INIT_TYPES, NORM_TYPES, SPECTRAL_NORM_TARGETS
from models.loss import GAN_MODES
from models.perceptual import WeightsMissing, find_vgg_weights
from models.pix2pix_model import LR_POLICIES
from models.registry import GENERATOR_NAMES, GeneratorSpec, generator_spec
from models.runner import AMP_MODES, COMPILE_MODES
from util.config import Config, OptionError, arg, need


def check_unet_only(config: Config, generator: GeneratorConfig) -> None:
    """config's fields declared unet_only (the U-Net's switches, --grad_checkpoint) at their default unless the
    generator is a U-Net."""
    for f in fields(config):  # type: ignore[arg-type]
        v = getattr(config, f.name)
        if f.metadata["unet_only"] and v != f.default and not generator.is_unet:
            shown = f"--{f.name}" if v is True else f"--{f.name} {v}"
            raise OptionError(f"{shown}: applies to U-Net generators only, not --netG {generator.netG}")


@dataclass(frozen=True)
class GeneratorConfig(Config):
    """Everything that defines the generator and what it translates; saved with the run. test.py, translate.py
    and export.py rebuild the generator from the saved values (the same flags on their command line must agree)."""

    key: ClassVar[str] = "generator"
    title: ClassVar[str] = "generator (saved with the run; test.py rebuilds it from the checkpoint)"
    from_run: ClassVar[bool] = True

    input_nc: int = arg(3, "channels of real_A (any number: MR modalities, spectral bands ...)", lo=1)
    output_nc: int = arg(3, "channels of real_B / fake_B", lo=1)
    direction: str = arg("AtoB", "AtoB: the left half is the input; BtoA: the right half", choices=("AtoB", "BtoA"))
    netG: str = arg("unet_256", "generator architecture", choices=GENERATOR_NAMES)
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
        choices=NORM_TYPES,
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
        "none", "spectral normalisation on the convolutions of D, G or both", choices=SPECTRAL_NORM_TARGETS
    )

    def check(self) -> None:
        need(
            not self.residual or self.input_nc == self.output_nc,
            f"--residual adds real_A to G's output: --input_nc {self.input_nc} and --output_nc {self.output_nc} "
            "must match",
        )
        need(
            self.num_downs is None or self.is_unet,
            f"--num_downs applies to U-Net generators only, not --netG {self.netG}",
        )
        need(
            "coarse_to_fine" not in self.spec.traits or self.depth >= 6,  # type: ignore[operator]
            f"--num_downs {self.num_downs}: --netG {self.netG} needs at least 6 (its global U-Net has one level "
            "less, and a U-Net at least 5)",
        )
        check_unet_only(self, self)

    @property
    def spec(self) -> GeneratorSpec:
        """netG's entry in the generator registry (models/registry.py)."""
        return generator_spec(self.netG)

    @property
    def is_unet(self) -> bool:
        """The U-Net-only options (unet_only fields: --num_downs, --upsample, ...) apply."""
        return self.spec.is_unet

    @property
    def depth(self) -> int | None:
        """2x downsamplings of a U-Net; None for a ResNet generator."""
        return self.spec.unet_depth(self.num_downs)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (inputs are padded to it at test time)."""
        return self.spec.size_multiple(self.num_downs)

    def describe(self) -> str:
        """'unet_256 (8 downsamplings)', or the ResNet's name."""
        return f"{self.netG} ({self.depth} downsamplings)" if self.depth else self.netG


@dataclass(frozen=True)
class DiscriminatorConfig(Config):
    key: ClassVar[str] = "discriminator"
    title: ClassVar[str] = "discriminator"

    netD: str = arg(
        "basic",
        "basic = 70x70 PatchGAN; n_layers = PatchGAN with --n_layers_D; pixel = 1x1 PatchGAN",
        choices=NETD_TYPES,
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


@dataclass(frozen=True)
class InitConfig(Config):
    key: ClassVar[str] = "init"
    title: ClassVar[str] = "weight initialisation"

    init_type: str = arg("normal", "weight initialization", choices=INIT_TYPES)
    init_gain: float = arg(0.02, "scale for normal, xavier and orthogonal init", positive=True)


@dataclass(frozen=True)
class SpeedConfig(Config):
    key: ClassVar[str] = "speed"
    title: ClassVar[str] = "speed and memory"

    amp: str = arg(
        "none",
        "mixed precision (torch.autocast); fp16 adds a GradScaler per network. bf16 needs hardware support to be "
        "faster (most CPUs lack it)",
        choices=AMP_MODES,
    )
    channels_last: bool = arg(False, "NHWC memory layout (faster convs on GPUs)")


@dataclass(frozen=True)
class TrainSpeedConfig(SpeedConfig):
    compile: bool = arg(False, "torch.compile the networks (falls back to eager)")
    compile_mode: str = arg(
        "default",
        "torch.compile's mode with --compile: reduce-overhead adds CUDA graphs per network, max-autotune also "
        "searches kernels (long first compile)",
        choices=COMPILE_MODES,
    )
    cuda_graph: bool = arg(
        False,
        "capture the whole training step (both networks' forward and backward, both Adam updates, the EMA) in one "
        "CUDA graph and replay it: for small batches, where launching kernels takes longer than running them. "
        "CUDA only; batches of another shape (an epoch's smaller last batch) run eagerly",
    )
    grad_checkpoint: bool = arg(
        False,
        "recompute activations of the U-Net generator and the PatchGAN discriminator in the backward pass instead "
        "of storing them (less memory, more time)",
        unet_only=True,
    )

    def graph_clashes(self) -> list[str]:
        """This config's flags that --cuda_graph cannot be used with (options.rules adds the other configs')."""
        return [
            flag
            for flag, on in (
                ("--compile", self.compile),
                ("--amp fp16", self.amp == "fp16"),
                ("--grad_checkpoint", self.grad_checkpoint),  # recomputation saves and restores RNG state
            )
            if on
        ]


@dataclass(frozen=True)
class LossConfig(Config):
    key: ClassVar[str] = "loss"
    title: ClassVar[str] = "losses"

    gan_mode: str = arg("vanilla", "GAN objective", choices=GAN_MODES)
    lambda_L1: float = arg(100.0, "weight of the L1 loss", lo=0)
    lambda_GAN: float = arg(
        1.0,
        "weight of G's adversarial loss G_GAN (the paper's 1; lower for restoration, where PSNR matters more than "
        "invented texture; 0: L1 regression, D still trained and logged)",
        lo=0,
    )
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
    lambda_first: float = arg(
        0.5,
        "--netG double_unet_*: the L1 weight of the first U-Net's output, as a share of --lambda_L1 (0 = the "
        "final output alone is supervised)",
        lo=0,
    )

    def check(self) -> None:
        if self.lambda_vgg > 0:  # find the weights now, not after the data set has been scanned
            try:
                find_vgg_weights(self.vgg_weights)
            except WeightsMissing as e:
                raise OptionError(str(e)) from None


@dataclass(frozen=True)
class OptimConfig(Config):
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
    lr_policy: str = arg("linear", "lr schedule", choices=LR_POLICIES)
    lr_decay_iters: int = arg(50, "step policy: multiply lr by 0.1 every N epochs", lo=1)
    epoch_count: int = arg(1, "first epoch number of a new run", lo=1)
    skip_nonfinite: bool = arg(
        False, "skip (and count) steps whose loss is NaN or inf instead of stopping; costs a host sync per step"
    )
    fix_global_epochs: int = arg(
        0,
        "--netG c2f_unet_*: train the enhancer alone for the first N epochs, the global generator fixed (as loaded "
        "by --init_from), then all (pix2pixHD's niter_fix_global)",
        lo=0,
    )

    def check(self) -> None:
        need(self.n_epochs + self.n_epochs_decay >= 1, "--n_epochs + --n_epochs_decay: must be at least 1 epoch")

    @property
    def last_epoch(self) -> int:
        return self.n_epochs + self.n_epochs_decay


@dataclass(frozen=True)
class SourceConfig(Config):
    """Which generator of a run, and how it runs (test.py, translate.py, export.py, the Python API's defaults)."""

    key: ClassVar[str] = "source"
    title: ClassVar[str] = "which generator"

    seed: int | None = arg(
        None,
        "seed for dropout in train-mode testing (default: the training run's --seed, so repeating the training "
        "command's --seed changes nothing; 0 for a file without options)",
        lo=0,
        below=2**63,
    )
    epoch: str = arg("latest", "which checkpoint: latest, best or an epoch number")
    load_iter: int = arg(0, "load iter_<N>_net_G.pth instead of --epoch", lo=0)
    eval: bool = arg(False, "eval mode: running batch-norm stats, no dropout")
    no_ema: bool = arg(False, "use the trained G even if the checkpoint has an EMA")

    def check(self) -> None:
        need(
            self.epoch in ("latest", "best") or self.epoch.isdigit(),
            f"--epoch {self.epoch!r}: must be 'latest', 'best' or a number",
        )


@dataclass(frozen=True)
class ModelConfig:
    """What create_model needs: the training networks, their losses, optimisers and how they run."""

    generator: GeneratorConfig
    discriminator: DiscriminatorConfig
    init: InitConfig
    loss: LossConfig
    optim: OptimConfig
    speed: TrainSpeedConfig
