"""test.py, translate.py and export.py resolve against the checkpoint's configs before they validate the command
line: the run's own flags are accepted and change nothing, a flag that contradicts the run is one warning line,
and a size that does not fit the run's generator is one error line; for each U-Net depth."""

import os

import pytest
import torch
from PIL import Image

import test as test_script
import translate
from conftest import make_pairs, train_args
from engine.checkpoint import Progress, Saver, rng_state
from models import create_model
from options import rules
from options.options import TrainOptions

# (netG and the flags that set its depth, crop, load): the README's 512 run, the r128 run and the default.
DEPTHS = {
    "unet_128": (["--netG", "unet_128", "--num_downs", "6"], 64, 72),
    "unet_256": (["--netG", "unet_256"], 256, 286),
    "unet_512": (["--netG", "unet_512"], 512, 572),
}


def flag_values(flags: list[str]) -> dict:
    it = iter(flags)
    return {k[2:]: (int(v) if v.isdigit() else v) for k, v in zip(it, it, strict=True)}


@pytest.fixture(scope="module", params=sorted(DEPTHS))
def run(request, tmp_path_factory):
    """A run's latest.pth (random tiny weights, trained with the depth's flags; never trained: the resolution is
    under test, not the training) and a test/ folder with one pair at the run's crop size."""
    netG = request.param
    flags, crop, load = DEPTHS[netG]
    root = tmp_path_factory.mktemp(netG)
    data = root / "data"
    make_pairs(str(data / "test"), 1, w=crop, h=crop)
    opt = TrainOptions.from_flat(
        dict(ngf=4, ndf=4, dataroot=str(data), crop_size=crop, load_size=load, seed=1, **flag_values(flags))
    )
    opt.check_fields()
    rules.check(opt)
    torch.manual_seed(0)
    model = create_model(opt.model_config(), torch.device("cpu"))
    run_dir = root / "ck" / "r"
    Saver(str(run_dir), opt.to_dict(), save_by_iter=False, keep_last=0).latest(
        model, Progress(2, 0, 1), rng_state(torch.device("cpu")), None
    )
    own = [*flags, "--load_size", str(load), "--crop_size", str(crop), "--seed", "1", "--ngf", "4"]
    return {"root": root, "netG": netG, "own": own, "generator": flags, "crop": crop}


def run_test(run, name: str, *flags: str) -> bytes:
    """test.py on the run with these flags; the fake_B image's bytes."""
    res = run["root"] / name
    args = ["--checkpoints_dir", str(run["root"] / "ck"), "--name", "r", "--results_dir", str(res)]
    assert test_script.main([*args, "--num_threads", "0", "--metrics", "psnr", *flags]) == 0
    out = res / "r" / "test_latest" / "images" / "img000_fake_B.png"
    assert Image.open(out).size == (run["crop"], run["crop"])
    return out.read_bytes()


def test_test_py_takes_the_run_s_flags_or_none_and_gives_the_same_images(run, caplog):
    plain = run_test(run, "plain")  # none of the training command's flags repeated
    caplog.clear()
    # The training command's flags that only train.py has: accepted, named in one warning, and without effect.
    train_only = ["--lr", "0.001", "--n_epochs", "3", "--ema_decay", "0.999", "--no_html", "--lambda_L1", "10"]
    assert run_test(run, "train_only", *run["own"], *train_only) == plain
    warned = [r.getMessage() for r in caplog.records if "train.py's flags" in r.getMessage()]
    assert warned == ["--ema_decay --lambda_L1 --lr --n_epochs --no_html: train.py's flags, ignored by test.py"]
    caplog.clear()
    # The run's own flags, as the reference requires: all of them, the generator's alone (the README's
    # `test.py --netG unet_512`), or the sizes alone (the run's crop checked against the run's depth).
    sizes = run["own"][len(run["generator"]) :]
    for name, flags in (("own", run["own"]), ("generator", run["generator"]), ("sizes", sizes)):
        assert run_test(run, name, *flags) == plain, name
    assert "ignored" not in caplog.text
    other = "unet_256" if run["netG"] != "unet_256" else "unet_512"
    caplog.clear()
    assert run_test(run, "other", "--netG", other) == plain  # the weights define the generator
    lines = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert lines == [f"--netG {other} ignored: the checkpoint was trained with {run['netG']}"]


