"""Options: defaults from the pix2pix paper, reference flags accepted, bad values stop with status 2."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from options import rules
from options.options import build_parser, format_options, parse
from util.config import OptionError
from util.distributed import device_ids


def parse_error(capsys, argv, is_train=True) -> str:
    """What is wrong with argv: parse()'s message (each config on its own), or the rules across configs (which
    the script's resolve step checks, once, on the values it runs with)."""
    try:
        opt = parse(is_train, argv)
    except SystemExit as e:
        assert e.code == 2
        return capsys.readouterr().err
    with pytest.raises(OptionError) as e:
        rules.check(opt)
    return str(e.value)


def test_paper_defaults():
    o = parse(True, []).flat()
    assert (o["batch_size"], o["lr"], o["beta1"], o["lambda_L1"]) == (1, 0.0002, 0.5, 100.0)
    assert (o["gan_mode"], o["norm"], o["netD"], o["netG"], o["n_layers_D"]) == (
        "vanilla",
        "batch",
        "basic",
        "unet_256",
        3,
    )
    assert (o["load_size"], o["crop_size"], o["no_dropout"]) == (286, 256, False)
    assert (o["n_epochs"], o["n_epochs_decay"], o["lr_policy"]) == (100, 100, "linear")
    assert o["num_threads"] == min(4, os.cpu_count() or 1)
    assert o["phase"] == "train" and parse(False, []).data.phase == "test"


def test_reference_compatibility_flags_accepted():
    opt = parse(True, ["--model", "pix2pix", "--dataset_mode", "aligned", "--pool_size", "0", "--direction", "BtoA"])
    assert opt.generator.direction == "BtoA"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--netG", "unet_1024"], "--netG: invalid choice: 'unet_1024'"),
        (["--norm", "group"], "--norm: invalid choice"),
        (
            ["--crop_size", "500", "--netG", "unet_512", "--load_size", "572"],
            "--crop_size 500 does not fit unet_512 (9 downsamplings): it must be a multiple of 512",
        ),
        (["--crop_size", "300", "--load_size", "320"], "it must be a multiple of 256 (for example 256 or 512)"),
        (["--crop_size", "512", "--load_size", "286"], "--crop_size 512 is larger than --load_size 286"),
        (["--num_downs", "4"], "--num_downs 4: must be 5 or more"),
        (["--netG", "resnet_9blocks", "--num_downs", "6"], "--num_downs applies to U-Net generators only"),
        (["--pool_size", "50"], "--pool_size 50: pix2pix uses no image pool"),
        (["--name", "../escape"], "--name '../escape': must be a plain folder name"),
        (["--batch_size", "0"], "--batch_size 0: must be a positive integer"),
        (["--lr", "-1"], "--lr -1.0: must be positive"),
        (["--dataroot", "/no/such/folder"], "--dataroot /no/such/folder: no such folder"),
        (["--gpu_ids", "a,b"], "--gpu_ids 'a,b': expected comma-separated integers"),
        (["--n_epochs", "0", "--n_epochs_decay", "0"], "must be at least 1 epoch"),
        (["--dataset_mode", "single"], "--dataset_mode single has no targets"),
        (["--netD", "n_layers", "--n_layers_D", "7"], "--crop_size 256 is too small for --netD n_layers with 7 layers"),
        (["--phase", "a/b"], "--phase 'a/b': must be a plain folder name"),
        (["--max_bad_fraction", "1.5"], "--max_bad_fraction 1.5: must be in [0, 1)"),
        (["--seed", "-4"], "--seed -4: must be 0 or more"),
        (["--norm", "syncbatch", "--gpu_ids", "-1"], "--norm syncbatch: SyncBatchNorm runs on CUDA only"),
        (["--accum_steps", "0"], "--accum_steps 0: must be a positive integer"),
    ],
)
def test_bad_values_name_the_flag(capsys, argv, expected):
    assert expected in parse_error(capsys, argv)


def test_size_rule_follows_num_downs(capsys):
    assert (
        parse(
            True, ["--netG", "unet_512", "--num_downs", "6", "--crop_size", "64", "--load_size", "72"]
        ).generator.num_downs
        == 6
    )
    assert "multiple of 128" in parse_error(capsys, ["--num_downs", "7", "--crop_size", "64", "--load_size", "72"])
    # --preprocess none or scale_width does not crop at a fixed size: the model pads instead.
    opt = parse(True, ["--preprocess", "none", "--crop_size", "100"])
    rules.check(opt)
    assert opt.preprocess.crop_size == 100


def test_gpu_ids_without_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert "CUDA is not available" in parse_error(capsys, ["--gpu_ids", "0"])
    assert device_ids(parse(True, ["--gpu_ids", "-1"]).basic.gpu_ids) == []


def test_abbreviations_are_refused(capsys):
    # test.py must know which flags were written, so --crop for --crop_size is an error, not a guess.
    assert "unrecognized arguments: --crop" in parse_error(capsys, ["--crop", "128"], is_train=False)


