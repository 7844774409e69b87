"""The one place that builds networks and the model from options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from models.networks import add_spectral_norm, define_D, define_G
from models.perceptual import build_vgg_loss
from models.pix2pix_model import Pix2PixModel
from options.options import size_multiple


def build_generator(o: Mapping[str, Any], init: bool = True) -> nn.Module:
    """The generator described by an option mapping (a run's saved options or parsed flags)."""
    net = define_G(
        o["netG"],
        o["input_nc"],
        o["output_nc"],
        o["ngf"],
        o["norm"],
        use_dropout=not o["no_dropout"],
        num_downs=o.get("num_downs"),
        init_type=o.get("init_type", "normal"),
        init_gain=o.get("init_gain", 0.02),
        init=init,
        grad_checkpoint=o.get("grad_checkpoint", False),
        upsample=o.get("upsample", "transpose"),
        max_mult=o.get("max_mult", 8),
        downsample=o.get("downsample", "conv"),
        attention=o.get("attention", False),
    )
    rate = o.get("dropout", 0.5)
    for m in net.modules():  # the paper's 0.5 unless --dropout says otherwise
        if isinstance(m, nn.Dropout):
            m.p = rate
    return add_spectral_norm(net) if o.get("spectral_norm", "none") in ("G", "both") else net


def build_discriminator(o: Mapping[str, Any]) -> nn.Module:
    """The conditional discriminator: it sees input and output channels stacked."""
    net = define_D(
        o["netD"],
        o["input_nc"] + o["output_nc"],
        o["ndf"],
        o["n_layers_D"],
        o["norm"],
        o["init_type"],
        o["init_gain"],
        num_D=o.get("num_D", 1),
    )
    if hasattr(net, "segments"):  # PatchGANs; the 1x1 pixel discriminator has little to gain
        net.grad_checkpoint = o.get("grad_checkpoint", False)
    return add_spectral_norm(net) if o.get("spectral_norm", "none") in ("D", "both") else net


def create_model(o: Mapping[str, Any], device: torch.device, train: bool = True) -> Pix2PixModel:
    """A Pix2PixModel on `device`; with train=False only the generator is built (for test.py).
    Raises models.perceptual.WeightsMissing when --lambda_vgg is on and the VGG19 weights cannot be had."""
    netG = build_generator(o, init=train)
    netD = build_discriminator(o) if train else None
    pad = size_multiple(o["netG"], o.get("num_downs"))
    speed = {"amp": o.get("amp", "none"), "channels_last": o.get("channels_last", False)}
    if not train:
        return Pix2PixModel(netG, None, device, pad_multiple=pad, residual=o.get("residual", False), **speed)
    return Pix2PixModel(
        netG,
        netD,
        device,
        gan_mode=o["gan_mode"],
        lambda_L1=o["lambda_L1"],
        lambda_gp=o["lambda_gp"],
        lr=o["lr"],
        lr_D=o.get("lr_D"),
        residual=o.get("residual", False),
        ema_decay=o.get("ema_decay", 0.0),
        lambda_feat=o.get("lambda_feat", 0.0),
        lambda_vgg=o.get("lambda_vgg", 0.0),
        vgg=build_vgg_loss(o.get("vgg_weights")) if o.get("lambda_vgg", 0.0) > 0 else None,
        weight_decay=o.get("weight_decay", 0.0),
        beta1=o["beta1"],
        pad_multiple=pad,
        skip_nonfinite=o.get("skip_nonfinite", False),
        lr_policy=o["lr_policy"],
        n_epochs=o["n_epochs"],
        n_epochs_decay=o["n_epochs_decay"],
        lr_decay_iters=o["lr_decay_iters"],
        epoch_count=o["epoch_count"],
        compile=o.get("compile", False),
        **speed,
    )
