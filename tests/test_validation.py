"""Validation during training (Ctrl-C in it included), best_net_G.pth, test.py metrics (none included) and the pages
that show them."""

import json
import logging
import os

import pytest
import torch

import test as test_script
import train
from conftest import TINY, make_dataroot, make_pairs, train_args
from engine import checkpoint
from reporting.plots import read_loss_log


@pytest.fixture
def data8(tmp_path):
    root = tmp_path / "data"
    make_pairs(str(root / "train"), 8, seed=1)
    make_pairs(str(root / "test"), 3, seed=2)
    make_pairs(str(root / "val"), 2, seed=4)
    return str(root)


@pytest.mark.parametrize("metric, higher", [("psnr", True), ("swd", False)])
def test_val_split_keeps_best_by_metric(data8, tmp_path, metric, higher):
    args = train_args(data8, tmp_path, "v", "--n_epochs", "2", "--n_epochs_decay", "2", "--val_split", "0.25")
    args += ["--metrics", f"psnr,ssim,{metric}", "--best_metric", metric, "--print_freq", "3"]
    assert train.main(args) == 0
    run = tmp_path / "v"
    val = [json.loads(line) for line in open(run / "val_log.jsonl")]
    assert [v["epoch"] for v in val] == [1, 2, 3, 4] and all(v["metrics"]["n"] == 2 for v in val)
    values = [v["metrics"][metric] for v in val]
    best_epoch = val[values.index(max(values) if higher else min(values))]["epoch"]
    best = checkpoint.load(str(run / "best_net_G.pth"))
    assert best["epoch"] == best_epoch and best["best"]["metric"] == metric
    latest = checkpoint.load(str(run / "latest.pth"))
    assert latest["best"]["epoch"] == best_epoch
    assert latest["total_iters"] == 4 * 6  # 6 of the 8 images train, 2 are held out
    page = open(run / "web" / "index.html").read()
    assert 'src="plot.png?v=' in page and os.path.getsize(run / "web" / "plot.png") > 1000
    assert "lambda_L1" in page  # the run's options are on the page


def test_val_phase_and_test_metrics_page(data8, tmp_path, caplog):
    ck, res = str(tmp_path / "ck"), str(tmp_path / "res")
    args = train_args(data8, ck, "m", "--n_epochs", "1", "--n_epochs_decay", "0", "--val_phase", "val")
    assert train.main(args) == 0
    assert os.path.exists(os.path.join(ck, "m", "best_net_G.pth"))
    test_args = ["--checkpoints_dir", ck, "--name", "m", "--results_dir", res, "--epoch", "best"]
    with caplog.at_level(logging.INFO):
        status = test_script.main([*test_args, "--metrics", "psnr,ssim,swd", "--sort_by", "psnr", "--num_threads", "0"])
    assert status == 0
    web = os.path.join(res, "m", "test_best")
    record = json.load(open(os.path.join(web, "metrics.json")))
    assert record["summary"]["n"] == 3 and set(record["per_image"]) == {"img000", "img001", "img002"}
    per = record["per_image"]
    assert record["summary"]["psnr"] == pytest.approx(sum(v["psnr"] for v in per.values()) / 3, rel=1e-6)
    assert "swd" in record["summary"] and "metrics over 3 images" in caplog.text
    page = open(os.path.join(web, "index.html")).read()
    worst_first = sorted(per, key=lambda k: per[k]["psnr"])
    positions = [page.index(f"<h3>{k}</h3>") for k in worst_first]
    assert positions == sorted(positions)
    assert "summary over all images" in page


def test_empty_metrics_scores_nothing_without_a_wrong_warning(tiny_data, tmp_path, caplog):
    args = train_args(tiny_data, tmp_path / "ck", "m", "--no_html")
    assert train.main([*args, "--n_epochs", "1", "--n_epochs_decay", "0", "--stop_after_iters", "1"]) == 0
    res = tmp_path / "res"
    caplog.clear()
    test_args = ["--checkpoints_dir", str(tmp_path / "ck"), "--name", "m", "--results_dir", str(res)]
    assert test_script.main([*test_args, "--metrics", "", "--num_threads", "0"]) == 0
    assert "dataset_mode" not in caplog.text
    assert not (res / "m" / "test_latest" / "metrics.json").exists()
    assert (res / "m" / "test_latest" / "index.html").exists()


@pytest.mark.parametrize("device_preprocess", [False, True])
def test_val_split_holds_out_of_a_copy_and_leaves_the_dataset_given_alone(data8, device_preprocess):
    from data import create_dataset
    from engine.validation import split_validation
    from options.options import TrainOptions

    flags = {"dataroot": data8, "val_split": 0.25, "device_preprocess": device_preprocess, "crop_size": 32}
    opt = TrainOptions.from_flat({**flags, "load_size": 36, "num_threads": 0, "seed": 3})
    dataset = create_dataset(opt.data, opt.preprocess, opt.generator, opt.augment, 3, True, opt.values)
    pairs, preprocess, raw = list(dataset.pairs), dataset.preprocess, dataset.raw
    assert len(pairs) == 8 and raw is device_preprocess and preprocess.random
    train_set, val_set = split_validation(opt.metrics, opt.data, opt.preprocess, opt.generator, opt.values, 3, dataset)
    # the dataset given is as it was: all its pairs, in their order, with training's preprocessing
    assert dataset.pairs == pairs and len(dataset) == 8
    assert (dataset.preprocess, dataset.raw) == (preprocess, raw)
    # the training set lacks exactly the held-out pairs, the others kept in their order
    held = val_set.pairs
    assert len(held) == 2 and len(set(held)) == 2 and set(held) <= set(pairs)  # round(8 * 0.25)
    assert train_set.pairs == [p for p in pairs if p not in held]
    assert (train_set.preprocess, train_set.raw) == (preprocess, raw)
    # the held-out pairs are read as test.py reads them: centre crops, no flips, finished by the loader
    assert not val_set.preprocess.random and val_set.raw is False
    again = split_validation(opt.metrics, opt.data, opt.preprocess, opt.generator, opt.values, 3, dataset)
    assert again[1].pairs == held  # the seed alone picks them: a resumed run holds out the same images


