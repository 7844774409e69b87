"""The third robustness sweep: resuming on other data, --init_from another architecture, a clean exit after a
good torchrun run, and the small cases (issue 20 items 5, 6, 15 and 16; the others have their own files)."""

import json
import os

import pytest

import train
from conftest import TINY, make_dataroot
from engine import checkpoint


def train_args(data: str, tmp_path, name: str = "r") -> list[str]:
    return ["--dataroot", data, "--checkpoints_dir", str(tmp_path / "ck"), "--name", name, *TINY, "--no_html"]


@pytest.fixture
def two_sets(tmp_path):
    """Two data folders: a (4 training pairs) and b (6 other pairs)."""
    return make_dataroot(tmp_path / "a", train=4), make_dataroot(tmp_path / "b", test=1, train=6)


def test_resume_on_other_data_is_refused_unless_asked_and_never_miscounts(two_sets, tmp_path, capsys, caplog):
    a, b = two_sets
    epochs = ["--n_epochs", "2", "--n_epochs_decay", "0"]
    assert train.main([*train_args(a, tmp_path), *epochs, "--stop_after_iters", "2"]) == 0  # mid-epoch 1
    with pytest.raises(SystemExit) as e:
        train.main([*train_args(b, tmp_path), *epochs, "--continue_train"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "trained on other data" in err and "--dataroot" in err and "--new_data" in err
    # Left out, the data flags are the checkpoint's: the run ends where it would have (2 epochs of 4 images).
    no_data = [x for x in train_args(a, tmp_path, "r") if x not in ("--dataroot", a)]
    caplog.clear()
    assert train.main([*no_data, *epochs, "--continue_train"]) == 0
    state = checkpoint.load(str(tmp_path / "ck" / "r" / "latest.pth"))
    assert (state["epoch"], state["total_iters"]) == (3, 8) and state["options"]["data"]["dataroot"] == a


def test_new_data_restarts_the_interrupted_epoch_and_is_recorded(two_sets, tmp_path, caplog):
    a, b = two_sets
    epochs = ["--n_epochs", "1", "--n_epochs_decay", "0"]
    assert train.main([*train_args(a, tmp_path), *epochs, "--stop_after_iters", "3"]) == 0  # 3 of 4 steps
    assert train.main([*train_args(b, tmp_path), *epochs, "--continue_train", "--new_data"]) == 0
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
    new = ["--dataroot", data, "--checkpoints_dir", str(tmp_path), "--name", "u", *TINY, "--no_html", *flags]
    with pytest.raises(SystemExit) as e:
        train.main([*new, "--init_from", str(tmp_path / "res" / "latest.pth")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--init_from" in err and "only 0 of the generator's" in err and "at least 50% must" in err
    assert "the file's generator has --netG resnet_6blocks" in err and "this run --netG unet_256" in err
    assert not os.path.exists(tmp_path / "u" / "latest.pth")  # nothing trained from scratch in its name


def test_torchrun_processes_leave_the_group_together_after_a_good_run(monkeypatch):
    # A process that tears its connections down while rank 0 still saves, or whose DDP wrapper is collected
    # during the interpreter's shutdown after the group is gone, can abort ("terminate called without an active
    # exception") after training well. After a normal end: collect, wait for all, then destroy; after an error,
    # no waiting for a peer that may be gone.
    from util import distributed

    calls = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.append("destroy"))
    monkeypatch.setattr(distributed.gc, "collect", lambda: calls.append("collect"))
    d = distributed.Dist(rank=1, world_size=2)
    distributed.cleanup(d, together=True)
    assert calls == ["collect", "barrier", "destroy"]
    calls.clear()
    distributed.cleanup(d, together=False)
    assert calls == ["collect", "destroy"]


@pytest.mark.parametrize("ends", ["normally", "in an error"])
def test_train_leaves_the_group_together_only_after_a_normal_end(ends, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(train.distributed, "cleanup", lambda d, together: seen.append(together))
    if ends == "normally":
        monkeypatch.setattr(train, "train", lambda *a: 0)
        assert train.main(["--checkpoints_dir", str(tmp_path), "--name", "x", "--display_id", "0"]) == 0
    else:

        def broken(*a):
            train.fail("a data problem on this process")

        monkeypatch.setattr(train, "train", broken)
        with pytest.raises(SystemExit):
            train.main(["--checkpoints_dir", str(tmp_path), "--name", "x", "--display_id", "0"])
    assert seen == [ends == "normally"]


def test_empty_metrics_scores_nothing_without_a_wrong_warning(tiny_data, tmp_path, caplog):
    import test as test_script

    args = ["--dataroot", tiny_data, "--checkpoints_dir", str(tmp_path / "ck"), "--name", "m", *TINY, "--no_html"]
    assert train.main([*args, "--n_epochs", "1", "--n_epochs_decay", "0", "--stop_after_iters", "1"]) == 0
    res = tmp_path / "res"
    caplog.clear()
    test_args = ["--checkpoints_dir", str(tmp_path / "ck"), "--name", "m", "--results_dir", str(res)]
    assert test_script.main([*test_args, "--metrics", "", "--num_threads", "0"]) == 0
    assert "dataset_mode" not in caplog.text
    assert not (res / "m" / "test_latest" / "metrics.json").exists()
    assert (res / "m" / "test_latest" / "index.html").exists()


def test_ctrl_c_during_validation_stops_at_once_and_resume_validates_again(tmp_path, monkeypatch):
    import signal

    from metrics import MetricSuite

    data = make_dataroot(tmp_path / "d", train=3, val=6)
    args = train_args(data, tmp_path, "v") + ["--n_epochs", "1", "--n_epochs_decay", "0", "--val_phase", "val"]
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


def test_export_metadata_counts_the_epochs_trained(tiny_data, tmp_path):
    import export as export_script
    from engine.checkpoint import load_generator, load_safetensors

    args = ["--dataroot", tiny_data, "--checkpoints_dir", str(tmp_path), "--name", "one", *TINY, "--no_html"]
    assert train.main([*args, "--n_epochs", "1", "--n_epochs_decay", "0"]) == 0
    run = tmp_path / "one"
    assert load_generator(str(run / "latest.pth"), True).epoch == 1  # latest.pth says "epoch 2 next"
    assert load_generator(str(run / "1_net_G.pth"), True).epoch == 1
    out = tmp_path / "one.safetensors"
    assert (
        export_script.main(["--checkpoint", str(run / "latest.pth"), "--format", "safetensors", "--out", str(out)]) == 0
    )
    assert load_safetensors(str(out)).epoch == 1


def test_translate_py_reads_images_over_pillow_s_limit_only_with_tile(tiny_data, tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    import translate

    args = ["--dataroot", tiny_data, "--checkpoints_dir", str(tmp_path / "ck"), "--name", "t", *TINY, "--no_html"]
    assert train.main([*args, "--n_epochs", "1", "--n_epochs_decay", "0", "--stop_after_iters", "1"]) == 0
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 96 is over twice this: a "bomb" to Pillow
    run = ["--checkpoints_dir", str(tmp_path / "ck"), "--name", "t", "--eval", str(big)]
    assert translate.main([*run, "--out", str(tmp_path / "plain")]) == 1  # refused, naming --tile
    assert not (tmp_path / "plain" / "big.png").exists()
    assert translate.main([*run, "--out", str(tmp_path / "tiled"), "--tile", "64", "--overlap", "16"]) == 0
    assert Image.MAX_IMAGE_PIXELS == 1000  # Pillow's own limit is left as it was
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert Image.open(tmp_path / "tiled" / "big.png").size == (96, 64)
