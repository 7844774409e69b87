"""Generator and discriminator structure: parameter counts, dropout, output shapes, padding, losses, and the
generator registry."""

import dataclasses

import pytest
import torch
from torch import nn

from conftest import gen_opts, make_D, make_G
from models import build_generator, define_G, registry
from models.coarse_to_fine import CoarseToFineGenerator
from models.config import GeneratorConfig, InitConfig
from models.double_unet import DoubleUnetGenerator
from models.generators import ResnetGenerator, UnetGenerator, UnetSkipConnectionBlock
from models.layers import init_weights, pad_to_multiple
from models.loss import GANLoss, gradient_penalty
from models.registry import generator_spec, list_generators, register_generator
from options.options import build_parser, parse
from util.config import OptionError

UNET = {"upsample": "transpose", "max_mult": 8, "downsample": "conv", "attention": False, "grad_checkpoint": False}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    "netG, expected", [("unet_128", 41_828_995), ("unet_256", 54_413_955), ("unet_512", 66_998_915)]
)
def test_unet_parameter_counts_match_reference_design(netG, expected):
    with torch.device("meta"):  # counted, never run: no memory for the big nets
        assert n_params(make_G(init=False, netG=netG, ngf=64, norm="batch")) == expected


def test_basic_patchgan_parameter_count():
    with torch.device("meta"):
        assert n_params(make_D(netD="basic", ndf=64)) == 2_768_705


@pytest.mark.parametrize("netG, dropouts", [("unet_128", 2), ("unet_256", 3), ("unet_512", 4)])
def test_dropout_layers(netG, dropouts):
    with torch.device("meta"):
        net = make_G(init=False, netG=netG)
        assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == dropouts
        assert {m.p for m in net.modules() if isinstance(m, nn.Dropout)} == {0.5}
        assert not any(isinstance(m, nn.Dropout) for m in make_G(init=False, netG=netG, no_dropout=True).modules())
    # The innermost block (the one with no block inside) never has dropout.
    blocks = [m for m in net.modules() if isinstance(m, UnetSkipConnectionBlock)]
    innermost = [b for b in blocks if not any(isinstance(c, UnetSkipConnectionBlock) for c in b.model)]
    assert len(innermost) == 1 and not any(isinstance(m, nn.Dropout) for m in innermost[0].modules())


def test_num_downs_overrides_depth():
    net = make_G(netG="unet_256", ngf=4, num_downs=6)
    assert isinstance(net, UnetGenerator) and net.num_downs == 6
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("num_downs", [5, 6, 7, 8, 9])
def test_unet_output_shapes(num_downs):
    size = 2**num_downs
    net = UnetGenerator(3, 1, num_downs, ngf=4, norm="batch", dropout=0.0, **UNET)
    out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, 1, size, size)
    assert out.abs().max() <= 1  # tanh


@pytest.mark.parametrize("netG", ["resnet_6blocks", "resnet_9blocks"])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_resnet_generator_shapes(netG, norm):
    net = make_G(netG=netG, ngf=4, norm=norm)
    assert net(torch.randn(1, 3, 32, 48)).shape == (1, 3, 32, 48)


@pytest.mark.parametrize("size, side", [(256, 30), (512, 62)])
def test_patchgan_output_map(size, side):
    net = make_D(ndf=4)
    assert net(torch.randn(1, 6, size, size)).shape == (1, 1, side, side)


def test_other_discriminators():
    two_channels = gen_opts(input_nc=1, output_nc=3)
    assert make_D(g=two_channels, netD="pixel", ndf=4)(torch.randn(1, 4, 20, 24)).shape == (1, 1, 20, 24)
    # 5 layers halve 5 times: 256 -> 8, then two stride-1 4x4 convs: 7, 6.
    assert make_D(netD="n_layers", ndf=4, n_layers_D=5)(torch.randn(1, 6, 256, 256)).shape == (1, 1, 6, 6)


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_types(init_type):
    torch.manual_seed(0)
    net = make_D(init_type, ndf=4)
    conv = net.model[0]
    assert torch.all(conv.bias == 0) and conv.weight.std() > 0
    with pytest.raises(ValueError, match="init_type"):
        init_weights(net, "uniformish", 0.02)


@pytest.mark.parametrize("h, w", [(100, 60), (300, 700), (64, 64), (33, 257)])
def test_pad_to_multiple_any_size(h, w):
    x = torch.randn(1, 3, h, w)
    padded, h0, w0 = pad_to_multiple(x, 256)
    assert (h0, w0) == (h, w)
    assert padded.shape[-2] % 256 == 0 and padded.shape[-1] % 256 == 0
    assert torch.equal(padded[..., :h, :w], x)


def test_gan_losses():
    logits = torch.zeros(2, 1, 4, 4)
    assert GANLoss("vanilla")(logits, True).item() == pytest.approx(0.6931, abs=1e-4)  # log 2
    assert GANLoss("lsgan")(logits, True).item() == pytest.approx(1.0)
    assert GANLoss("lsgan")(logits, False).item() == pytest.approx(0.0)
    pred = torch.full((2, 1, 4, 4), 3.0)
    assert GANLoss("wgangp")(pred, True).item() == -3.0 and GANLoss("wgangp")(pred, False).item() == 3.0
    with pytest.raises(ValueError, match="gan_mode"):
        GANLoss("softplus")


