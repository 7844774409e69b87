"""Training feedback: loss_log.txt lines and losses.jsonl records, the training page and its plot, visdom being
absent or down, and the sinks the Visualizer fans out to."""

import json
import logging
import os

import pytest
import torch

import train
from browser_check import free_port
from conftest import train_args, visualizer
from reporting import plots, run_log
from reporting.sinks import PageSink, TensorBoardSink, TextSink, WandbSink
from reporting.visdom_sink import VisdomSink
from reporting.visualizer import Visualizer


def test_no_visdom_server_warns_once_and_goes_on(tmp_path, caplog):
    vis = visualizer(
        str(tmp_path), display_id=1, display_server="http://127.0.0.1", display_port=free_port(), retry_seconds=0
    )
    visuals = {k: torch.zeros(1, 3, 8, 8) for k in ("real_A", "fake_B", "real_B")}
    with caplog.at_level(logging.WARNING):
        for i in range(3):
            vis.plot_current_losses(i / 10, {"G_GAN": 1.0, "G_L1": 2.0})
            vis.display_current_results(visuals, 1, i, save_result=False)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "visdom" in warnings[0].getMessage()


def test_loss_log_and_training_page(tmp_path):
    vis = visualizer(str(tmp_path), display_id=0)
    line = vis.print_current_losses(2, 10, 30, {"G_GAN": 1.25, "D_real": 0.5}, 0.1, 0.0002)
    assert "(epoch: 2, iters: 10, total_iters: 30" in line and "G_GAN: 1.250 D_real: 0.500" in line
    assert line in open(tmp_path / "loss_log.txt").read()
    visuals = {k: torch.rand(1, 3, 8, 8) * 2 - 1 for k in ("real_A", "fake_B", "real_B")}
    vis.display_current_results(visuals, 1, 5, save_result=True)
    vis.display_current_results(visuals, 2, 10, save_result=True)
    page = open(tmp_path / "web" / "index.html").read()
    assert page.index("epoch 2, iteration 10") < page.index("epoch 1, iteration 5")  # newest first
    assert len(os.listdir(tmp_path / "web" / "images")) == 6
    assert page.index("epoch002_iter00000010_real_A.png") < page.index("epoch002_iter00000010_fake_B.png")


def test_visdom_outage_mid_run_warns_once_and_plots_resume(tmp_path, caplog, monkeypatch):
    import sys
    import types

    calls = []

    class FakeVisdom:
        def __init__(self, **kwargs):
            pass

        def check_connection(self, timeout_seconds=1):
            return True

        def line(self, X, Y, win, opts):
            calls.append(Y.shape)

        def images(self, *args, **kwargs):
            pass

    class Broken:
        def line(self, **kwargs):
            raise ConnectionError("gone")

    monkeypatch.setitem(sys.modules, "visdom", types.SimpleNamespace(Visdom=FakeVisdom))
    vis = visualizer(str(tmp_path), display_id=1, retry_seconds=0)
    vis.visdom.client = Broken()  # connected earlier, the server has just gone away
    up = {"now": False}
    monkeypatch.setattr(vis.visdom, "_server_answers", lambda: up["now"])
    with caplog.at_level(logging.INFO):
        for i in range(3):
            vis.plot_current_losses(i, {"G_GAN": 1.0})
        up["now"] = True
        vis.plot_current_losses(3, {"G_GAN": 1.0})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "lost the visdom server" in warnings[0]
    assert "is back" in caplog.text
    assert calls == [(4, 1)]  # the whole curve, outage included, is plotted once it is back


