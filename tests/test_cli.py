"""train.py and test.py end to end through their command lines, resume equality, and CLI errors."""

import json
import os

import pytest
import torch
from PIL import Image

import train
from conftest import TINY, TINY_NET, make_pairs, run_script, train_args
from engine import checkpoint


def test_train_then_test_writes_pages_and_images(tiny_data, tmp_path):
    ck, res = str(tmp_path / "ck"), str(tmp_path / "res")
    r = run_script(
        "train.py",
        *train_args(tiny_data, ck, "run"),
        "--n_epochs",
        "1",
        "--n_epochs_decay",
        "1",
        "--print_freq",
        "2",
        "--direction",
        "BtoA",
    )
    assert r.returncode == 0, r.stderr + r.stdout
    run = os.path.join(ck, "run")
    for f in ("latest.pth", "2_net_G.pth", "loss_log.txt", "train_opt.txt", "train_opt.json", "web/index.html"):
        assert os.path.exists(os.path.join(run, f)), f
    log = open(os.path.join(run, "loss_log.txt")).read()
    assert log.count("G_GAN:") == 4 and "D_fake:" in log  # 8 iterations, print_freq 2
    record = json.load(open(os.path.join(run, "train_opt.json")))
    assert record["seed"] == 3 and record["options"]["ngf"] == 4 and "torch" in record["versions"]
    assert "--direction" in record["command"]
    assert "[default: 64]" in open(os.path.join(run, "train_opt.txt")).read()
    page = open(os.path.join(run, "web", "index.html")).read()
    assert "epoch 2" in page and "fake_B" in page

    # test.py needs no architecture flags: ngf, num_downs, direction come from the checkpoint.
    r = run_script(
        "test.py",
        "--dataroot",
        tiny_data,
        "--name",
        "run",
        "--checkpoints_dir",
        ck,
        "--results_dir",
        res,
        "--num_threads",
        "0",
    )
    assert r.returncode == 0, r.stderr + r.stdout
    web = os.path.join(res, "run", "test_latest")
    page = open(os.path.join(web, "index.html")).read()
    for stem in ("img000", "img001"):
        for label in ("real_A", "fake_B", "real_B"):
            name = f"{stem}_{label}.png"
            assert Image.open(os.path.join(web, "images", name)).size == (32, 32)
            assert name in page
    # A conflicting architecture flag is a warning, and an epoch snapshot loads too.
    r = run_script(
        "test.py",
        "--dataroot",
        tiny_data,
        "--name",
        "run",
        "--checkpoints_dir",
        ck,
        "--results_dir",
        res,
        "--num_threads",
        "0",
        "--epoch",
        "2",
        "--ngf",
        "64",
        "--num_test",
        "1",
    )
    assert r.returncode == 0, r.stderr + r.stdout
    assert "--ngf 64 ignored: the checkpoint was trained with 4" in r.stdout
    assert len(os.listdir(os.path.join(res, "run", "test_2", "images"))) == 3


def test_any_size_translates_whole_with_preprocess_none(tmp_path):
    root = tmp_path / "data"
    make_pairs(str(root / "train"), 2, w=64, h=64)
    make_pairs(str(root / "test"), 1, w=100, h=60)
    ck, res = str(tmp_path / "ck"), str(tmp_path / "res")
    args = ["--dataroot", str(root), "--name", "r", "--checkpoints_dir", ck]
    assert (
        train.main(
            [
                *args,
                *TINY_NET,
                "--netG",
                "unet_256",
                "--load_size",
                "286",
                "--crop_size",
                "256",
                "--n_epochs",
                "1",
                "--n_epochs_decay",
                "0",
                "--no_html",
            ]
        )
        == 0
    )
    r = run_script("test.py", *args, "--results_dir", res, "--preprocess", "none", "--num_threads", "0")
    assert r.returncode == 0, r.stderr + r.stdout
    assert Image.open(os.path.join(res, "r", "test_latest", "images", "img000_fake_B.png")).size == (100, 60)


def test_unet_512_at_572_to_512_runs_an_iteration(tiny_data, tmp_path):
    r = run_script(
        "train.py",
        "--dataroot",
        tiny_data,
        "--name",
        "u512",
        "--checkpoints_dir",
        str(tmp_path),
        *TINY_NET,
        "--netG",
        "unet_512",
        "--load_size",
        "572",
        "--crop_size",
        "512",
        "--stop_after_iters",
        "1",
        "--print_freq",
        "1",
    )
    assert r.returncode == 0, r.stderr + r.stdout
    assert "total_iters: 1," in r.stdout
    state = checkpoint.load(str(tmp_path / "u512" / "latest.pth"))
    assert state["options"]["generator"]["netG"] == "unet_512" and state["total_iters"] == 1


