"""Generators (U-Net, ResNet), PatchGAN discriminators, GAN losses, and define_G / define_D, which build them from
the saved or parsed option groups."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

if TYPE_CHECKING:  # models.config imports this module's lists of valid values
    from models.config import DiscriminatorConfig, GeneratorConfig

NormFactory = Callable[[int], nn.Module]

# The valid values of --norm, --init_type, --netD and --spectral_norm, beside the code that implements them.
NORM_TYPES = ("batch", "instance", "none", "syncbatch")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
NETD_TYPES = ("basic", "n_layers", "pixel")
SPECTRAL_NORM_TARGETS = ("none", "D", "G", "both")
GAN_MODES = ("vanilla", "lsgan", "wgangp", "hinge")


def get_norm_layer(norm: str) -> NormFactory:
    """batch: learnable affine + running stats; instance: neither (as in pix2pix); none: identity."""
    if norm in ("batch", "syncbatch"):  # syncbatch: converted to SyncBatchNorm under torchrun on CUDA
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "none":
        return lambda _channels: nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORM_TYPES)}, not {norm!r}")


def _conv_bias(norm: str) -> bool:
    # Batch norm's shift makes a conv bias redundant; instance norm here has no affine, so keep the bias.
    return norm not in ("batch", "syncbatch")


def init_weights(net: nn.Module, init_type: str, init_gain: float) -> None:
    """Initialise conv/linear weights with init_type and norm weights with N(1, init_gain)."""

    def init_fn(m: nn.Module) -> None:
        name = type(m).__name__
        if hasattr(m, "weight") and m.weight is not None and ("Conv" in name or "Linear" in name):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, init_gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=init_gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=init_gain)
            else:
                raise ValueError(f"init_type must be one of {', '.join(INIT_TYPES)}, not {init_type!r}")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in name and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, init_gain)
            nn.init.zeros_(m.bias)

    net.apply(init_fn)


UPSAMPLE_MODES = ("transpose", "bilinear", "nearest", "pixelshuffle")


def make_upsample(in_nc: int, out_nc: int, mode: str, bias: bool) -> nn.Module:
    """2x upsampling with a learned conv. transpose: the paper's 4x4 stride-2 transposed conv; bilinear or
    nearest: resize then 3x3 conv; pixelshuffle: 3x3 conv to 4x the channels, then sub-pixel shuffle. The
    last three avoid the checkerboard artefacts that overlapping transposed-conv kernels can leave."""
    if mode == "transpose":
        return nn.ConvTranspose2d(in_nc, out_nc, kernel_size=4, stride=2, padding=1, bias=bias)
    if mode in ("bilinear", "nearest"):
        align = {"align_corners": False} if mode == "bilinear" else {}
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode=mode, **align), nn.Conv2d(in_nc, out_nc, 3, padding=1, bias=bias)
        )
    if mode == "pixelshuffle":
        return nn.Sequential(nn.Conv2d(in_nc, out_nc * 4, 3, padding=1, bias=bias), nn.PixelShuffle(2))
    raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, not {mode!r}")


DOWNSAMPLE_MODES = ("conv", "blur")


class Blur(nn.Module):
    """A fixed 3x3 binomial low-pass ([1, 2, 1] / 4 in each direction) per channel, stride 1, same size."""

    def __init__(self) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        # Not persistent: state dicts are the same with and without it, so --init_from works across the switch.
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 16)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")  # replicate: defined for any size, even 1x1
        return F.conv2d(x, self.kernel.to(x.dtype).expand(c, 1, 3, 3), groups=c)


class BlurConv2d(nn.Conv2d):
    """A strided conv that low-passes its input first, so the subsampling folds back (aliases) less: the
    idea of Zhang, "Making Convolutional Networks Shift-Invariant Again" (ICML 2019), at the cost of one
    depthwise 3x3 per level rather than Zhang's stride-1 conv + BlurPool (4x that conv's FLOPs). A Conv2d
    subclass, so its parameters keep the plain conv's names."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.blur = Blur()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.blur(x))


