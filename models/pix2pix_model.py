"""The pix2pix model: a conditional GAN step (D on (A, B) pairs, then G with GAN + lambda_L1 * L1)."""

from __future__ import annotations

import contextlib
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from models.networks import GANLoss, frozen_batchnorm, gradient_penalty, pad_to_multiple

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
log = logging.getLogger(__name__)


def lr_factor(epoch: int, policy: str, n_epochs: int, n_epochs_decay: int, lr_decay_iters: int) -> float:
    """Multiplier of the initial lr during epoch `epoch` (1-based).

    linear: 1 for epochs 1..n_epochs, then 1 - (epoch - n_epochs) / (n_epochs_decay + 1), so the last
    epoch trains at lr / (n_epochs_decay + 1) and the rate would reach zero one epoch later.
    step: 0.1 ** ((epoch - 1) // lr_decay_iters). cosine: half a cosine from 1 to 0 over all epochs.
    """
    if policy == "linear":
        return 1.0 - max(0, epoch - n_epochs) / float(n_epochs_decay + 1)
    if policy == "step":
        return 0.1 ** ((epoch - 1) // lr_decay_iters)
    if policy == "cosine":
        total = n_epochs + n_epochs_decay
        return 0.5 * (1 + math.cos(math.pi * (epoch - 1) / total))
    raise ValueError(f"lr_policy must be linear, step or cosine, not {policy!r}")


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


class Pix2PixModel:
    """Holds netG, netD, their Adam optimisers and lr schedulers; optimize_parameters() is one step.

    Losses stay on the device and are summed there; pop_losses() reads them back (one host sync), so
    the training loop syncs only every print_freq steps.
    """

    def __init__(
        self,
        netG: nn.Module,
        netD: nn.Module | None,
        device: torch.device | str = "cpu",
        gan_mode: str = "vanilla",
        lambda_L1: float = 100.0,
        lambda_gp: float = 10.0,
        lr: float = 2e-4,
        beta1: float = 0.5,
        lr_D: float | None = None,
        residual: bool = False,
        ema_decay: float = 0.0,
        lambda_feat: float = 0.0,
        lambda_vgg: float = 0.0,
        vgg: nn.Module | None = None,
        weight_decay: float = 0.0,
        pad_multiple: int = 1,
        skip_nonfinite: bool = False,
        lr_policy: str = "linear",
        n_epochs: int = 100,
        n_epochs_decay: int = 100,
        lr_decay_iters: int = 50,
        epoch_count: int = 1,
        amp: str = "none",
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.netG = netG.to(self.device, memory_format=self.memory_format)
        self.netD = netD.to(self.device, memory_format=self.memory_format) if netD is not None else None
        self.amp_dtype = AMP_DTYPES[amp]
        # Calls go through runG/runD (compiled or not); netG/netD keep the parameters and state dicts.
        self.runG, self.runD = self.netG, self.netD
        self.runD_for_G = self.netD  # D in the G step; see wrap_ddp
        self.dist = None  # util.distributed.Dist under torchrun
        self.compiled = False
        if compile:
            self.runG = torch.compile(self.netG)
            self.runD = torch.compile(self.netD) if self.netD is not None else None
            self.runD_for_G = self.runD
            self.compiled = True
        self.pad_multiple = pad_multiple
        self.residual = residual
        # Skipping needs to look at each loss on the host: one sync per step, so it is opt-in.
        self.skip_nonfinite = skip_nonfinite
        self.skipped_steps = 0
        self.gan_mode, self.lambda_L1, self.lambda_gp = gan_mode, lambda_L1, lambda_gp
        self.real_A = self.real_B = self.fake_B = torch.empty(0)
        self.image_paths: list[str] = []
        if self.netD is None:
            return
        # An exponential moving average of G's weights (and buffers), which test.py prefers when present.
        self.netG_ema = None
        if ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.netG_ema = AveragedModel(self.netG, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
        self.criterionGAN = GANLoss(gan_mode)
        self.criterionL1 = nn.L1Loss()
        # One fused kernel per optimiser step on CUDA; the default (foreach) elsewhere.
        fused = {"fused": True} if self.device.type == "cuda" else {}
        fused["weight_decay"] = weight_decay  # L2 on the weights, as Adam's weight_decay adds it
        self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=lr, betas=(beta1, 0.999), **fused)
        self.optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=lr_D or lr, betas=(beta1, 0.999), **fused)
        # fp16 needs loss scaling, one scaler per network; bf16 has fp32's range and needs none.
        self.scaler_G = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")
        self.scaler_D = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")

        def factor(step: int) -> float:
            # LambdaLR counts steps from 0; step k means epoch epoch_count + k.
            return lr_factor(step + epoch_count, lr_policy, n_epochs, n_epochs_decay, lr_decay_iters)

        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in (self.optimizer_G, self.optimizer_D)]
        self.lambda_feat = lambda_feat
        # The perceptual loss's VGG is fixed and not part of the checkpoint (its weights come from a file).
        self.lambda_vgg = lambda_vgg
        self.vgg = vgg.to(self.device, memory_format=self.memory_format) if vgg is not None and lambda_vgg > 0 else None
        extra = (("G_feat",) if lambda_feat > 0 else ()) + (("G_VGG",) if self.vgg is not None else ())
        self.loss_names = LOSS_NAMES + extra
        self._loss_sum = torch.zeros(len(self.loss_names), device=self.device)
        self._loss_steps = 0

    # ---- data and forward -------------------------------------------------------------------
    def set_input(self, batch: dict) -> None:
        """batch['A'] (N, input_nc, H, W) is the input; batch['B'] (N, output_nc, H, W) the target."""
        nb = self.device.type == "cuda"
        fmt = self.memory_format
        self.real_A = batch["A"].to(self.device, non_blocking=nb, memory_format=fmt)
        if "B" in batch:
            self.real_B = batch["B"].to(self.device, non_blocking=nb, memory_format=fmt)
        self.image_paths = list(batch["A_paths"])

    def forward(self) -> None:
        """fake_B = G(real_A); inputs that do not fit the generator are padded and the output cropped back."""
        x, h, w = pad_to_multiple(self.real_A, self.pad_multiple)
        with self.autocast():
            out = self._call(self.runG, x)
        out = out.float()  # losses, metrics and images in fp32
        if self.residual:  # G predicted B - A
            out = out + x
        self.fake_B = out if out.shape[-2:] == (h, w) else out[..., :h, :w]

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _call(self, net, x: torch.Tensor) -> torch.Tensor:
        """net(x); a --compile that fails at its first use falls back to eager, once, with a message."""
        if not self.compiled:
            return net(x)
        try:
            return net(x)
        except Exception as e:  # torch.compile raises many kinds (no compiler, unsupported op, ...)
            log.warning("--compile failed (%s: %s); running eagerly instead", type(e).__name__, str(e)[:200])
            self.compiled = False
            self.runG, self.runD, self.runD_for_G = self.netG, self.netD, self.netD
            return getattr(net, "_orig_mod", net)(x)

    def wrap_ddp(self, d) -> None:
        """DistributedDataParallel for G and D (torchrun). D's G-step pass uses the bare module: D is frozen
        then (requires_grad off), and a DDP reducer that saw no gradients would wait for them forever."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        self.dist = d
        self.runG = DDP(self.netG, device_ids=ids)
        if self.netD is not None:
            self.runD = DDP(self.netD, device_ids=ids)
            self.runD_for_G = self.netD

    def _D(self, A: torch.Tensor, B: torch.Tensor, net=None):
        """D's logits for the pair (A, B), stacked on channels, in fp32 (a list for a multi-scale D)."""
        with self.autocast():
            out = self._call(net if net is not None else self.runD, torch.cat([A, B], 1))
        return [o.float() for o in out] if isinstance(out, list) else out.float()

    # ---- one training step --------------------------------------------------------------------
    def optimize_parameters(self) -> None:
        assert self.netD is not None, "the model was built for testing (no discriminator)"
        self.forward()
        # D: real pairs (A, B) are real, generated pairs (A, G(A)) fake; the loss is halved so D learns
        # more slowly than G, as in the pix2pix paper.
        set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad(set_to_none=True)
        loss_D_fake = self.criterionGAN(self._D(self.real_A, self.fake_B.detach()), False)
        loss_D_real = self.criterionGAN(self._D(self.real_A, self.real_B), True)
        loss_D = (loss_D_fake + loss_D_real) * 0.5
        if self.gan_mode == "wgangp":  # in fp32: a second-order gradient is fragile in half precision
            loss_D = loss_D + self.lambda_gp * gradient_penalty(
                self.netD, self.real_A, self.real_B, self.fake_B.detach()
            )
        if self.skip_nonfinite and not torch.isfinite(loss_D):
            self.skipped_steps += 1
            return
        self.scaler_D.scale(loss_D).backward()
        self.scaler_D.step(self.optimizer_D)
        self.scaler_D.update()

        # G: fool D and stay close to the target in L1. D's weights are frozen for this backward.
        set_requires_grad(self.netD, False)
        self.optimizer_G.zero_grad(set_to_none=True)
        g_losses = self._G_losses()
        loss_G = sum(g_losses)
        if self.skip_nonfinite and not torch.isfinite(loss_G):
            self.skipped_steps += 1
            return
        self.scaler_G.scale(loss_G).backward()
        self.scaler_G.step(self.optimizer_G)
        self.scaler_G.update()
        if self.netG_ema is not None:
            self.netG_ema.update_parameters(self.netG)

        self._loss_sum += torch.stack([*g_losses[:2], loss_D_real, loss_D_fake, *g_losses[2:]]).detach()
        self._loss_steps += 1

    def _G_losses(self) -> list[torch.Tensor]:
        """[G_GAN, G_L1] (+ G_feat with --lambda_feat, + G_VGG with --lambda_vgg): fool D, stay close to the
        target in L1, (feature matching, as in pix2pixHD) make D's intermediate features of fake pairs match
        those of real ones, and (perceptual loss) match the target's VGG19 features."""
        losses = self._G_adversarial()
        if self.vgg is not None:
            with self.autocast():
                losses.append(self.vgg(self.fake_B, self.real_B) * self.lambda_vgg)
        return losses

    def _G_adversarial(self) -> list[torch.Tensor]:
        loss_L1 = self.criterionL1(self.fake_B, self.real_B) * self.lambda_L1
        if self.lambda_feat <= 0:
            loss_GAN = self.criterionGAN(self._D(self.real_A, self.fake_B, self.runD_for_G), True, for_D=False)
            return [loss_GAN, loss_L1]
        D = getattr(self.runD_for_G, "_orig_mod", self.runD_for_G)
        with self.autocast():
            fake = D.features(torch.cat([self.real_A, self.fake_B], 1))
            with torch.no_grad():
                real = D.features(torch.cat([self.real_A, self.real_B], 1))
        if not isinstance(fake[0], list):  # one scale
            fake, real = [fake], [real]
        loss_GAN = self.criterionGAN([f[-1].float() for f in fake], True, for_D=False)
        loss_feat = sum(
            F.l1_loss(ff.float(), fr.float())
            for fs, rs in zip(fake, real, strict=True)
            for ff, fr in zip(fs[:-1], rs[:-1], strict=True)
        )
        n_terms = sum(len(fs) - 1 for fs in fake)
        return [loss_GAN, loss_L1, loss_feat * self.lambda_feat / n_terms]

    def optimize_accumulated(self, micro: list[dict]) -> None:
        """One step over several micro-batches (--accum_steps), equal to one step on their union when the
        normalisation is per image (instance norm or none): first D, accumulated over all of them, then G
        against the updated D. G's forward is recomputed in the G phase with the same random state (the
        same dropout masks), so only one micro-batch's activations are alive at a time. Under torchrun,
        gradients are all-reduced once, after the last micro-batch (no_sync before)."""
        assert self.netD is not None, "the model was built for testing (no discriminator)"
        k = len(micro)
        rng = []
        set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad(set_to_none=True)
        sums = torch.zeros(len(self.loss_names), device=self.device)
        for i, batch in enumerate(micro):
            self.set_input(batch)
            rng.append(self._rng_state())
            with torch.no_grad():
                self.forward()
            with self._no_sync(self.runD, i < k - 1):
                loss_D_fake = self.criterionGAN(self._D(self.real_A, self.fake_B), False)
                loss_D_real = self.criterionGAN(self._D(self.real_A, self.real_B), True)
                loss_D = (loss_D_fake + loss_D_real) * 0.5
                if self.gan_mode == "wgangp":
                    loss_D = loss_D + self.lambda_gp * gradient_penalty(
                        self.netD, self.real_A, self.real_B, self.fake_B
                    )
                self.scaler_D.scale(loss_D / k).backward()
            sums[2:4] += torch.stack([loss_D_real, loss_D_fake]).detach() / k
        self.scaler_D.step(self.optimizer_D)
        self.scaler_D.update()

        set_requires_grad(self.netD, False)
        self.optimizer_G.zero_grad(set_to_none=True)
        for i, batch in enumerate(micro):
            self.set_input(batch)
            self._set_rng_state(rng[i])
            with self._no_sync(self.runG, i < k - 1), frozen_batchnorm(self.netG):
                self.forward()  # the second pass must not move batch norm's running statistics again
                g_losses = self._G_losses()
                self.scaler_G.scale(sum(g_losses) / k).backward()
            g = torch.stack(g_losses).detach() / k
            sums[:2] += g[:2]
            sums[4:] += g[2:]
        self.scaler_G.step(self.optimizer_G)
        self.scaler_G.update()
        if self.netG_ema is not None:
            self.netG_ema.update_parameters(self.netG)
        self._loss_sum += sums
        self._loss_steps += 1

    def _no_sync(self, net, skip: bool):
        return net.no_sync() if skip and hasattr(net, "no_sync") else contextlib.nullcontext()

    def _rng_state(self):
        return (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None)

    def _set_rng_state(self, state) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)

    def pop_losses(self) -> tuple[dict[str, float], bool]:
        """Mean losses since the last call and whether all were finite; one host-device sync."""
        steps = max(self._loss_steps, 1)
        mean = self._loss_sum / steps
        if self.dist is not None:  # every process's losses, averaged: all processes call this together
            from util.distributed import mean_over_ranks

            mean = mean_over_ranks(self.dist, mean)
        values = mean.tolist()
        self._loss_sum.zero_()
        self._loss_steps = 0
        losses = dict(zip(self.loss_names, values, strict=True))
        return losses, all(math.isfinite(v) for v in values)

    def update_learning_rate(self) -> float:
        """Step the schedulers at the end of an epoch; returns the new lr."""
        for s in self.schedulers:
            s.step()
        return self.optimizer_G.param_groups[0]["lr"]

    # ---- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        assert self.netD is not None
        return {
            "netG": self.netG.state_dict(),
            "netD": self.netD.state_dict(),
            "optimizer_G": self.optimizer_G.state_dict(),
            "optimizer_D": self.optimizer_D.state_dict(),
            "scheduler_G": self.schedulers[0].state_dict(),
            "scheduler_D": self.schedulers[1].state_dict(),
            "scaler_G": self.scaler_G.state_dict(),
            "scaler_D": self.scaler_D.state_dict(),
            **({"netG_ema_avg": self.netG_ema.state_dict()} if self.netG_ema is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        assert self.netD is not None
        self.netG.load_state_dict(state["netG"])
        self.netD.load_state_dict(state["netD"])
        self.optimizer_G.load_state_dict(state["optimizer_G"])
        self.optimizer_D.load_state_dict(state["optimizer_D"])
        self.schedulers[0].load_state_dict(state["scheduler_G"])
        self.schedulers[1].load_state_dict(state["scheduler_D"])
        if self.netG_ema is not None and "netG_ema_avg" in state:
            self.netG_ema.load_state_dict(state["netG_ema_avg"])
        if state.get("scaler_G") and self.scaler_G.is_enabled():  # empty when saved without --amp fp16
            self.scaler_G.load_state_dict(state["scaler_G"])
            self.scaler_D.load_state_dict(state["scaler_D"])

    def generator_weights(self) -> dict:
        """What a generator snapshot holds: netG, and netG_ema (the averaged weights) with --ema_decay."""
        out = {"netG": self.netG.state_dict()}
        if self.netG_ema is not None:
            out["netG_ema"] = self.netG_ema.module.state_dict()
        return out

    def current_visuals(self) -> dict[str, torch.Tensor]:
        visuals = {"real_A": self.real_A, "fake_B": self.fake_B}
        if self.real_B.numel():
            visuals["real_B"] = self.real_B
        return visuals
