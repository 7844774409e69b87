"""The pix2pix objective apart from the loop: D's and G's losses, returned by name."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.networks import GANLoss, gradient_penalty
from models.runner import Runner


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
    ) -> None:
        self.gan = GANLoss(gan_mode)
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
        self.names = ("G_GAN", "G_L1", "D_real", "D_fake", *extra)

    def discriminator(self, D: Runner, real_A: torch.Tensor, real_B: torch.Tensor, fake_B: torch.Tensor) -> Losses:
        """fake_B must be detached: this loss trains D only."""
        D_fake = self.gan(D(torch.cat([real_A, fake_B], 1)), False)
        D_real = self.gan(D(torch.cat([real_A, real_B], 1)), True)
        total = (D_fake + D_real) * 0.5
        if self.gan_mode == "wgangp":  # in fp32: a second-order gradient is fragile in half precision
            total = total + self.lambda_gp * gradient_penalty(D.net, real_A, real_B, fake_B)
        return Losses(total, {"D_real": D_real, "D_fake": D_fake})

    def generator(self, D: Runner, real_A: torch.Tensor, real_B: torch.Tensor, fake_B: torch.Tensor) -> Losses:
        """D is frozen here and called without DDP (its parameters get no gradients)."""
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
