"""Training feedback: loss_log.txt lines, the training page, and visdom being absent or down."""

import logging
import os

import torch

from browser_check import free_port
from conftest import visualizer


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
    vis.vis = Broken()  # connected earlier, the server has just gone away
    up = {"now": False}
    monkeypatch.setattr(vis, "_server_answers", lambda: up["now"])
    with caplog.at_level(logging.INFO):
        for i in range(3):
            vis.plot_current_losses(i, {"G_GAN": 1.0})
        up["now"] = True
        vis.plot_current_losses(3, {"G_GAN": 1.0})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "lost the visdom server" in warnings[0]
    assert "is back" in caplog.text
    assert calls == [(4, 1)]  # the whole curve, outage included, is plotted once it is back
