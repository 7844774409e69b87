"""export.py: ONNX and TorchScript files that compute what load_translator does (eval and train mode, --residual,
dynamic sizes), their metadata (the epochs trained included), safetensors, the default output path and the errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import sys

import pytest
import torch

import export as xport
import train
from conftest import make_G, randomized, train_args
from engine import checkpoint, export
from engine.inference import load_translator
from options.options import TrainOptions

# torch.jit.trace/save/load warn that TorchScript is deprecated; export.py says so in one log line.
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:FutureWarning")
SIZES = ((1, 64, 64), (2, 96, 64))  # (N, H, W): multiples of 32, the tiny U-Net's size multiple


def write_run(root, name: str, seed: int, **generator) -> str:
    """root/name/latest.pth holding netG and an EMA of it (other weights): ngf 4, a U-Net of 5 levels unless
    generator says otherwise."""
    if TrainOptions.from_flat(generator).generator.is_unet:
        generator.setdefault("num_downs", 5)
    o = TrainOptions.from_flat({"ngf": 4, **generator})
    nets = [randomized(make_G(**dataclasses.asdict(o.generator)), seed + k) for k in (0, 100)]
    model = {"netG": nets[0].state_dict(), "netG_ema": nets[1].state_dict()}
    path = root / name / "latest.pth"
    path.parent.mkdir(parents=True)
    state = {"format": checkpoint.FORMAT, "kind": "latest", "model": model, "options": o.to_dict(), "epoch": 3}
    torch.save(state, path)
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    write_run(root, "res", 1, residual=True, direction="BtoA")  # dropout too (unused by 5 levels)
    write_run(root, "plain", 2, no_dropout=True)
    write_run(root, "drop", 3, num_downs=6)  # one dropout block
    return root


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    """exported(run, format, *flags) -> the file export.py wrote (each export once per module)."""
    out_dir, done = tmp_path_factory.mktemp("exported"), {}

    def get(name: str, fmt: str, *flags: str) -> str:
        key = (name, fmt, flags)
        if key not in done:
            out = str(out_dir / f"{name}-{fmt}-{len(done)}{export.EXTENSIONS[fmt]}")
            args = ["--checkpoints_dir", str(runs), "--name", name, "--format", fmt, "--out", out, *flags]
            assert xport.main(args) == 0
            done[key] = out
        return done[key]

    return get


def need_onnx() -> None:
    for name in export.ONNX_PACKAGES:
        pytest.importorskip(name)


def onnx_run(path: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"real_A": x.numpy()})[0])


def torchscript_run(path: str):
    loaded = torch.jit.load(path)

    def run(x):
        with torch.no_grad():
            return loaded(x)

    return run


RUNNERS = {"onnx": onnx_run, "torchscript": torchscript_run}


def inputs(c: int = 3, sizes=SIZES, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, c, h, w, generator=g) * 2 - 1 for n, h, w in sizes]


def onnx_metadata(path: str) -> dict:
    import onnx

    model = onnx.load(path)
    return {p.key.removeprefix("pix2pix."): p.value for p in model.metadata_props if p.key.startswith("pix2pix.")}


def torchscript_metadata(path: str) -> dict:
    extra = {export.METADATA_FILE: ""}
    torch.jit.load(path, _extra_files=extra)
    return json.loads(extra[export.METADATA_FILE])


# ---- what the files compute ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_eval_mode_file_of_a_residual_run_matches_the_api(runs, exported, fmt):
    if fmt == "onnx":
        need_onnx()
    run = RUNNERS[fmt](exported("res", fmt, "--eval"))
    t = load_translator(str(runs / "res"), device="cpu", eval=True)  # the EMA weights, as the file's
    assert t.translator.residual and t.checkpoint.ema
    for x in inputs():
        want = t(x)
        assert (run(x) - want).abs().max() < 1e-4, x.shape
        # The add of real_A is in the graph: without it the outputs would be off by real_A.
        with torch.no_grad():
            assert (run(x) - t.net(x)).abs().max() > 0.5


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_train_mode_file_uses_batch_statistics_as_the_api_does(runs, exported, fmt):
    if fmt == "onnx":
        need_onnx()
    run = RUNNERS[fmt](exported("plain", fmt))
    t = load_translator(str(runs / "plain"), device="cpu")  # pix2pix's default: train mode
    e = load_translator(str(runs / "plain"), device="cpu", eval=True)
    assert t.batch_statistics and not t.eval
    for x in inputs():
        got = run(x)
        assert (got - t(x)).abs().max() < 1e-4, x.shape
        assert (got - e(x)).abs().max() > 0.05, "the running statistics were used"
    # Batch statistics: an image's output depends on the other images of its batch.
    a, b = inputs(sizes=((1, 64, 64), (1, 64, 64)), seed=1)
    assert (run(torch.cat([a, b]))[:1] - run(a)).abs().max() > 0.01


def test_onnx_metadata_and_dynamic_axes(exported):
    need_onnx()
    import onnx

    path = exported("res", "onnx", "--eval")
    meta = onnx_metadata(path)
    assert meta["size_multiple"] == "32" and json.loads(meta["input_range"]) == [-1, 1]
    assert (meta["input_nc"], meta["output_nc"], meta["direction"], meta["netG"]) == ("3", "3", "BtoA", "unet_256")
    assert (meta["residual"], meta["residual_included"], meta["mode"]) == ("true", "true", "eval")
    assert (meta["ema"], meta["batch_statistics"], meta["dropout"]) == ("true", "false", "false")
    assert "not in the graph" in meta["padding"] and json.loads(meta["generator"])["num_downs"] == 5
    model = onnx.load(path)
    (real_A,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in real_A.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "32*height", "32*width"]
    assert {o.version for o in model.opset_import if o.domain == ""} == {18}
    assert not any(p.key == "pkg.torch.onnx.stack_trace" for n in model.graph.node for p in n.metadata_props)
    assert onnx_metadata(exported("plain", "onnx"))["mode"] == "train"


def test_torchscript_metadata(exported):
    meta = torchscript_metadata(exported("plain", "torchscript"))
    assert (meta["size_multiple"], meta["input_range"], meta["mode"], meta["batch_statistics"]) == (
        32,
        [-1, 1],
        "train",
        True,
    )
    assert (meta["input_nc"], meta["output_nc"], meta["direction"], meta["netG"]) == (3, 3, "AtoB", "unet_256")
    assert (meta["residual"], meta["residual_included"], meta["dropout"]) == (False, False, False)
    assert torchscript_metadata(exported("res", "torchscript", "--eval"))["residual_included"] is True


def test_torchscript_train_mode_keeps_dropout_with_torch_s_random_numbers(runs, exported):
    run = RUNNERS["torchscript"](exported("drop", "torchscript"))
    assert torchscript_metadata(exported("drop", "torchscript"))["dropout"] is True
    t = load_translator(str(runs / "drop"), device="cpu")
    (x,) = inputs(sizes=((1, 128, 192),))  # the size multiple is 64
    torch.manual_seed(5)
    want = t(x)
    torch.manual_seed(5)
    assert (run(x) - want).abs().max() < 1e-4  # the same dropout masks from the same seed
    assert (run(x) - want).abs().max() > 0.01  # other masks


def identity_conv() -> torch.nn.Conv2d:
    conv = torch.nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3)[:, :, None, None])
    return conv


def test_onnx_train_mode_keeps_dropout():
    # ONNX Runtime's graph optimisations delete a Dropout node between convolutions even in training mode (as
    # in the U-Net and ResNet blocks): export.py writes dropout out as ops. A generator's export takes seconds, so
    # a network of dropout between two 1x1 identity convs, with dynamic sizes of a multiple of 4 from 2 units.
    need_onnx()
    net = torch.nn.Sequential(identity_conv(), torch.nn.Dropout(0.5), identity_conv())
    module = export.export_module(net, residual=False, eval=False, sampled_dropout=True)
    assert export.has_active_dropout(module)
    example, _ = export.sample_inputs(3, 4)
    run = export.onnx_runner(export.to_onnx(module, example, 4, False, 18, {"netG": "resnet_6blocks"}))
    for (x,) in (inputs(sizes=((1, 8, 8),)), inputs(sizes=((3, 20, 12),))):
        a, b = run(x), run(x)
        assert a.shape == x.shape and not torch.equal(a, b)
        dropped = a == 0
        assert 0.3 < float(dropped.float().mean()) < 0.7  # about half, the rest scaled by 1 / (1 - 0.5)
        torch.testing.assert_close(a[~dropped], 2 * x[~dropped])


# ---- the export copy of the network ---------------------------------------------------------------------------
def test_export_copy_computes_train_mode_without_touching_the_network():
    o = TrainOptions.from_flat(dict(ngf=4, num_downs=5, no_dropout=True, spectral_norm="G")).generator
    net = randomized(make_G(**dataclasses.asdict(o)), 7)
    before = copy.deepcopy(net.state_dict())
    module = export.export_module(net, residual=False, eval=False, sampled_dropout=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())
    assert any(isinstance(m, export.BatchStatsNorm) for m in module.modules())
    ref = copy.deepcopy(net).train()
    for m in ref.modules():  # spectral norm without a further power iteration, as in the export
        if isinstance(m, torch.nn.utils.parametrize.ParametrizationList):
            m.eval()
    (x,) = inputs(sizes=((2, 64, 96),))
    with torch.no_grad():
        torch.testing.assert_close(module(x), ref(x), rtol=0, atol=1e-6)
        module(x)
    # The original is as it was: still parametrized (the copy's spectral norm was baked in by hand), same state.
    assert torch.nn.utils.parametrize.is_parametrized(net.model.model[0])
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        net.eval()(x)


# ---- safetensors, paths and errors -----------------------------------------------------------------------------
def test_safetensors_round_trip_and_default_out(runs):
    src = runs / "res" / "latest.pth"
    assert xport.main(["--checkpoints_dir", str(runs), "--name", "res", "--format", "safetensors"]) == 0
    out = runs / "res" / "latest.safetensors"  # beside the checkpoint
    t, u = load_translator(str(src), device="cpu", eval=True), load_translator(str(out), device="cpu", eval=True)
    assert u.options == t.options and u.checkpoint.ema and u.direction == "BtoA"
    for x in inputs():
        torch.testing.assert_close(u(x), t(x), rtol=0, atol=0)
    # --no_ema: the trained G's weights, not the average's.
    no_ema = runs / "res-no-ema.safetensors"
    assert xport.main(["--checkpoint", str(src), "--format", "safetensors", "--out", str(no_ema), "--no_ema"]) == 0
    v = load_translator(str(no_ema), device="cpu", eval=True)
    assert not v.checkpoint.ema and (v(x) - t(x)).abs().max() > 0.01


def test_export_metadata_counts_the_epochs_trained(tiny_data, tmp_path):
    import export as export_script
    from engine.checkpoint import load_generator, load_safetensors

    args = train_args(tiny_data, tmp_path, "one", "--no_html")
    assert train.main([*args, "--n_epochs", "1", "--n_epochs_decay", "0"]) == 0
    run = tmp_path / "one"
    assert load_generator(str(run / "latest.pth"), True).epoch == 1  # latest.pth says "epoch 2 next"
    assert load_generator(str(run / "1_net_G.pth"), True).epoch == 1
    out = tmp_path / "one.safetensors"
    assert (
        export_script.main(["--checkpoint", str(run / "latest.pth"), "--format", "safetensors", "--out", str(out)]) == 0
    )
    assert load_safetensors(str(out)).epoch == 1


def test_default_out_is_beside_the_checkpoint(runs, capsys):
    path = runs / "plain" / "latest.pth"
    assert xport.main(["--checkpoint", str(path), "--format", "torchscript", "--eval"]) == 0
    out = runs / "plain" / "latest.pt"
    assert out.is_file() and torchscript_metadata(str(out))["mode"] == "eval"
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert str(out) in line and "KiB" in line and "eval mode" in line and "size multiple 32" in line
    assert "padding and cropping are not in the graph" in line


def test_missing_onnx_exits_2_naming_the_package(runs, monkeypatch, capsys):
    before = set(sys.modules)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    try:
        with pytest.raises(SystemExit) as e:
            xport.main(["--checkpoints_dir", str(runs), "--name", "plain", "--format", "onnx"])
    finally:  # what a failed import of onnxscript left half done
        for name in set(sys.modules) - before:
            del sys.modules[name]
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("export.py: error: --format onnx needs onnx (ModuleNotFoundError: import of onnx halted")
    assert "pip install onnx onnxruntime onnxscript" in err
    assert not (runs / "plain" / "latest.onnx").exists()


def test_errors_exit_2(runs, capsys):
    for args, message in (
        (["--name", "plain", "--format", "onnx", "--opset", "17"], "--opset 17: must be 18 or more"),
        (["--name", "nothing", "--format", "torchscript"], "no checkpoint"),
        (["--name", "plain", "--format", "safetensors", "--out", str(runs)], "is a folder"),
    ):
        with pytest.raises(SystemExit) as e:
            xport.main(["--checkpoints_dir", str(runs), *args])
        assert e.value.code == 2 and message in capsys.readouterr().err, args
    same = runs / "plain" / "copy.safetensors"
    assert (
        xport.main(["--checkpoint", str(runs / "plain" / "latest.pth"), "--format", "safetensors", "--out", str(same)])
        == 0
    )
    with pytest.raises(SystemExit):
        xport.main(["--checkpoint", str(same), "--format", "safetensors"])
    assert "the checkpoint itself" in capsys.readouterr().err
