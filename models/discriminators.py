"""The conditional discriminators: the PatchGAN (NLayerDiscriminator), its multi-scale form and the 1x1 pixel
discriminator, and build_discriminator, which makes one of them by its --netD name."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.layers import conv_bias, frozen_bn_context, get_norm_layer

# The valid values of --netD, beside the code that implements them.
NETD_TYPES = ("basic", "n_layers", "pixel")


class NLayerDiscriminator(nn.Module):
    """PatchGAN: n_layers stride-2 4x4 convs, then two stride-1 ones; n_layers=3 sees 70x70 patches.

    (N, input_nc, 256, 256) -> (N, 1, 30, 30) logits for n_layers=3; 512 -> 62x62.
    """

    def __init__(self, input_nc: int, *, ndf: int, n_layers: int, norm: str) -> None:
        super().__init__()
        norm_layer, bias = get_norm_layer(norm), conv_bias(norm)
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
            x = checkpoint(seg, x, use_reentrant=False, context_fn=frozen_bn_context(seg))
        return self.segments[-1](x)


class MultiscaleDiscriminator(nn.Module):
    """num_D PatchGANs on the input at full, half, quarter ... resolution (as in pix2pixHD): the coarser
    ones see more of the image with the same patch size. forward returns a list of logit maps."""

    def __init__(self, make_D: Callable[[], nn.Module], num_D: int) -> None:
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
        norm_layer, bias = get_norm_layer(norm), conv_bias(norm)
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


def build_discriminator(
    netD: str, input_nc: int, *, ndf: int, n_layers_D: int, num_D: int, norm: str, grad_checkpoint: bool
) -> nn.Module:
    """basic (70x70 PatchGAN), n_layers (PatchGAN of n_layers_D) or pixel, multi-scale with num_D > 1, as
    constructed (define_D initialises it)."""
    if netD in ("basic", "n_layers"):
        layers = 3 if netD == "basic" else n_layers_D

        def patchgan() -> nn.Module:
            return NLayerDiscriminator(input_nc, ndf=ndf, n_layers=layers, norm=norm)

        net: nn.Module = MultiscaleDiscriminator(patchgan, num_D) if num_D > 1 else patchgan()
        net.grad_checkpoint = grad_checkpoint  # the 1x1 pixel discriminator has little to gain
        return net
    if netD == "pixel":
        return PixelDiscriminator(input_nc, ndf=ndf, norm=norm)
    raise ValueError(f"netD must be one of {', '.join(NETD_TYPES)}, not {netD!r}")
