"""What the generators and discriminators share: the norm layer factory, initialisation, spectral norm, frozen batch
norm, loading weights and padding to a size multiple."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

NormFactory = Callable[[int], nn.Module]

# The valid values of --norm, --init_type and --spectral_norm, beside the code that implements them.
NORM_TYPES = ("batch", "instance", "none", "syncbatch")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
SPECTRAL_NORM_TARGETS = ("none", "D", "G", "both")


def get_norm_layer(norm: str) -> NormFactory:
    """batch: learnable affine + running stats; instance: neither (as in pix2pix); none: identity."""
    if norm in ("batch", "syncbatch"):  # syncbatch: converted to SyncBatchNorm under torchrun on CUDA
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "none":
        return lambda _channels: nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORM_TYPES)}, not {norm!r}")


def conv_bias(norm: str) -> bool:
    """Batch norm's shift makes a conv bias redundant; instance norm here has no affine, so keep the bias."""
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


def add_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every conv and transposed conv of net."""
    from torch.nn.utils.parametrizations import spectral_norm

    for m in list(net.modules()):
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            spectral_norm(m)
    return net


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


def frozen_bn_context(module: nn.Module):
    """Checkpoint contexts: plain for the forward pass, frozen batch norm for the recomputation."""
    return lambda: (contextlib.nullcontext(), frozen_batchnorm(module))


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
