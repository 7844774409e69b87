"""The 256-to-512 switches: each builds, trains a step with tiny sizes, keeps the output shape, and is
saved with the run so test.py rebuilds the same network."""

import dataclasses
import json
import logging
import os
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import test as test_script
import train
from conftest import TINY, make_D, make_G, train_args
from data import EpochSampler, create_dataloader, create_dataset
from models import build_translator, create_model
from models.generators import AttentionGate, Blur, BlurConv2d, UnetGenerator
from models.loss import GANLoss
from options.options import parse

UNET = {"norm": "batch", "dropout": 0.5, "upsample": "transpose", "max_mult": 8, "downsample": "conv"}
UNET.update(attention=False, grad_checkpoint=False)


def has(net: nn.Module, kind: type) -> bool:
    return any(isinstance(m, kind) for m in net.modules())


def upsampling(net: nn.Module, mode: str) -> bool:
    """Every 2x upsampling of a U-Net is resize (mode) + conv, none a transposed conv."""
    modes = {m.mode for m in net.modules() if isinstance(m, nn.Upsample)}
    return modes == {mode} and not has(net, nn.ConvTranspose2d)


def widest(net: nn.Module) -> int:
    return max(m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d))


def checkpointed(s) -> bool:
    """--grad_checkpoint on G's levels and on D."""
    levels = [m.grad_checkpoint for m in s.model.netG.modules() if hasattr(m, "grad_checkpoint")]
    return bool(levels) and all(levels) and s.model.netD.grad_checkpoint


def multiscale(s, num_D: int, n_layers: int) -> bool:
    """num_D PatchGANs of n_layers strided convs each (plus the first and the last conv)."""
    D = s.model.netD
    convs = [sum(isinstance(m, nn.Conv2d) for m in d.modules()) for d in getattr(D, "scales", [D])]
    return convs == [n_layers + 2] * num_D


def decays(s, rate: float) -> bool:
    return all(g["weight_decay"] == rate for o in (s.model.optimizer_G, s.model.optimizer_D) for g in o.param_groups)


def parametrized(net: nn.Module) -> bool:
    return any("parametrizations.weight" in k for k in net.state_dict())


# Each switch, and what shows that it reached the model or its data (s: the trained model, its step's losses, and
# whether the batch train.py's data pipeline gave differs from the one without the switch). Defaults for
# comparison, at TINY sizes: transposed-conv upsampling, max_mult 8 (G's widest conv 4 x 8 = 32 channels), vanilla
# GAN loss, one basic PatchGAN (3 strided convs), D's lr = G's, no weight decay, no augmentation.
SIXTY_FOUR = ("--num_downs", "6", "--crop_size", "64", "--load_size", "72")  # the depth with a dropout block
SWITCHES = [
    (("--upsample", "bilinear"), lambda s: upsampling(s.model.netG, "bilinear")),
    (("--upsample", "nearest"), lambda s: upsampling(s.model.netG, "nearest")),
    (
        ("--upsample", "pixelshuffle"),
        lambda s: has(s.model.netG, nn.PixelShuffle) and not has(s.model.netG, nn.ConvTranspose2d),
    ),
    (("--max_mult", "4"), lambda s: widest(s.model.netG) == 4 * 4),
    (("--residual",), lambda s: s.model.translate.residual),
    (("--gan_mode", "hinge"), lambda s: s.model.loss.gan.gan_mode == "hinge"),
    (
        ("--lr_D", "0.0001"),
        lambda s: (
            [g["lr"] for o in (s.model.optimizer_G, s.model.optimizer_D) for g in o.param_groups] == [0.0002, 0.0001]
        ),
    ),
    (("--spectral_norm", "both"), lambda s: parametrized(s.model.netG) and parametrized(s.model.netD)),
    (("--lambda_feat", "10"), lambda s: s.losses.get("G_feat", 0) > 0),
    (
        ("--netD", "n_layers", "--n_layers_D", "2", "--num_D", "2", "--lambda_feat", "10"),
        lambda s: multiscale(s, 2, 2) and s.losses.get("G_feat", 0) > 0,
    ),
    (("--aug_scale", "0.2", "--aug_rotate", "15", "--aug_color", "0.3"), lambda s: s.data_differs),
    (
        (*SIXTY_FOUR, "--dropout", "0.2", "--weight_decay", "0.0001"),
        lambda s: [m.p for m in s.model.netG.modules() if isinstance(m, nn.Dropout)] == [0.2] and decays(s, 0.0001),
    ),
    (
        ("--netD", "n_layers", "--n_layers_D", "2", "--num_D", "2", "--gan_mode", "wgangp", "--grad_checkpoint"),
        lambda s: multiscale(s, 2, 2) and s.model.loss.gan.gan_mode == "wgangp" and checkpointed(s),
    ),
    (("--attention",), lambda s: has(s.model.netG, AttentionGate)),
    (("--downsample", "blur"), lambda s: has(s.model.netG, BlurConv2d)),
    (
        ("--attention", "--downsample", "blur", "--grad_checkpoint"),
        lambda s: has(s.model.netG, AttentionGate) and has(s.model.netG, BlurConv2d) and checkpointed(s),
    ),
]


