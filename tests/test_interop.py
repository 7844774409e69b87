"""Reference implementation files, the Python API (load_translator), translate.py and tiled inference."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import test as test_script
import translate
from conftest import ROOT, make_dataroot, make_G, randomized
from engine import checkpoint, load_translator, resume
from models import WeightsMismatch, build_translator
from models.reference import guess_generator
from models.tiling import tile_starts, translate_tiled
from options.options import TrainOptions


def in_process(main, capsys, *args: str) -> tuple[int, str]:
    """A script's main (test.py's, translate.py's) in this process: (its exit status, what it printed and logged
    from then on). An exception other than SystemExit fails the test, as a traceback on stderr would."""
    capsys.readouterr()
    try:
        status = main(list(args))
    except SystemExit as e:
        status = e.code
    out = capsys.readouterr()
    return status, out.out + out.err


# ---- the reference's layout, written from the paper's architecture ----------------------------------------------
def ref_norm(norm: str, c: int) -> nn.Module:
    return nn.BatchNorm2d(c) if norm == "batch" else nn.InstanceNorm2d(c)


class RefUnetBlock(nn.Module):
    """One level as the reference lays it out: its layers in one nn.Sequential named `model`; the output is
    cat(input, model(input)) except at the top. Convs have a bias only with instance norm."""

    def __init__(self, outer, inner, norm, in_nc=None, sub=None, top=False, bottom=False, dropout=False):
        super().__init__()
        bias = norm == "instance"
        down = nn.Conv2d(in_nc or outer, inner, 4, 2, 1, bias=bias)
        if top:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif bottom:
            up = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, ref_norm(norm, outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, ref_norm(norm, inner), sub, nn.ReLU(True), up]
            layers += [ref_norm(norm, outer)] + ([nn.Dropout(0.5)] if dropout else [])
        self.top, self.model = top, nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.top else torch.cat([x, self.model(x)], 1)


class RefUnet(nn.Module):
    """Encoder C(ngf)-C(2ngf)-C(4ngf)-C(8ngf) x (num_downs - 3), the decoder mirrored with dropout on the
    8ngf levels between the innermost and the last three (the paper's ngf is 64)."""

    def __init__(self, input_nc, output_nc, num_downs, ngf, norm):
        super().__init__()
        b = RefUnetBlock(8 * ngf, 8 * ngf, norm, bottom=True)
        for _ in range(num_downs - 5):
            b = RefUnetBlock(8 * ngf, 8 * ngf, norm, sub=b, dropout=True)
        for outer, inner in ((4 * ngf, 8 * ngf), (2 * ngf, 4 * ngf), (ngf, 2 * ngf)):
            b = RefUnetBlock(outer, inner, norm, sub=b)
        self.model = RefUnetBlock(output_nc, ngf, norm, in_nc=input_nc, sub=b, top=True)

    def forward(self, x):
        return self.model(x)


class RefResnetBlock(nn.Module):
    def __init__(self, dim, norm, dropout):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), ref_norm(norm, dim), nn.ReLU(True)]
        layers += [nn.Dropout(0.5)] if dropout else []
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), ref_norm(norm, dim)]
        self.conv_block = nn.Sequential(*layers)  # the reference's name for it

    def forward(self, x):
        return x + self.conv_block(x)


