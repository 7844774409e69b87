"""Resume: at every position of a run, epoch ends included; epoch-end work redone after a kill; one run per folder;
on other data (--new_data); --continue_train alone; --init_from another architecture refused."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import train
from conftest import ROOT, TINY, make_dataroot, train_args
from engine import checkpoint
from engine.run_folder import RunLock


@pytest.fixture
def data3(tmp_path):
    """3 training pairs (3 steps an epoch at batch 1) and 1 validation pair."""
    return make_dataroot(tmp_path / "data", train=3, val=1)


@pytest.fixture
def two_sets(tmp_path):
    """Two data folders: a (4 training pairs) and b (6 other pairs)."""
    return make_dataroot(tmp_path / "a", train=4), make_dataroot(tmp_path / "b", test=1, train=6)


def run_args(data, ck, name):
    """2 epochs of 3 steps, a line of the loss log each step, a snapshot and a validation pass each epoch."""
    schedule = ["--n_epochs", "1", "--n_epochs_decay", "1", "--print_freq", "1", "--save_epoch_freq", "1"]
    return train_args(data, ck, name, *schedule, "--val_phase", "val")


def assert_same_run(ref_dir, run_dir):
    a = checkpoint.load(os.path.join(ref_dir, "latest.pth"))
    b = checkpoint.load(os.path.join(run_dir, "latest.pth"))
    assert (a["epoch"], a["epoch_iter"], a["total_iters"]) == (b["epoch"], b["epoch_iter"], b["total_iters"])
    for part in ("netG", "netD", "optimizer_G", "optimizer_D", "scheduler_G"):
        x, y = a["model"][part], b["model"][part]
        if part.startswith("optimizer"):
            assert x["param_groups"][0]["lr"] == y["param_groups"][0]["lr"]
            x, y = ({f"{i}.{k}": v for i, s in d["state"].items() for k, v in s.items()} for d in (x, y))
        for k, v in x.items():
            assert torch.equal(v, y[k]) if torch.is_tensor(v) else v == y[k], f"{part}.{k}"
    for snap in ("1_net_G.pth", "2_net_G.pth", "best_net_G.pth"):
        s, t = (checkpoint.load(os.path.join(d, snap))["netG"] for d in (ref_dir, run_dir))
        assert all(torch.equal(v, t[k]) for k, v in s.items()), snap
    # The logs continue without repeating a line.
    losses = [ln for ln in open(os.path.join(run_dir, "loss_log.txt")) if "total_iters:" in ln]
    assert [int(ln.split("total_iters: ")[1].split(",")[0]) for ln in losses] == list(range(1, 7))
    val = [json.loads(ln)["epoch"] for ln in open(os.path.join(run_dir, "val_log.jsonl"))]
    assert val == [1, 2]


def test_resume_from_every_step_is_bit_exact(data3, tmp_path):
    assert train.main(run_args(data3, tmp_path, "ref")) == 0
    for k in range(1, 7):  # steps 3 and 6 are the last of their epochs
        name = f"stop{k}"
        assert train.main([*run_args(data3, tmp_path, name), "--stop_after_iters", str(k)]) == 0
        half = checkpoint.load(str(tmp_path / name / "latest.pth"))
        assert half["total_iters"] == k and half["epoch_iter"] == (k - 1) % 3 + 1
        assert train.main([*run_args(data3, tmp_path, name), "--continue_train"]) == 0
        assert_same_run(str(tmp_path / "ref"), str(tmp_path / name))


def test_kill_at_the_epoch_end_is_redone_on_resume(data3, tmp_path):
    args = [*run_args(data3, tmp_path, "k"), "--save_latest_freq", "3"]  # latest at each epoch's last step too
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    hooked = [os.path.join(ROOT, "tests", "hooked.py"), "--save_pause", "1.5", "--"]  # a pause before each rename
    proc = subprocess.Popen([sys.executable, *hooked, *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    run = tmp_path / "k"
    try:
        # Epoch 1's end: its snapshot is written, latest.pth (pointing at epoch 2) is being written.
        end = time.time() + 120
        while time.time() < end and not ((run / "1_net_G.pth").exists() and glob.glob(str(run / "latest.pth.*.tmp"))):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate()
    assert glob.glob(str(run / "latest.pth.*.tmp")), "the kill did not land inside the write"
    saved = checkpoint.load(str(run / "latest.pth"))
    assert (saved["epoch"], saved["epoch_iter"]) == (1, 3)  # epoch 1's last step: its end work is to be redone
    assert train.main([*args, "--continue_train"]) == 0  # the kernel dropped the dead run's lock
    assert not glob.glob(str(run / "*.tmp"))  # the interrupted write's leftover is cleaned up
    assert train.main(run_args(data3, tmp_path, "ref")) == 0
    assert_same_run(str(tmp_path / "ref"), str(run))


def test_one_run_per_run_folder(tiny_data, tmp_path, capsys):
    args = train_args(tiny_data, tmp_path, "busy", "--no_html")
    os.makedirs(tmp_path / "busy")
    held = RunLock(str(tmp_path / "busy"))  # another live process would hold it so
    try:
        with pytest.raises(SystemExit) as e:
            train.main([*args, "--stop_after_iters", "1"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"in use by another training process (pid {os.getpid()})" in err
        assert not (tmp_path / "busy" / "train_opt.txt").exists()  # nothing of the second run was written
    finally:
        held.release()
    assert train.main([*args, "--stop_after_iters", "1"]) == 0


def test_extended_run_trains_at_the_schedule_rate_and_records_what_it_used(tiny_data, tmp_path, caplog):
    args = train_args(tiny_data, tmp_path, "x", "--no_html")
    assert train.main([*args, "--n_epochs", "2", "--n_epochs_decay", "0"]) == 0  # finished: lr now 0
    assert checkpoint.load(str(tmp_path / "x" / "latest.pth"))["model"]["optimizer_G"]["param_groups"][0]["lr"] == 0
    more = [*args, "--n_epochs", "4", "--n_epochs_decay", "0", "--continue_train", "--lr", "0.001"]
    assert train.main([*more, "--stop_after_iters", "1"]) == 0
    state = checkpoint.load(str(tmp_path / "x" / "latest.pth"))
    assert state["epoch"] == 3 and state["model"]["optimizer_G"]["param_groups"][0]["lr"] == pytest.approx(2e-4)
    assert "--lr 0.001 ignored: resuming with the checkpoint's 0.0002" in caplog.text
    assert json.load(open(tmp_path / "x" / "train_opt.json"))["options"]["lr"] == 0.0002


def test_resume_on_other_data_is_refused_unless_asked_and_never_miscounts(two_sets, tmp_path, capsys, caplog):
    a, b = two_sets
    epochs = ["--n_epochs", "2", "--n_epochs_decay", "0"]
    assert train.main([*train_args(a, tmp_path / "ck", "r", "--no_html"), *epochs, "--stop_after_iters", "2"]) == 0
    with pytest.raises(SystemExit) as e:
        train.main([*train_args(b, tmp_path / "ck", "r", "--no_html"), *epochs, "--continue_train"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "trained on other data" in err and "--dataroot" in err and "--new_data" in err
    # Left out, the data flags are the checkpoint's: the run ends where it would have (2 epochs of 4 images).
    no_data = [x for x in train_args(a, tmp_path / "ck", "r", "--no_html") if x not in ("--dataroot", a)]
    caplog.clear()
    assert train.main([*no_data, *epochs, "--continue_train"]) == 0
    state = checkpoint.load(str(tmp_path / "ck" / "r" / "latest.pth"))
    assert (state["epoch"], state["total_iters"]) == (3, 8) and state["options"]["data"]["dataroot"] == a


def test_new_data_restarts_the_interrupted_epoch_and_is_recorded(two_sets, tmp_path, caplog):
    a, b = two_sets
    epochs = ["--n_epochs", "1", "--n_epochs_decay", "0"]
    assert train.main([*train_args(a, tmp_path / "ck", "r", "--no_html"), *epochs, "--stop_after_iters", "3"]) == 0
    assert (
        train.main([*train_args(b, tmp_path / "ck", "r", "--no_html"), *epochs, "--continue_train", "--new_data"]) == 0
    )
    state = checkpoint.load(str(tmp_path / "ck" / "r" / "latest.pth"))
    # Epoch 1 is trained whole on b's 6 images after the 3 steps on a: not counted done after 3 of b's.
    assert (state["epoch"], state["total_iters"]) == (2, 3 + 6)
    record = json.load(open(tmp_path / "ck" / "r" / "train_opt.json"))
    assert record["data_changes"]["dataroot"] == {"checkpoint": a, "now": b}
    assert "--continue_train with other data: --dataroot" in caplog.text
    assert "epoch 1 restarts from its first iteration on the new data" in caplog.text


def test_init_from_another_architecture_is_an_error_naming_it(tmp_path, capsys):
    data = make_dataroot(tmp_path / "d", train=2)
    flags = ["--n_epochs", "1", "--n_epochs_decay", "0", "--stop_after_iters", "1"]
    base = [x for x in TINY if x not in ("--num_downs", "5")]
    src = ["--dataroot", data, "--checkpoints_dir", str(tmp_path), "--name", "res", *base, "--no_html"]
    assert train.main([*src, "--netG", "resnet_6blocks", *flags]) == 0
    new = train_args(data, tmp_path, "u", "--no_html", *flags)
    with pytest.raises(SystemExit) as e:
        train.main([*new, "--init_from", str(tmp_path / "res" / "latest.pth")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--init_from" in err and "only 0 of the generator's" in err and "at least 50% must" in err
    assert "the file's generator has --netG resnet_6blocks" in err and "this run --netG unet_256" in err
    assert not os.path.exists(tmp_path / "u" / "latest.pth")  # nothing trained from scratch in its name


def test_continue_train_alone_resumes_with_the_run_s_networks_and_sizes(tmp_path):
    data = make_dataroot(tmp_path / "d", train=2)
    run = ["--checkpoints_dir", str(tmp_path / "ck"), "--name", "deep", "--display_id", "0", "--num_threads", "0"]
    first = ["--dataroot", data, "--ngf", "4", "--ndf", "4", "--netG", "unet_128", "--num_downs", "6"]
    first += ["--crop_size", "64", "--load_size", "72", "--n_epochs", "1", "--n_epochs_decay", "0", "--no_html"]
    assert train.main([*run, *first, "--stop_after_iters", "1"]) == 0
    # Nothing repeated but the run's name; a repeated size alone is checked against the run's depth, not unet_256's.
    assert train.main([*run, "--continue_train", "--crop_size", "64"]) == 0
    state = checkpoint.load(str(tmp_path / "ck" / "deep" / "latest.pth"))
    assert (state["epoch"], state["total_iters"]) == (2, 2)
    assert state["options"]["generator"]["ngf"] == 4 and state["options"]["preprocess"]["crop_size"] == 64


# ---- a run's value description (its ranges and output type) -------------------------------------------------------
def test_another_value_range_cannot_resume_the_run_without_new_data(tiny_data, tmp_path, capsys):
    ck = tmp_path / "ck"
    epochs = ["--n_epochs", "2", "--n_epochs_decay", "0", "--no_html"]
    assert train.main(train_args(tiny_data, ck, "v", *epochs, "--range_A=0,200", "--stop_after_iters", "2")) == 0
    latest = ck / "v" / "latest.pth"
    before = latest.read_bytes()
    with pytest.raises(SystemExit) as e:
        train.main(train_args(tiny_data, ck, "v", *epochs, "--range_A=0,100", "--continue_train"))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--range_A: checkpoint '0,200', command line '0,100'" in err and "--new_data" in err
    assert latest.read_bytes() == before  # nothing trained on values mapped otherwise
    # The run's own value, or auto (what the command that started it said), resumes it with the checkpoint's.
    assert train.main(train_args(tiny_data, ck, "v", *epochs, "--range_A", "auto", "--continue_train")) == 0
    assert json.load(open(ck / "v" / "train_opt.json"))["options"]["range_A"] == "0,200"


def test_new_data_of_another_value_type_settles_the_output_type_again(tmp_path, caplog):
    from data.arrays import encode

    root = tmp_path / "d16"
    for side in ("A", "B"):
        os.makedirs(root / "train" / side)
        for i in range(3):
            a = (np.arange(32 * 32).reshape(32, 32, 1) * (i + 7) % 65536).astype(np.uint16)
            (root / "train" / side / f"{i}.png").write_bytes(encode(a if side == "A" else 65535 - a, "png"))
    ck, grey = tmp_path / "ck", ["--input_nc", "1", "--output_nc", "1", "--no_html", "--n_epochs_decay", "0"]
    assert train.main(train_args(str(root), ck, "t", *grey, "--n_epochs", "1")) == 0
    assert json.load(open(ck / "t" / "train_opt.json"))["options"]["output_dtype"] == "uint16"
    eight_bit = make_dataroot(tmp_path / "d8", train=3)
    caplog.clear()
    assert train.main(train_args(eight_bit, ck, "t", *grey, "--n_epochs", "2", "--continue_train", "--new_data")) == 0
    record = json.load(open(ck / "t" / "train_opt.json"))
    assert record["options"]["output_dtype"] == "uint8"
    assert record["data_changes"]["output_dtype"] == {"checkpoint": "uint16", "now": "uint8"}
    assert "--output_dtype settled again on the new data: 'uint8' (the checkpoint's 'uint16')" in caplog.text
    for real in ("A", "B"):  # the data's value types are part of the run's description too, warned and recorded
        assert record["data_changes"][f"value_type_{real}"] == {"checkpoint": "uint16", "now": "uint8"}
        assert f"--new_data: real_{real} is uint8 data, the checkpoint's was uint16" in caplog.text
    assert checkpoint.load(str(ck / "t" / "latest.pth"))["value_types"] == {"A": "uint8", "B": "uint8"}
    saved = checkpoint.load(str(ck / "t" / "latest.pth"))["options"]["values"]
    assert saved["output_dtype"] == "uint8"  # test.py and translate.py write 8-bit outputs, not 257 times off


def test_a_folder_that_holds_a_run_is_never_trained_over(tiny_data, tmp_path, capsys):
    ck = tmp_path / "ck"
    short = ["--n_epochs", "1", "--n_epochs_decay", "0", "--no_html"]
    assert train.main(train_args(tiny_data, ck, "kept", *short)) == 0
    first = {p.name: p.read_bytes() for p in (ck / "kept").iterdir() if p.is_file() and p.name != ".lock"}
    assert "latest.pth" in first and "train_opt.json" in first
    for again in ([], ["--seed", "9"], ["--init_from", str(ck / "kept" / "latest.pth")]):
        with pytest.raises(SystemExit) as e:
            train.main(train_args(tiny_data, ck, "kept", *short, *again))
        err = capsys.readouterr().err
        assert e.value.code == 2 and "holds a run (epoch 1 done, saved " in err and "--continue_train" in err
        assert "--start_over" in err and "another --name" in err
        assert {p.name: p.read_bytes() for p in (ck / "kept").iterdir() if p.name in first} == first
    # Asked for, a new run starts there; the old one's files are all kept, byte for byte, beside it.
    assert train.main(train_args(tiny_data, ck, "kept", *short, "--seed", "9", "--start_over")) == 0
    (aside,) = [p for p in ck.iterdir() if p.name.startswith("kept.old-")]
    assert {p.name: p.read_bytes() for p in aside.iterdir() if p.is_file()} == first
    assert json.load(open(ck / "kept" / "train_opt.json"))["seed"] == 9


def test_new_data_with_another_input_type_only_is_warned_and_recorded(tmp_path, caplog):
    from data.arrays import encode

    def folder(root, a_type):
        for side in ("A", "B"):
            os.makedirs(root / "train" / side)
        for i in range(3):
            a = (np.arange(32 * 32).reshape(32, 32, 1) * (i + 3)) % 256
            (root / "train" / "A" / f"{i}.png").write_bytes(
                encode((a * (257 if a_type == "uint16" else 1)).astype(a_type), "png")
            )
            (root / "train" / "B" / f"{i}.png").write_bytes(encode(a.astype(np.uint8), "png"))
        return str(root)

    ck, grey = tmp_path / "ck", ["--input_nc", "1", "--output_nc", "1", "--no_html", "--n_epochs_decay", "0"]
    assert train.main(train_args(folder(tmp_path / "d16", "uint16"), ck, "a", *grey, "--n_epochs", "1")) == 0
    caplog.clear()
    new = folder(tmp_path / "d8", "uint8")
    assert train.main(train_args(new, ck, "a", *grey, "--n_epochs", "2", "--continue_train", "--new_data")) == 0
    changes = json.load(open(ck / "a" / "train_opt.json"))["data_changes"]
    assert changes["value_type_A"] == {"checkpoint": "uint16", "now": "uint8"} and "value_type_B" not in changes
    assert (
        "output_dtype" not in changes and "--new_data: real_A is uint8 data, the checkpoint's was uint16" in caplog.text
    )