def test_a_size_that_does_not_fit_the_run_s_generator_is_one_line(run, capsys):
    crop = run["crop"] + 8
    args = ["--checkpoints_dir", str(run["root"] / "ck"), "--name", "r", "--results_dir", str(run["root"] / "bad")]
    with pytest.raises(SystemExit) as e:
        test_script.main([*args, "--crop_size", str(crop), "--load_size", str(crop)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    depth = {"unet_128": 6, "unet_256": 8, "unet_512": 9}[run["netG"]]
    assert err.startswith(f"test.py: error: --crop_size {crop} does not fit {run['netG']} ({depth} downsamplings)")
    assert len(err.splitlines()) == 1
    assert not os.path.exists(run["root"] / "bad")  # refused before anything was written


def test_translate_py_accepts_the_run_s_flags_and_warns_on_others(run, caplog):
    src = run["root"] / "in.png"
    Image.new("RGB", (40, 24), (90, 120, 200)).save(src)
    out = {}
    for name, flags in (("plain", []), ("own", run["generator"]), ("other", ["--ngf", "16"])):
        caplog.clear()
        folder = run["root"] / f"tr_{name}"
        args = ["--checkpoints_dir", str(run["root"] / "ck"), "--name", "r", "--out", str(folder), "--eval"]
        assert translate.main([*args, *flags, str(src)]) == 0
        out[name] = (folder / "in.png").read_bytes()
        warned = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
        assert warned == (["--ngf 16 ignored: the checkpoint was trained with 4"] if name == "other" else [])
    assert out["plain"] == out["own"] == out["other"]


def test_export_py_accepts_the_run_s_flags_and_warns_on_others(run, caplog):
    import export as export_script
    from engine.checkpoint import load_safetensors

    for name, flags in (("own", run["generator"]), ("other", ["--ngf", "16"])):
        caplog.clear()
        out = run["root"] / f"{name}.safetensors"
        args = ["--checkpoints_dir", str(run["root"] / "ck"), "--name", "r", "--format", "safetensors"]
        assert export_script.main([*args, "--out", str(out), *flags]) == 0
        warned = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
        assert warned == (["--ngf 16 ignored: the checkpoint was trained with 4"] if name == "other" else [])
        g = load_safetensors(str(out)).generator
        assert (g.netG, g.ngf, g.size_multiple) == (run["netG"], 4, {64: 64, 256: 256, 512: 512}[run["crop"]])


def test_each_rule_and_check_runs_once_on_a_fresh_training_run(tiny_data, tmp_path, monkeypatch):
    """parse() checks each config on its own, the resolve step the rules across configs, each once: the folder
    test of --dataroot, the loss config's weights lookup and every rule that applies to train.py run one time."""
    import train
    from data.config import DataConfig
    from models.config import LossConfig

    calls: dict[str, int] = {}

    def counted(name, fn):
        def wrapper(*args):
            calls[name] = calls.get(name, 0) + 1
            return fn(*args)

        return wrapper

    applies = {r.__name__ for scripts, _, r in rules.RULES if "train" in scripts}
    monkeypatch.setattr(rules, "RULES", tuple((s, c, counted(r.__name__, r)) for s, c, r in rules.RULES))
    monkeypatch.setattr(DataConfig, "check", counted("data", DataConfig.check))
    monkeypatch.setattr(LossConfig, "check", counted("loss", LossConfig.check))
    args = train_args(tiny_data, tmp_path, "r", "--no_html")
    assert train.main([*args, "--n_epochs", "1", "--n_epochs_decay", "0", "--max_dataset_size", "2"]) == 0
    assert calls == {"data": 1, "loss": 1, **dict.fromkeys(applies, 1)}