def first_batch(opt) -> dict:
    """The first training batch train.py's data pipeline gives for these options."""
    data, seed = opt.data, opt.run.seed
    dataset = create_dataset(data, opt.preprocess, opt.generator, opt.augment, seed, train=True, values=opt.values)
    sampler = EpochSampler(len(dataset), seed, not data.serial_batches)
    return next(iter(create_dataloader(dataset, data.batch_size, 0, sampler)))


def test_the_defaults_show_none_of_the_switches(tiny_data):
    """The checks below are false without their switch: each can fail."""
    opt = parse(True, ["--dataroot", tiny_data, *TINY, "--batch_size", "2"])
    torch.manual_seed(0)
    model = create_model(opt.model_config(), torch.device("cpu"))
    model.train_step([first_batch(opt)])
    s = SimpleNamespace(model=model, losses=model.pop_losses()[0], data_differs=False)
    assert [check(s) for _, check in SWITCHES] == [False] * len(SWITCHES)


@pytest.mark.parametrize("flags, reached", SWITCHES, ids=[" ".join(f) for f, _ in SWITCHES])
def test_switch_builds_and_trains_a_step(flags, reached, tiny_data):
    common = ["--dataroot", tiny_data, *TINY, "--batch_size", "2"]
    opt = parse(True, [*common, *flags])
    torch.manual_seed(0)
    model = create_model(opt.model_config(), torch.device("cpu"))
    batch, plain = first_batch(opt), first_batch(parse(True, common))
    g0 = [p.detach().clone() for p in model.netG.parameters()]
    model.train_step([batch])
    crop = opt.preprocess.crop_size
    assert model.fake_B.shape == (2, 3, crop, crop)
    losses, finite = model.pop_losses()
    assert finite
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.netG.parameters(), strict=True))
    data_differs = batch["A"].shape != plain["A"].shape or not torch.equal(batch["A"], plain["A"])
    assert reached(SimpleNamespace(model=model, losses=losses, data_differs=data_differs))


def test_upsample_layers_and_channel_cap():
    net = UnetGenerator(3, 3, 6, ngf=8, **{**UNET, "upsample": "pixelshuffle", "max_mult": 4})
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    assert any(isinstance(m, nn.PixelShuffle) for m in net.modules())
    assert max(m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)) == 4 * 8 * 4  # 4ngf x 4 (shuffle)
    widest = UnetGenerator(3, 3, 6, ngf=8, **{**UNET, "max_mult": 2})
    assert max(m.out_channels for m in widest.modules() if isinstance(m, nn.Conv2d)) == 16


def test_residual_output_is_input_plus_prediction():
    g = parse(True, [*TINY, "--norm", "instance", "--no_dropout", "--residual"]).generator
    net = make_G(**{**dataclasses.asdict(g), "residual": False})
    translate = build_translator(g, net.state_dict(), torch.device("cpu"), "none", False)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(translate(x), x + net(x), atol=1e-6)
        assert not torch.allclose(translate(x), net(x), atol=1e-3)


def test_hinge_loss_values():
    loss = GANLoss("hinge")
    pred = torch.tensor([[0.5, -2.0]])
    assert loss(pred, True).item() == pytest.approx((0.5 + 3.0) / 2)
    assert loss(pred, False).item() == pytest.approx((1.5 + 0.0) / 2)
    assert loss(pred, True, for_D=False).item() == pytest.approx(0.75)


def train_one_step_then_test(tiny_data: str, tmp_path, name: str, *flags: str) -> int:
    """Train `name` for one step with the tiny settings and flags, then run test.py on it (no flags): its status."""
    args = train_args(tiny_data, tmp_path, name, *flags)
    assert train.main([*args, "--stop_after_iters", "1", "--no_html"]) == 0
    res = ["--results_dir", str(tmp_path / "res"), "--num_threads", "0"]
    return test_script.main(["--checkpoints_dir", str(tmp_path), "--name", name, *res])


