"""The generators: the pix2pix U-Net (its skip blocks, up- and downsampling, attention gates) and the ResNet, each
registered under its --netG name (models/registry.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.layers import conv_bias, frozen_bn_context, get_norm_layer
from models.registry import register_generator

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
        bias = conv_bias(norm)
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
            return checkpoint(self._join, y, self.model[1:], use_reentrant=False, context_fn=frozen_bn_context(self))
        # model[0] is an in-place LeakyReLU, so here too the skip carries leaky(x), as in pix2pix.
        return self._join(x, self.model)

    def _join(self, x: torch.Tensor, layers: nn.Module) -> torch.Tensor:
        up = layers(x)
        skip = x if self.gate is None else self.gate(x, up)
        return torch.cat([skip, up], 1)


def unet_channels(ngf: int, max_mult: int, depth: int) -> list[int]:
    """The pix2pix U-Net's channels by level, outside in: ngf, 2ngf, 4ngf, then 8ngf, each capped at
    max_mult * ngf."""
    return [ngf * min(2**k if k < 3 else 8, max_mult) for k in range(depth)]


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
        c = unet_channels(ngf, max_mult, 4)  # channels of the outer four levels, outside in
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
        norm_layer, bias = get_norm_layer(norm), conv_bias(norm)
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
        norm_layer, bias = get_norm_layer(norm), conv_bias(norm)
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


# The registrations: one per --netG name, in the order of its choices.
def unet(
    input_nc: int,
    output_nc: int,
    *,
    depth: int,
    ngf: int,
    norm: str,
    dropout: float,
    upsample: str,
    downsample: str,
    max_mult: int,
    attention: bool,
    grad_checkpoint: bool,
) -> nn.Module:
    """The pix2pix U-Net with `depth` 2x downsamplings (the spec's, or --num_downs)."""
    return UnetGenerator(
        input_nc,
        output_nc,
        depth,
        ngf=ngf,
        norm=norm,
        dropout=dropout,
        upsample=upsample,
        max_mult=max_mult,
        downsample=downsample,
        attention=attention,
        grad_checkpoint=grad_checkpoint,
    )


register_generator("unet_128", depth=7)(unet)
register_generator("unet_256", depth=8)(unet)
register_generator("unet_512", depth=9)(unet)


@register_generator("resnet_6blocks", size_multiple=4)  # two stride-2 convs
def resnet_6blocks(input_nc: int, output_nc: int, *, ngf: int, norm: str, dropout: float, **unet_only) -> nn.Module:
    return ResnetGenerator(input_nc, output_nc, ngf=ngf, norm=norm, dropout=dropout, n_blocks=6)


@register_generator("resnet_9blocks", size_multiple=4)
def resnet_9blocks(input_nc: int, output_nc: int, *, ngf: int, norm: str, dropout: float, **unet_only) -> nn.Module:
    return ResnetGenerator(input_nc, output_nc, ngf=ngf, norm=norm, dropout=dropout, n_blocks=9)
