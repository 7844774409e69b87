"""Resume at every position of a run, epoch ends included; epoch-end work redone after a kill; one run per folder."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import train
from conftest import ROOT, TINY, make_dataroot
from engine import checkpoint
from engine.run_folder import RunLock


@pytest.fixture
def data3(tmp_path):
    """3 training pairs (3 steps an epoch at batch 1) and 1 validation pair."""
    return make_dataroot(tmp_path / "data", train=3, val=1)


def run_args(data, ck, name):
    args = ["--dataroot", data, "--checkpoints_dir", str(ck), "--name", name, *TINY, "--n_epochs", "1"]
    return args + ["--n_epochs_decay", "1", "--print_freq", "1", "--val_phase", "val", "--save_epoch_freq", "1"]


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
    args = ["--dataroot", tiny_data, "--checkpoints_dir", str(tmp_path), "--name", "busy", *TINY, "--no_html"]
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
    args = ["--dataroot", tiny_data, "--checkpoints_dir", str(tmp_path), "--name", "x", *TINY, "--no_html"]
    assert train.main([*args, "--n_epochs", "2", "--n_epochs_decay", "0"]) == 0  # finished: lr now 0
    assert checkpoint.load(str(tmp_path / "x" / "latest.pth"))["model"]["optimizer_G"]["param_groups"][0]["lr"] == 0
    more = [*args, "--n_epochs", "4", "--n_epochs_decay", "0", "--continue_train", "--lr", "0.001"]
    assert train.main([*more, "--stop_after_iters", "1"]) == 0
    state = checkpoint.load(str(tmp_path / "x" / "latest.pth"))
    assert state["epoch"] == 3 and state["model"]["optimizer_G"]["param_groups"][0]["lr"] == pytest.approx(2e-4)
    assert "--lr 0.001 ignored: resuming with the checkpoint's 0.0002" in caplog.text
    assert json.load(open(tmp_path / "x" / "train_opt.json"))["options"]["lr"] == 0.0002