# ---- losses.jsonl ---------------------------------------------------------------------------------------------
def test_losses_jsonl_records(tmp_path):
    vis = visualizer(str(tmp_path), display_id=0)
    vis.text.clock = lambda: 1700000000.5
    vis.print_current_losses(2, 10, 30, {"G_GAN": 1.25, "G_L1": 20.0, "D_real": 0.5, "D_fake": 0.25}, 0.103, 0.0002)
    vis.print_current_losses(2, 12, 32, {"G_GAN": float("nan"), "G_L1": float("inf")}, 0.1, 0.0002)
    vis.plot_validation(2, {"psnr": 21.5, "ssim": float("nan"), "n": 4}, 32)
    lines = open(tmp_path / "losses.jsonl").read().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first == {
        "kind": "loss",
        "epoch": 2,
        "iteration": 10,
        "total_iters": 30,
        "losses": {"G_GAN": 1.25, "G_L1": 20.0, "D_real": 0.5, "D_fake": 0.25},
        "lr": 0.0002,
        "time": 0.103,
        "timestamp": 1700000000.5,
    }
    # Strict JSON: non-finite values are null (a JSON reader that refuses NaN reads every line) ...
    strict = [json.loads(ln, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}")) for ln in lines]
    assert strict[1]["losses"] == {"G_GAN": None, "G_L1": None}
    assert strict[2] == {
        "kind": "validation",
        "epoch": 2,
        "total_iters": 32,
        "metrics": {"psnr": 21.5, "ssim": None, "n": 4},
        "timestamp": 1700000000.5,
    }
    # ... and NaN again when read back.
    back = run_log.read(str(tmp_path / "losses.jsonl"), run_log.LOSS)
    assert [r["total_iters"] for r in back] == [30, 32] and all(v != v for v in back[1]["losses"].values())


def test_losses_jsonl_appends_to_what_is_there(tmp_path):
    (tmp_path / "losses.jsonl").write_text('{"kind": "loss", "total_iters": 1, "losses": {"G_GAN": 2.0}}\n')
    (tmp_path / "loss_log.txt").write_text("a line of an earlier run\n")
    vis = visualizer(str(tmp_path), display_id=0)
    vis.print_current_losses(1, 2, 2, {"G_GAN": 1.0}, 0.1, 0.0002)
    assert [r["total_iters"] for r in run_log.read(str(tmp_path / "losses.jsonl"))] == [1, 2]
    assert open(tmp_path / "loss_log.txt").read().startswith("a line of an earlier run\n")


def test_tiny_run_writes_a_record_per_print_and_validation(tiny_data, tmp_path):
    """4 images, batch 1, 2 epochs, --print_freq 2: 4 loss records, then a validation record per epoch."""
    args = train_args(tiny_data, tmp_path, "run")
    args += [*("--n_epochs", "1", "--n_epochs_decay", "1", "--print_freq", "2", "--val_phase", "test")]
    assert train.main(args) == 0
    run = tmp_path / "run"
    records = [json.loads(ln) for ln in open(run / "losses.jsonl")]
    kinds = [(r["kind"], r["epoch"], r["total_iters"]) for r in records]
    assert kinds == [
        ("loss", 1, 2),
        ("loss", 1, 4),
        ("validation", 1, 4),
        ("loss", 2, 6),
        ("loss", 2, 8),
        ("validation", 2, 8),
    ]
    losses = [r for r in records if r["kind"] == "loss"]
    assert [r["iteration"] for r in losses] == [2, 4, 2, 4]
    for r in losses:
        assert set(r) == {"kind", "epoch", "iteration", "total_iters", "losses", "lr", "time", "timestamp"}
        assert list(r["losses"]) == ["G_GAN", "G_L1", "D_real", "D_fake"]
        assert r["lr"] > 0 and r["time"] > 0 and abs(r["timestamp"] - os.path.getmtime(run / "losses.jsonl")) < 3600
    # the same numbers as loss_log.txt's lines, which are still written
    steps, logged = plots.read_loss_log(str(run / "loss_log.txt"))
    assert steps == [2, 4, 6, 8]
    for name, values in logged.items():
        assert [f"{r['losses'][name]:.3f}" for r in losses] == [f"{v:.3f}" for v in values], name
    val = [r for r in records if r["kind"] == "validation"]
    assert [r["metrics"]["psnr"] for r in val] == [
        json.loads(ln)["metrics"]["psnr"] for ln in open(run / "val_log.jsonl")
    ]
    assert (run / "web" / "plot.png").exists()


# ---- the plot reads losses.jsonl ------------------------------------------------------------------------------
def write_records(run_dir, *records) -> None:
    with open(os.path.join(run_dir, "losses.jsonl"), "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def loss(total_iters: int, **values) -> dict:
    return {"kind": "loss", "epoch": 1, "iteration": total_iters, "total_iters": total_iters, "losses": values}


def test_plot_reads_losses_jsonl_not_the_text_log(tmp_path, monkeypatch):
    write_records(tmp_path, loss(2, G_GAN=1.0, G_L1=20.0), {"kind": "validation", "epoch": 1, "metrics": {}})
    write_records(tmp_path, loss(4, G_GAN=0.5, G_L1=None), loss(6, G_GAN=0.25, D_real=0.7))
    (tmp_path / "losses.jsonl").open("a").write('{"kind": "loss", "total_iters": 8, "los')  # torn: a killed run
    (tmp_path / "loss_log.txt").write_text("(epoch: 1, iters: 9, total_iters: 9, time: 0.1, lr: 0.1) G_GAN: 9.000\n")
    monkeypatch.setattr(plots, "read_loss_log", lambda path: pytest.fail("read loss_log.txt"))
    series = plots.read_losses(str(tmp_path))
    assert series["G_GAN"] == ([2, 4, 6], [1.0, 0.5, 0.25])
    assert series["G_L1"][0] == [2, 4] and series["G_L1"][1][1] != series["G_L1"][1][1]  # null: NaN
    assert series["D_real"] == ([6], [0.7])  # a loss that appears later is placed at its own steps
    out = str(tmp_path / "plot.png")
    assert plots.plot_training(str(tmp_path), out) == out and os.path.getsize(out) > 0


def test_plot_of_an_old_run_reads_a_small_loss_log_only(tmp_path, monkeypatch):
    line = "(epoch: 1, iters: {0}, total_iters: {0}, time: 0.1, lr: 0.0002000) G_GAN: 0.500 G_L1: 20.000\n"
    (tmp_path / "loss_log.txt").write_text("=== header ===\n" + "".join(line.format(i) for i in (2, 4)))
    assert plots.read_losses(str(tmp_path)) == {"G_GAN": ([2, 4], [0.5, 0.5]), "G_L1": ([2, 4], [20.0, 20.0])}
    monkeypatch.setattr(plots, "LEGACY_LOG_MAX_BYTES", 100)  # the file is bigger than that: not parsed
    monkeypatch.setattr(plots, "read_loss_log", lambda path: pytest.fail("parsed a big loss_log.txt"))
    assert plots.read_losses(str(tmp_path)) == {}
    assert plots.plot_training(str(tmp_path), str(tmp_path / "plot.png")) is None


# ---- the sinks ------------------------------------------------------------------------------------------------
class FakeWandbRun:
    def __init__(self) -> None:
        self.rows: list[tuple[int, dict]] = []
        self.finished = 0

    def log(self, data, step):
        self.rows.append((step, data))

    def finish(self):
        self.finished += 1


def all_sinks(tmp_path, monkeypatch) -> tuple[Visualizer, FakeWandbRun]:
    import reporting.visualizer

    run = FakeWandbRun()
    monkeypatch.setattr(reporting.visualizer, "start_wandb", lambda *a, **k: run)
    vis = Visualizer(
        str(tmp_path),
        "run",
        use_html=True,
        display_id=1,
        display_server="http://127.0.0.1",
        display_port=free_port(),
        display_env="main",
        display_winsize=64,
        display_ncols=3,
        tensorboard=True,
        wandb_project="X",
    )
    return vis, run


def test_every_sink_is_closed(tmp_path, monkeypatch, caplog):
    pytest.importorskip("tensorboard")
    vis, run = all_sinks(tmp_path, monkeypatch)
    assert [type(s) for s in vis.sinks] == [TextSink, TensorBoardSink, WandbSink, VisdomSink, PageSink]
    vis.print_current_losses(1, 2, 2, {"G_GAN": 1.0}, 0.1, 0.0002)
    assert run.rows == [(2, {"G_GAN": 1.0, "epoch": 1, "lr": 0.0002})]  # the calls reach every sink
    closed = []
    for sink in vis.sinks:
        real = sink.close
        monkeypatch.setattr(sink, "close", lambda real=real, sink=sink: closed.append(type(sink)) or real())
    monkeypatch.setattr(vis.sinks[0], "close", lambda: closed.append(TextSink) or 1 / 0)  # the first one fails
    with caplog.at_level(logging.WARNING):
        vis.close()
        vis.close()  # safe twice
    assert closed == [TextSink, TensorBoardSink, WandbSink, VisdomSink, PageSink]
    assert "TextSink: could not close (ZeroDivisionError" in caplog.text
    assert run.finished == 1 and vis.tensorboard.writer is None and vis.wandb is None


def test_only_the_enabled_sinks(tmp_path):
    vis = visualizer(str(tmp_path), display_id=0)  # no --logger, no display; the page
    assert [type(s) for s in vis.sinks] == [TextSink, PageSink]
    vis.close()


def test_an_old_run_resumed_keeps_its_earlier_history_in_the_plot(tmp_path):
    # Begun before losses.jsonl (its text log starts at iteration 2), resumed after it (records from 6 on).
    line = "(epoch: 1, iters: {0}, total_iters: {0}, time: 0.1, lr: 0.0002000) G_GAN: 0.500\n"
    (tmp_path / "loss_log.txt").write_text("=== header ===\n" + "".join(line.format(i) for i in (2, 4, 6)))
    write_records(tmp_path, loss(6, G_GAN=0.25), loss(8, G_GAN=0.125))
    assert plots.read_losses(str(tmp_path)) == {"G_GAN": ([2, 4, 6, 8], [0.5, 0.5, 0.25, 0.125])}
