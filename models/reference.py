"""Weights saved by the pix2pix reference implementation (bare state dicts, <epoch>_net_G.pth): adapted to these
networks, and a mismatch explained with the flags the file's shapes point to."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from models.layers import WeightsMismatch, load_weights
from models.registry import generator_spec, list_generators

_STATS = ("running_mean", "running_var", "num_batches_tracked")


def is_bare_state_dict(state: Any) -> bool:
    """A reference file: a mapping of names to tensors only (this project's files are dicts with options)."""
    return isinstance(state, Mapping) and bool(state) and all(torch.is_tensor(v) for v in state.values())


def adapt_reference(net: nn.Module, state: Mapping[str, torch.Tensor], zero_bias: bool) -> dict[str, torch.Tensor]:
    """The reference's names and quirks -> this project's, for the network net:
    - a "module." prefix (a DataParallel-wrapped network saved as it was) is dropped;
    - a ResNet block's `conv_block` is `block` here;
    - instance norm has no running statistics; files from before PyTorch 0.4 saved some, dropped as the
      reference does when it loads them;
    - batch norm's num_batches_tracked, missing in files from before PyTorch 0.4, starts at 0 (what
      load_state_dict does for such files);
    - zero_bias (for --norm none, where the reference built its convolutions without a bias): a conv bias the
      file lacks is 0.
    Anything else that does not fit is left for load_weights to report."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        out[re.sub(r"\.conv_block\.", ".block.", k)] = v
    modules = dict(net.named_modules())
    for k in list(out):
        owner, _, leaf = k.rpartition(".")
        if leaf in _STATS and isinstance(modules.get(owner), nn.InstanceNorm2d):
            del out[k]
    for name, m in modules.items():
        prefix = f"{name}." if name else ""
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and f"{prefix}running_mean" in out:
            out.setdefault(f"{prefix}num_batches_tracked", torch.tensor(0, dtype=torch.long))
        if (
            zero_bias
            and isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
            and m.bias is not None
            and f"{prefix}weight" in out
        ):
            out.setdefault(f"{prefix}bias", torch.zeros_like(m.bias))
    return out


def load_reference_weights(net: nn.Module, state: Mapping[str, torch.Tensor], g: Any) -> None:
    """Load a reference generator file into net (built from the models.config.GeneratorConfig g); WeightsMismatch names
    what did not fit and the flags the file's shapes suggest."""
    try:
        load_weights(net, adapt_reference(net, state, zero_bias=g.norm == "none"), "generator")
    except WeightsMismatch as e:
        raise WeightsMismatch(f"{e}. {flag_hint(state, g)}") from None


def flag_hint(state: Mapping[str, torch.Tensor], g: Any) -> str:
    """'The file looks like --netG unet_128 ...: try those flags', or what to check when its shapes say nothing."""
    guess = guess_generator(state)
    if not guess:
        return "The file's parameter names are not those of a pix2pix U-Net or ResNet generator"
    differ = {k: v for k, v in guess.items() if getattr(g, k, None) != v}
    flags = " ".join(f"--{k}" if v is True else f"--{k} {v}" for k, v in differ.items())
    if not differ:
        return "Its shapes fit these flags, so check --upsample, --downsample, --attention and --max_mult"
    return f"Its weights look like those of {flags}; try those flags"


def guess_generator(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The generator flags a reference state dict's names and shapes point to ({} if it is neither kind)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    stats = any(k.endswith("running_mean") for k in state)
    if "model.model.0.weight" in state:  # U-Net: block i's keys hold "model." i + 1 times
        num_downs = max(k.count("model.") for k in state) - 1
        first = state["model.model.0.weight"]  # (ngf, input_nc, 4, 4)
        last = state.get("model.model.3.weight")  # transposed conv: (2 ngf, output_nc, 4, 4)
        name = next((n for n in list_generators() if generator_spec(n).depth == num_downs), None)
        guess: dict[str, Any] = {"netG": name or "unet_256"}
        if name is None:
            guess["num_downs"] = num_downs
        guess.update(ngf=first.shape[0], input_nc=first.shape[1])
        if last is not None and last.dim() == 4:
            guess["output_nc"] = last.shape[1]
        biased = "model.model.1.model.1.bias" in state  # a middle down conv has a bias unless batch norm
        guess["norm"] = "batch" if stats else ("instance" if biased else "none")
        return guess
    if "model.1.weight" in state and state["model.1.weight"].dim() == 4:  # ResNet: 7x7 conv after a pad
        first = state["model.1.weight"]
        blocks = {m.group(1) for k in state if (m := re.match(r"model\.(\d+)\.(conv_)?block\.", k))}
        convs = sorted(k for k in state if k.endswith(".weight") and state[k].dim() == 4)
        last = state[max(convs, key=lambda k: int(k.split(".")[1]))]
        guess = {"netG": f"resnet_{len(blocks)}blocks", "ngf": first.shape[0], "input_nc": first.shape[1]}
        guess["output_nc"] = last.shape[0]
        guess["norm"] = "batch" if stats else ("instance" if "model.1.bias" in state else "none")
        # A block with dropout has its second conv at index 6 (pad conv norm relu dropout pad conv), else at 5.
        if any(re.match(r"model\.\d+\.(conv_)?block\.5\.weight", k) for k in state):
            guess["no_dropout"] = True
        return guess
    return {}
