"""How a network is called: autocast (--amp), memory layout (--channels_last), torch.compile and DDP, in one place."""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AMP_MODES = tuple(AMP_DTYPES)  # --amp
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # --compile_mode
log = logging.getLogger(__name__)


class Runner:
    """Calls one network. The bare module stays in .net (parameters, state dicts, hooks); calls go through
    torch.compile when asked (falling back to eager, once, with a message, when compilation fails) or through
    DistributedDataParallel under torchrun, inside autocast, and return fp32 (a list for a multi-scale D)."""

    def __init__(
        self,
        net: nn.Module,
        device: torch.device,
        amp: str,
        channels_last: bool,
        compile: str | None,
    ) -> None:
        self.device = torch.device(device)
        self.amp, self.channels_last = amp, channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(self.device, memory_format=self.memory_format)
        self.amp_dtype = AMP_DTYPES[amp]
        # compile: torch.compile's mode, or None for eager. dynamic=False: one graph per input shape, as eager
        # sees them, instead of a slower shape-generic one
        self._compiled = torch.compile(self.net, mode=compile, dynamic=False) if compile else None
        self._ddp: nn.Module | None = None

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        # autocast's cache of cast weights lives only until autocast exits; a CUDA graph (--cuda_graph) would keep
        # replaying reads of it, so the cache is off while a graph is being captured (as PyTorch's docs require)
        capturing = self.device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, cache_enabled=not capturing)

    def wrap_ddp(self, find_unused: bool = False) -> None:
        """DistributedDataParallel for the calls that share gradients (torchrun). find_unused: some parameters may
        get no gradient in a step (a slower reduction that looks for them)."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        self._ddp = DDP(self.net, device_ids=ids, find_unused_parameters=find_unused)

    def no_sync(self, skip: bool):
        """Under DDP, skip the gradient all-reduce of this backward (all micro-batches of a step but the last)."""
        return self._ddp.no_sync() if skip and self._ddp is not None else contextlib.nullcontext()

    def __call__(self, x: torch.Tensor, sync: bool = True):
        """net(x) in autocast, as fp32. sync=False bypasses DDP: for a pass whose parameters get no gradients
        (D in G's step, frozen), whose reducer would otherwise wait for them forever, and for rank-0-only passes."""
        with self.autocast():
            if self._ddp is not None and sync:
                out = self._ddp(x)
            else:
                out = self._call(x)
        return [o.float() for o in out] if isinstance(out, list) else out.float()

    def _call(self, x: torch.Tensor):
        if self._compiled is None:
            return self.net(x)
        try:
            return self._compiled(x)
        except Exception as e:  # torch.compile raises many kinds (no compiler, unsupported op, ...)
            log.warning("--compile failed (%s: %s); running eagerly instead", type(e).__name__, str(e)[:200])
            self._compiled = None
            return self.net(x)

    def features(self, x: torch.Tensor):
        """The bare discriminator's intermediate features, in autocast (for feature matching)."""
        with self.autocast():
            return self.net.features(x)
