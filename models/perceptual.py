"""VGG19 perceptual loss (as in pix2pixHD and SPADE) from a local copy of torchvision's ImageNet weights."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
# Ends of the slices of torchvision's vgg19().features: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
SLICE_ENDS = (2, 7, 12, 21, 30)
LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)  # pix2pixHD's: the deeper, the more weight
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class WeightsMissing(FileNotFoundError):
    """The VGG19 weights cannot be found or read; the message says what to pass."""


def find_vgg_weights(path: str | None) -> str:
    """path if given, else torchvision's file in the torch hub cache. Never downloads (the file is 548 MB):
    WeightsMissing says where to get it."""
    if path is not None:
        if not os.path.isfile(path):
            raise WeightsMissing(f"--vgg_weights {path}: no such file")
        return path
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", VGG19_FILE)
    if os.path.isfile(cached):
        return cached
    raise WeightsMissing(
        f"--lambda_vgg needs torchvision's ImageNet VGG19 weights ({VGG19_FILE}) and none were found: "
        f"pass --vgg_weights PATH, or put the file in {os.path.dirname(cached)}. Get it from {VGG19_URL} "
        "on a machine with a network (torchvision.models.vgg19(weights='IMAGENET1K_V1') saves it there too)."
    )


def vgg19_features(path: str) -> nn.Sequential:
    """torchvision's vgg19().features up to relu5_1, frozen, loaded from a full torchvision state dict
    (features.N.* keys, the classifier ignored) or a features-only one (N.* keys)."""
    from torchvision.models.vgg import cfgs, make_layers

    # Only the conv stack (not the 123 M-parameter classifier), built without touching the global RNG, so
    # a run with --lambda_vgg draws the same dropout masks as one without.
    with torch.random.fork_rng(devices=[]):
        features = make_layers(cfgs["E"])[: SLICE_ENDS[-1]]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a tensor file, or pickled objects weights_only refuses
        raise WeightsMissing(f"--vgg_weights {path}: cannot be read as a state dict ({type(e).__name__}: {e})") from e
    if isinstance(state, dict) and any(k.startswith("features.") for k in state):
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    wanted = features.state_dict()
    try:
        features.load_state_dict({k: state[k] for k in wanted})
    except (KeyError, RuntimeError, TypeError) as e:
        raise WeightsMissing(
            f"--vgg_weights {path}: not torchvision's VGG19 layout ({type(e).__name__}: {e}); expected {VGG19_FILE}"
        ) from e
    for p in features.parameters():
        p.requires_grad_(False)
    return features.eval()


class VGGLoss(nn.Module):
    """Weighted L1 between VGG19 features of fake and real at relu1_1 ... relu5_1.

    Images come in as (N, C, H, W) in [-1, 1] with C 1 or 3 and are mapped to ImageNet's normalisation.
    Gradients flow to `fake` only; the VGG weights never change (and are not saved with checkpoints).
    """

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        bounds = (0, *SLICE_ENDS)
        self.slices = nn.ModuleList(features[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGLoss:
        return super().train(False)  # no dropout or batch norm inside, but keep it fixed in eval mode anyway

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x.expand(-1, 3, -1, -1) + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            targets = self._features(real)
        return sum(
            w * F.l1_loss(f.float(), t.float())
            for w, f, t in zip(LAYER_WEIGHTS, self._features(fake), targets, strict=True)
        )


def build_vgg_loss(weights: str | None) -> VGGLoss:
    """The loss from --vgg_weights (or the hub cache); WeightsMissing with what to do otherwise."""
    return VGGLoss(vgg19_features(find_vgg_weights(weights)))