def test_test_options(capsys):
    opt = parse(False, ["--num_test", "5", "--epoch", "10", "--eval"])
    assert (opt.testing.num_test, opt.source.epoch, opt.source.eval) == (5, "10", True)
    assert opt.testing.results_dir == "./results"
    assert "--epoch 'best_ever'" in parse_error(capsys, ["--epoch", "best_ever"], is_train=False)


def test_help_is_grouped():
    text = build_parser(True).format_help()
    for group in ("basic:", "generator (saved", "discriminator:", "data:", "training:", "checkpoints and resume:"):
        assert group in text
    body = text[text.index("basic:") :]  # after the usage line
    assert body.index("--ngf") < body.index("discriminator:") < body.index("--ndf") < body.index("data:")


def test_non_defaults_marked():
    text = format_options(parse(True, ["--ngf", "32"]))
    lines = {line.split(":")[0].strip(): line for line in text.splitlines()}
    assert "[default: 64]" in lines["ngf"] and "[default:" not in lines["lr"] and "[default:" not in lines["netG"]


@pytest.mark.parametrize("is_train", [True, False])
def test_help_shows_each_default_once(is_train):
    p = build_parser(is_train)
    for action in p._actions:
        if action.help and action.dest != "help":
            assert action.help.count("(default") <= 1, action.option_strings
    text = p.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text


def test_test_dataroot_help_says_the_training_run():
    help_text = {a.dest: a.help for a in build_parser(False)._actions}["dataroot"]
    assert "the training run's --dataroot" in help_text and "demo" not in help_text


def test_best_metric_is_not_marked_when_not_given():
    lines = {ln.split(":")[0].strip(): ln for ln in format_options(parse(True, [])).splitlines()}
    assert "[default:" not in lines["best_metric"]
    opt = parse(True, ["--metrics", "ssim,psnr"])
    assert opt.metrics.best_metric is None and opt.metrics.best_metric_name == "ssim"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--lr", "inf"], "--lr inf: must be a finite number"),
        (["--init_gain", "nan"], "--init_gain nan: must be a finite number"),
        (["--lambda_L1=-inf"], "--lambda_L1 -inf: must be a finite number"),
        (["--dropout", "1"], "--dropout 1.0: must be in [0, 1)"),
        (["--display_port", "70000"], "--display_port 70000: must be 0..65535"),
    ],
)
def test_bounds_come_from_the_fields(capsys, argv, expected):
    assert expected in parse_error(capsys, argv)


def test_saved_options_round_trip_by_group():
    from options.options import ARCHITECTURE_KEYS, INHERITED_DATA_KEYS, TrainOptions

    opt = parse(True, ["--ngf", "32", "--netG", "unet_128", "--crop_size", "128", "--load_size", "140"])
    saved = opt.to_dict()
    assert saved["generator"]["ngf"] == 32 and set(saved["generator"]) == set(ARCHITECTURE_KEYS)
    assert set(saved["preprocess"]) == set(INHERITED_DATA_KEYS) and "seed" in saved["run"]
    assert TrainOptions.from_dict(saved) == opt
    # An older run's groups lack a newer field: it gets the default; a field this code no longer knows is dropped.
    del saved["generator"]["attention"]
    saved["generator"]["retired_flag"] = 1
    assert TrainOptions.from_dict(saved).generator.attention is False


@pytest.mark.parametrize("which", [True, False])
def test_help_prints_every_flag(capsys, which):
    """argparse formats help strings with %: a stray one breaks --help for every flag."""
    with pytest.raises(SystemExit) as e:
        parse(which, ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--dataroot" in out and ("--device_preprocess" in out) == which


def test_package_versions_are_read_without_importing_the_packages():
    # Importing torchvision to read its version loads its detection models (seconds at every test.py start).
    code = (
        "import sys; from options.options import package_versions; v = package_versions(); "
        "print(v['torchvision'] != 'not installed', 'torchvision' in sys.modules, 'torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"]


@pytest.mark.parametrize("value", ["-1e308,1e308", "-3e38,3e38", "0,1e39", "1,1.00000000001", "nan,1", "0,inf"])
def test_ranges_must_be_finite_with_a_finite_span_in_float32(capsys, value):
    err = parse_error(capsys, [f"--range_A={value}"])
    assert "--range_A" in err and ("float32" in err or "give MIN,MAX" in err)


def test_a_flag_value_type_must_say_how_its_text_is_parsed():
    from util.config import FlagValue

    with pytest.raises(TypeError, match="Bare: a FlagValue defines the classmethod parse"):
        type("Bare", (FlagValue,), {})
    parsed = type("Pair", (tuple, FlagValue), {"parse": classmethod(lambda cls, text, flag: cls(text.split("/")))})
    assert parsed.parse("a/b", "pair") == ("a", "b")
