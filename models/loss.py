"""The pix2pix objective apart from the loop: the GAN losses, the WGAN-GP penalty, and D's and G's losses by name."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.runner import Runner

# The valid values of --gan_mode, beside the code that implements them.
GAN_MODES = ("vanilla", "lsgan", "wgangp", "hinge")


class GANLoss(nn.Module):
    """GAN objective on discriminator logits: vanilla (BCE with logits), lsgan (MSE), wgangp (mean) or hinge
    (D: relu(1 - real) + relu(1 + fake); G: -mean)."""

    def __init__(self, gan_mode: str) -> None:
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise ValueError(f"gan_mode must be one of {', '.join(GAN_MODES)}, not {gan_mode!r}")
        self.gan_mode = gan_mode

    def forward(self, prediction, target_is_real: bool, for_D: bool = True) -> torch.Tensor:
        """for_D=False: the generator's loss, which differs from the discriminator's only for hinge. A list
        of predictions (a multi-scale D) gives the sum of their losses."""
        if isinstance(prediction, list):
            return sum(self(p, target_is_real, for_D) for p in prediction)
        if self.gan_mode == "hinge":
            if not for_D:
                return -prediction.mean()
            return F.relu(1 - prediction).mean() if target_is_real else F.relu(1 + prediction).mean()
        if self.gan_mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        if self.gan_mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


def gradient_penalty(netD: nn.Module, real_A: torch.Tensor, real_B: torch.Tensor, fake_B: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty (||grad D||_2 - 1)^2 on interpolates of (A, fake_B) and (A, real_B), A fixed."""
    alpha = torch.rand(real_B.shape[0], 1, 1, 1, device=real_B.device, dtype=real_B.dtype)
    mixed_B = (alpha * real_B + (1 - alpha) * fake_B).requires_grad_(True)
    # No checkpointing under the penalty's second-order gradient.
    flag = getattr(netD, "grad_checkpoint", False)
    if flag:
        netD.grad_checkpoint = False
    try:
        out = netD(torch.cat([real_A, mixed_B], 1))
        out = sum(o.sum() for o in out) if isinstance(out, list) else out
    finally:
        if flag:
            netD.grad_checkpoint = True
    (grad,) = torch.autograd.grad(out.sum(), mixed_B, create_graph=True)
    # The small offset keeps the norm's gradient finite where D's gradient is exactly zero.
    return (((grad.flatten(1) + 1e-16).norm(2, dim=1) - 1) ** 2).mean()


@dataclass
class Losses:
    """The loss to back-propagate (total) and the named terms that make it up, as logged."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


class Pix2PixLoss:
    """D: real pairs (A, B) are real, generated pairs (A, G(A)) fake, halved so that D learns more slowly than G
    (as in the paper), plus the WGAN-GP penalty with --gan_mode wgangp. G: fool D (G_GAN) and stay close to the
    target in L1 (G_L1), optionally matching D's features of real pairs (G_feat, pix2pixHD) and the target's
    VGG19 features (G_VGG). Pairs are stacked on channels: D sees (N, input_nc + output_nc, H, W)."""

    def __init__(
        self,
        gan_mode: str,
        lambda_L1: float,
        lambda_gp: float,
        lambda_feat: float,
        lambda_vgg: float,
        vgg: Runner | None,
        lambda_GAN: float,
        lambda_first: float,
    ) -> None:
        self.gan = GANLoss(gan_mode)
        # the L1 weight of a generator's first output (Double U-Net's), a share of lambda_L1; 0: none
        self.lambda_first = lambda_first
        self.lambda_GAN = lambda_GAN
        self.gan_mode = gan_mode
        self.lambda_L1, self.lambda_gp, self.lambda_feat, self.lambda_vgg = (
            lambda_L1,
            lambda_gp,
            lambda_feat,
            lambda_vgg,
        )
        self.vgg = vgg if lambda_vgg > 0 else None
        extra = (("G_feat",) if lambda_feat > 0 else ()) + (("G_VGG",) if self.vgg is not None else ())
        extra += ("G_L1_first",) if lambda_first > 0 else ()
        self.names = ("G_GAN", "G_L1", "D_real", "D_fake", *extra)

    def discriminator(self, D: Runner, real_A: torch.Tensor, real_B: torch.Tensor, fake_B: torch.Tensor) -> Losses:
        """fake_B must be detached: this loss trains D only."""
        D_fake = self.gan(D(torch.cat([real_A, fake_B], 1)), False)
        D_real = self.gan(D(torch.cat([real_A, real_B], 1)), True)
        total = (D_fake + D_real) * 0.5
        if self.gan_mode == "wgangp":  # in fp32: a second-order gradient is fragile in half precision
            total = total + self.lambda_gp * gradient_penalty(D.net, real_A, real_B, fake_B)
        return Losses(total, {"D_real": D_real, "D_fake": D_fake})

    def generator(
        self,
        D: Runner,
        real_A: torch.Tensor,
        real_B: torch.Tensor,
        fake_B: torch.Tensor,
        first_B: torch.Tensor | None = None,
    ) -> Losses:
        """D is frozen here and called without DDP (its parameters get no gradients). first_B: the generator's first
        output (Double U-Net), supervised by L1 with weight lambda_first * lambda_L1 when lambda_first > 0."""
        G_L1 = F.l1_loss(fake_B, real_B) * self.lambda_L1
        fake_pair = torch.cat([real_A, fake_B], 1)
        if self.lambda_feat > 0:
            G_GAN, G_feat = self._feature_matching(D, fake_pair, torch.cat([real_A, real_B], 1))
            terms = {"G_GAN": G_GAN * self.lambda_GAN, "G_L1": G_L1, "G_feat": G_feat}
        else:
            G_GAN = self.gan(D(fake_pair, sync=False), True, for_D=False)
            terms = {"G_GAN": G_GAN * self.lambda_GAN, "G_L1": G_L1}
        if self.vgg is not None:
            with self.vgg.autocast():
                terms["G_VGG"] = self.vgg.net(fake_B, real_B).float() * self.lambda_vgg
        if self.lambda_first > 0:
            if first_B is None:
                raise RuntimeError("lambda_first > 0 but the generator kept no first output in this pass")
            terms["G_L1_first"] = F.l1_loss(first_B, real_B) * (self.lambda_L1 * self.lambda_first)
        return Losses(sum(terms.values()), terms)

    def _feature_matching(self, D: Runner, fake_pair: torch.Tensor, real_pair: torch.Tensor):
        """(G_GAN on the last feature, the logits; the mean L1 between D's other features of fake and real pairs)."""
        fake = D.features(fake_pair)
        with torch.no_grad():
            real = D.features(real_pair)
        if not isinstance(fake[0], list):  # one scale
            fake, real = [fake], [real]
        loss_GAN = self.gan([f[-1].float() for f in fake], True, for_D=False)
        loss_feat = sum(
            F.l1_loss(ff.float(), fr.float())
            for fs, rs in zip(fake, real, strict=True)
            for ff, fr in zip(fs[:-1], rs[:-1], strict=True)
        )
        n_terms = sum(len(fs) - 1 for fs in fake)
        return loss_GAN, loss_feat * self.lambda_feat / n_terms
