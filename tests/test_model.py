"""The training step with tiny networks on the CPU: both nets change, losses are finite, lr schedule."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from models import create_model
from models.pix2pix_model import lr_factor
from options.options import parse

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")


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
    return create_model(opt.model_config(), torch.device("cpu"))


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
    model.train_step([batch()])
    assert model.fake_B.shape == (2, 3, 32, 32)
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.netG.parameters(), strict=False))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.netD.parameters(), strict=False))
    losses, finite = model.pop_losses()
    assert finite and set(losses) == set(LOSS_NAMES)
    assert losses["G_L1"] > 0


def test_losses_are_averaged_and_reset():
    # Two identical runs: one reads the losses after every step, the other once after three steps.
    each, once = tiny_model(), tiny_model()
    per_step = []
    for _ in range(3):
        torch.manual_seed(5)
        each.train_step([batch()])
        per_step.append(each.pop_losses()[0])
        torch.manual_seed(5)
        once.train_step([batch()])
    mean, finite = once.pop_losses()
    assert finite and set(mean) == set(LOSS_NAMES)
    for k in LOSS_NAMES:
        assert mean[k] == pytest.approx(sum(s[k] for s in per_step) / 3, rel=1e-5), k
    assert len({s["G_L1"] for s in per_step}) == 3  # the steps really differ
    # Read back, the sums start again from zero.
    torch.manual_seed(5)
    once.train_step([batch()])
    torch.manual_seed(5)
    each.train_step([batch()])
    assert once.pop_losses()[0] == pytest.approx(each.pop_losses()[0], rel=1e-5)


def test_non_finite_loss_is_reported():
    model = tiny_model()
    b = batch()
    b["B"][0, 0, 0, 0] = float("nan")
    model.train_step([b])
    _, finite = model.pop_losses()
    assert not finite


def test_generator_pads_sizes_that_do_not_fit():
    model = tiny_model("--preprocess", "none")
    model.train_step([batch(n=1, size=40)])  # 40 is not a multiple of 2**5
    assert model.fake_B.shape == (1, 3, 40, 40)


def test_one_channel_model():
    model = tiny_model("--input_nc", "1", "--output_nc", "1")
    model.train_step([batch(nc_in=1, nc_out=1)])
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


def full_state(model):
    """Everything a step may change: both networks' weights and buffers, both optimisers' and scalers' state, the
    EMA."""
    nets = {f"G.{k}": v.clone() for k, v in model.netG.state_dict().items()}
    if model.netG_ema is not None:
        nets.update({f"EMA.{k}": v.clone() for k, v in model.netG_ema.state_dict().items()})
    for name in ("scaler_G", "scaler_D"):
        nets.update({f"{name}.{k}": torch.tensor(v) for k, v in model.state_dict()[name].items()})
    nets.update({f"D.{k}": v.clone() for k, v in model.netD.state_dict().items()})
    for name, opt in (("optG", model.optimizer_G), ("optD", model.optimizer_D)):
        for i, st in enumerate(opt.state.values()):
            nets.update({f"{name}.{i}.{k}": v.clone() for k, v in st.items() if torch.is_tensor(v)})
    return nets


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("flags", [(), ("--ema_decay", "0.9"), ("--amp", "fp16")])
@pytest.mark.parametrize("where", ["D", "G"])
def test_skip_nonfinite_steps_are_counted_and_change_nothing(where, flags):
    model = tiny_model("--skip_nonfinite", *flags)
    model.train_step([batch()])  # a normal step first, so the optimisers have state to protect
    before = full_state(model)
    b = batch()
    if where == "D":
        b["B"][0, 0, 0, 0] = float("nan")  # L1 and D on real pairs become NaN
    else:
        model.loss.lambda_L1 = float("inf")  # D's loss is finite and D steps; then G's loss is not
    model.train_step([b])
    model.loss.lambda_L1 = 100.0
    assert model.skipped_steps == 1
    assert_same_state(before, full_state(model))
    model.train_step([batch()])
    losses, finite = model.pop_losses()
    assert finite and model.skipped_steps == 1


def test_a_skipped_first_step_leaves_the_optimisers_as_new():
    """D's Adam state is made by its first step; when that step is skipped the state must act as if it never was."""
    skipped, plain = tiny_model("--skip_nonfinite", "--no_dropout"), tiny_model("--no_dropout")
    bad = batch()
    bad["B"][0, 0, 0, 0] = float("nan")
    skipped.train_step([bad])
    assert skipped.skipped_steps == 1
    skipped.train_step([batch()])
    plain.train_step([batch()])
    assert_same_state(full_state(plain), full_state(skipped))


