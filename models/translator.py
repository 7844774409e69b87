"""Inference: fake_B = G(real_A) at any input size, the one path used by training, validation and test.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.nn.utils.parametrizations import _SpectralNorm

from models.layers import frozen_batchnorm, pad_to_multiple
from models.runner import Runner


@contextlib.contextmanager
def frozen_state(net: torch.nn.Module) -> Iterator[None]:
    """Inference that leaves net's state (its state_dict) exactly as it was, in train or eval mode: batch norm
    still normalises with batch statistics in train mode but its running statistics and batch count stay
    (frozen_batchnorm), and spectral norm uses the trained u and v vectors without a power iteration (its
    parametrizations run in eval mode), so equal inputs give equal outputs (dropout aside)."""
    sn = [m for m in net.modules() if isinstance(m, _SpectralNorm) and m.training]
    for m in sn:
        m.eval()
    try:
        with frozen_batchnorm(net):
            yield
    finally:
        for m in sn:
            m.train()


class Translator:
    """Translates real_A (N, input_nc, H, W) in [-1, 1] to fake_B (N, output_nc, H, W): pads H and W to the
    generator's multiple and crops the output back, adds real_A back for a --residual generator, and returns
    fp32 whatever the autocast dtype. Train or eval mode is the caller's choice (pix2pix tests in train mode)."""

    def __init__(self, G: Runner, pad_multiple: int, residual: bool) -> None:
        self.G, self.pad_multiple, self.residual = G, pad_multiple, residual
        # a generator's first output from the last pass with gradients (Double U-Net's), as fake_B is returned
        self.first_B: torch.Tensor | None = None

    @property
    def net(self) -> torch.nn.Module:
        return self.G.net

    def __call__(self, real_A: torch.Tensor, sync: bool = True) -> torch.Tensor:
        """sync=False: bypass DDP (a pass on rank 0 only, such as validation)."""
        x, h, w = pad_to_multiple(real_A, self.pad_multiple)
        out = self.G(x, sync=sync)
        first = getattr(self.net, "first", None)  # set by the pass just made, with gradients only
        self.first_B = None if first is None else self._finish(first.float(), x, h, w)
        return self._finish(out, x, h, w)

    def _finish(self, out: torch.Tensor, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        if self.residual:  # G predicted B - A; added in fp32 so the fine detail of A survives autocast
            out = out + x
        return out if out.shape[-2:] == (h, w) else out[..., :h, :w]

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A batch tensor on the generator's device and memory layout."""
        nb = self.G.device.type == "cuda"
        return t.to(self.G.device, non_blocking=nb, memory_format=self.G.memory_format)