class RefResnet(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, norm, n_blocks, dropout):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), ref_norm(norm, ngf), nn.ReLU(True)]
        for m in (1, 2):
            layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1, bias=bias), ref_norm(norm, ngf * m * 2), nn.ReLU(True)]
        layers += [RefResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for m in (4, 2):
            up = nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1, bias=bias)
            layers += [up, ref_norm(norm, ngf * m // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def options(**generator):
    """The GeneratorConfig of TrainOptions with ngf 4 and the given flags."""
    return TrainOptions.from_flat({"ngf": 4, **generator}).generator


def ours(g, state: dict, reference: bool = True):
    return build_translator(g, state, torch.device("cpu"), "none", False, reference=reference)


def same_outputs(ref: nn.Module, translate, x: torch.Tensor) -> None:
    """Equal in eval mode, and in train mode (batch statistics, the same dropout masks from the same seed)."""
    for train in (False, True):
        ref.train(train)
        translate.net.train(train)
        with torch.no_grad():
            torch.manual_seed(5)
            want = ref(x)
            torch.manual_seed(5)
            got = translate(x)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_a_reference_unet_256_file_gives_the_reference_outputs(norm):
    ref = randomized(RefUnet(3, 3, 8, 4, norm))
    state = ref.state_dict()
    assert guess_generator(state) == {"netG": "unet_256", "ngf": 4, "input_nc": 3, "output_nc": 3, "norm": norm}
    same_outputs(ref, ours(options(norm=norm), state), torch.rand(1, 3, 256, 256) * 2 - 1)


def test_a_reference_resnet_file_with_conv_block_names_gives_the_reference_outputs():
    ref = randomized(RefResnet(3, 1, 4, "instance", 6, dropout=True))
    state = ref.state_dict()
    assert any(".conv_block." in k for k in state)
    g = {"netG": "resnet_6blocks", "norm": "instance", "output_nc": 1}
    same_outputs(ref, ours(options(**g), state), torch.rand(1, 3, 40, 48) * 2 - 1)


def test_files_from_before_pytorch_0_4_load_as_the_reference_loads_them():
    # Batch norm without num_batches_tracked, instance norm with running statistics it does not use.
    bn = randomized(RefUnet(3, 3, 7, 4, "batch"))
    old = {k: v for k, v in bn.state_dict().items() if not k.endswith("num_batches_tracked")}
    same_outputs(bn, ours(options(netG="unet_128"), old), torch.rand(1, 3, 128, 128))
    inst = randomized(RefResnet(3, 3, 4, "instance", 6, dropout=False))
    old = dict(inst.state_dict())
    for name, m in inst.named_modules():
        if isinstance(m, nn.InstanceNorm2d):
            old[f"{name}.running_mean"] = torch.zeros(m.num_features)
            old[f"{name}.running_var"] = torch.ones(m.num_features)
    g = {"netG": "resnet_6blocks", "norm": "instance", "no_dropout": True}
    same_outputs(inst, ours(options(**g), old), torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize(
    ("flags", "hint"),
    [
        ({"netG": "unet_128"}, "--netG unet_256"),
        ({"norm": "instance"}, "--norm batch"),
        ({"ngf": 8}, "--ngf 4"),
        ({"netG": "resnet_9blocks"}, "--netG unet_256"),
    ],
)
def test_a_file_that_does_not_fit_the_flags_names_the_flags_to_try(flags, hint):
    state = randomized(RefUnet(3, 3, 8, 4, "batch")).state_dict()
    o = TrainOptions.from_flat({"ngf": 4, **flags}).generator
    with pytest.raises(WeightsMismatch) as e:
        ours(o, state)
    msg = str(e.value)
    assert hint in msg and "try those flags" in msg
    assert len(msg) < 600  # a summary, not load_state_dict's list of every key


def test_a_resnet_file_loaded_as_a_unet_says_resnet():
    state = randomized(RefResnet(3, 3, 4, "batch", 9, dropout=False)).state_dict()
    with pytest.raises(WeightsMismatch, match="look like those of --netG resnet_9blocks --no_dropout; try"):
        ours(options(), state)


def test_legacy_serialisation_and_a_dataparallel_prefix_load(tmp_path):
    ref = randomized(RefUnet(3, 3, 7, 4, "batch"))
    path = str(tmp_path / "latest_net_G.pth")
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, path, _use_new_zipfile_serialization=False)
    t = load_translator(path, netG="unet_128", ngf=4, device="cpu", eval=True)
    ref.eval()
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(t(x), ref(x), rtol=0, atol=1e-6)


# ---- test.py with a reference run folder ----------------------------------------------------------------------
def test_test_py_gives_the_same_images_from_a_reference_file_and_from_a_run_of_this_project(tmp_path, capsys):
    data = make_dataroot(tmp_path / "data", test=2)
    ref = randomized(RefUnet(3, 3, 8, 4, "batch"))
    ref_dir, own_dir = tmp_path / "ck" / "ref_pretrained", tmp_path / "ck" / "own"
    ref_dir.mkdir(parents=True)
    own_dir.mkdir()
    torch.save(ref.state_dict(), ref_dir / "latest_net_G.pth")
    # The same weights in a generator snapshot of this project, options and all.
    own = make_G(init=False, ngf=4)
    own.load_state_dict(ref.state_dict())
    snap = {"format": checkpoint.FORMAT, "kind": "generator", "netG": own.state_dict(), "epoch": 3, "total_iters": 9}
    snap["options"] = TrainOptions.from_flat(dict(ngf=4, load_size=32, crop_size=32, dataroot=data)).to_dict()
    torch.save(snap, own_dir / "3_net_G.pth")
    common = ["--dataroot", data, "--checkpoints_dir", str(tmp_path / "ck"), "--results_dir", str(tmp_path / "res")]
    common += ["--num_threads", "0", "--preprocess", "none"]
    status, said = in_process(test_script.main, capsys, "--name", "ref_pretrained", "--ngf", "4", *common)
    assert status == 0 and "reference generator file" in said
    assert in_process(test_script.main, capsys, "--name", "own", "--epoch", "3", *common)[0] == 0
    for stem in ("img000", "img001"):
        a = np.asarray(
            Image.open(tmp_path / "res" / "ref_pretrained" / "test_latest" / "images" / f"{stem}_fake_B.png")
        )
        b = np.asarray(Image.open(tmp_path / "res" / "own" / "test_3" / "images" / f"{stem}_fake_B.png"))
        assert a.std() > 0 and np.array_equal(a, b)
    status, err = in_process(
        test_script.main, capsys, "--name", "ref_pretrained", "--ngf", "4", "--netG", "unet_128", *common
    )
    assert status == 2 and "--netG unet_256" in err


def test_init_from_a_reference_generator_and_its_discriminator(tmp_path):
    from models import create_model

    opt = TrainOptions.from_flat(dict(ngf=4, ndf=4, crop_size=32, load_size=32, num_downs=5))
    model = create_model(opt.model_config(), torch.device("cpu"))
    G_state = randomized(RefUnet(3, 3, 5, 4, "batch"), seed=1).state_dict()
    D = randomized(type(model.netD)(6, ndf=4, n_layers=3, norm="batch"), seed=2)
    torch.save(G_state, tmp_path / "7_net_G.pth")
    torch.save(D.state_dict(), tmp_path / "7_net_D.pth")
    resume.init_from(model, str(tmp_path / "7_net_G.pth"), opt.generator)
    for k, v in G_state.items():
        assert torch.equal(model.netG.state_dict()[k], v), k
    for k, v in D.state_dict().items():
        assert torch.equal(model.netD.state_dict()[k], v), k


# ---- the Python API ----------------------------------------------------------------------------------------
@pytest.fixture
def run_file(tmp_path):
    """A generator snapshot of this project: unet with 5 levels, ngf 4, residual, BtoA."""
    o = TrainOptions.from_flat(dict(ngf=4, num_downs=5, residual=True, direction="BtoA"))
    net = randomized(make_G(**dataclasses.asdict(o.generator)))
    path = tmp_path / "run" / "latest_net_G.pth"
    path.parent.mkdir()
    snap = {"format": checkpoint.FORMAT, "kind": "generator", "netG": net.state_dict(), "options": o.to_dict()}
    snap["epoch"] = 2
    torch.save(snap, path)
    return str(path), net


def test_the_api_translates_pil_images_and_tensors_of_any_size(run_file):
    path, net = run_file
    t = load_translator(os.path.dirname(path), device="cpu", eval=True)
    assert (t.direction, t.pad_multiple, t.eval) == ("BtoA", 32, True)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8))
    out = t(img)
    assert isinstance(out, Image.Image) and out.size == (50, 37) and out.mode == "RGB"
    x = t.to_tensor(img)
    y = t(x[0])
    assert y.shape == (3, 37, 50) and y.dtype == torch.float32
    # What the API does by hand: pad to 64 x 64 (reflect), G, add the input back (--residual), crop.
    net.eval()
    padded = torch.nn.functional.pad(x, (0, 14, 0, 27), mode="reflect")
    with torch.no_grad():
        want = (net(padded) + padded)[..., :37, :50]
    torch.testing.assert_close(y[None], want, rtol=0, atol=1e-6)
    assert np.array_equal(np.asarray(out), np.asarray(t.to_image(want)))
    a, b = t.split_pair(Image.new("RGB", (20, 10)))
    assert a.size == b.size == (10, 10)
    with pytest.raises(ValueError, match="3-channel"):
        t(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="reference files"):
        load_translator(path, netG="unet_128")