def test_ema_follows_averaged_models_rule():
    """The EMA is updated without host reads, as torch's AveragedModel with the EMA rule would update it."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    model = tiny_model("--ema_decay", "0.9")
    reference = AveragedModel(model.netG, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    for _ in range(3):
        model.train_step([batch()])
        reference.update_parameters(model.netG)
    assert_same_state(reference.state_dict(), model.netG_ema.state_dict())
    assert int(model.netG_ema.n_averaged) == 3


class HostReads(TorchDispatchMode):
    """Counts the operations that copy a tensor's value to the host: .item(), bool(), tensor comparisons."""

    READS = ("aten::_local_scalar_dense", "aten::is_nonzero", "aten::equal")

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in self.READS:
            self.reads.append(func._schema.name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "flags",
    [
        (),
        ("--skip_nonfinite",),
        ("--ema_decay", "0.9"),
        ("--amp", "fp16", "--skip_nonfinite"),
        ("--accum_steps", "2", "--lambda_feat", "10"),
    ],
)
def test_the_step_reads_nothing_back_to_the_host(flags):
    """On a GPU a host read waits for every queued kernel: the step must have none, so that only the print every
    print_freq steps syncs. Counted here on the CPU, where the same code runs."""
    model = tiny_model(*flags)
    k = 2 if "--accum_steps" in flags else 1
    model.train_step([batch() for _ in range(k)])  # the first step makes the optimiser state
    with HostReads() as mode:
        model.train_step([batch() for _ in range(k)])
        model.train_step([batch() for _ in range(k)])
    assert mode.reads == []
    losses, finite = model.pop_losses()
    assert finite and model.skipped_steps == 0


def one_step_losses(*extra: str):
    model = tiny_model(*extra)
    model.train_step([batch()])
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


def test_compile_matches_eager():
    ref_model, ref = one_step_losses()
    model, got = one_step_losses("--compile")
    if not model.compiled:  # the fallback ran: compare compiled with eager, not eager with eager
        pytest.skip("torch.compile does not work on this machine (the fallback has its own test)")
    for k in LOSS_NAMES:
        assert got[k] == pytest.approx(ref[k], rel=1e-4), k
    for a, b in zip(ref_model.netG.parameters(), model.netG.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog):
    class Broken(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self._orig_mod = net

        def forward(self, x):
            raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda net, **kw: Broken(net))
    _, ref = one_step_losses()
    model, got = one_step_losses("--compile")
    assert not model.compiled and "--compile failed (RuntimeError: no C++ compiler); running eagerly" in caplog.text
    assert got == pytest.approx(ref)


