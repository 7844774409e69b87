"""Checkpoint files: format numbers and migration from format 1, file modes, and what best_net_G.pth serves."""

import json
import os
import stat

import pytest
import torch

import test as test_script
import train
from conftest import ROOT, TINY, train_args
from engine import checkpoint
from models import create_model
from options.options import TrainOptions, parse

# The options exactly as the format-1 code (before option groups) saved them in latest.pth: one flat dict.
FORMAT1_OPTIONS = json.load(open(os.path.join(ROOT, "tests", "data", "format1_options.json")))


def write_format1_run(run_dir: str, dataroot: str) -> None:
    """A run folder as the format-1 code left it after epoch 1 of 2: latest.pth (format 1, flat options) and
    1_net_G.pth (no format number), with the model state in the layout that code wrote."""
    flat = {**FORMAT1_OPTIONS, "dataroot": dataroot, "checkpoints_dir": os.path.dirname(run_dir)}
    flat.update(name=os.path.basename(run_dir), n_epochs=2, save_epoch_freq=1)
    opt = parse(True, [*TINY, "--ngf", "2", "--ndf", "2", "--ema_decay", "0.9", "--n_epochs", "2"])
    torch.manual_seed(0)
    model = create_model(opt.model_config(), torch.device("cpu"))
    os.makedirs(run_dir)
    latest = {
        "format": 1,
        "model": model.state_dict(),
        "epoch": 2,
        "epoch_iter": 0,
        "total_iters": 4,
        "options": flat,
        "rng": checkpoint.rng_state(torch.device("cpu")),
        "best": None,
    }
    torch.save(latest, os.path.join(run_dir, "latest.pth"))
    snap = {**model.generator_weights(), "options": flat, "epoch": 1, "total_iters": 4}
    torch.save(snap, os.path.join(run_dir, "1_net_G.pth"))


def test_format1_options_fixture_is_the_old_flat_layout():
    # Guards the fixture itself: 96 flat names, the old layout (no groups), the flags of that day.
    assert len(FORMAT1_OPTIONS) == 96 and all(not isinstance(v, dict) for v in FORMAT1_OPTIONS.values())
    assert {"ngf", "netG", "seed", "lr", "display_port", "vgg_weights"} <= set(FORMAT1_OPTIONS)


def test_format1_files_migrate_resume_and_test(tiny_data, tmp_path):
    run_dir = str(tmp_path / "ck" / "old")
    write_format1_run(run_dir, tiny_data)
    state = checkpoint.load(os.path.join(run_dir, "latest.pth"))
    assert state["format"] == checkpoint.FORMAT and state["kind"] == "latest"
    opts = state["options"]  # the configs of models/ and data/ regrouped; the scripts' own, by options/
    assert opts["generator"]["ngf"] == 2 and opts["optim"]["ema_decay"] == 0.9
    assert TrainOptions.from_dict(opts).run.seed == 3
    # train-mode testing seeds dropout with the run's seed, found in an old file's options too
    assert checkpoint.load_generator(os.path.join(run_dir, "latest.pth"), True).seed == 3
    snap = checkpoint.load(os.path.join(run_dir, "1_net_G.pth"))
    assert snap["kind"] == "generator" and snap["options"]["generator"]["num_downs"] == 5
    # Resumed as a new-format run: epoch 2 trains, and the files written are today's format.
    args = train_args(tiny_data, tmp_path / "ck", "old")
    args += ["--ngf", "2", "--ndf", "2", "--n_epochs", "2", "--n_epochs_decay", "0", "--no_html", "--continue_train"]
    assert train.main(args) == 0
    raw = torch.load(os.path.join(run_dir, "latest.pth"), weights_only=True)
    assert (
        raw["format"] == checkpoint.FORMAT
        and raw["epoch"] == 3
        and raw["total_iters"] == 8
        and "generator" in raw["options"]
    )
    for epoch in ("1", "latest"):
        res = ["--results_dir", str(tmp_path / "res"), "--num_threads", "0"]
        assert (
            test_script.main(["--checkpoints_dir", str(tmp_path / "ck"), "--name", "old", "--epoch", epoch, *res]) == 0
        )
        assert os.path.exists(tmp_path / "res" / "old" / f"test_{epoch}" / "images" / "img000_fake_B.png")