@pytest.mark.parametrize("workers, cache", [("0", False), ("2", False), ("2", True)])
def test_resume_is_bit_exact(tiny_data, tmp_path, workers, cache):
    args = [
        *(["--cache_images"] if cache else []),
        "--dataroot",
        tiny_data,
        "--checkpoints_dir",
        str(tmp_path),
        *TINY,
        "--num_threads",
        workers,
        "--n_epochs",
        "1",
        "--n_epochs_decay",
        "2",
        "--batch_size",
        "2",
        "--no_html",
        "--print_freq",
        "1",
    ]
    assert train.main([*args, "--name", "full"]) == 0
    # Interrupted mid-epoch (3 steps = 1.5 epochs of 2 batches), then resumed by --continue_train alone.
    assert train.main([*args, "--name", "split", "--stop_after_iters", "3"]) == 0
    half = checkpoint.load(str(tmp_path / "split" / "latest.pth"))
    assert (half["epoch"], half["epoch_iter"], half["total_iters"]) == (2, 1, 3)
    assert train.main([*args, "--name", "split", "--continue_train"]) == 0
    a = checkpoint.load(str(tmp_path / "full" / "latest.pth"))
    b = checkpoint.load(str(tmp_path / "split" / "latest.pth"))
    assert a["total_iters"] == b["total_iters"] == 6
    for net in ("netG", "netD"):
        for k, v in a["model"][net].items():
            assert torch.equal(v, b["model"][net][k]), f"{net}.{k} differs after resume"
    for k in ("optimizer_G", "optimizer_D"):
        sa, sb = a["model"][k]["state"], b["model"][k]["state"]
        assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert a["model"]["optimizer_G"]["param_groups"][0]["lr"] == b["model"]["optimizer_G"]["param_groups"][0]["lr"]


