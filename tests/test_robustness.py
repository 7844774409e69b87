"""Bad input, interruptions and security: clear errors naming the file or flag, nothing half-written."""

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
from PIL import Image

import test as test_script
import train
from conftest import ROOT, make_pairs, run_script
from conftest import train_args as tiny_args
from data.image_io import load_image
from engine import checkpoint
from models.pix2pix_model import Pix2PixModel


def train_args(dataroot, ck, name="r"):
    """A tiny run's flags (conftest's) without the HTML page."""
    return tiny_args(dataroot, ck, name, "--no_html")


# ---- bad files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["empty", "not_an_image"])
def test_unreadable_file_stops_before_work_naming_it(tmp_path, kind, capsys):
    make_pairs(str(tmp_path / "d" / "train"), 3)
    bad = tmp_path / "d" / "train" / "bad.png"
    bad.write_bytes(b"" if kind == "empty" else b"this is not a PNG")
    with pytest.raises(SystemExit) as e:
        train.main(train_args(tmp_path / "d", tmp_path / "ck"))
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"cannot read image {bad}" in err and "--skip_bad_images" in err
    assert not os.path.exists(tmp_path / "ck" / "r" / "latest.pth")


def truncated_jpeg(path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(path, quality=95)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])  # the header survives, the pixels do not


def test_truncated_image_stops_training_naming_it(tmp_path, caplog):
    make_pairs(str(tmp_path / "d" / "train"), 3)
    truncated_jpeg(tmp_path / "d" / "train" / "cut.jpg")
    assert train.main(train_args(tmp_path / "d", tmp_path / "ck") + ["--serial_batches"]) == 1
    assert f"cannot read image {tmp_path / 'd' / 'train' / 'cut.jpg'}" in caplog.text


def test_skip_bad_images(tmp_path, caplog):
    make_pairs(str(tmp_path / "d" / "train"), 9)
    truncated_jpeg(tmp_path / "d" / "train" / "cut.jpg")
    args = train_args(tmp_path / "d", tmp_path / "ck") + [
        "--skip_bad_images",
        "--n_epochs",
        "1",
        "--n_epochs_decay",
        "0",
    ]
    assert train.main(args + ["--max_bad_fraction", "0.2"]) == 0
    assert caplog.text.count("skipping a bad file") == 1 and "cut.jpg" in caplog.text
    assert checkpoint.load(str(tmp_path / "ck" / "r" / "latest.pth"))["total_iters"] == 9
    with pytest.raises(SystemExit) as e:
        train.main(args + ["--max_bad_fraction", "0.05", "--name", "r2"])
    assert e.value.code == 2


def test_suspicious_combined_images_warn(tmp_path, caplog):
    make_pairs(str(tmp_path / "d" / "train"), 2)
    Image.new("RGB", (65, 32)).save(tmp_path / "d" / "train" / "odd.png")
    Image.new("RGB", (40, 64)).save(tmp_path / "d" / "train" / "tall.png")
    assert train.main(train_args(tmp_path / "d", tmp_path / "ck") + ["--stop_after_iters", "1"]) == 0
    assert "odd.png: the width is odd" in caplog.text
    assert "tall.png: narrower than tall" in caplog.text