def test_the_api_follows_the_pix2pix_convention_by_default(run_file):
    path, _ = run_file
    t = load_translator(path, device="cpu")
    assert not t.eval and t.batch_statistics and t.net.training


def test_safetensors_holds_weights_and_options_and_loads_back(run_file, tmp_path):
    path, _ = run_file
    ckpt = checkpoint.load_generator(path, prefer_ema=True)
    out = str(tmp_path / "g.safetensors")
    checkpoint.save_safetensors(ckpt, out)
    with open(out, "rb") as f:
        assert b"options" in f.read(4096)
    t, u = load_translator(path, device="cpu", eval=True), load_translator(out, device="cpu", eval=True)
    assert u.options == t.options and u.direction == "BtoA"
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(u(x), t(x), rtol=0, atol=0)
    (tmp_path / "other.safetensors").write_bytes(b"not one")
    with pytest.raises(checkpoint.CheckpointError, match="safetensors"):
        load_translator(str(tmp_path / "other.safetensors"))


def test_the_api_works_from_an_installed_wheel_outside_the_clone(run_file, tmp_path):
    # Build the wheel as `pip install .` would (no dependencies fetched), unpack it, import from there. From a
    # copy, so the build leaves nothing in the clone.
    src, wheels = tmp_path / "src", tmp_path / "wheels"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".*", "__pycache__", "tests", "checkpoints", "results"))
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    (wheel,) = wheels.glob("*.whl")
    site = tmp_path / "site"
    import zipfile

    zipfile.ZipFile(wheel).extractall(site)
    assert {"models", "util", "data", "options"} <= {p.name for p in site.iterdir()}
    path, _ = run_file
    code = (
        "from PIL import Image\nfrom engine import load_translator\n"
        f"t = load_translator({path!r}, device='cpu')\n"
        "out = t(Image.new('RGB', (40, 30)))\nprint(out.size, __import__('models').__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "(40, 30)" in r.stdout and str(site) in r.stdout


# ---- tiles --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "tile", "overlap"), [(100, 32, 8), (64, 32, 0), (33, 32, 16), (20, 32, 8)])
def test_tiles_cover_every_pixel(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    covered = set()
    for s in starts:
        covered |= set(range(s, min(s + tile, size)))
    assert covered == set(range(size)) and starts[-1] + min(tile, size) == size
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_blending_is_a_weighted_mean_that_keeps_a_pointwise_function():
    x = torch.rand(2, 3, 70, 90)
    out = translate_tiled(lambda t: torch.tanh(3 * t), x, 3, tile=32, overlap=12)
    torch.testing.assert_close(out, torch.tanh(3 * x), rtol=0, atol=1e-6)


def test_tiled_output_of_a_convolutional_net_is_close_to_the_whole_and_has_no_seams():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), nn.Tanh(), nn.Conv2d(4, 1, 5, padding=2)).eval()
    x = torch.rand(1, 1, 128, 128)
    with torch.no_grad():
        whole, tiled = net(x), translate_tiled(net, x, 1, tile=48, overlap=16)
    # Pixels far from every tile edge see the same context: equal there; near the edges the window blends.
    assert (whole - tiled).abs().max() < 0.05
    torch.testing.assert_close(tiled[..., 20:28, 20:28], whole[..., 20:28, 20:28], rtol=0, atol=1e-6)