def test_switches_are_saved_and_rebuilt_by_test_py(tiny_data, tmp_path):
    flags = ["--upsample", "pixelshuffle", "--max_mult", "2", "--residual", "--attention", "--downsample", "blur"]
    assert train_one_step_then_test(tiny_data, tmp_path, "s", *flags) == 0
    assert os.path.exists(tmp_path / "res" / "s" / "test_latest" / "images" / "img000_fake_B.png")
    saved = json.loads((tmp_path / "res" / "s" / "test_latest" / "test_opt.json").read_text())["options"]
    assert (saved["upsample"], saved["attention"], saved["downsample"]) == ("pixelshuffle", True, "blur")


def test_residual_needs_matching_channels(capsys):
    with pytest.raises(SystemExit) as e:
        parse(True, ["--residual", "--input_nc", "1"])
    assert e.value.code == 2 and "--residual adds real_A" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["D", "G", "both"])
def test_spectral_norm(which, tiny_data, tmp_path):
    opt = parse(True, [*TINY, "--spectral_norm", which])
    model = create_model(opt.model_config(), torch.device("cpu"))
    for net, name in ((model.netG, "G"), (model.netD, "D")):
        has = any("parametrizations.weight" in k for k in net.state_dict())
        assert has == (which in (name, "both"))
    if which == "G":  # test.py rebuilds the parametrised generator from the saved options
        assert train_one_step_then_test(tiny_data, tmp_path, "sn", "--spectral_norm", "G") == 0


def test_init_from_a_shallower_unet(tiny_data, tmp_path, caplog):
    from engine import checkpoint, resume

    small = ["--dataroot", tiny_data, "--checkpoints_dir", str(tmp_path), *TINY, "--no_html"]
    assert train.main([*small, "--name", "u5", "--stop_after_iters", "1"]) == 0
    src = checkpoint.load(str(tmp_path / "u5" / "latest.pth"))["model"]["netG"]
    # One more level (num_downs 6, crop 64): the outer levels' tensors load, the new inner ones start fresh.
    deeper = [a if a != "5" else "6" for a in small]
    deeper = [
        *deeper[: deeper.index("--load_size")],
        "--load_size",
        "72",
        "--crop_size",
        "64",
        "--name",
        "u6",
        "--init_from",
        str(tmp_path / "u5" / "latest.pth"),
        "--stop_after_iters",
        "0",
        "--n_epochs",
        "1",
        "--n_epochs_decay",
        "0",
    ]
    opt = parse(True, deeper)
    model = create_model(opt.model_config(), torch.device("cpu"))
    loaded, skipped = resume.load_matching(model.netG, src)
    assert loaded and skipped
    outer = "model.model.0.weight"
    assert outer in loaded and torch.equal(model.netG.state_dict()[outer], src[outer])
    assert train.main(deeper) == 0
    assert "--init_from: netG: loaded" in caplog.text


def test_ema_generator_is_kept_resumed_and_used_by_test_py(tiny_data, tmp_path, caplog):
    from engine import checkpoint

    args = [
        "--dataroot",
        tiny_data,
        "--checkpoints_dir",
        str(tmp_path),
        "--name",
        "ema",
        *TINY,
        "--no_html",
        "--ema_decay",
        "0.5",
        "--n_epochs",
        "1",
        "--n_epochs_decay",
        "0",
    ]
    assert train.main([*args, "--stop_after_iters", "2"]) == 0
    assert train.main([*args, "--continue_train"]) == 0
    state = checkpoint.load(str(tmp_path / "ema" / "latest.pth"))
    avg = state["model"]["netG_ema_avg"]
    assert int(avg["n_averaged"]) == 4  # 2 steps, then 2 more after the resume
    key = "module.model.model.0.weight"
    assert not torch.equal(avg[key], state["model"]["netG"][key[7:]])  # an average, not a copy
    snap = checkpoint.load(str(tmp_path / "ema" / "1_net_G.pth"))
    assert torch.equal(snap["netG_ema"][key[7:]], avg[key])
    res = ["--results_dir", str(tmp_path / "res"), "--num_threads", "0"]
    with caplog.at_level(logging.INFO):
        assert test_script.main(["--checkpoints_dir", str(tmp_path), "--name", "ema", *res]) == 0
    assert "exponential moving average" in caplog.text


