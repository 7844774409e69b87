"""The training step with tiny networks on the CPU: both nets change, losses are finite, lr schedule."""

import pytest
import torch

from models import create_model
from models.pix2pix_model import LOSS_NAMES, lr_factor
from options.options import parse


def tiny_model(*extra: str, size: int = 32):
    opt = parse(
        True,
        [
            "--ngf",
            "4",
            "--ndf",
            "4",
            "--netG",
            "unet_256",
            "--num_downs",
            "5",
            "--crop_size",
            str(size),
            "--load_size",
            str(size),
            *extra,
        ],
    )
    torch.manual_seed(0)
    return create_model(vars(opt), torch.device("cpu"), train=True)


def batch(n=2, size=32, nc_in=3, nc_out=3):
    g = torch.Generator().manual_seed(1)
    return {
        "A": torch.rand(n, nc_in, size, size, generator=g) * 2 - 1,
        "B": torch.rand(n, nc_out, size, size, generator=g) * 2 - 1,
        "A_paths": ["a"] * n,
    }


@pytest.mark.parametrize("gan_mode", ["vanilla", "lsgan", "wgangp"])
@pytest.mark.parametrize("netD", ["basic", "pixel"])
def test_step_updates_both_networks(gan_mode, netD):
    model = tiny_model("--gan_mode", gan_mode, "--netD", netD)
    g0 = [p.detach().clone() for p in model.netG.parameters()]
    d0 = [p.detach().clone() for p in model.netD.parameters()]
    model.set_input(batch())
    model.optimize_parameters()
    assert model.fake_B.shape == (2, 3, 32, 32)
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.netG.parameters(), strict=False))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.netD.parameters(), strict=False))
    losses, finite = model.pop_losses()
    assert finite and set(losses) == set(LOSS_NAMES)
    assert losses["G_L1"] > 0


def test_losses_are_averaged_and_reset():
    model = tiny_model()
    model.set_input(batch())
    for _ in range(3):
        model.optimize_parameters()
    assert model._loss_steps == 3
    losses, _ = model.pop_losses()
    assert model._loss_steps == 0 and float(model._loss_sum.abs().sum()) == 0
    assert all(v > 0 for v in losses.values())


def test_non_finite_loss_is_reported():
    model = tiny_model()
    b = batch()
    b["B"][0, 0, 0, 0] = float("nan")
    model.set_input(b)
    model.optimize_parameters()
    _, finite = model.pop_losses()
    assert not finite


def test_generator_pads_sizes_that_do_not_fit():
    model = tiny_model("--preprocess", "none")
    model.set_input(batch(n=1, size=40))  # 40 is not a multiple of 2**5
    model.optimize_parameters()
    assert model.fake_B.shape == (1, 3, 40, 40)


def test_one_channel_model():
    model = tiny_model("--input_nc", "1", "--output_nc", "1")
    model.set_input(batch(nc_in=1, nc_out=1))
    model.optimize_parameters()
    assert model.fake_B.shape == (2, 1, 32, 32)


def test_linear_schedule_formula():
    # 100 + 100 epochs: constant, then linear decay reaching lr/101 in the last epoch and zero after it.
    f = [lr_factor(e, "linear", 100, 100, 50) for e in range(1, 202)]
    assert f[0] == f[99] == 1.0
    assert f[100] == pytest.approx(100 / 101) and f[199] == pytest.approx(1 / 101) and f[200] == 0.0
    assert lr_factor(51, "step", 100, 100, 50) == pytest.approx(0.1)
    assert lr_factor(1, "cosine", 5, 5, 50) == 1.0 and lr_factor(11, "cosine", 5, 5, 50) == pytest.approx(0.0)


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_scheduler_steps_per_epoch():
    model = tiny_model("--n_epochs", "1", "--n_epochs_decay", "2", "--lr", "0.3")
    assert model.optimizer_G.param_groups[0]["lr"] == pytest.approx(0.3)
    assert model.update_learning_rate() == pytest.approx(0.3 * 2 / 3)
    assert model.update_learning_rate() == pytest.approx(0.3 * 1 / 3)
    assert model.optimizer_D.param_groups[0]["lr"] == pytest.approx(0.1)


