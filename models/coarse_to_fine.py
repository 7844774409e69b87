"""Coarse-to-fine generator in pix2pixHD's manner (Wang et al., 2018) built from this project's U-Net: a global U-Net
on the input at half resolution, its last features added to a full-resolution enhancer's; registered as c2f_unet_*."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.generators import ResnetBlock, UnetGenerator, make_downsample, make_upsample
from models.layers import conv_bias, frozen_bn_context, get_norm_layer
from models.registry import register_generator

ENHANCER_BLOCKS = 3  # residual blocks of the enhancer, at a quarter of the resolution (pix2pixHD's local enhancer)


class CoarseToFineGenerator(nn.Module):
    """Global generator: a UnetGenerator of depth - 1 levels on the input averaged down 2x, without its last
    up-conv and tanh; its output is its last features, (N, 2ngf, H/4, W/4). Enhancer: two stride-2 convs take the
    full-resolution input to (N, 2ngf, H/4, W/4); the sum of both goes through ENHANCER_BLOCKS residual blocks,
    then two 2x up-convs (the first joined by the enhancer's H/2 features, U-Net style) and tanh: (N, output_nc,
    H, W). Inputs are multiples of 2**depth (the global U-Net's multiple at half the size).

    The global generator's weights have the names of a plain U-Net's under `global_net.`, so a unet run at half
    the size initialises it (its last up-conv has no place here, as pix2pixHD drops the global
    generator's last layer). fix_global(True) trains the enhancer alone: the global generator runs without
    gradients, so its weights and Adam state stay as they are (pix2pixHD's niter_fix_global)."""

    def __init__(
        self,
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
    ) -> None:
        super().__init__()
        if depth < 6:
            raise ValueError(f"num_downs must be at least 6 for a coarse-to-fine generator, not {depth}")
        self.global_net = UnetGenerator(
            input_nc,
            output_nc,
            depth - 1,
            ngf=ngf,
            norm=norm,
            dropout=dropout,
            upsample=upsample,
            max_mult=max_mult,
            downsample=downsample,
            attention=attention,
            grad_checkpoint=grad_checkpoint,
        )
        outer = self.global_net.model.model  # [down, submodule, ReLU, up-conv, Tanh]
        outer[3], outer[4] = nn.Identity(), nn.Identity()
        c0 = ngf * min(1, max_mult)
        feat = 2 * c0  # the global U-Net's last features: cat(skip, up) of its first level
        bias, norm_layer = conv_bias(norm), get_norm_layer(norm)
        self.front = nn.Sequential(make_downsample(input_nc, c0, downsample, bias))  # H/2
        self.front2 = nn.Sequential(nn.LeakyReLU(0.2), make_downsample(c0, feat, downsample, bias), norm_layer(feat))
        self.body = nn.Sequential(*[ResnetBlock(feat, norm, 0.0) for _ in range(ENHANCER_BLOCKS)])
        self.up = nn.Sequential(nn.ReLU(), make_upsample(feat, c0, upsample, bias), norm_layer(c0))  # H/2
        self.out = nn.Sequential(nn.ReLU(), make_upsample(2 * c0, output_nc, upsample, bias=True), nn.Tanh())
        self.num_downs = depth
        self.grad_checkpoint = grad_checkpoint
        self.global_fixed = False

    def fix_global(self, fixed: bool) -> None:
        """True: the global generator runs without gradients (only the enhancer trains)."""
        self.global_fixed = fixed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = F.avg_pool2d(x, 2)  # (N, input_nc, H/2, W/2): each pixel the mean of a 2x2 block
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.global_fixed):
            coarse = self.global_net(half)  # (N, 2ngf, H/4, W/4)
        f1 = self.front(x)  # (N, ngf, H/2, W/2)
        y = self.front2(f1) + coarse  # (N, 2ngf, H/4, W/4)
        if self.grad_checkpoint and torch.is_grad_enabled():
            y = checkpoint(self.body, y, use_reentrant=False, context_fn=frozen_bn_context(self.body))
        else:
            y = self.body(y)
        return self.out(torch.cat([f1, self.up(y)], 1))

    def init_target(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """What --init_from's state initialises: the global generator when it is a plain U-Net's (names model.*, as
        a unet run at half the size saves them), the whole network when it is a coarse-to-fine one's."""
        return self if any(k.startswith("global_net.") for k in state) else self.global_net


# c2f_unet_512: a unet_256 global generator at half of 512; c2f_unet_1024: unet_512 at half of 1024.
register_generator("c2f_unet_512", depth=9, traits=("coarse_to_fine",))(CoarseToFineGenerator)
register_generator("c2f_unet_1024", depth=10, traits=("coarse_to_fine",))(CoarseToFineGenerator)