def test_resume_errors(tiny_data, tmp_path, capsys):
    args = train_args(tiny_data, tmp_path, "x")
    with pytest.raises(SystemExit) as e:
        train.main([*args, "--continue_train"])
    assert e.value.code == 2 and "no checkpoint at" in capsys.readouterr().err
    assert train.main([*args, "--stop_after_iters", "1", "--no_html"]) == 0
    with pytest.raises(SystemExit) as e:
        train.main([*args, "--continue_train", "--ngf", "8", "--norm", "instance"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--ngf: checkpoint 4, command line 8" in err and "--norm: checkpoint" in err
    with open(tmp_path / "x" / "latest.pth", "r+b") as f:
        f.truncate(100)
    with pytest.raises(SystemExit) as e:
        train.main([*args, "--continue_train"])
    assert e.value.code == 2 and "cannot load checkpoint" in capsys.readouterr().err


def test_cli_errors_exit_2(tmp_path, capsys):
    # Through the command line once; the other errors take the same exit path, so in this process (faster).
    r = run_script("train.py", "--netG", "unet_512", "--crop_size", "500", "--load_size", "572")
    assert r.returncode == 2 and "--crop_size 500 does not fit unet_512" in r.stderr

    def error(main, *argv: str) -> str:
        with pytest.raises(SystemExit) as e:
            main(list(argv))
        assert e.value.code == 2
        return capsys.readouterr().err

    import test as test_script
    from conftest import ROOT

    assert test_script.__file__ == os.path.join(ROOT, "test.py")  # the project's, not the standard library's

    err = error(train.main, "--dataroot", str(tmp_path / "missing"))
    assert "--dataroot" in err and "no such folder" in err
    err = error(train.main, "--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path / "ck"), "--display_id", "0")
    assert "no 'train' folder" in err
    assert "no checkpoint" in error(test_script.main, "--name", "nothing_here", "--checkpoints_dir", str(tmp_path))


def test_batch_larger_than_dataset(tiny_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--dataroot", tiny_data, "--checkpoints_dir", str(tmp_path), *TINY, "--batch_size", "9"])
    assert e.value.code == 2 and "--batch_size 9 is larger than the data set (4 images" in capsys.readouterr().err


def test_keep_last_prunes_snapshots(tiny_data, tmp_path):
    args = [
        *train_args(tiny_data, tmp_path, "k"),
        "--batch_size",
        "4",
        "--n_epochs",
        "4",
        "--n_epochs_decay",
        "0",
        "--save_epoch_freq",
        "1",
        "--keep_last",
        "2",
        "--no_html",
    ]
    assert train.main(args) == 0
    assert sorted(f for f in os.listdir(tmp_path / "k") if f.endswith(".pth")) == [
        "3_net_G.pth",
        "4_net_G.pth",
        "latest.pth",
    ]
    snap = checkpoint.load(str(tmp_path / "k" / "4_net_G.pth"))
    assert set(snap) == {
        "format",
        "kind",
        "netG",
        "options",
        "epoch",
        "total_iters",
        "value_types",
    }  # generator only: no optimiser state


def test_single_mode_and_load_iter(tiny_data, tmp_path):
    ck, res = str(tmp_path / "ck"), str(tmp_path / "res")
    args = ["--checkpoints_dir", ck, "--name", "s"]
    assert (
        train.main(
            [
                "--dataroot",
                tiny_data,
                *args,
                *TINY,
                "--save_latest_freq",
                "2",
                "--save_by_iter",
                "--stop_after_iters",
                "2",
                "--no_html",
            ]
        )
        == 0
    )
    assert os.path.exists(os.path.join(ck, "s", "iter_2_net_G.pth"))
    r = run_script(
        "test.py",
        "--dataroot",
        os.path.join(tiny_data, "test"),
        *args,
        "--results_dir",
        res,
        "--dataset_mode",
        "single",
        "--load_iter",
        "2",
        "--num_threads",
        "0",
        "--preprocess",
        "none",
    )
    assert r.returncode == 0, r.stderr + r.stdout
    images = sorted(os.listdir(os.path.join(res, "s", "test_latest_iter2", "images")))
    assert images == ["img000_fake_B.png", "img000_real_A.png", "img001_fake_B.png", "img001_real_A.png"]
    # A whole A|B image is the input in single mode: 64x32 in, 64x32 out.
    assert Image.open(os.path.join(res, "s", "test_latest_iter2", "images", "img000_fake_B.png")).size == (64, 32)


def test_continue_from_epoch_snapshot(tiny_data, tmp_path, caplog):
    args = [
        *train_args(tiny_data, tmp_path, "e"),
        "--batch_size",
        "4",
        "--no_html",
        "--save_epoch_freq",
        "1",
    ]
    assert train.main([*args, "--n_epochs", "2", "--n_epochs_decay", "0"]) == 0
    assert train.main([*args, "--n_epochs", "3", "--n_epochs_decay", "0", "--continue_train", "--epoch", "1"]) == 0
    assert "starting from the generator of" in caplog.text
    state = checkpoint.load(str(tmp_path / "e" / "latest.pth"))
    assert state["epoch"] == 4 and state["total_iters"] == 3  # snapshot 1 had 1 step; epochs 2 and 3 add 2


def test_every_input_gets_its_own_results(tiny_data, tmp_path):
    # Names that collide when reduced to a stem: extensions, a sub-folder, a name that looks like a repeat's,
    # and one that differs only in case.
    data = tmp_path / "names"
    for rel in ("a.png", "a.jpg", "a_2.png", "sub/a.png", "A.png"):
        make_pairs(str(data / "test" / os.path.dirname(rel)), 1, seed=len(rel))
        os.replace(data / "test" / os.path.dirname(rel) / "img000.png", data / "test" / rel)
    args = train_args(tiny_data, tmp_path, "n", "--no_html")
    assert train.main([*args, "--stop_after_iters", "1"]) == 0
    res = ["--checkpoints_dir", str(tmp_path), "--name", "n", "--dataroot", str(data), "--results_dir", str(tmp_path)]
    r = run_script("test.py", *res, "--num_threads", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    web = tmp_path / "n" / "test_latest"
    record = json.load(open(web / "metrics.json"))
    assert record["summary"]["n"] == len(record["per_image"]) == 5
    names = {n.casefold() for n in record["per_image"]}
    assert len(names) == 5
    assert len([f for f in os.listdir(web / "images") if f.endswith("_fake_B.png")]) == 5
    page = open(web / "index.html").read()
    assert sum(page.count(f"<h3>{n}</h3>") for n in record["per_image"]) == 5