def test_skip_nonfinite_steps_are_counted_and_change_nothing():
    model = tiny_model("--skip_nonfinite")
    b = batch()
    b["B"][0, 0, 0, 0] = float("nan")  # L1 and D on real pairs become NaN
    model.set_input(b)
    g0 = [p.detach().clone() for p in model.netG.parameters()]
    model.optimize_parameters()
    assert model.skipped_steps == 1
    assert all(torch.equal(a, p) for a, p in zip(g0, model.netG.parameters(), strict=True))
    model.set_input(batch())
    model.optimize_parameters()
    losses, finite = model.pop_losses()
    assert finite and model.skipped_steps == 1


def one_step_losses(*extra: str):
    model = tiny_model(*extra)
    model.set_input(batch())
    model.optimize_parameters()
    return model, model.pop_losses()[0]


@pytest.mark.parametrize(
    "flags, tol", [(("--channels_last",), 1e-4), (("--amp", "bf16"), 0.05), (("--amp", "fp16"), 0.02)]
)
def test_speed_switches_stay_close_to_fp32(flags, tol):
    ref_model, ref = one_step_losses()
    model, got = one_step_losses(*flags)
    for k in LOSS_NAMES:
        assert got[k] == pytest.approx(ref[k], rel=tol), k
    for a, b in zip(ref_model.netG.parameters(), model.netG.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-3)  # one Adam step moves weights by about lr
    if "fp16" in flags:
        assert model.state_dict()["scaler_G"]["scale"] > 0  # the scaler's state goes into the checkpoint


def test_compile_matches_eager_or_falls_back():
    ref_model, ref = one_step_losses()
    model, got = one_step_losses("--compile")
    for k in LOSS_NAMES:
        assert got[k] == pytest.approx(ref[k], rel=1e-4), k


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog):
    class Broken(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self._orig_mod = net

        def forward(self, x):
            raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda net: Broken(net))
    _, ref = one_step_losses()
    model, got = one_step_losses("--compile")
    assert not model.compiled and "--compile failed (RuntimeError: no C++ compiler); running eagerly" in caplog.text
    assert got == pytest.approx(ref)


@pytest.mark.parametrize("norm,gated", [("batch", False), ("instance", False), ("batch", True)])
def test_grad_checkpoint_gives_the_plain_gradients(norm, gated):
    from models.networks import UnetGenerator

    torch.manual_seed(0)
    kw = {"attention": True, "downsample": "blur"} if gated else {}
    plain = UnetGenerator(3, 3, 6, ngf=4, norm=norm, use_dropout=True, **kw)
    ckpt = UnetGenerator(3, 3, 6, ngf=4, norm=norm, use_dropout=True, grad_checkpoint=True, **kw)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    outs = []
    for net in (plain, ckpt):
        torch.manual_seed(1)  # the same dropout masks
        out = net(x.clone())
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.append(out)
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=1e-5), name
    # The recomputation does not move batch norm's running statistics a second time.
    for (name, a), b in zip(plain.named_buffers(), ckpt.buffers(), strict=True):
        if "running" in name:
            assert torch.allclose(a, b, atol=1e-7), name


def test_grad_checkpoint_training_step():
    model = tiny_model("--grad_checkpoint")
    model.set_input(batch())
    model.optimize_parameters()
    assert model.pop_losses()[1]


def test_discriminator_checkpoint_gives_the_plain_gradients():
    from models.networks import define_D

    torch.manual_seed(0)
    plain = define_D("basic", 6, ndf=4, norm="batch")
    ckpt = define_D("basic", 6, ndf=4, norm="batch")
    ckpt.load_state_dict(plain.state_dict())
    ckpt.grad_checkpoint = True
    x = torch.randn(2, 6, 64, 64)
    for net in (plain, ckpt):
        net(x.clone()).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=1e-5), name


def test_grad_checkpoint_with_wgangp():
    model = tiny_model("--grad_checkpoint", "--gan_mode", "wgangp")
    model.set_input(batch())
    model.optimize_parameters()
    assert model.netD.grad_checkpoint and model.pop_losses()[1]