def test_multiscale_discriminator_and_feature_matching():
    d = make_D(netD="n_layers", ndf=4, n_layers_D=2, num_D=3)
    outs = d(torch.randn(1, 6, 64, 64))
    assert [o.shape[-1] for o in outs] == [14, 6, 2]  # 64, 32, 16 px inputs, 2 stride-2 layers each
    feats = d.features(torch.randn(1, 6, 64, 64))
    assert len(feats) == 3 and all(len(f) == 4 for f in feats)  # 3 segments + logits per scale
    opt = parse(True, [*TINY, "--lambda_feat", "10", "--accum_steps", "2"])
    model = create_model(opt.model_config(), torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    micro = [
        {"A": torch.rand(1, 3, 32, 32, generator=g), "B": torch.rand(1, 3, 32, 32, generator=g), "A_paths": ["a"]}
        for _ in range(2)
    ]
    model.train_step(micro)
    losses, finite = model.pop_losses()
    assert finite and list(losses) == ["G_GAN", "G_L1", "D_real", "D_fake", "G_feat"] and losses["G_feat"] > 0


def train_refuses(tmp_path, capsys, *flags: str) -> str:
    """train.py stops with exit status 2 before any training; returns what it printed to stderr. A rule across
    configs (options.rules) is refused by train.py's resolve step, not by parse."""
    args = ["--checkpoints_dir", str(tmp_path / "ck"), "--name", "refused", *flags]
    with pytest.raises(SystemExit) as e:
        train.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "train.py: error: " in err
    assert not os.path.exists(tmp_path / "ck" / "refused" / "latest.pth")
    return err


def test_discriminator_too_deep_for_its_scales(tiny_data, tmp_path, capsys):
    # basic PatchGAN at 16 px on the coarse scale
    err = train_refuses(tmp_path, capsys, "--dataroot", tiny_data, *TINY, "--num_D", "2")
    assert "--num_D 2: it needs at least 64 pixels" in err


def _twin_images(folder, n=2, size=32):
    """A|B images whose halves are identical, so any difference after augmentation is a pairing error."""
    import numpy as np
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([a, a], 1)).save(os.path.join(folder, f"t{i}.png"))