def make_downsample(in_nc: int, out_nc: int, mode: str, bias: bool) -> nn.Module:
    """2x downsampling: the paper's 4x4 stride-2 conv (conv), or a binomial blur before it (blur)."""
    if mode not in DOWNSAMPLE_MODES:
        raise ValueError(f"downsample must be one of {', '.join(DOWNSAMPLE_MODES)}, not {mode!r}")
    conv = BlurConv2d if mode == "blur" else nn.Conv2d
    return conv(in_nc, out_nc, kernel_size=4, stride=2, padding=1, bias=bias)


class AttentionGate(nn.Module):
    """Additive attention on a skip connection (Oktay et al., "Attention U-Net", 2018).

    skip x (N, C, H, W) and gating signal g (N, Cg, H, W), the decoder's features at the same level:
    alpha = 2 * sigmoid(psi(relu(theta(x) + phi(g)))) (N, 1, H, W); returns x * alpha, so the decoder can
    suppress skip features it does not need. Two differences from the paper, for simplicity and a fair
    start: g is already upsampled to x's size by the block's up-conv (the paper takes it one level
    coarser and strides theta), and alpha is scaled by 2, so with psi's near-zero initial weights it
    starts at 1 (the skip passes unchanged, as without gates) where the paper's starts at 0.5.
    """

    def __init__(self, skip_nc: int, gate_nc: int) -> None:
        super().__init__()
        inter = max(skip_nc // 2, 1)
        self.theta = nn.Conv2d(skip_nc, inter, 1, bias=False)
        self.phi = nn.Conv2d(gate_nc, inter, 1)
        self.psi = nn.Conv2d(inter, 1, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        alpha = 2 * torch.sigmoid(self.psi(F.relu(self.theta(x) + self.phi(g))))
        return x * alpha


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down(x) -> submodule -> up, output concatenated with x (except outermost).

    Shapes for a middle block: x (N, outer_nc, H, W) -> down (N, inner_nc, H/2, W/2)
    -> submodule (N, 2*inner_nc, H/2, W/2) -> up (N, outer_nc, H, W) -> cat (N, 2*outer_nc, H, W).
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        *,
        norm: str,
        upsample: str,
        downsample: str,
        attention: bool,
        dropout: float,
        in_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        self.grad_checkpoint = False  # set by UnetGenerator
        norm_layer = get_norm_layer(norm)
        bias = _conv_bias(norm)
        in_nc = outer_nc if in_nc is None else in_nc  # only the outermost block's input differs (input_nc)
        down_conv = make_downsample(in_nc, inner_nc, downsample, bias)
        # The skip (x, outer_nc channels) gated by this level's decoder output (also outer_nc channels).
        self.gate = AttentionGate(outer_nc, outer_nc) if attention and not outermost else None
        # The innermost block gets only its own down features; the others get cat(skip, up) = 2x channels.
        up_in = inner_nc if innermost else inner_nc * 2

        if outermost:
            up_conv = make_upsample(up_in, outer_nc, upsample, bias=True)
            layers = [down_conv, submodule, nn.ReLU(True), up_conv, nn.Tanh()]
        elif innermost:
            # No norm after the innermost down conv: its output is 1x1 at the design size.
            up_conv = make_upsample(up_in, outer_nc, upsample, bias)
            layers = [nn.LeakyReLU(0.2, True), down_conv, nn.ReLU(True), up_conv, norm_layer(outer_nc)]
        else:
            up_conv = make_upsample(up_in, outer_nc, upsample, bias)
            layers = [nn.LeakyReLU(0.2, True), down_conv, norm_layer(inner_nc), submodule]
            layers += [nn.ReLU(True), up_conv, norm_layer(outer_nc)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        if self.grad_checkpoint and torch.is_grad_enabled():
            # The first layer, an in-place LeakyReLU, also changes x, so the skip carries leaky(x). Under
            # checkpointing x must stay intact for the recomputation: apply it out of place here, keep the
            # rest of the block (and every block inside it) for recomputation in the backward pass.
            # The attention gate is recomputed too, so its full-resolution intermediates are not kept.
            y = F.leaky_relu(x, 0.2)
            return checkpoint(self._join, y, self.model[1:], use_reentrant=False, context_fn=_frozen_bn_context(self))
        # model[0] is an in-place LeakyReLU, so here too the skip carries leaky(x), as in pix2pix.
        return self._join(x, self.model)

    def _join(self, x: torch.Tensor, layers: nn.Module) -> torch.Tensor:
        up = layers(x)
        skip = x if self.gate is None else self.gate(x, up)
        return torch.cat([skip, up], 1)


@contextlib.contextmanager
def frozen_batchnorm(net: nn.Module):
    """Batch norm keeps normalising with batch statistics but leaves its running statistics alone
    (momentum 0): for passes that must not count twice (recomputation, validation, a second G pass)."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    counts = [m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom, n in zip(bns, momenta, counts, strict=True):
            m.momentum = mom
            if n is not None:  # the pass's forward counted a batch too
                m.num_batches_tracked.copy_(n)


def _frozen_bn_context(module: nn.Module):
    """Checkpoint contexts: plain for the forward pass, frozen batch norm for the recomputation."""
    return lambda: (contextlib.nullcontext(), frozen_batchnorm(module))


class UnetGenerator(nn.Module):
    """The pix2pix U-Net: num_downs halvings, so inputs must be multiples of 2**num_downs.

    Channels by level from the outside in: ngf, 2ngf, 4ngf, then 8ngf for the remaining num_downs - 3
    levels; the num_downs - 5 intermediate 8ngf blocks carry dropout at rate `dropout` (0.5 in the paper; 3
    blocks in unet_256, 4 in unet_512; 0 = none). max_mult caps the multiplier (8 in the paper), so a wider
    ngf need not blow up the inner blocks.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        *,
        ngf: int,
        norm: str,
        dropout: float,
        upsample: str,
        max_mult: int,
        downsample: str,
        attention: bool,
        grad_checkpoint: bool,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be at least 5, not {num_downs}")
        self.num_downs = num_downs
        c = [ngf * min(m, max_mult) for m in (1, 2, 4, 8)]  # channels of the levels, outside in
        kw = {"norm": norm, "upsample": upsample, "downsample": downsample, "dropout": 0.0}
        inner = {**kw, "attention": attention}  # every skip
        block = UnetSkipConnectionBlock(c[3], c[3], innermost=True, **inner)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(c[3], c[3], submodule=block, **{**inner, "dropout": dropout})
        block = UnetSkipConnectionBlock(c[2], c[3], submodule=block, **inner)
        block = UnetSkipConnectionBlock(c[1], c[2], submodule=block, **inner)
        block = UnetSkipConnectionBlock(c[0], c[1], submodule=block, **inner)
        # The outermost block has no skip, so no gate.
        self.model = UnetSkipConnectionBlock(
            output_nc, c[0], in_nc=input_nc, submodule=block, outermost=True, attention=False, **kw
        )
        # Activation checkpointing: keep only each level's input, recompute the rest in the backward pass.
        for m in self.modules():
            if isinstance(m, UnetSkipConnectionBlock):
                m.grad_checkpoint = grad_checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ResnetBlock(nn.Module):
    """x + conv-norm-relu-(dropout)-conv-norm(x), with reflection padding."""

    def __init__(self, dim: int, norm: str, dropout: float) -> None:
        super().__init__()
        norm_layer, bias = get_norm_layer(norm), _conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=bias),
            norm_layer(dim),
            nn.ReLU(True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(dim)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """7x7 conv, two stride-2 downsamplings, n_blocks residual blocks, two upsamplings, 7x7 conv, tanh."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        *,
        ngf: int,
        norm: str,
        dropout: float,
        n_blocks: int,
    ) -> None:
        super().__init__()
        norm_layer, bias = get_norm_layer(norm), _conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, 7, bias=bias),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]
        for _ in range(n_blocks):
            layers.append(ResnetBlock(ngf * 4, norm, dropout))
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: n_layers stride-2 4x4 convs, then two stride-1 ones; n_layers=3 sees 70x70 patches.

    (N, input_nc, 256, 256) -> (N, 1, 30, 30) logits for n_layers=3; 512 -> 62x62.
    """

    def __init__(self, input_nc: int, *, ndf: int, n_layers: int, norm: str) -> None:
        super().__init__()
        norm_layer, bias = get_norm_layer(norm), _conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias),
                norm_layer(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias),
            norm_layer(ndf * mult),
            nn.LeakyReLU(0.2, True),
        ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        self.grad_checkpoint = False
        # Checkpoint segments start at each conv, so no segment changes its saved input in place.
        starts = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
        self.segments = [self.model[a:b] for a, b in zip(starts, [*starts[1:], len(layers)], strict=True)]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every conv-norm-activation segment, the logits last (for feature matching)."""
        out = []
        for seg in self.segments:
            x = seg(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.grad_checkpoint and torch.is_grad_enabled()):
            return self.model(x)
        # Each segment keeps only its input; its conv, norm and activation outputs are recomputed, with batch
        # norm's running statistics frozen so they move once, as without checkpointing.
        for seg in self.segments[:-1]:
            x = checkpoint(seg, x, use_reentrant=False, context_fn=_frozen_bn_context(seg))
        return self.segments[-1](x)


class MultiscaleDiscriminator(nn.Module):
    """num_D PatchGANs on the input at full, half, quarter ... resolution (as in pix2pixHD): the coarser
    ones see more of the image with the same patch size. forward returns a list of logit maps."""

    def __init__(self, make_D, num_D: int) -> None:
        super().__init__()
        self.scales = nn.ModuleList([make_D() for _ in range(num_D)])

    @property
    def grad_checkpoint(self) -> bool:
        return self.scales[0].grad_checkpoint

    @grad_checkpoint.setter
    def grad_checkpoint(self, flag: bool) -> None:
        for d in self.scales:
            d.grad_checkpoint = flag

    @property
    def segments(self) -> list:
        return self.scales[0].segments

    @staticmethod
    def _down(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, d in enumerate(self.scales):
            out.append(d(x))
            if i + 1 < len(self.scales):
                x = self._down(x)
        return out

    def features(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, d in enumerate(self.scales):
            out.append(d.features(x))
            if i + 1 < len(self.scales):
                x = self._down(x)
        return out


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: classifies each pixel independently. (N, C, H, W) -> (N, 1, H, W)."""

    def __init__(self, input_nc: int, *, ndf: int, norm: str) -> None:
        super().__init__()
        norm_layer, bias = get_norm_layer(norm), _conv_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


UNET_DEPTH = {"unet_128": 7, "unet_256": 8, "unet_512": 9}
NETG_CHOICES = (*UNET_DEPTH, "resnet_6blocks", "resnet_9blocks")


def unet_depth(netG: str, num_downs: int | None) -> int | None:
    """Number of 2x downsamplings of a U-Net generator; None for other generators."""
    if netG not in UNET_DEPTH:
        return None
    return num_downs if num_downs is not None else UNET_DEPTH[netG]


def size_multiple(netG: str, num_downs: int | None) -> int:
    """Inputs must be a multiple of this: 2**depth for a U-Net, 4 for a ResNet generator (two stride-2 convs)."""
    depth = unet_depth(netG, num_downs)
    return 2**depth if depth is not None else 4


def define_G(g: GeneratorConfig, init_type: str | None, init_gain: float, grad_checkpoint: bool) -> nn.Module:
    """The generator of a GeneratorConfig (netG, ngf, norm, ...: a run's saved options or parsed flags).
    init_type None leaves the weights as constructed (they are about to be loaded); grad_checkpoint recomputes
    U-Net activations in the backward pass instead of keeping them."""
    dropout = 0.0 if g.no_dropout else g.dropout
    name = g.netG
    if name in UNET_DEPTH:
        net: nn.Module = UnetGenerator(
            g.input_nc,
            g.output_nc,
            unet_depth(name, g.num_downs),
            ngf=g.ngf,
            norm=g.norm,
            dropout=dropout,
            upsample=g.upsample,
            max_mult=g.max_mult,
            downsample=g.downsample,
            attention=g.attention,
            grad_checkpoint=grad_checkpoint,
        )
    elif name in ("resnet_6blocks", "resnet_9blocks"):
        n_blocks = int(name[7])
        net = ResnetGenerator(g.input_nc, g.output_nc, ngf=g.ngf, norm=g.norm, dropout=dropout, n_blocks=n_blocks)
    else:
        raise ValueError(f"netG must be one of {', '.join(NETG_CHOICES)}, not {name!r}")
    if init_type is not None:
        init_weights(net, init_type, init_gain)
    return add_spectral_norm(net) if g.spectral_norm in ("G", "both") else net


def define_D(
    d: DiscriminatorConfig, g: GeneratorConfig, init_type: str, init_gain: float, grad_checkpoint: bool
) -> nn.Module:
    """The conditional discriminator of a DiscriminatorConfig (netD, ndf, n_layers_D, num_D): basic (70x70
    PatchGAN), n_layers (PatchGAN of n_layers_D) or pixel, multi-scale with num_D > 1. It sees the generator's
    input and output channels stacked and takes norm and spectral_norm from the generator's config g."""
    input_nc, norm = g.input_nc + g.output_nc, g.norm
    if d.netD in ("basic", "n_layers"):
        layers = 3 if d.netD == "basic" else d.n_layers_D

        def patchgan() -> nn.Module:
            return NLayerDiscriminator(input_nc, ndf=d.ndf, n_layers=layers, norm=norm)

        net: nn.Module = MultiscaleDiscriminator(patchgan, d.num_D) if d.num_D > 1 else patchgan()
        net.grad_checkpoint = grad_checkpoint  # the 1x1 pixel discriminator has little to gain
    elif d.netD == "pixel":
        net = PixelDiscriminator(input_nc, ndf=d.ndf, norm=norm)
    else:
        raise ValueError(f"netD must be one of {', '.join(NETD_TYPES)}, not {d.netD!r}")
    init_weights(net, init_type, init_gain)
    return add_spectral_norm(net) if g.spectral_norm in ("D", "both") else net


def add_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every conv and transposed conv of net."""
    from torch.nn.utils.parametrizations import spectral_norm

    for m in list(net.modules()):
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            spectral_norm(m)
    return net


class WeightsMismatch(ValueError):
    """Weights that do not fit the network their options describe; the message says which and how."""


def load_weights(net: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """net.load_state_dict(state), or WeightsMismatch summarising what is missing, extra or of another shape."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or extra or shapes:
        parts = [
            f"{len(v)} {what} (e.g. {', '.join(v[:3])})"
            for what, v in (("missing", missing), ("unexpected", extra), ("of another shape, file vs network", shapes))
            if v
        ]
        raise WeightsMismatch(f"the weights do not fit the {what} its options describe: " + "; ".join(parts))
    net.load_state_dict(state)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Pad (N, C, H, W) on the bottom/right to multiples of `multiple`; returns (padded, H, W).

    Reflection needs pad < side, so larger pads (a 60-pixel side padded to 256) use edge replication.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, h, w
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), h, w


class GANLoss(nn.Module):
    """GAN objective on discriminator logits: vanilla (BCE with logits), lsgan (MSE), wgangp (mean) or hinge
    (D: relu(1 - real) + relu(1 + fake); G: -mean)."""

    def __init__(self, gan_mode: str) -> None:
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise ValueError(f"gan_mode must be one of {', '.join(GAN_MODES)}, not {gan_mode!r}")
        self.gan_mode = gan_mode

    def forward(self, prediction, target_is_real: bool, for_D: bool = True) -> torch.Tensor:
        """for_D=False: the generator's loss, which differs from the discriminator's only for hinge. A list
        of predictions (a multi-scale D) gives the sum of their losses."""
        if isinstance(prediction, list):
            return sum(self(p, target_is_real, for_D) for p in prediction)
        if self.gan_mode == "hinge":
            if not for_D:
                return -prediction.mean()
            return F.relu(1 - prediction).mean() if target_is_real else F.relu(1 + prediction).mean()
        if self.gan_mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        if self.gan_mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


def gradient_penalty(netD: nn.Module, real_A: torch.Tensor, real_B: torch.Tensor, fake_B: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty (||grad D||_2 - 1)^2 on interpolates of (A, fake_B) and (A, real_B), A fixed."""
    alpha = torch.rand(real_B.shape[0], 1, 1, 1, device=real_B.device, dtype=real_B.dtype)
    mixed_B = (alpha * real_B + (1 - alpha) * fake_B).requires_grad_(True)
    # No checkpointing under the penalty's second-order gradient.
    flag = getattr(netD, "grad_checkpoint", False)
    if flag:
        netD.grad_checkpoint = False
    try:
        out = netD(torch.cat([real_A, mixed_B], 1))
        out = sum(o.sum() for o in out) if isinstance(out, list) else out
    finally:
        if flag:
            netD.grad_checkpoint = True
    (grad,) = torch.autograd.grad(out.sum(), mixed_B, create_graph=True)
    # The small offset keeps the norm's gradient finite where D's gradient is exactly zero.
    return (((grad.flatten(1) + 1e-16).norm(2, dim=1) - 1) ** 2).mean()