@pytest.mark.parametrize("norm,gated", [("batch", False), ("instance", False), ("batch", True)])
def test_grad_checkpoint_gives_the_plain_gradients(norm, gated):
    from models.generators import UnetGenerator

    torch.manual_seed(0)
    kw = {"attention": True, "downsample": "blur"} if gated else {}
    kw = {"upsample": "transpose", "max_mult": 8, "downsample": "conv", "attention": False, **kw}
    plain = UnetGenerator(3, 3, 6, ngf=4, norm=norm, dropout=0.5, grad_checkpoint=False, **kw)
    ckpt = UnetGenerator(3, 3, 6, ngf=4, norm=norm, dropout=0.5, grad_checkpoint=True, **kw)
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
    # A whole step (G and D checkpointed, dropout on) ends with the weights and running statistics of a plain one.
    ref_model, ref = one_step_losses()
    model, got = one_step_losses("--grad_checkpoint")
    assert model.netD.grad_checkpoint
    for k in LOSS_NAMES:
        assert got[k] == pytest.approx(ref[k], rel=1e-5), k
    for (name, a), b in zip(ref_model.netG.state_dict().items(), model.netG.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    for (name, a), b in zip(ref_model.netD.state_dict().items(), model.netD.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_discriminator_checkpoint_gives_the_plain_gradients():
    from models.discriminators import NLayerDiscriminator

    torch.manual_seed(0)
    plain = NLayerDiscriminator(6, ndf=4, n_layers=3, norm="batch")
    ckpt = NLayerDiscriminator(6, ndf=4, n_layers=3, norm="batch")
    ckpt.load_state_dict(plain.state_dict())
    ckpt.grad_checkpoint = True
    x = torch.randn(2, 6, 64, 64)
    for net in (plain, ckpt):
        net(x.clone()).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=1e-5), name


def test_grad_checkpoint_with_wgangp():
    model = tiny_model("--grad_checkpoint", "--gan_mode", "wgangp")
    model.train_step([batch()])
    assert model.netD.grad_checkpoint and model.pop_losses()[1]


@pytest.mark.parametrize("weight", [0.0, 0.25])
def test_lambda_gan_weighs_the_adversarial_term_only(weight):
    plain, weighed = tiny_model(), tiny_model("--lambda_GAN", str(weight))
    b = batch()
    out = []
    for model in (plain, weighed):
        model.set_input(b)
        fake_B = model.translate(model.real_A)
        out.append(model.loss.generator(model.D, model.real_A, model.real_B, fake_B))
    assert torch.equal(out[0].terms["G_L1"], out[1].terms["G_L1"])  # same seed: same G, D and output
    assert torch.allclose(out[1].terms["G_GAN"], out[0].terms["G_GAN"] * weight)
    assert torch.allclose(out[1].total, out[1].terms["G_L1"] + out[1].terms["G_GAN"])


def test_cuda_graph_rates_are_device_tensors_that_the_schedule_fills():
    """--cuda_graph replays the lr tensors it captured: the schedule and a resume must fill them in place, and a
    checkpoint moves between runs with and without the flag (plain numbers without it)."""
    graphed = tiny_model("--cuda_graph", "--n_epochs", "1", "--n_epochs_decay", "3")
    lr = graphed.optimizer_G.param_groups[0]["lr"]
    assert torch.is_tensor(lr) and graphed.optimizer_G.param_groups[0]["capturable"]
    graphed.train_step([batch()])
    assert graphed.update_learning_rate() == pytest.approx(0.0002 * 0.75)
    assert graphed.optimizer_G.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.0002 * 0.75)
    plain = tiny_model("--n_epochs", "1", "--n_epochs_decay", "3")
    plain.load_state_dict(graphed.state_dict())
    assert type(plain.optimizer_G.param_groups[0]["lr"]) is float and plain.current_lr() == pytest.approx(0.00015)
    plain.train_step([batch()])
    assert plain.update_learning_rate() == pytest.approx(0.0001)
    again = tiny_model("--cuda_graph", "--n_epochs", "1", "--n_epochs_decay", "3")
    again.load_state_dict(plain.state_dict())
    assert torch.is_tensor(again.optimizer_G.param_groups[0]["lr"]) and again.current_lr() == pytest.approx(0.0001)
    assert torch.is_tensor(again.optimizer_D.param_groups[0]["lr"])


def test_cuda_graph_refusals(tmp_path, capsys):
    import train
    from conftest import TINY, make_dataroot
    from models.graphed_step import GraphedStep

    data = make_dataroot(tmp_path / "data", train=2)
    run = ["--dataroot", data, "--checkpoints_dir", str(tmp_path), *TINY]
    # a rule across configs (speed, optim): refused by train.py's resolve step, before the device is chosen
    with pytest.raises(SystemExit) as e:
        train.main([*run, "--name", "c", "--cuda_graph", "--amp", "fp16", "--skip_nonfinite"])
    assert e.value.code == 2
    assert "train.py: error: --cuda_graph cannot be used with --amp fp16, --skip_nonfinite" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        train.main([*run, "--name", "g", "--cuda_graph"])
    assert e.value.code == 2 and "this run is on the CPU" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs a CUDA device"):
        GraphedStep(tiny_model())