def test_format2_files_migrate_and_resume_exactly(tiny_data, tmp_path):
    # Format 2 grouped the options otherwise (skip_nonfinite under "run"; format 3 groups by consumer config, and
    # it is the optimiser's): a format-2 latest.pth, resumed, ends where an uninterrupted run does.
    ck = str(tmp_path / "ck")
    base = ["--dataroot", tiny_data, "--checkpoints_dir", ck, *TINY, "--no_html", "--n_epochs", "2"]
    base += ["--n_epochs_decay", "0", "--skip_nonfinite"]
    assert train.main([*base, "--name", "whole"]) == 0
    assert train.main([*base, "--name", "old", "--stop_after_iters", "3"]) == 0
    path = os.path.join(ck, "old", "latest.pth")
    state = torch.load(path, weights_only=True)
    assert state["format"] == 3 and state["options"]["optim"]["skip_nonfinite"] is True
    state["format"] = 2
    state["options"]["run"]["skip_nonfinite"] = state["options"]["optim"].pop("skip_nonfinite")
    torch.save(state, path)
    migrated = checkpoint.load(path)
    assert migrated["format"] == 3 and migrated["options"]["optim"]["skip_nonfinite"] is True
    assert "skip_nonfinite" not in migrated["options"]["run"]
    assert train.main([*base, "--name", "old", "--continue_train"]) == 0
    a, b = (checkpoint.load(os.path.join(ck, n, "latest.pth"))["model"]["netG"] for n in ("whole", "old"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_newer_format_and_wrong_kind_are_clear_errors(tmp_path):
    path = str(tmp_path / "latest.pth")
    torch.save({"format": checkpoint.FORMAT + 1, "options": {}}, path)
    with pytest.raises(checkpoint.CheckpointError, match=r"has format 4, newer than this code reads \(3\)"):
        checkpoint.load(path)
    torch.save({"format": 2, "kind": "generator", "netG": {}, "options": {}, "epoch": 1}, path)
    with pytest.raises(checkpoint.CheckpointError, match="a generator snapshot, not a full training state"):
        checkpoint.load_latest(path)


def test_checkpoints_follow_the_umask_like_every_other_output(tiny_data, tmp_path):
    old = os.umask(0o022)
    try:
        args = train_args(tiny_data, tmp_path, "m", "--no_html")
        assert train.main([*args, "--n_epochs", "1", "--n_epochs_decay", "0"]) == 0
    finally:
        os.umask(old)
    for name in ("latest.pth", "1_net_G.pth", "train_opt.txt", "train_opt.json", "loss_log.txt"):
        assert stat.S_IMODE(os.stat(tmp_path / "m" / name).st_mode) == 0o644, name


def test_best_is_chosen_by_scoring_the_generator_it_serves(tmp_path):
    # With an EMA, best_net_G.pth serves the EMA to test.py, so validation must score the EMA.
    from conftest import make_pairs
    from engine.validation import Validator, split_validation

    make_pairs(str(tmp_path / "data" / "train"), 2, seed=1)
    make_pairs(str(tmp_path / "data" / "val"), 2, seed=4)
    opt = parse(True, ["--dataroot", str(tmp_path / "data"), *TINY, "--ema_decay", "0.9", "--val_phase", "val"])
    torch.manual_seed(0)
    model = create_model(opt.model_config(), torch.device("cpu"))
    with torch.no_grad():  # the raw G far from its average: constant zero output
        for p in model.netG.parameters():
            p.zero_()
    saver = checkpoint.Saver(str(tmp_path), opt.to_dict(), save_by_iter=False, keep_last=0)
    _, val = split_validation(opt.metrics, opt.data, opt.preprocess, opt.generator, opt.values, 3, None)
    validator = Validator(opt.metrics, 3, val, torch.device("cpu"), saver)
    scores = validator(model, 1, 1)
    served = checkpoint.load_generator(str(tmp_path / "best_net_G.pth"), prefer_ema=True)
    assert served.ema
    ema_net = model.netG_ema.module
    assert all(torch.equal(served.netG[k], v) for k, v in ema_net.state_dict().items())
    ema_scores = validator.score(model)
    assert scores["psnr"] == pytest.approx(ema_scores["psnr"])
    model.netG_ema = None  # what the raw generator scores: something else
    assert validator.score(model)["psnr"] != pytest.approx(scores["psnr"])
