"""The one place that builds networks, the training model and the inference Translator from option groups.

Every builder takes the options as plain dicts by group ({"generator": {...}, "loss": {...}, ...}), as a run's
checkpoint stores them and as options.TrainOptions.to_dict() gives them; models/ never imports options/.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from models.loss import Pix2PixLoss
from models.networks import WeightsMismatch, define_D, define_G, load_weights, size_multiple
from models.perceptual import build_vgg_loss
from models.pix2pix_model import Pix2PixModel, lr_factor
from models.reference import load_reference_weights
from models.runner import Runner
from models.translator import Translator

Groups = Mapping[str, Mapping[str, Any]]
__all__ = [
    "WeightsMismatch",
    "build_generator",
    "build_translator",
    "create_model",
    "pad_multiple",
]


def pad_multiple(g: Mapping[str, Any]) -> int:
    """Inputs of this generator are padded to multiples of this."""
    return size_multiple(g["netG"], g["num_downs"])


def build_generator(o: Groups, init: bool, grad_checkpoint: bool) -> nn.Module:
    """The generator of options o; init=False leaves the constructed weights (they are about to be loaded)."""
    init_type = o["init"]["init_type"] if init else None
    return define_G(o["generator"], init_type, o["init"]["init_gain"], grad_checkpoint)


def build_translator(
    o: Groups,
    netG_state: Mapping[str, torch.Tensor],
    device: torch.device,
    amp: str,
    channels_last: bool,
    reference: bool = False,
) -> Translator:
    """The trained generator of options o with the weights netG_state, for inference. Precision and layout
    are the caller's choice, not the training run's. The generator is left in train mode (pix2pix's test-time
    convention: dropout on, batch statistics); call .net.eval() for running statistics. reference: netG_state is
    a reference implementation's state dict (models/reference.py adapts it). Raises WeightsMismatch when
    netG_state does not fit the generator of o."""
    netG = build_generator(o, init=False, grad_checkpoint=False)
    if reference:
        load_reference_weights(netG, netG_state, o["generator"])
    else:
        load_weights(netG, netG_state, "generator")
    G = Runner(netG, device, amp, channels_last, compile=False)
    return Translator(G, pad_multiple(o["generator"]), o["generator"]["residual"])


def create_model(o: Groups, device: torch.device) -> Pix2PixModel:
    """The training model of options o on `device`. Raises models.perceptual.WeightsMissing when --lambda_vgg is
    on and the VGG19 weights cannot be had."""
    g, speed, loss, optim = o["generator"], o["speed"], o["loss"], o["optim"]
    init = o["init"]
    netG = build_generator(o, init=True, grad_checkpoint=speed["grad_checkpoint"])
    netD = define_D(o["discriminator"], g, init["init_type"], init["init_gain"], speed["grad_checkpoint"])
    if g["norm"] == "syncbatch" and torch.distributed.is_available() and torch.distributed.is_initialized():
        netG = nn.SyncBatchNorm.convert_sync_batchnorm(netG)
        netD = nn.SyncBatchNorm.convert_sync_batchnorm(netD)

    def runner(net: nn.Module, compile: bool) -> Runner:
        return Runner(net, device, speed["amp"], speed["channels_last"], compile)

    vgg = runner(build_vgg_loss(loss["vgg_weights"]), False) if loss["lambda_vgg"] > 0 else None
    criterion = Pix2PixLoss(
        loss["gan_mode"], loss["lambda_L1"], loss["lambda_gp"], loss["lambda_feat"], loss["lambda_vgg"], vgg
    )
    translate = Translator(runner(netG, speed["compile"]), pad_multiple(g), g["residual"])
    D = runner(netD, speed["compile"])
    # One fused kernel per optimiser step on CUDA; the default (foreach) elsewhere. weight_decay: L2 on the weights.
    adam = {"betas": (optim["beta1"], 0.999), "weight_decay": optim["weight_decay"]}
    if torch.device(device).type == "cuda":
        adam["fused"] = True
    optimizer_G = torch.optim.Adam(netG.parameters(), lr=optim["lr"], **adam)
    optimizer_D = torch.optim.Adam(netD.parameters(), lr=optim["lr_D"] or optim["lr"], **adam)

    def lr_lambda(step: int) -> float:
        # LambdaLR counts steps from 0; step k means epoch epoch_count + k.
        epoch = step + optim["epoch_count"]
        return lr_factor(epoch, optim["lr_policy"], optim["n_epochs"], optim["n_epochs_decay"], optim["lr_decay_iters"])

    run = o["run"]
    return Pix2PixModel(
        translate, D, criterion, optimizer_G, optimizer_D, lr_lambda, optim["ema_decay"], run["skip_nonfinite"]
    )
