"""--preset NAME: a group of train.py flags; the command line's own flags win; said at start-up; saved."""

import json
import os

import pytest

import train
from conftest import tiny_data, train_args  # noqa: F401  (a fixture)
from options.options import TrainOptions, parse
from options.presets import PRESETS, describe, preset_values


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_flags_with_valid_values(name):
    values = PRESETS[name]
    assert values and set(values) <= TrainOptions.names()
    opt = TrainOptions.from_flat(values)
    opt.check_fields()  # choices and bounds, as a command line's
    flat = opt.flat()
    assert all(flat[k] == v for k, v in values.items())


def test_a_preset_sets_its_flags_and_the_command_line_wins():
    name = "restore"
    flags = PRESETS[name]
    opt = parse(True, ["--preset", name])
    assert opt.run.preset == name and all(opt.flat()[k] == v for k, v in flags.items())
    overridden = next(k for k, v in flags.items() if not isinstance(v, bool))
    other = str(2 * flags[overridden]) if isinstance(flags[overridden], int | float) else "unet_256"
    opt = parse(True, ["--preset", name, f"--{overridden}", other])
    assert str(opt.flat()[overridden]) == other
    line = describe(name, preset_values(name, {overridden}), {overridden})
    assert line.startswith(f"--preset {name} sets ") and f"kept: --{overridden}" in line
    assert f"--{overridden} " not in line.split(" (given")[0]


def test_train_py_says_what_the_preset_set_and_saves_it(tiny_data, tmp_path, caplog):  # noqa: F811
    caplog.set_level("INFO")
    ck = str(tmp_path / "ck")
    # the tiny run's sizes and network are given, so the preset's own (512) are overridden
    args = train_args(tiny_data, ck, "p", "--preset", "restore")
    assert train.main([*args, "--n_epochs", "1", "--n_epochs_decay", "0", "--no_html"]) == 0
    assert "--preset restore sets " in caplog.text
    saved = json.load(open(os.path.join(ck, "p", "train_opt.json")))["options"]
    assert saved["preset"] == "restore"
    given = {"netG", "num_downs", "load_size", "crop_size", "ngf", "ndf"}
    for k, v in PRESETS["restore"].items():
        if k not in given:
            assert saved[k] == v, k
    # A resumed run keeps its own flags: a preset there would be announced and recorded without being applied.
    caplog.clear()
    with pytest.raises(SystemExit) as e:
        train.main([*args, "--n_epochs", "2", "--n_epochs_decay", "0", "--no_html", "--continue_train"])
    assert e.value.code == 2 and "--preset restore sets" not in caplog.text
    assert json.load(open(os.path.join(ck, "p", "train_opt.json")))["options"]["lr"] == saved["lr"]
    # Left out, the run resumes with what it is (the preset it was started with, recorded as it was).
    no_preset = [a for a in args if a not in ("--preset", "restore")]
    assert train.main([*no_preset, "--n_epochs", "2", "--n_epochs_decay", "0", "--no_html", "--continue_train"]) == 0
    assert json.load(open(os.path.join(ck, "p", "train_opt.json")))["options"]["preset"] == "restore"