def test_gradient_penalty_is_finite_and_differentiable():
    netD = make_D(g=gen_opts(norm="instance"), ndf=4)
    A, B, F = (torch.randn(2, 3, 32, 32) for _ in range(3))
    gp = gradient_penalty(netD, A, B, F)
    assert gp.ndim == 0 and torch.isfinite(gp) and gp >= 0
    gp.backward()
    # The penalty depends on D's weights (not on its last bias, which does not change the input gradient).
    assert netD.model[0].weight.grad is not None and netD.model[0].weight.grad.abs().sum() > 0


BUILT_IN = ["unet_128", "unet_256", "unet_512", "resnet_6blocks", "resnet_9blocks"]
BUILT_IN += ["c2f_unet_512", "c2f_unet_1024", "double_unet_256", "double_unet_512"]


def test_list_generators_gives_the_built_in_names_in_netG_s_order():
    assert list_generators() == BUILT_IN
    netG = next(f for f in dataclasses.fields(GeneratorConfig) if f.name == "netG")
    assert list(netG.metadata["choices"]) == BUILT_IN


@pytest.mark.parametrize(
    "name, is_unet, depth, multiple, net_type",
    [
        ("unet_128", True, 7, 128, UnetGenerator),
        ("unet_256", True, 8, 256, UnetGenerator),
        ("unet_512", True, 9, 512, UnetGenerator),
        ("resnet_6blocks", False, None, 4, ResnetGenerator),
        ("resnet_9blocks", False, None, 4, ResnetGenerator),
        ("c2f_unet_512", True, 9, 512, CoarseToFineGenerator),
        ("c2f_unet_1024", True, 10, 1024, CoarseToFineGenerator),
        ("double_unet_256", True, 8, 256, DoubleUnetGenerator),
        ("double_unet_512", True, 9, 512, DoubleUnetGenerator),
    ],
)
def test_spec_of_each_generator(name, is_unet, depth, multiple, net_type):
    spec = generator_spec(name)
    assert (spec.name, spec.is_unet, spec.depth, spec.size_multiple(None)) == (name, is_unet, depth, multiple)
    g = gen_opts(netG=name)
    assert (g.is_unet, g.depth, g.size_multiple) == (is_unet, depth, multiple)
    assert g.describe() == (f"{name} ({depth} downsamplings)" if is_unet else name)
    # --num_downs overrides a U-Net's depth and means nothing to another generator
    assert (spec.unet_depth(6), spec.size_multiple(6)) == ((6, 64) if is_unet else (None, multiple))
    with torch.device("meta"):
        net = make_G(init=False, netG=name, ngf=4)
    assert type(net) is net_type
    if is_unet:
        assert net.num_downs == depth


def test_unknown_generator_names_the_valid_ones():
    valid = f"netG must be one of {', '.join(BUILT_IN)}, not 'unet_1024'"
    with pytest.raises(ValueError, match=valid):
        generator_spec("unet_1024")
    with pytest.raises(ValueError, match=valid):
        define_G(gen_opts(netG="unet_1024"), None, 0.0, False)
    with pytest.raises(ValueError, match=valid):
        gen_opts(netG="unet_1024").describe()


class TinyGenerator(nn.Module):
    """A generator of one 3x3 conv: any input size."""

    def __init__(self, input_nc: int, output_nc: int, ngf: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(input_nc, output_nc, 3, padding=1)
        self.ngf = ngf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x))


@pytest.fixture
def tiny_registered(monkeypatch):
    """'tiny' registered as a generator for one test (the registry is restored afterwards)."""
    monkeypatch.setattr(registry, "_GENERATORS", dict(registry._GENERATORS))

    @register_generator("tiny", size_multiple=1)
    def tiny(input_nc: int, output_nc: int, *, ngf: int, norm: str, dropout: float, **unet_only) -> nn.Module:
        return TinyGenerator(input_nc, output_nc, ngf)

    return tiny


def test_a_registered_generator_is_built_and_accepted_as_netG(tiny_registered):
    assert list_generators() == [*BUILT_IN, "tiny"]
    spec = generator_spec("tiny")
    assert spec.builder is tiny_registered and not spec.is_unet and spec.size_multiple(None) == 1
    net = build_generator(gen_opts(netG="tiny", ngf=4, input_nc=2, output_nc=1), InitConfig(), grad_checkpoint=False)
    assert isinstance(net, TinyGenerator) and net.ngf == 4
    assert net(torch.randn(1, 2, 5, 7)).shape == (1, 1, 5, 7)
    # The flag's choices are read when used: --netG tiny parses, --help lists it, its size rule is the spec's.
    opt = parse(True, ["--netG", "tiny", "--preprocess", "none", "--crop_size", "100"])
    g = opt.generator
    assert (g.netG, g.is_unet, g.size_multiple, g.describe()) == ("tiny", False, 1, "tiny")
    assert "double_unet_512,tiny}" in build_parser(True).format_help()
    with pytest.raises(OptionError, match="--upsample bilinear: applies to U-Net generators only, not --netG tiny"):
        opt.replace(upsample="bilinear").check_fields()
    with pytest.raises(ValueError, match="'tiny' is already registered"):
        register_generator("tiny", size_multiple=1)(tiny_registered)


def test_a_spec_is_a_unet_with_a_depth_or_another_generator_with_a_multiple():
    for kw in ({}, {"depth": 6, "size_multiple": 4}):
        with pytest.raises(ValueError, match="give a U-Net's depth or another generator's size multiple"):
            register_generator("half", **kw)(UnetGenerator)
    assert "half" not in list_generators()
