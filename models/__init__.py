"""The one place that builds networks, the training model and the inference Translator from the frozen configs of
models.config (GeneratorConfig, ModelConfig, ...); models/ never imports options/. The modules below take explicit
arguments, never a config: define_G looks the generator up in the registry (models/registry.py)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from models import coarse_to_fine, double_unet  # noqa: F401  (they register their generators)
from models.config import DiscriminatorConfig, GeneratorConfig, InitConfig, ModelConfig
from models.discriminators import build_discriminator
from models.layers import WeightsMismatch, add_spectral_norm, init_weights, load_weights
from models.loss import Pix2PixLoss
from models.perceptual import build_vgg_loss
from models.pix2pix_model import Pix2PixModel, lr_factor
from models.reference import load_reference_weights
from models.registry import generator_spec
from models.runner import Runner
from models.translator import Translator

__all__ = [
    "GeneratorConfig",
    "ModelConfig",
    "WeightsMismatch",
    "build_generator",
    "build_translator",
    "create_model",
    "define_D",
    "define_G",
]


def define_G(g: GeneratorConfig, init_type: str | None, init_gain: float, grad_checkpoint: bool) -> nn.Module:
    """The generator of a GeneratorConfig (netG, ngf, norm, ...: a run's saved options or parsed flags): the
    registered builder of g.netG with g's values. init_type None leaves the weights as constructed (they are about
    to be loaded); grad_checkpoint recomputes U-Net activations in the backward pass instead of keeping them."""
    spec = generator_spec(g.netG)
    net = spec.builder(
        g.input_nc,
        g.output_nc,
        depth=spec.unet_depth(g.num_downs),
        ngf=g.ngf,
        norm=g.norm,
        dropout=0.0 if g.no_dropout else g.dropout,
        upsample=g.upsample,
        downsample=g.downsample,
        max_mult=g.max_mult,
        attention=g.attention,
        grad_checkpoint=grad_checkpoint,
    )
    if init_type is not None:
        init_weights(net, init_type, init_gain)
    return add_spectral_norm(net) if g.spectral_norm in ("G", "both") else net


def define_D(
    d: DiscriminatorConfig, g: GeneratorConfig, init_type: str, init_gain: float, grad_checkpoint: bool
) -> nn.Module:
    """The conditional discriminator of a DiscriminatorConfig (netD, ndf, n_layers_D, num_D). It sees the
    generator's input and output channels stacked and takes norm and spectral_norm from the generator's config g."""
    net = build_discriminator(
        d.netD,
        g.input_nc + g.output_nc,
        ndf=d.ndf,
        n_layers_D=d.n_layers_D,
        num_D=d.num_D,
        norm=g.norm,
        grad_checkpoint=grad_checkpoint,
    )
    init_weights(net, init_type, init_gain)
    return add_spectral_norm(net) if g.spectral_norm in ("D", "both") else net


def build_generator(g: GeneratorConfig, init: InitConfig | None, grad_checkpoint: bool) -> nn.Module:
    """The generator of g; init=None leaves the constructed weights (they are about to be loaded)."""
    if init is None:
        return define_G(g, None, 0.0, grad_checkpoint)
    return define_G(g, init.init_type, init.init_gain, grad_checkpoint)


def build_translator(
    g: GeneratorConfig,
    netG_state: Mapping[str, torch.Tensor],
    device: torch.device,
    amp: str,
    channels_last: bool,
    reference: bool = False,
) -> Translator:
    """The trained generator of g with the weights netG_state, for inference. Precision and layout are the
    caller's choice, not the training run's. The generator is left in train mode (pix2pix's test-time
    convention: dropout on, batch statistics); call .net.eval() for running statistics. reference: netG_state is
    a reference implementation's state dict (models/reference.py adapts it). Raises WeightsMismatch when
    netG_state does not fit the generator of g."""
    netG = build_generator(g, init=None, grad_checkpoint=False)
    if reference:
        load_reference_weights(netG, netG_state, g)
    else:
        load_weights(netG, netG_state, "generator")
    G = Runner(netG, device, amp, channels_last, compile=None)
    return Translator(G, g.size_multiple, g.residual)


def create_model(c: ModelConfig, device: torch.device) -> Pix2PixModel:
    """The training model of c on `device`. Raises models.perceptual.WeightsMissing when --lambda_vgg is on and
    the VGG19 weights cannot be had."""
    g, speed, loss, optim = c.generator, c.speed, c.loss, c.optim
    netG = build_generator(g, c.init, grad_checkpoint=speed.grad_checkpoint)
    netD = define_D(c.discriminator, g, c.init.init_type, c.init.init_gain, speed.grad_checkpoint)
    if g.norm == "syncbatch" and torch.distributed.is_available() and torch.distributed.is_initialized():
        netG = nn.SyncBatchNorm.convert_sync_batchnorm(netG)
        netD = nn.SyncBatchNorm.convert_sync_batchnorm(netD)

    def runner(net: nn.Module, compile: bool) -> Runner:
        return Runner(net, device, speed.amp, speed.channels_last, speed.compile_mode if compile else None)

    vgg = runner(build_vgg_loss(loss.vgg_weights), False) if loss.lambda_vgg > 0 else None
    lambda_first = loss.lambda_first if "first_output" in g.spec.traits else 0.0
    criterion = Pix2PixLoss(
        loss.gan_mode,
        loss.lambda_L1,
        loss.lambda_gp,
        loss.lambda_feat,
        loss.lambda_vgg,
        vgg,
        loss.lambda_GAN,
        lambda_first,
    )
    translate = Translator(runner(netG, speed.compile), g.size_multiple, g.residual)
    D = runner(netD, speed.compile)
    # Fused Adam where PyTorch has it (CUDA and the CPU): one kernel per step (4x faster than the per-tensor loop on
    # the CPU), and it skips an update on the device when told (GradScaler, --skip_nonfinite) instead of asking
    # the host. weight_decay: L2 on the weights.
    adam = {"betas": (optim.beta1, 0.999), "weight_decay": optim.weight_decay}
    if torch.device(device).type in ("cuda", "cpu"):
        adam["fused"] = True

    def lr(value: float):
        # a CUDA graph replays the rate it captured: it must be a device tensor that the schedule fills in
        return torch.tensor(value, device=device) if speed.cuda_graph else value

    if speed.cuda_graph:
        adam["capturable"] = True
    optimizer_G = torch.optim.Adam(netG.parameters(), lr=lr(optim.lr), **adam)
    optimizer_D = torch.optim.Adam(netD.parameters(), lr=lr(optim.lr_D or optim.lr), **adam)

    def lr_lambda(step: int) -> float:
        # LambdaLR counts steps from 0; step k means epoch epoch_count + k.
        epoch = step + optim.epoch_count
        return lr_factor(epoch, optim.lr_policy, optim.n_epochs, optim.n_epochs_decay, optim.lr_decay_iters)

    return Pix2PixModel(
        translate,
        D,
        criterion,
        optimizer_G,
        optimizer_D,
        lr_lambda,
        optim.ema_decay,
        optim.skip_nonfinite,
        optim.fix_global_epochs,
    )
