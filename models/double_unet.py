"""Double U-Net for translation (Jha et al., "DoubleU-Net", 2020): two U-Nets in sequence, ASPP at each bottleneck,
squeeze-and-excitation in the decoders, the second decoder fed by both encoders; registered as double_unet_*."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.generators import AttentionGate, make_downsample, make_upsample, unet_channels
from models.layers import conv_bias, frozen_bn_context, get_norm_layer
from models.registry import register_generator

Run = Callable[..., torch.Tensor]  # module(*inputs), with or without gradient checkpointing
ASPP_RATES = (1, 2, 4)  # the atrous rates of the 3x3 branches (the paper's DeepLab rates 6, 12, 18 suit a /16 map)
SE_REDUCTION = 8  # squeeze-and-excitation's channel reduction (the paper's)


class SqueezeExcite(nn.Module):
    """Channel gating (Hu et al., 2018): x (N, C, H, W) * sigmoid(fc(relu(fc(mean of relu(x) over H, W)))), a gate of
    (N, C, 1, 1). The squeeze reads relu(x), what the next layer reads: x itself comes out of batch or instance norm,
    whose per-channel means over a single image are 0, so its mean would tell the gate nothing."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        # at least 4 hidden units: with one, a ReLU that no image activates leaves the gate untrainable
        inner = max(channels // reduction, 4)
        self.fc = nn.Sequential(nn.Conv2d(channels, inner, 1), nn.ReLU(True), nn.Conv2d(inner, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(F.relu(x).mean((2, 3), keepdim=True)))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling at a bottleneck: a 1x1 conv, 3x3 convs at ASPP_RATES and the image mean, each
    (N, C, h, w), concatenated and mixed by a 1x1 conv back to C channels. No normalisation: at the design size
    the pix2pix bottleneck is 1x1, where batch or instance statistics of one value are undefined."""

    def __init__(self, channels: int, rates: tuple[int, ...] = ASPP_RATES) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Conv2d(channels, channels, 1)]
            + [nn.Conv2d(channels, channels, 3, padding=r, dilation=r) for r in rates]
        )
        self.pool = nn.Conv2d(channels, channels, 1)
        self.project = nn.Conv2d(channels * (len(rates) + 2), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x.mean((2, 3), keepdim=True)).expand_as(x)
        return self.project(F.relu(torch.cat([b(x) for b in self.branches] + [pooled], 1)))


class Encoder(nn.Module):
    """The pix2pix U-Net's encoder: depth stride-2 convs. Level 0 is a bare conv; the others LeakyReLU, conv and
    norm, the innermost without norm (its map is 1x1 at the design size). forward returns every level's output,
    outside in: (N, channels[k], H / 2**(k+1), W / 2**(k+1))."""

    def __init__(self, in_nc: int, channels: list[int], norm: str, downsample: str) -> None:
        super().__init__()
        bias, norm_layer = conv_bias(norm), get_norm_layer(norm)
        self.levels = nn.ModuleList()
        for k, c in enumerate(channels):
            down = make_downsample(in_nc if k == 0 else channels[k - 1], c, downsample, bias)
            if k == 0:
                self.levels.append(nn.Sequential(down))
            elif k == len(channels) - 1:
                self.levels.append(nn.Sequential(nn.LeakyReLU(0.2), down))
            else:
                self.levels.append(nn.Sequential(nn.LeakyReLU(0.2), down, norm_layer(c)))

    def forward(self, x: torch.Tensor, run: Run) -> list[torch.Tensor]:
        feats = []
        for level in self.levels:
            x = run(level, x)
            feats.append(x)
        return feats


class DecoderLevel(nn.Module):
    """One decoder level: x (N, C_in, h, w) -> relu, 2x up-conv, norm, dropout -> u (N, c, 2h, 2w); the skips
    (each (N, c, 2h, 2w), gated by u with attention) and u concatenated and passed through squeeze-and-excitation."""

    def __init__(
        self, in_nc: int, c: int, n_skips: int, norm: str, upsample: str, dropout: float, attention: bool
    ) -> None:
        super().__init__()
        self.up = nn.Sequential(nn.ReLU(), make_upsample(in_nc, c, upsample, conv_bias(norm)), get_norm_layer(norm)(c))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.gates = nn.ModuleList([AttentionGate(c, c) for _ in range(n_skips)]) if attention else None
        self.se = SqueezeExcite(c * (n_skips + 1))

    def forward(self, x: torch.Tensor, *skips: torch.Tensor) -> torch.Tensor:
        u = self.dropout(self.up(x))
        if self.gates is not None:
            skips = tuple(gate(s, u) for gate, s in zip(self.gates, skips, strict=True))
        return self.se(torch.cat([*skips, u], 1))


class Decoder(nn.Module):
    """ASPP on the last encoder's innermost features, then one DecoderLevel per outer level, taking that level's
    features from each of n_encoders encoders, then a 2x up-conv to out_nc channels and tanh: (N, out_nc, H, W)."""

    def __init__(
        self,
        out_nc: int,
        channels: list[int],
        n_encoders: int,
        *,
        norm: str,
        upsample: str,
        dropout: float,
        dropout_levels: int,
        attention: bool,
    ) -> None:
        super().__init__()
        self.aspp = ASPP(channels[-1])
        self.levels = nn.ModuleList()
        in_nc = channels[-1]
        for k in range(len(channels) - 2, -1, -1):  # level k's up-conv output joins encoder level k's features
            # pix2pix's dropout: on the depth - 5 levels after the innermost one
            p = dropout if 0 < len(channels) - 2 - k <= dropout_levels else 0.0
            self.levels.append(DecoderLevel(in_nc, channels[k], n_encoders, norm, upsample, p, attention))
            in_nc = channels[k] * (n_encoders + 1)
        self.out = nn.Sequential(nn.ReLU(), make_upsample(in_nc, out_nc, upsample, bias=True), nn.Tanh())

    def forward(self, encoded: list[list[torch.Tensor]], run: Run) -> torch.Tensor:
        x = run(self.aspp, encoded[-1][-1])  # the last encoder's bottleneck
        for i, level in enumerate(self.levels):
            k = len(self.levels) - 1 - i
            x = run(level, x, *(e[k] for e in encoded))
        return self.out(x)


class DoubleUnetGenerator(nn.Module):
    """Two U-Nets in sequence. Network 1: encoder, ASPP, decoder -> first (N, output_nc, H, W), tanh. Network 2
    sees cat(real_A, first): its encoder, ASPP, and a decoder whose every level takes the skips of both encoders
    -> fake_B (N, output_nc, H, W), tanh. forward returns fake_B; in a pass with gradients it also keeps `first`,
    which the training loss supervises with L1 (--lambda_first).

    Adapted from segmentation to translation (docs/going-to-512.md, "Double U-Net"): network 2 takes the input and
    the first translation side by side, not the input multiplied by a sigmoid mask (a translation is no mask);
    both outputs are tanh images; the encoders are the pix2pix U-Net's (strided convs, any depth), not VGG19 with
    max pooling. Channels by level as UnetGenerator: ngf, 2ngf, 4ngf, then 8ngf (capped by max_mult), dropout on
    the inner 8ngf levels."""

    has_first_output = True

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
        if depth < 5:
            raise ValueError(f"num_downs must be at least 5, not {depth}")
        channels = unet_channels(ngf, max_mult, depth)
        kw = {"norm": norm, "upsample": upsample, "dropout": dropout, "dropout_levels": depth - 5}
        self.encoder1 = Encoder(input_nc, channels, norm, downsample)
        self.decoder1 = Decoder(output_nc, channels, 1, attention=attention, **kw)
        self.encoder2 = Encoder(input_nc + output_nc, channels, norm, downsample)
        self.decoder2 = Decoder(output_nc, channels, 2, attention=attention, **kw)
        self.num_downs = depth
        self.grad_checkpoint = grad_checkpoint
        self.first: torch.Tensor | None = None

    def _run(self, module: nn.Module, *xs: torch.Tensor) -> torch.Tensor:
        """module(*xs), recomputed in the backward pass under --grad_checkpoint (each level keeps only its input)."""
        if self.grad_checkpoint and torch.is_grad_enabled():
            return checkpoint(module, *xs, use_reentrant=False, context_fn=frozen_bn_context(module))
        return module(*xs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.encoder1(x, self._run)
        first = self.decoder1([e1], self._run)
        e2 = self.encoder2(torch.cat([x, first], 1), self._run)
        # Kept only where a loss may read it: inference passes hold no reference to it.
        self.first = first if torch.is_grad_enabled() else None
        return self.decoder2([e1, e2], self._run)


register_generator("double_unet_256", depth=8, traits=("first_output",))(DoubleUnetGenerator)
register_generator("double_unet_512", depth=9, traits=("first_output",))(DoubleUnetGenerator)