def test_loss_log_parses_for_the_plot(tmp_path):
    (tmp_path / "loss_log.txt").write_text(
        "=== header ===\n(epoch: 1, iters: 2, total_iters: 2, time: 0.1, lr: 0.0002000) G_GAN: 0.5 G_L1: 20.000\n"
        "(epoch: 1, iters: 4, total_iters: 4, time: 0.1, lr: 0.0002000) G_GAN: nan G_L1: 18.500\n"
    )
    steps, losses = read_loss_log(str(tmp_path / "loss_log.txt"))
    assert steps == [2, 4] and losses["G_L1"] == [20.0, 18.5] and len(losses["G_GAN"]) == 2


def test_resume_with_validation_is_still_exact(data8, tmp_path):
    args = [
        "--dataroot",
        data8,
        "--checkpoints_dir",
        str(tmp_path),
        *TINY,
        "--n_epochs",
        "1",
        "--n_epochs_decay",
        "1",
        "--val_split",
        "0.25",
        "--no_html",
    ]
    assert train.main([*args, "--name", "full"]) == 0
    assert train.main([*args, "--name", "split", "--stop_after_iters", "8"]) == 0
    assert train.main([*args, "--name", "split", "--continue_train"]) == 0
    a = checkpoint.load(str(tmp_path / "full" / "latest.pth"))
    b = checkpoint.load(str(tmp_path / "split" / "latest.pth"))
    for k, v in a["model"]["netG"].items():
        assert torch.equal(v, b["model"]["netG"][k]), k
    assert a["best"] == b["best"]


def test_ctrl_c_during_validation_stops_at_once_and_resume_validates_again(tmp_path, monkeypatch):
    import signal

    from metrics import MetricSuite

    data = make_dataroot(tmp_path / "d", train=3, val=6)
    args = train_args(data, tmp_path / "ck", "v", "--no_html", "--n_epochs", "1", "--n_epochs_decay", "0")
    args += ["--val_phase", "val"]
    scored = []
    original = MetricSuite.update

    def interrupting(self, *a, **kw):
        scored.append(1)
        if len(scored) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the StopFlag of train.py takes it
        return original(self, *a, **kw)

    monkeypatch.setattr(MetricSuite, "update", interrupting)
    assert train.main(args) == 130
    assert len(scored) == 1  # not the whole pass of 6 images
    state = checkpoint.load(str(tmp_path / "ck" / "v" / "latest.pth"))
    assert (state["epoch"], state["epoch_iter"], state["total_iters"]) == (1, 3, 3)  # the epoch's last step
    assert not (tmp_path / "ck" / "v" / "val_log.jsonl").exists()
    monkeypatch.setattr(MetricSuite, "update", original)
    assert train.main([*args, "--continue_train"]) == 0
    records = [json.loads(ln) for ln in open(tmp_path / "ck" / "v" / "val_log.jsonl")]
    assert [r["epoch"] for r in records] == [1]
    state = checkpoint.load(str(tmp_path / "ck" / "v" / "latest.pth"))
    assert (state["epoch"], state["total_iters"]) == (2, 3)


def test_training_page_stays_cheap_with_many_rows(tmp_path, monkeypatch):
    from conftest import visualizer

    vis = visualizer(str(tmp_path), display_id=0)
    visuals = {k: torch.zeros(1, 3, 8, 8) for k in ("real_A", "fake_B", "real_B")}
    for epoch in range(1, 301):
        vis.display_current_results(visuals, epoch, epoch * 10, save_result=False)
        for label in visuals:  # rows as 300 epochs would leave them, without 300 page rebuilds
            open(tmp_path / "web" / "images" / f"epoch{epoch:03d}_iter{epoch * 10:08d}_{label}.png", "wb").close()
    # Cheap by construction: one listing of the image folder, and no image is opened to build the page.
    import PIL.Image

    listings = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: listings.append(p) or real_listdir(p))
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: pytest.fail("the page opened an image"))
    vis.write_page()
    assert listings == [vis.img_dir]
    assert open(tmp_path / "web" / "index.html").read().count("<h3>epoch ") == 300


def test_tensorboard_logger(data8, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = train_args(data8, tmp_path, "tb", "--n_epochs", "1", "--n_epochs_decay", "0", "--print_freq", "2")
    args += ["--logger", "tensorboard", "--val_split", "0.25"]
    assert train.main(args) == 0
    acc = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    acc.Reload()
    steps, losses = read_loss_log(str(tmp_path / "tb" / "loss_log.txt"))
    events = acc.Scalars("loss/G_L1")
    assert [e.step for e in events] == steps
    assert [round(e.value, 3) for e in events] == losses["G_L1"]
    assert "val/psnr" in acc.Tags()["scalars"] and "fake_B" in acc.Tags()["images"]


def test_tensorboard_missing_is_a_clear_error(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    with pytest.raises(SystemExit) as e:
        train.parse(True, ["--logger", "tensorboard"])
    assert e.value.code == 2 and "tensorboard package is not installed" in capsys.readouterr().err