def test_image_modes_are_converted(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "w16.png")
    Image.fromarray(np.full((4, 4), 32896, np.uint16)).save(tmp_path / "m16.png")  # 128 * 257
    Image.fromarray(np.dstack([rgb, np.zeros((6, 8), np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif)

    assert np.asarray(load_image(str(tmp_path / "w16.png"), 1)).max() == 255  # scaled, not clipped
    assert np.asarray(load_image(str(tmp_path / "m16.png"), 3))[0, 0].tolist() == [128, 128, 128]
    assert np.array_equal(np.asarray(load_image(str(tmp_path / "rgba.png"), 3)), rgb)  # alpha dropped
    for name in ("pal.png", "gray.png", "cmyk.jpg"):
        for nc, mode in ((1, "L"), (3, "RGB")):
            im = load_image(str(tmp_path / name), nc)
            assert im.mode == mode and im.size == (8, 6)
    assert load_image(str(tmp_path / "rot.jpg"), 3).size == (6, 8)  # upright: width and height swap


def test_crop_larger_than_images(tmp_path, capsys):
    make_pairs(str(tmp_path / "d" / "train"), 2, w=16, h=16)
    with pytest.raises(SystemExit) as e:
        train.main(train_args(tmp_path / "d", tmp_path / "ck") + ["--preprocess", "crop"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "img000.png: each image is 16x16, smaller than --crop_size 32" in err


def test_batch_of_different_sizes_without_crop(tmp_path, capsys):
    make_pairs(str(tmp_path / "d" / "train"), 1, w=32, h=32)
    make_pairs(str(tmp_path / "d" / "train" / "sub"), 1, w=64, h=32)
    with pytest.raises(SystemExit) as e:
        train.main(train_args(tmp_path / "d", tmp_path / "ck") + ["--preprocess", "none", "--batch_size", "2"])
    assert e.value.code == 2 and "--batch_size 2 with --preprocess none needs images of one size" in (
        capsys.readouterr().err
    )


def test_unwritable_checkpoints_dir(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    make_pairs(str(tmp_path / "d" / "train"), 1)
    with pytest.raises(SystemExit) as e:
        train.main(train_args(tmp_path / "d", tmp_path / "file"))
    assert e.value.code == 2 and "--checkpoints_dir" in capsys.readouterr().err


# ---- non-finite values ---------------------------------------------------------------------------------


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path, caplog, monkeypatch):
    args = train_args(tiny_data, tmp_path) + ["--print_freq", "2", "--save_latest_freq", "2"]
    original = Pix2PixModel.pop_losses
    calls = {"n": 0}

    def flaky(self, dist=None):
        losses, finite = original(self, dist)
        calls["n"] += 1
        return losses, finite and calls["n"] < 3  # the third read (iterations 5..6) is non-finite

    monkeypatch.setattr(Pix2PixModel, "pop_losses", flaky)
    assert train.main(args) == 1
    assert "non-finite loss within iterations 5..6" in caplog.text
    assert checkpoint.load(str(tmp_path / "r" / "latest.pth"))["total_iters"] == 4


def test_non_finite_weights_are_never_saved(tiny_data, tmp_path):
    args = train_args(tiny_data, tmp_path) + ["--stop_after_iters", "1"]
    assert train.main(args) == 0
    before = open(tmp_path / "r" / "latest.pth", "rb").read()
    opt = train.parse(True, args)
    model = train.create_model(opt.model_config(), torch.device("cpu"))
    with torch.no_grad():
        next(model.netG.parameters()).fill_(float("nan"))
    saver = checkpoint.Saver(str(tmp_path / "r"), opt.to_dict(), save_by_iter=False, keep_last=0)
    with pytest.raises(checkpoint.NonFiniteWeights, match="hold NaN or inf"):
        saver.latest(model, checkpoint.Progress(1, 1, 1), checkpoint.rng_state(model.device), None)
    assert open(tmp_path / "r" / "latest.pth", "rb").read() == before


# ---- interruptions -----------------------------------------------------------------------------------------


def start_training(args, hooks=()):
    """train.py in a subprocess; with hooks (tests/hooked.py's options, e.g. --save_pause 60) through hooked.py."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    script = [os.path.join(ROOT, "tests", "hooked.py"), *hooks, "--"] if hooks else [os.path.join(ROOT, "train.py")]
    return subprocess.Popen(
        [sys.executable, *script, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(cond, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_sigint_saves_latest_and_exits_nonzero(tiny_data, tmp_path):
    args = train_args(tiny_data, tmp_path) + ["--num_threads", "2", "--n_epochs", "500", "--print_freq", "1"]
    proc = start_training(args)
    log = tmp_path / "r" / "loss_log.txt"
    assert wait_for(lambda: log.exists() and log.read_text().count("G_GAN") >= 3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted: saved the full state to" in out
    assert "Traceback" not in err  # neither the main process nor the loader workers die noisily
    state = checkpoint.load(str(tmp_path / "r" / "latest.pth"))
    assert state["total_iters"] >= 3 and "optimizer_G" in state["model"]


def test_sigkill_during_save_leaves_previous_latest_loadable(tiny_data, tmp_path):
    args = train_args(tiny_data, tmp_path)
    assert train.main(args + ["--stop_after_iters", "2"]) == 0
    latest = tmp_path / "r" / "latest.pth"
    before = open(latest, "rb").read()
    # The hook pauses between the complete temporary file and the rename.
    proc = start_training(args + ["--continue_train", "--save_latest_freq", "1"], ["--save_pause", "60"])
    try:
        assert wait_for(lambda: glob.glob(str(tmp_path / "r" / "latest.pth.*.tmp")))
    finally:
        proc.kill()
        proc.communicate()
    assert open(latest, "rb").read() == before
    assert checkpoint.load(str(latest))["total_iters"] == 2


# ---- security --------------------------------------------------------------------------------------------------


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_pickled_object_checkpoint_is_refused(tmp_path):
    (tmp_path / "r").mkdir()
    torch.save({"netG": {}, "options": {}, "x": Payload()}, tmp_path / "r" / "latest.pth")
    r = run_script("test.py", "--checkpoints_dir", str(tmp_path), "--name", "r")
    assert r.returncode == 2 and "pickled Python objects, refused by weights_only=True" in r.stderr
    assert not os.path.exists(os.path.join(ROOT, "pwned.txt"))


def test_html_escapes_file_names(tmp_path):
    root = tmp_path / "d"
    make_pairs(str(root / "train"), 2)
    os.makedirs(root / "test")
    evil = "<img src=x onerror=alert(1)>"
    Image.open(make_pairs(str(tmp_path / "x"), 1)[0]).save(root / "test" / f"{evil}.png")
    assert train.main(train_args(root, tmp_path / "ck") + ["--stop_after_iters", "1"]) == 0
    res = ["--results_dir", str(tmp_path / "res"), "--num_threads", "0"]
    assert test_script.main(["--checkpoints_dir", str(tmp_path / "ck"), "--name", "r", *res]) == 0
    page = open(tmp_path / "res" / "r" / "test_latest" / "index.html").read()
    assert evil not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert os.path.exists(tmp_path / "res" / "r" / "test_latest" / "images" / f"{evil}_fake_B.png")


@pytest.mark.parametrize("flag, value", [("--name", "a/../../b"), ("--phase", "../train"), ("--name", "..")])
def test_paths_cannot_escape(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        train.parse(True, [flag, value])
    assert e.value.code == 2 and flag in capsys.readouterr().err


def test_mid_epoch_resume_with_other_batches_is_refused(tiny_data, tmp_path, capsys):
    args = train_args(tiny_data, tmp_path)
    assert train.main(args + ["--stop_after_iters", "1"]) == 0
    with pytest.raises(SystemExit) as e:
        train.main(args + ["--continue_train", "--batch_size", "2"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "saved mid-epoch" in err and "--batch_size: checkpoint 1, command line 2" in err


def test_a_b_size_mismatch(tmp_path, capsys):
    for side, size in (("A", (32, 32)), ("B", (40, 32))):
        os.makedirs(tmp_path / "d" / "train" / side)
        Image.new("RGB", size).save(tmp_path / "d" / "train" / side / "x.png")
    with pytest.raises(SystemExit) as e:
        train.main(train_args(tmp_path / "d", tmp_path / "ck"))
    assert e.value.code == 2 and "A and B differ in size" in capsys.readouterr().err


def test_resume_with_fp16_after_fp32(tiny_data, tmp_path):
    args = train_args(tiny_data, tmp_path)
    assert train.main(args + ["--stop_after_iters", "1"]) == 0
    assert train.main(args + ["--continue_train", "--amp", "fp16", "--stop_after_iters", "1"]) == 0
    state = checkpoint.load(str(tmp_path / "r" / "latest.pth"))
    assert state["total_iters"] == 2  # resumed after step 1, one more step in fp16
    assert state["model"]["scaler_G"]["scale"] > 0  # the fp16 loss scalers now travel with the checkpoint
    assert all(torch.isfinite(v).all() for v in state["model"]["netG"].values() if v.is_floating_point())


# ---- messages --------------------------------------------------------------------------------------------------


def test_random_bytes_are_not_called_pickled_objects(tmp_path):
    path = tmp_path / "latest.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.load(str(path))
    assert "not a checkpoint" in str(e.value) and "pickled" not in str(e.value)


@pytest.mark.parametrize(
    "is_train, argv, expected",
    [
        (True, ["--gpu_ids", "-2"], "--gpu_ids '-2': expected comma-separated integers"),
        (True, ["--gpu_ids", "0,-1"], "--gpu_ids '0,-1': expected"),
        (False, ["--aspect_ratio", "1e6"], "--aspect_ratio 1000000.0: must be in [0.01, 100]"),
        (False, ["--aspect_ratio", "inf"], "--aspect_ratio inf: must be a finite number"),
    ],
)
def test_values_refused_up_front(capsys, is_train, argv, expected):
    with pytest.raises(SystemExit) as e:
        train.parse(is_train, argv)
    assert e.value.code == 2 and expected in capsys.readouterr().err


def test_init_from_without_a_generator_is_an_error(tiny_data, tmp_path, capsys):
    empty = tmp_path / "d_only.pth"
    torch.save({"format": 2, "kind": "generator", "netD": {}, "options": {}, "epoch": 1}, empty)
    with pytest.raises(SystemExit) as e:
        train.main([*train_args(tiny_data, tmp_path), "--init_from", str(empty)])
    assert e.value.code == 2 and "holds no generator (netG)" in capsys.readouterr().err


def test_failure_before_any_save_says_nothing_was_saved(tiny_data, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(Pix2PixModel, "pop_losses", lambda self, dist=None: ({"G_GAN": float("nan")}, False))
    assert train.main([*train_args(tiny_data, tmp_path), "--print_freq", "1"]) == 1
    assert "nothing was saved yet (no " in caplog.text and "keeps the last good state" not in caplog.text


def test_signal_during_the_last_epoch_end_exits_130(tiny_data, tmp_path, monkeypatch):
    from engine.training import TrainLoop

    original = TrainLoop.end_epoch

    def interrupted(self, epoch):
        self.stop.signum = signal.SIGTERM  # as the handler sets it, after the last step
        return original(self, epoch)

    monkeypatch.setattr(TrainLoop, "end_epoch", interrupted)
    args = [*train_args(tiny_data, tmp_path), "--n_epochs", "1", "--n_epochs_decay", "0", "--no_html"]
    assert train.main(args) == 130
    assert checkpoint.load(str(tmp_path / "r" / "latest.pth"))["epoch"] == 2  # the epoch end was completed


# train.py run as a script, held inside its start-up: the first import of torch (after the script's first lines)
# says so in a file and waits there, so the test's Ctrl-C lands while the libraries load, whatever the machine's speed.
HELD_IN_START_UP = """
import builtins, runpy, sys, time
ready, script = sys.argv[1], sys.argv[2]
real_import = builtins.__import__
def held(name, *args, **kwargs):
    if name == "torch" and sys._getframe(1).f_globals.get("__name__") == "__main__":
        open(ready, "w").close()
        time.sleep(120)
    return real_import(name, *args, **kwargs)
builtins.__import__ = held
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
"""


def test_ctrl_c_during_start_up_is_one_line(tiny_data, tmp_path):
    ready = tmp_path / "in_start_up"
    code = [sys.executable, "-c", HELD_IN_START_UP, str(ready), os.path.join(ROOT, "train.py")]
    proc = subprocess.Popen([*code, *train_args(tiny_data, tmp_path)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():  # the event: start-up reached the libraries' import
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted during start-up" in err and "Traceback" not in err


def trained_run(tiny_data, tmp_path):
    assert train.main([*train_args(tiny_data, tmp_path), "--stop_after_iters", "1", "--no_html"]) == 0
    return ["--checkpoints_dir", str(tmp_path), "--name", "r", "--num_threads", "0"]


def test_ctrl_c_in_test_py_writes_the_page_for_what_is_done(tiny_data, tmp_path, monkeypatch):
    make_pairs(os.path.join(tiny_data, "test"), 6, seed=9)
    original, done = test_script.translate_one, []

    def one(*args):
        done.append(1)
        if len(done) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the second image is translated
        return original(*args)

    monkeypatch.setattr(test_script, "translate_one", one)
    res = tmp_path / "res"
    assert test_script.main([*trained_run(tiny_data, tmp_path), "--results_dir", str(res)]) == 130
    record = json.load(open(res / "r" / "test_latest" / "metrics.json"))
    assert record["summary"]["n"] == len(record["per_image"]) == 2
    assert os.path.exists(res / "r" / "test_latest" / "index.html")


def error_of_test_py(capsys, *args: str) -> str:
    """test.py's one line on stderr where it stops with exit status 2 (an exception other than that fails the test)."""
    with pytest.raises(SystemExit) as e:
        test_script.main(list(args))
    assert e.value.code == 2
    return capsys.readouterr().err


def test_results_dir_that_is_a_file(tiny_data, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    err = error_of_test_py(capsys, *trained_run(tiny_data, tmp_path), "--results_dir", str(tmp_path / "a_file"))
    assert "--results_dir" in err


def test_options_that_do_not_fit_the_weights(tiny_data, tmp_path, capsys):
    args = trained_run(tiny_data, tmp_path)
    path = tmp_path / "r" / "latest.pth"
    state = torch.load(path, weights_only=True)
    state["options"]["generator"]["ngf"] = 8  # the weights were trained with ngf 4
    torch.save(state, path)
    err = error_of_test_py(capsys, *args, "--results_dir", str(tmp_path / "res"))
    assert "the weights do not fit the generator its options describe" in err and "of another shape" in err


def full_disk_after(monkeypatch, n_ok: int) -> None:
    """os.fsync succeeds n_ok times, then fails as a full disk does (every atomic write fsyncs once)."""
    real, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > n_ok:
            raise OSError(28, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_full_disk_at_start_is_one_message(tiny_data, tmp_path, monkeypatch, capsys):
    full_disk_after(monkeypatch, 0)  # the first write: train_opt.txt
    with pytest.raises(SystemExit) as e:
        train.main(train_args(tiny_data, tmp_path))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "cannot write" in err and "train_opt.txt: No space left on device" in err
    assert not os.path.exists(tmp_path / "r" / "train_opt.txt") and not glob.glob(str(tmp_path / "r" / "*.tmp"))


def test_full_disk_during_a_checkpoint_keeps_the_last_one(tiny_data, tmp_path, monkeypatch, caplog):
    args = [*train_args(tiny_data, tmp_path), "--save_latest_freq", "1", "--no_html", "--stop_after_iters", "3"]
    full_disk_after(monkeypatch, 3)  # train_opt.txt, train_opt.json, latest at step 1; then the disk is full
    assert train.main(args) == 1
    assert (
        "latest.pth: No space left on device; not saved: " in caplog.text and "keeps the last good state" in caplog.text
    )
    assert checkpoint.load(str(tmp_path / "r" / "latest.pth"))["total_iters"] == 1
    assert not glob.glob(str(tmp_path / "r" / "*.tmp"))


def test_full_disk_while_test_py_writes_images(tiny_data, tmp_path, monkeypatch, caplog):
    args = [*trained_run(tiny_data, tmp_path), "--results_dir", str(tmp_path / "res")]
    full_disk_after(monkeypatch, 2)  # test_opt.txt and test_opt.json, then the first image
    assert test_script.main(args) == 1
    assert "real_A.png: No space left on device" in caplog.text
    images = tmp_path / "res" / "r" / "test_latest" / "images"
    assert os.listdir(images) == []  # no half-written or empty PNG


def test_bare_state_dict_where_latest_is_expected(tiny_data, tmp_path, capsys):
    os.makedirs(tmp_path / "r")
    torch.save({"model.0.weight": torch.zeros(1)}, tmp_path / "r" / "latest.pth")  # weights only, no options
    with pytest.raises(SystemExit) as e:
        train.main([*train_args(tiny_data, tmp_path), "--continue_train"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "not a checkpoint of this project (no options)" in err and "KeyError" not in err


MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA", "I;16", "I", "F", "RGBX", "RGBa"]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_is_converted_or_refused_never_blank(tmp_path, mode):
    base = Image.fromarray(np.add.outer(np.arange(16), np.arange(16)).astype(np.uint8) * 8).convert("RGB")
    if mode in ("I;16", "I"):
        img = Image.fromarray(
            (np.asarray(base.convert("L")).astype(np.int32) * 257).astype(np.uint16 if mode == "I;16" else np.int32)
        )
    elif mode == "F":
        img = Image.fromarray(np.asarray(base.convert("L"), dtype=np.float32) / 255)
    else:
        img = base.convert(mode)
    path = None
    for ext in ("png", "tiff", "webp"):
        try:
            img.save(tmp_path / f"im.{ext}")
            path = str(tmp_path / f"im.{ext}")
            break
        except (OSError, ValueError, KeyError):
            continue
    if path is None:
        pytest.skip(f"Pillow writes mode {mode} to none of png, tiff, webp")
    for nc in (1, 3):
        try:
            out = np.asarray(load_image(path, nc))
        except Exception as e:  # refused: with a message naming the file, not some other error
            assert "cannot read image" in str(e) and path in str(e), e
            continue
        assert out.dtype == np.uint8 and out.ndim == (2 if nc == 1 else 3)
        assert out.std() > 10, f"mode {mode} became a blank image (nc {nc})"


def test_links_count_each_file_once_and_never_loop(tmp_path):
    from data.image_folder import make_dataset

    make_pairs(str(tmp_path / "d"), 2)
    os.symlink(tmp_path / "d", tmp_path / "d" / "loop")  # a link back to its own folder
    os.symlink(tmp_path / "d" / "img000.png", tmp_path / "d" / "again.png")  # the same file twice
    os.symlink(tmp_path / "d" / "nothing.png", tmp_path / "d" / "dangling.png")
    found = [os.path.relpath(p, tmp_path / "d") for p in make_dataset(str(tmp_path / "d"), None)]
    assert found == ["again.png", "dangling.png", "img001.png"]  # img000.png is again.png


def test_dangling_link_and_halfless_image_are_bad_files(tmp_path, capsys):
    make_pairs(str(tmp_path / "train"), 3)
    os.symlink(tmp_path / "gone.png", tmp_path / "train" / "dangling.png")
    Image.new("RGB", (1, 8)).save(tmp_path / "train" / "thin.png")  # no room for two halves
    args = train_args(tmp_path, tmp_path / "ck", "b")
    with pytest.raises(SystemExit) as e:
        train.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "dangling.png" in err and "--skip_bad_images" in err
    assert train.main([*args, "--skip_bad_images", "--max_bad_fraction", "0.5", "--stop_after_iters", "1"]) == 0
    out = capsys.readouterr()
    assert "dangling link" in out.out + out.err and "too small to hold an A|B pair" in out.out + out.err


def test_absurd_load_size_stops_before_work(tiny_data, tmp_path, capsys):
    args = train_args(tiny_data, tmp_path, "big")
    with pytest.raises(SystemExit) as e:
        train.main([*args, "--load_size", "2000000", "--crop_size", "32"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--load_size 2000000: images would be resized to 2000000x2000000" in err


def test_resume_with_options_that_do_not_fit_the_weights(tiny_data, tmp_path, capsys):
    assert train.main([*train_args(tiny_data, tmp_path), "--stop_after_iters", "1", "--no_html"]) == 0
    path = tmp_path / "r" / "latest.pth"
    state = torch.load(path, weights_only=True)
    state["options"]["generator"]["ngf"] = 8  # edited by hand: the weights were trained with ngf 4
    torch.save(state, path)
    args = [*train_args(tiny_data, tmp_path), "--ngf", "8", "--continue_train"]
    with pytest.raises(SystemExit) as e:
        train.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "the weights do not fit the generator its options describe" in err


def test_images_too_small_for_the_discriminator(tmp_path, capsys):
    make_pairs(str(tmp_path / "train"), 3, w=40, h=40)
    make_pairs(str(tmp_path / "train" / "small"), 1, w=8, h=8)  # --preprocess none: 8 px, D needs 32
    args = train_args(tmp_path, tmp_path / "ck", "s")
    args += ["--preprocess", "none"]
    with pytest.raises(SystemExit) as e:
        train.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "small/img000.png: 8x8 as preprocessed, smaller than the 32 pixels D needs" in err
    assert train.main([*args, "--skip_bad_images", "--max_bad_fraction", "0.3", "--stop_after_iters", "1"]) == 0