# ---- translate.py ---------------------------------------------------------------------------------------------
def test_translate_py_writes_one_output_per_readable_input_at_its_size(run_file, tmp_path, capsys):
    path, _ = run_file
    inp = tmp_path / "in"
    (inp / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    sizes = {"a.png": (40, 30), "b.jpg": (40, 30), "sub/c.png": (65, 33), "sub/a.png": (16, 16)}
    for name, (w, h) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(inp / name)
    (inp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    gray = tmp_path / "gray.png"
    Image.fromarray(rng.integers(0, 256, (24, 20), dtype=np.uint8), mode="L").save(gray)
    out = tmp_path / "out"
    args = ["--checkpoint", path, str(inp), str(gray), "--out", str(out), "--gpu_ids", "-1"]
    status, said = in_process(translate.main, capsys, *args)
    assert status == 1 and "broken.png" in said and "5 of 6 images written" in said
    got = {p.name: Image.open(p).size for p in out.iterdir()}
    assert got == {"a.png": (40, 30), "b.jpg": (40, 30), "c.png": (65, 33), "a_2.png": (16, 16), "gray.png": (20, 24)}
    assert Image.open(out / "b.jpg").format == "JPEG"
    args = ["--checkpoint", path, str(tmp_path / "in" / "*.png"), "--out", str(out / "glob")]
    status, _ = in_process(translate.main, capsys, *args)
    assert status == 1 and sorted(os.listdir(out / "glob")) == ["a.png"]  # broken.png matched and failed


def test_translate_py_tiles_match_the_api_and_refuse_a_bad_tile_size(run_file, tmp_path, capsys):
    path, _ = run_file
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (100, 90, 3), dtype=np.uint8))
    img.save(tmp_path / "big.png")
    args = ["--checkpoint", path, str(tmp_path / "big.png"), "--eval", "--gpu_ids", "-1"]
    status, _ = in_process(
        translate.main, capsys, *args, "--out", str(tmp_path / "o"), "--tile", "64", "--overlap", "16"
    )
    assert status == 0
    t = load_translator(path, device="cpu", eval=True)
    want = np.asarray(t(img, tile=64, overlap=16))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "big.png")), want)
    status, err = in_process(translate.main, capsys, *args, "--out", str(tmp_path / "o"), "--tile", "48")
    assert status == 2 and "--tile 48: must be a multiple of 32" in err
    nothing = ["--checkpoint", path, str(tmp_path / "nothing*.png"), "--out", str(tmp_path / "o")]
    status, err = in_process(translate.main, capsys, *nothing)
    assert status == 2 and "no image matches" in err