@pytest.mark.parametrize("color_on", ["input", "both"])
def test_augmentation_keeps_pairs_aligned_and_is_deterministic(tmp_path, color_on):
    from conftest import aligned, prep
    from data.transforms import Augment

    _twin_images(str(tmp_path / "train"))
    pre = prep("resize_and_crop", 40, 32)
    geo = aligned(str(tmp_path), "train", preprocess=pre, seed=1, aug=Augment(scale=0.3, rotate=30))
    s = geo[(2, 1)]
    assert torch.equal(s["A"], s["B"])  # one set of geometric parameters for both
    plain = aligned(str(tmp_path), "train", preprocess=pre, seed=1)[(2, 1)]["A"]
    assert not torch.equal(s["A"], plain)  # it did something
    state = torch.get_rng_state()
    both = aligned(str(tmp_path), "train", preprocess=pre, seed=1, aug=Augment(color=0.5, color_on=color_on))
    s1, s2 = both[(3, 0)], both[(3, 0)]
    assert torch.equal(s1["A"], s2["A"])  # the same (seed, epoch, index), the same sample
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG (dropout's) is untouched
    assert torch.equal(s1["A"], s1["B"]) == (color_on == "both")


def test_dropout_rate_and_weight_decay_reach_the_model():
    flags = [*TINY, "--num_downs", "6", "--crop_size", "64", "--load_size", "72"]
    opt = parse(True, [*flags, "--dropout", "0.2", "--weight_decay", "0.01"])
    model = create_model(opt.model_config(), torch.device("cpu"))
    rates = [m.p for m in model.netG.modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.2]  # num_downs 6 has one dropout block
    assert model.optimizer_G.param_groups[0]["weight_decay"] == 0.01


def test_attention_gates_on_every_skip_and_blur_is_a_low_pass():
    net = UnetGenerator(3, 3, 6, ngf=4, **{**UNET, "attention": True, "downsample": "blur"})
    gates = [m for m in net.modules() if isinstance(m, AttentionGate)]
    assert len(gates) == 5  # num_downs - 1 skips; the outermost block has none
    plain = UnetGenerator(3, 3, 6, ngf=4, **{**UNET, "attention": True})
    # The blur has no saved state: the same keys with and without it, so --init_from works across the switch.
    assert net.state_dict().keys() == plain.state_dict().keys()
    blur = Blur()
    flat = torch.full((1, 2, 8, 8), 0.3)
    assert torch.allclose(blur(flat), flat)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1  # the Nyquist frequency
    assert blur(checker[None, None])[..., 1:-1, 1:-1].abs().max() < 1e-6
    gate = AttentionGate(4, 4)
    x, g = torch.rand(1, 4, 8, 8), torch.rand(1, 4, 8, 8)
    nn.init.constant_(gate.psi.bias, -50.0)  # a closed gate passes nothing
    assert gate(x, g).abs().max() < 1e-12
    nn.init.constant_(gate.psi.bias, 50.0)  # fully open, it doubles the skip
    assert torch.allclose(gate(x, g), 2 * x)
    # Initialised as define_G does (psi's weights near 0, bias 0), the gates start at 1: plain skips.
    net = make_G(netG="unet_256", ngf=4, num_downs=5, attention=True)
    alpha = []
    gates = [m for m in net.modules() if isinstance(m, AttentionGate)]
    hooks = [m.psi.register_forward_hook(lambda _m, _i, out: alpha.append(2 * torch.sigmoid(out))) for m in gates]
    net(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert len(alpha) == 4 and all((a - 1).abs().max() < 0.05 for a in alpha)
    for h in hooks:
        h.remove()


def test_unet_only_switches_refused_for_resnet(tiny_data, tmp_path, capsys):
    cases = [
        (["--attention"], "--attention: applies"),
        (["--downsample", "blur"], "--downsample blur: applies"),
        (["--max_mult", "4"], "--max_mult 4: applies"),
        (["--grad_checkpoint"], "--grad_checkpoint: applies to U-Net generators only, not --netG resnet_6blocks"),
    ]
    for flags, text in cases:  # the generator's own switches (parse), and a speed switch (a rule across configs)
        assert text in train_refuses(tmp_path, capsys, "--dataroot", tiny_data, "--netG", "resnet_6blocks", *flags)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """Random weights in torchvision's VGG19 layout (features.N.*, classifier ignored): 80 MB, written once."""
    from torchvision.models import vgg19

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg19(weights=None).features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    return str(path)


def test_vgg_loss_trains_g_only_and_is_not_saved(vgg_file):
    opt = parse(True, [*TINY, "--lambda_vgg", "10", "--vgg_weights", vgg_file])
    model = create_model(opt.model_config(), torch.device("cpu"))
    assert model.loss_names[-1] == "G_VGG"
    vgg = model.loss.vgg.net
    vgg0 = [p.detach().clone() for p in vgg.parameters()]
    g0 = [p.detach().clone() for p in model.netG.parameters()]
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    model.train_step([{"A": x, "B": -x, "A_paths": ["a"]}])
    losses, finite = model.pop_losses()
    assert finite and losses["G_VGG"] > 0
    assert all(torch.equal(a, b) for a, b in zip(vgg0, vgg.parameters(), strict=True))
    assert all(not p.requires_grad and p.grad is None for p in vgg.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.netG.parameters(), strict=True))
    same = torch.rand(1, 3, 32, 32) * 2 - 1
    fake = same.clone().requires_grad_(True)
    assert vgg(fake, same).item() == 0.0
    fake1 = torch.zeros(1, 1, 32, 32, requires_grad=True)  # one channel is expanded to VGG's three
    vgg(fake1, torch.ones(1, 1, 32, 32)).backward()
    assert fake1.grad.abs().sum() > 0


def test_vgg_weights_missing_or_wrong(tiny_data, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        parse(True, ["--lambda_vgg", "1", "--vgg_weights", str(tmp_path / "nope.pth")])
    assert e.value.code == 2 and "--vgg_weights" in capsys.readouterr().err
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))  # no cached copy to fall back on
    args = train_args(tiny_data, tmp_path, "v", "--lambda_vgg", "1")
    with pytest.raises(SystemExit) as e:
        train.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--vgg_weights PATH" in err and "vgg19-dcbb9e9d.pth" in err
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(SystemExit) as e:
        train.main([*args, "--vgg_weights", str(wrong)])
    assert e.value.code == 2 and "not torchvision's VGG19 layout" in capsys.readouterr().err


def test_vgg_run_checkpoint_holds_no_vgg_and_same_rng(vgg_file, tiny_data, tmp_path):
    base = ["--dataroot", tiny_data, "--checkpoints_dir", str(tmp_path), *TINY, "--stop_after_iters", "1"]
    assert train.main([*base, "--name", "v", "--lambda_vgg", "1", "--vgg_weights", vgg_file, "--no_html"]) == 0
    state = torch.load(tmp_path / "v" / "latest.pth", weights_only=True)
    assert not any(k.startswith(("slices", "vgg", "features")) for part in state["model"].values() for k in part)
    assert state["options"]["loss"]["vgg_weights"] == vgg_file
    # Building the VGG draws nothing from the global RNG: what follows (dropout masks) is the same.
    draws = []
    for flags in ([], ["--lambda_vgg", "1", "--vgg_weights", vgg_file]):
        torch.manual_seed(0)
        create_model(parse(True, [*TINY, *flags]).model_config(), torch.device("cpu"))
        draws.append(torch.rand(3))
    assert torch.equal(draws[0], draws[1])
