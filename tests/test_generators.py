"""Every registered generator (--netG), the Double U-Net and coarse-to-fine ones included, through the same tests:
shapes and padding, a training step, autocast and channels_last, gradient checkpointing, train.py -> bit-exact resume ->
the Python API; for the first of each generator class, test.py -> translate.py --tile -> export after that; then what
is particular to each of the two."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import export as xport
import train
import translate
from conftest import ROOT, make_pairs
from engine import checkpoint, load_translator
from models import build_generator, create_model
from models.coarse_to_fine import CoarseToFineGenerator
from models.config import InitConfig
from models.double_unet import DoubleUnetGenerator
from models.generators import ResnetGenerator, UnetGenerator
from models.registry import generator_spec, list_generators
from options.options import TrainOptions

pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:FutureWarning")

GENERATORS = list_generators()
# test.py in this process (as "pix2pix_test": a module named test would be the standard library's)
_spec = importlib.util.spec_from_file_location("pix2pix_test", os.path.join(ROOT, "test.py"))
TEST_SCRIPT = sys.modules["pix2pix_test"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(TEST_SCRIPT)


def tiny(name: str) -> dict:
    """The smallest flags of --netG name: ngf 4 and the fewest levels it takes."""
    spec = generator_spec(name)
    flat = {"netG": name, "ngf": 4, "ndf": 4}
    if spec.is_unet:
        flat["num_downs"] = 6 if "coarse_to_fine" in spec.traits else 5
    return flat


def side(name: str) -> int:
    """The smallest square crop the tiny generator takes (its size multiple), at least 32."""
    return max(32, TrainOptions.from_flat(tiny(name)).generator.size_multiple)


def options(name: str, **flat) -> TrainOptions:
    return TrainOptions.from_flat({**tiny(name), "crop_size": side(name), "load_size": side(name), **flat})


@pytest.mark.parametrize("name", GENERATORS)
def test_translates_its_multiple_and_pads_other_sizes(name):
    opt = options(name, norm="instance")
    model = create_model(opt.model_config(), torch.device("cpu"))
    s = side(name)
    for h, w in ((s, 2 * s), (s + 3, s - 5)):  # a multiple, and sides that are padded and cropped back
        with torch.no_grad():
            out = model.translate(torch.rand(2, 3, h, w) * 2 - 1)
        assert out.shape == (2, 3, h, w) and out.dtype == torch.float32
        assert out.abs().max() <= 1


@pytest.mark.parametrize("name", GENERATORS)
def test_a_training_step_moves_every_generator_weight(name):
    torch.manual_seed(0)
    model = create_model(options(name).model_config(), torch.device("cpu"))
    before = {k: v.clone() for k, v in model.netG.named_parameters()}
    s = side(name)
    batch = {"A": torch.rand(2, 3, s, s) * 2 - 1, "B": torch.rand(2, 3, s, s) * 2 - 1, "A_paths": ["a", "b"]}
    model.set_epoch(1)
    model.train_step([batch])
    still = [k for k, v in model.netG.named_parameters() if torch.equal(v, before[k])]
    assert not still
    losses, finite = model.pop_losses()
    assert finite
    first = "first_output" in generator_spec(name).traits
    assert ("G_L1_first" in losses) == first
    if first:  # the first output's L1, weighted 0.5 x lambda_L1 by default, beside the final output's
        assert 0 < losses["G_L1_first"] < losses["G_L1"] * 0.5 * 3


@pytest.mark.parametrize("name", GENERATORS)
def test_bf16_autocast_and_channels_last_agree_with_float32(name):
    g = options(name, no_dropout=True, norm="instance").generator
    torch.manual_seed(1)
    net = build_generator(g, InitConfig(), grad_checkpoint=False)
    s = side(name)
    x = torch.rand(1, 3, s, s) * 2 - 1
    with torch.no_grad():
        ref = net(x)
        net_cl = net.to(memory_format=torch.channels_last)
        cl = net_cl(x.to(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x).float()
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)
    assert (low - ref).abs().mean() < 0.05


@pytest.mark.parametrize("name", [n for n in GENERATORS if generator_spec(n).is_unet])
def test_gradient_checkpointing_gives_the_same_gradients(name):
    g = options(name, no_dropout=True, norm="batch").generator
    grads, buffers = [], []
    for gc in (False, True):
        torch.manual_seed(2)
        net = build_generator(g, InitConfig(), grad_checkpoint=gc)
        s = side(name)
        x = torch.rand(2, 3, s, s, generator=torch.Generator().manual_seed(3)) * 2 - 1
        net(x).square().mean().backward()
        grads.append({k: p.grad.clone() for k, p in net.named_parameters()})
        buffers.append({k: b.clone() for k, b in net.named_buffers()})
    # the recomputation did not move batch norm's running statistics a second time
    for k, b in buffers[1].items():
        torch.testing.assert_close(b, buffers[0][k], msg=k)
    for k, v in grads[0].items():
        torch.testing.assert_close(grads[1][k], v, rtol=1e-4, atol=1e-6, msg=k)


def write_data(root, s: int) -> str:
    make_pairs(str(root / "train"), 4, w=s, h=s, seed=1)
    make_pairs(str(root / "test"), 2, w=s, h=s, seed=2)
    return str(root)


def first_of_each_class() -> list[str]:
    """The first registered generator of each class (at its tiny size): the others are the same code at another
    default depth or block count, which the tests above build and train."""
    seen, names = set(), []
    for name in GENERATORS:
        cls = type(build_generator(options(name).generator, None, grad_checkpoint=False))
        if cls not in seen:
            seen.add(cls)
            names.append(name)
    return names


CHAIN = first_of_each_class()


def test_the_full_chain_covers_every_generator_class():
    """A generator of a new class joins CHAIN by itself; these four classes are in it."""
    built = {type(build_generator(options(n).generator, None, grad_checkpoint=False)) for n in CHAIN}
    assert {UnetGenerator, ResnetGenerator, CoarseToFineGenerator, DoubleUnetGenerator} <= built


def train_and_resume(name: str, tmp_path) -> tuple[str, list[str], dict]:
    """train.py for 4 steps, and stopped after 3 of them then continued: the two checkpoints are equal (bit-exact
    resume). Returns (the dataroot, the flags that pick the run 'full' for test.py, translate.py and export.py, its
    checkpoint)."""
    s = side(name)
    data = write_data(tmp_path / "data", s)
    flags = [f"--{k}={v}" for k, v in tiny(name).items()]
    args = ["--dataroot", data, "--checkpoints_dir", str(tmp_path / "ck"), *flags, "--num_threads", "0"]
    args += ["--seed", "3", "--display_id", "0", "--no_html", "--load_size", str(s), "--crop_size", str(s)]
    args += ["--n_epochs", "1", "--n_epochs_decay", "1", "--batch_size", "2"]
    assert train.main([*args, "--name", "full"]) == 0
    assert train.main([*args, "--name", "split", "--stop_after_iters", "3"]) == 0
    assert train.main([*args, "--name", "split", "--continue_train"]) == 0
    a = checkpoint.load(str(tmp_path / "ck" / "full" / "latest.pth"))
    b = checkpoint.load(str(tmp_path / "ck" / "split" / "latest.pth"))
    assert a["total_iters"] == b["total_iters"] == 4
    for k, v in a["model"]["netG"].items():
        assert torch.equal(v, b["model"]["netG"][k]), k
    common = ["--checkpoints_dir", str(tmp_path / "ck"), "--name", "full", "--num_threads", "0"]
    return data, common, a


@pytest.mark.parametrize("name", [n for n in GENERATORS if n not in CHAIN])
def test_train_resume_and_the_api_rebuild_it_from_the_checkpoint(name, tmp_path):
    _, _, a = train_and_resume(name, tmp_path)
    t = load_translator(str(tmp_path / "ck" / "full" / "latest.pth"), device="cpu")
    assert t.generator.netG == name
    assert type(t.net) is type(build_generator(options(name).generator, None, grad_checkpoint=False))
    for k, v in t.net.state_dict().items():
        assert torch.equal(v, a["model"]["netG"][k]), k
    s = side(name)
    assert t(np.zeros((s + 3, s - 5, 3), np.uint8)).shape == (s + 3, s - 5, 3)


@pytest.mark.parametrize("name", CHAIN)
def test_train_resume_test_translate_export_and_api(name, tmp_path):
    data, common, a = train_and_resume(name, tmp_path)
    s = side(name)
    # test.py needs no architecture flag: the generator comes from the checkpoint
    assert TEST_SCRIPT.main(["--dataroot", data, *common, "--results_dir", str(tmp_path / "res")]) == 0
    assert (tmp_path / "res" / "full" / "test_latest" / "index.html").exists()
    # translate.py on an image larger than a tile, in tiles, and the API on the same image
    big = np.random.default_rng(4).integers(0, 256, (s * 2 + 8, s * 3, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    out = tmp_path / "out"
    assert (
        translate.main([*common, str(tmp_path / "big.png"), "--out", str(out), "--tile", str(2 * s), "--overlap", "8"])
        == 0
    )
    tiled = np.asarray(Image.open(out / "big.png"))
    assert tiled.shape == big.shape
    t = load_translator(str(tmp_path / "ck" / "full" / "latest.pth"), device="cpu")
    assert t(big[:s, :s]).shape == (s, s, 3)
    # export: TorchScript computes what the API computes (eval mode); safetensors holds netG's tensors
    ts = tmp_path / "g.pt"
    assert xport.main([*common, "--format", "torchscript", "--eval", "--out", str(ts)]) == 0
    x = torch.rand(1, 3, s, s) * 2 - 1
    t_eval = load_translator(str(tmp_path / "ck" / "full" / "latest.pth"), device="cpu", eval=True)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(ts))(x), t_eval.translate(x), rtol=1e-4, atol=1e-5)
    st = tmp_path / "g.safetensors"
    assert xport.main([*common, "--format", "safetensors", "--out", str(st)]) == 0
    from safetensors.torch import load_file

    assert set(load_file(str(st))) == set(a["model"]["netG"])


# ---- Double U-Net ---------------------------------------------------------------------------------------------
def test_double_unet_feeds_the_first_output_to_the_second_network_and_keeps_it_for_the_loss_only():
    g = options("double_unet_256").generator
    net = build_generator(g, InitConfig(), grad_checkpoint=False)
    assert isinstance(net, DoubleUnetGenerator)
    assert net.encoder2.levels[0][0].in_channels == g.input_nc + g.output_nc  # real_A beside the first output
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    out = net(x)
    assert net.first is not None and net.first.shape == out.shape and net.first.requires_grad
    with torch.no_grad():
        net(x)
    assert net.first is None  # an inference pass keeps nothing
    # the second decoder's levels take both encoders' skips: 3 inputs of c channels per level
    assert [lv.se.fc[0].in_channels for lv in net.decoder2.levels] == [3 * c for c in (32, 16, 8, 4)]
    assert [lv.se.fc[0].in_channels for lv in net.decoder1.levels] == [2 * c for c in (32, 16, 8, 4)]


def test_lambda_first_weights_the_first_output_and_applies_to_double_unet_only(tmp_path):
    for share in (0.0, 0.5, 2.0):
        opt = options("double_unet_256", lambda_first=share)
        model = create_model(opt.model_config(), torch.device("cpu"))
        assert ("G_L1_first" in model.loss_names) == (share > 0)
        if share:
            assert model.loss.lambda_first == share
    with pytest.raises(SystemExit):
        train.main(["--dataroot", str(tmp_path), "--netG", "unet_256", "--lambda_first", "0.3"])


# ---- coarse-to-fine -------------------------------------------------------------------------------------------
def test_coarse_to_fine_global_generator_is_a_half_size_unet_without_its_last_layer():
    g = options("c2f_unet_512").generator
    assert (g.depth, g.size_multiple) == (6, 64)
    net = build_generator(g, InitConfig(), grad_checkpoint=False)
    assert isinstance(net, CoarseToFineGenerator) and net.global_net.num_downs == 5
    # with the global generator's features zeroed, the output changes: they reach the output
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    net.eval()
    with torch.no_grad():
        out = net(x)
        net.global_net.model.model[0].weight.zero_()
        assert not torch.allclose(net(x), out)
    with pytest.raises(ValueError, match="at least 6"):
        build_generator(dataclasses.replace(g, num_downs=5), InitConfig(), grad_checkpoint=False)


def test_grow_from_a_half_size_unet_run_with_the_enhancer_first(tmp_path, caplog):
    """--init_from a unet run at 32 as the global generator of a c2f run at 64; --fix_global_epochs 1 keeps the
    global generator as loaded through epoch 1, then trains it too."""
    small = write_data(tmp_path / "d32", 32)
    large = write_data(tmp_path / "d64", 64)
    base = ["--checkpoints_dir", str(tmp_path / "ck"), "--ngf", "4", "--ndf", "4", "--num_threads", "0"]
    base += ["--display_id", "0", "--no_html", "--seed", "1", "--norm", "instance"]
    unet = ["--dataroot", small, "--netG", "unet_256", "--num_downs", "5", "--load_size", "32", "--crop_size", "32"]
    assert train.main([*base, *unet, "--name", "u", "--n_epochs", "1", "--n_epochs_decay", "0"]) == 0
    src = checkpoint.load(str(tmp_path / "ck" / "u" / "latest.pth"))["model"]["netG"]
    c2f = ["--dataroot", large, "--netG", "c2f_unet_512", "--num_downs", "6", "--load_size", "64"]
    c2f += ["--crop_size", "64", "--init_from", str(tmp_path / "ck" / "u" / "latest.pth"), "--fix_global_epochs", "1"]
    with caplog.at_level(logging.INFO):
        assert train.main([*base, *c2f, "--name", "c", "--n_epochs", "1", "--n_epochs_decay", "0"]) == 0
    assert "--init_from: netG: loaded" in caplog.text
    after1 = checkpoint.load(str(tmp_path / "ck" / "c" / "latest.pth"))["model"]["netG"]
    glob = {k.removeprefix("global_net."): v for k, v in after1.items() if k.startswith("global_net.")}
    assert glob and all(torch.equal(v, src[k]) for k, v in glob.items())  # loaded, and fixed in epoch 1
    dropped = set(src) - set(glob)  # the global generator's last up-conv (pix2pixHD drops it too)
    assert dropped == {"model.model.3.weight", "model.model.3.bias"}
    # epoch 2: the global generator trains as well
    resume = [*c2f[:-4], "--fix_global_epochs", "1", "--name", "c", "--continue_train", "--n_epochs", "2"]
    assert train.main([*base, *resume]) == 0
    after2 = checkpoint.load(str(tmp_path / "ck" / "c" / "latest.pth"))["model"]["netG"]
    assert any(not torch.equal(after2[f"global_net.{k}"], v) for k, v in glob.items())


def test_fix_global_epochs_applies_to_coarse_to_fine_only(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(["--dataroot", str(tmp_path), "--netG", "unet_256", "--fix_global_epochs", "2"])
    assert "--fix_global_epochs 2: applies to coarse-to-fine generators (c2f_unet_*)" in capsys.readouterr().err


def test_fix_global_epochs_cannot_be_captured_in_a_cuda_graph(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(["--dataroot", str(tmp_path), "--netG", "c2f_unet_512", "--fix_global_epochs", "2", "--cuda_graph"])
    assert "--cuda_graph cannot be used with --fix_global_epochs 2" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["double_unet_256", "c2f_unet_512"])
def test_onnx_export_computes_what_the_api_computes(name, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    s = side(name)
    o = options(name)
    net = build_generator(o.generator, InitConfig(), grad_checkpoint=False)
    path = tmp_path / name / "latest.pth"
    path.parent.mkdir()
    model = {"netG": net.state_dict()}
    torch.save(
        {"format": checkpoint.FORMAT, "kind": "latest", "model": model, "options": o.to_dict(), "epoch": 1}, path
    )
    out = tmp_path / "g.onnx"
    common = ["--checkpoints_dir", str(tmp_path), "--name", name, "--eval"]
    assert xport.main([*common, "--format", "onnx", "--out", str(out)]) == 0
    x = torch.rand(1, 3, s, 2 * s) * 2 - 1  # another size than traced: the axes are dynamic
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"real_A": x.numpy()})[0])
    t = load_translator(str(path), device="cpu", eval=True)
    with torch.no_grad():
        torch.testing.assert_close(got, t.translate(x), rtol=1e-4, atol=1e-4)
