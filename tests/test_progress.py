"""Progress a user can plan by: the whole run's length and ETA, plain lines without a terminal, a bar with one."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from types import SimpleNamespace

import pytest

from conftest import ROOT, make_dataroot, run_script, train_args
from engine.training import TrainLoop
from reporting import progress
from reporting.progress import ProgressReport, hms


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", c)
    return c


def test_plain_lines_come_every_n_seconds_with_speed_and_eta(clock, caplog):
    log = logging.getLogger("t")
    with caplog.at_level(logging.INFO, "t"):
        r = ProgressReport(100, 0, 2, every=60, desc="epoch 1/4", log=log, terminal=False)
        for _ in range(40):
            clock.t += 10  # 10 s a step of 2 images: 0.2 img/s
            r.update(1)
    lines = [m for m in caplog.messages if "ETA" in m]
    assert len(lines) == 6  # 400 s in, one line per 60 s
    assert lines[-1] == "epoch 1/4: 36/100 iterations (36.0%), 0.2 img/s, elapsed 0:06:00, ETA 0:10:40"
    estimates = [m for m in caplog.messages if m.startswith("measured speed")]
    # Once, after 5 warm-up steps and 3 measured ones (30 s): 92 left at 0.1 steps/s.
    assert estimates == [estimates[0]] and "remaining 92 iterations take about 0:15:20" in estimates[0]


def test_the_speed_leaves_out_the_warm_up(clock):
    r = ProgressReport(50, 10, 1, every=60, desc="x", log=logging.getLogger("t"), terminal=False)
    clock.t += 100  # a slow first step (allocation, compilation)
    r.update(1)
    clock.t += 1
    r.update(2)
    assert r.steps_per_second() is None  # still warming up
    for _ in range(4):
        clock.t += 2
        r.update(1)
    assert r.steps_per_second() == pytest.approx(0.5) and r.eta() == pytest.approx(2 * 33)
    assert hms(3725) == "1:02:05"


def test_a_terminal_gets_one_bar_over_the_whole_loop(clock):
    r = ProgressReport(120, 20, 1, every=60, desc="epoch 2/6", log=logging.getLogger("t"), terminal=True)
    assert (r.bar.total, r.bar.n, r.bar.disable) == (120, 20, False)
    r.update(1, "epoch 3/6")
    assert r.bar.desc.startswith("epoch 3/6")
    r.close()


def test_the_loss_logs_time_per_image_counts_the_steps_it_timed(clock):
    # An epoch of 3 steps with --print_freq 4: the line at iteration 4 timed one step of the new epoch.
    seen = {}
    opt = SimpleNamespace(batch_size=2, accum_steps=1, print_freq=4)
    model = SimpleNamespace(pop_losses=lambda _d: ({"G_L1": 1.0}, True), current_lr=lambda: 1e-4)
    model.skipped_steps = 0

    def print_current_losses(epoch, epoch_iter, total_iters, losses, per_image, lr):
        seen["per_image"] = per_image
        return "line"

    vis = SimpleNamespace(print_current_losses=print_current_losses, plot_current_losses=lambda *a: None)
    loop = TrainLoop(
        opt, model, [], None, vis, None, None, SimpleNamespace(epoch=2, epoch_iter=1, total_iters=4), 6, None
    )
    loop.report = SimpleNamespace(set_postfix=lambda v: None)
    loop.dist = SimpleNamespace(enabled=False)
    loop.t_window, loop.window_steps = clock.t - 3.0, 1
    assert loop.print_losses()
    assert seen["per_image"] == pytest.approx(1.5)  # 3 s for one step of 2 images, not 3 / 8
    assert (loop.t_window, loop.window_steps) == (clock.t, 0)  # the next window starts now


def test_redirected_training_logs_the_run_ahead_and_progress_lines(tmp_path):
    data = make_dataroot(tmp_path / "data", train=3)
    args = train_args(data, tmp_path / "ck", "r")
    # 27 iterations: 5 of warm-up, then 20 measured before the estimate, with 2 to go.
    r = run_script("train.py", *args, "--n_epochs", "6", "--n_epochs_decay", "3", "--progress_every", "0.001")
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "27 iterations ahead: epochs 1..9 of 3 iterations, 1 images each" in out
    lines = [ln for ln in out.splitlines() if "iterations (" in ln and "ETA" in ln]
    assert any("epoch 9/9: 27/27 iterations (100.0%)" in ln for ln in lines)
    assert "the remaining 2 iterations take about" in out and "\r" not in out  # no bar drawn into a log file


def test_a_terminal_shows_the_whole_run_bar(tmp_path):
    data = make_dataroot(tmp_path / "data", train=3)
    args = train_args(data, tmp_path / "ck", "r", "--n_epochs", "2")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))  # a new pty is 0 columns wide
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), *args, "--n_epochs_decay", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    while True:  # read until the child closes its end
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=120) == 0
    text = seen.decode(errors="replace")
    assert "epoch 2/2" in text and "/6 [" in text  # one bar of 6 iterations over both epochs, with its ETA
