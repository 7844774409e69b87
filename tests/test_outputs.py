"""What the commands write: never over an input, a checkpoint or a file they did not create; never through a link;
a full disk is one line and a non-zero exit; any file name the file system holds (not UTF-8, 251-255 bytes)."""

import dataclasses
import errno
import glob
import importlib.util
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

import export as xport
import train
import translate
from conftest import ROOT, make_dataroot, make_G, make_pairs, randomized, run_script, train_args
from engine import checkpoint, run_folder
from engine.training import TrainLoop
from options.options import TrainOptions
from util import util
from util.util import WriteFailed, atomic_write

ENOSPC = os.strerror(errno.ENOSPC)  # "No space left on device"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "datasets", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


combine_A_and_B = load_script("combine_A_and_B")
make_demo_dataset = load_script("make_demo_dataset")


class FullDisk:
    """os.write fails with ENOSPC, as on a full disk, for files under `folder` once `on` is set (arm() sets it
    when a given function is entered)."""

    def __init__(self, monkeypatch, folder) -> None:
        self.folder, self.on, self.monkeypatch = os.path.realpath(folder), False, monkeypatch
        real = os.write

        def write(fd, data):
            if self.on and os.readlink(f"/proc/self/fd/{fd}").startswith(self.folder + os.sep):
                raise OSError(errno.ENOSPC, ENOSPC)
            return real(fd, data)

        monkeypatch.setattr(os, "write", write)

    def arm(self, owner, name: str) -> None:
        original = getattr(owner, name)

        def armed(*args, **kwargs):
            self.on = True
            return original(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, armed)


def temp_files(folder) -> list[str]:
    return glob.glob(os.path.join(str(folder), "**", "*.tmp"), recursive=True)


def image(path, seed: int = 0, size=(40, 30)) -> str:
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return str(path)


def error_of(capsys, call) -> str:
    """The stderr of call(), which must exit with status 2."""
    with pytest.raises(SystemExit) as e:
        call()
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err


def write_run(root, name: str) -> str:
    """root/name/latest.pth: a training state with a tiny generator (unet of 5 levels, ngf 4)."""
    o = TrainOptions.from_flat({"ngf": 4, "num_downs": 5})
    net = randomized(make_G(**dataclasses.asdict(o.generator)))
    path = root / name / "latest.pth"
    path.parent.mkdir(parents=True)
    state = {"format": checkpoint.FORMAT, "kind": "latest", "model": {"netG": net.state_dict()}, "epoch": 1}
    state["options"] = o.to_dict()
    torch.save(state, path)
    return str(path)


@pytest.fixture
def generator(tmp_path):
    """A run folder gen/ with its latest.pth."""
    return write_run(tmp_path, "gen")


def run_translate(generator, *args: str) -> int:
    return translate.main(["--checkpoint", generator, "--gpu_ids", "-1", "--eval", *args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained one step on 2 test pairs: (test.py's arguments without --results_dir, the dataroot)."""
    root = tmp_path_factory.mktemp("trained")
    data = make_dataroot(root / "data", train=2, test=2)
    args = train_args(data, root / "ck", "r", "--no_html")
    assert train.main([*args, "--stop_after_iters", "1"]) == 0
    return ["--checkpoints_dir", str(root / "ck"), "--name", "r", "--num_threads", "0"], data


# ---- 1. never over an input or a file the command did not create ---------------------------------------------
def test_translate_out_dot_never_replaces_its_input(generator, tmp_path, monkeypatch, capsys):
    photo = image(tmp_path / "photo.png")
    before = open(photo, "rb").read()
    monkeypatch.chdir(tmp_path)
    err = error_of(capsys, lambda: run_translate(generator, "photo.png", "--out", "."))
    assert "would replace an input" in err and "never writes over a file" in err
    err = error_of(capsys, lambda: run_translate(generator, str(tmp_path), "--out", str(tmp_path)))  # the folder
    assert "would replace an input" in err
    assert open(photo, "rb").read() == before and sorted(os.listdir(tmp_path)) == ["gen", "photo.png"]


def test_translate_never_reads_its_results_back_as_inputs(generator, tmp_path, caplog):
    inp = tmp_path / "in"
    for name in ("a.png", "sub/b.png"):
        image(inp / name, seed=len(name))
    old = image(inp / "res" / "old.png", seed=9)  # an earlier run's result in --out, itself inside the input
    before = open(old, "rb").read()
    assert run_translate(generator, str(inp), "--out", str(inp / "res")) == 0
    assert sorted(os.listdir(inp / "res")) == ["a.png", "b.png", "old.png"] and open(old, "rb").read() == before
    assert "1 image(s) under --out" in caplog.text
    # A pattern covering --out, into the same folder: the results are skipped (and the inputs' taken: exit 2).
    for pattern in (inp / "**" / "*.png", inp / "res" / "*.png"):
        with pytest.raises(SystemExit):
            run_translate(generator, str(pattern), "--out", str(inp / "res"))
    assert sorted(os.listdir(inp / "res")) == ["a.png", "b.png", "old.png"] and open(old, "rb").read() == before


def test_translate_refuses_existing_results_and_links(generator, tmp_path, capsys):
    a = image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"the user's own file")
    err = error_of(capsys, lambda: run_translate(generator, a, "--out", str(out)))
    assert "a.png exist(s) already" in err and "never replaces a file" in err
    assert (out / "a.png").read_bytes() == b"the user's own file"
    # A link at the result's path, to the input: refused, the input and the link as they were.
    os.remove(out / "a.png")
    os.symlink(a, out / "a.png")
    before = open(a, "rb").read()
    err = error_of(capsys, lambda: run_translate(generator, a, "--out", str(out)))
    assert "would replace an input" in err
    assert os.path.islink(out / "a.png") and open(a, "rb").read() == before
    # A second run into the folder of the first: refused, the first run's results kept.
    assert run_translate(generator, a, "--out", str(tmp_path / "o2")) == 0
    first = (tmp_path / "o2" / "a.png").read_bytes()
    error_of(capsys, lambda: run_translate(generator, a, "--out", str(tmp_path / "o2")))
    assert (tmp_path / "o2" / "a.png").read_bytes() == first


def test_test_py_never_writes_into_a_results_folder_that_is_not_empty(trained, tmp_path, capsys, caplog):
    import test as test_script

    args, data = trained
    victim = os.path.join(data, "test", "img000.png")
    before = open(victim, "rb").read()
    images = tmp_path / "res" / "r" / "test_latest" / "images"
    images.mkdir(parents=True)
    os.symlink(victim, images / "img000_real_A.png")  # a link to an input where a result would go
    assert test_script.main([*args, "--results_dir", str(tmp_path / "res")]) == 0
    assert open(victim, "rb").read() == before and os.path.islink(images / "img000_real_A.png")
    assert os.listdir(images) == ["img000_real_A.png"]  # the folder is as it was
    second = tmp_path / "res" / "r" / "test_latest_2"
    assert (second / "index.html").exists() and (second / "images" / "img000_fake_B.png").exists()
    assert "holds an earlier run's results, kept as they are; these go to" in caplog.text
    # A third run (test.py --eval after test.py, say) takes the next free name.
    assert test_script.main([*args, "--results_dir", str(tmp_path / "res"), "--eval"]) == 0
    assert (tmp_path / "res" / "r" / "test_latest_3" / "index.html").exists()
    # Results inside --dataroot would be read back as data by a later run.
    err = error_of(capsys, lambda: test_script.main([*args, "--results_dir", os.path.join(data, "test", "res")]))
    assert "is inside --dataroot" in err and not os.path.exists(os.path.join(data, "test", "res"))


def test_export_refuses_checkpoints_other_runs_and_other_extensions(tmp_path, capsys):
    own = write_run(tmp_path, "a")
    other = write_run(tmp_path, "b")
    other_bytes = open(other, "rb").read()
    os.symlink(other, tmp_path / "link.safetensors")
    (tmp_path / "old.safetensors").write_bytes(b"an earlier export")
    for out, message in (
        (other, "a checkpoint's name"),  # another run's latest.pth
        (tmp_path / "a" / "7_net_G.pth", "a checkpoint's name"),  # not there yet: still a checkpoint's name
        (tmp_path / "b" / "a.safetensors", "another run's folder"),
        (tmp_path / "a.pt", "--format safetensors writes a .safetensors file"),
        (tmp_path / "a.onnx", "give a name ending in .safetensors"),
        (tmp_path / "link.safetensors", "exists; export.py never replaces a file"),  # a link to a checkpoint
        (tmp_path / "old.safetensors", "exists; export.py never replaces a file"),
    ):
        args = ["--checkpoint", own, "--format", "safetensors", "--out", str(out)]
        assert message in error_of(capsys, lambda args=args: xport.main(args)), out
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / ".lock").write_text("123\n")  # a run folder that has no checkpoint yet
    args = ["--checkpoint", own, "--format", "torchscript", "--out", str(tmp_path / "c" / "x.pt")]
    assert "another run's folder" in error_of(capsys, lambda: xport.main(args))
    assert (
        open(other, "rb").read() == other_bytes and (tmp_path / "old.safetensors").read_bytes() == b"an earlier export"
    )
    assert not os.path.exists(tmp_path / "a" / "7_net_G.pth") and not os.path.exists(tmp_path / "a.pt")
    # Beside its own checkpoint (the default) and anywhere outside other runs: written.
    assert xport.main(["--checkpoint", own, "--format", "safetensors"]) == 0
    assert os.path.isfile(tmp_path / "a" / "latest.safetensors")
    assert xport.main(["--checkpoint", own, "--format", "safetensors", "--out", str(tmp_path / "new.safetensors")]) == 0


def test_dataset_scripts_never_write_over_a_file(tmp_path, caplog):
    A, B, AB = tmp_path / "A", tmp_path / "B", tmp_path / "AB"
    a = image(A / "train" / "x.png", seed=1, size=(6, 6))
    image(B / "train" / "x.png", seed=2, size=(6, 6))
    before = open(a, "rb").read()
    (AB / "train").mkdir(parents=True)
    os.symlink(a, AB / "train" / "x.png")  # the output's path is a link to an input
    argv = ["--fold_A", str(A), "--fold_B", str(B), "--no_multiprocessing"]
    assert combine_A_and_B.main([*argv, "--fold_AB", str(AB)]) == 2
    assert "exist(s) already" in caplog.text and open(a, "rb").read() == before
    assert combine_A_and_B.main([*argv, "--fold_AB", str(A)]) == 2  # the input folder itself
    assert "is an input folder" in caplog.text and open(a, "rb").read() == before
    # An output folder inside fold_A is not read as one of its sub-folders: same pairs on a second run.
    assert combine_A_and_B.main([*argv, "--fold_AB", str(A / "AB")]) == 0
    assert combine_A_and_B.main([*argv, "--fold_AB", str(A / "AB2")]) == 0
    assert sorted(os.listdir(A / "AB2")) == ["train"]
    # make_demo_dataset.py: a --out whose train/ or test/ holds anything is refused before any work.
    (tmp_path / "demo" / "train").mkdir(parents=True)
    (tmp_path / "demo" / "train" / "mine.png").write_bytes(b"mine")
    assert make_demo_dataset.main(["--out", str(tmp_path / "demo")]) == 2
    assert "is not empty" in caplog.text and (tmp_path / "demo" / "train" / "mine.png").read_bytes() == b"mine"
    assert not (tmp_path / "demo" / "test").exists()


# ---- 3. links ------------------------------------------------------------------------------------------------
def test_the_run_lock_never_follows_a_link(tmp_path, capsys):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    run = tmp_path / "ck" / "r"
    run.mkdir(parents=True)
    os.symlink(victim, run / ".lock")
    with pytest.raises(run_folder.RunFolderBusy, match="symbolic link"):
        run_folder.RunLock(str(run))
    os.remove(run / ".lock")
    os.link(victim, run / ".lock")  # a hard link: truncating it would truncate the other name too
    with pytest.raises(run_folder.RunFolderBusy, match="other links"):
        run_folder.RunLock(str(run))
    assert victim.read_text() == "keep me"
    os.remove(run / ".lock")
    os.symlink(victim, run / ".lock")
    data = make_dataroot(tmp_path / "data", train=2)
    with pytest.raises(SystemExit) as e:  # train.py: one line, exit 2, nothing written through the link
        train.main(train_args(data, tmp_path / "ck", "r"))
    assert e.value.code == 2 and "symbolic link" in capsys.readouterr().err and victim.read_text() == "keep me"


def test_atomic_writes_and_appends_never_go_through_a_link(tmp_path):
    target = tmp_path / "input.png"
    target.write_bytes(b"input")
    os.symlink(target, tmp_path / "out.png")
    atomic_write(str(tmp_path / "out.png"), lambda f: f.write(b"result"))  # the link is replaced, not followed
    assert target.read_bytes() == b"input" and not os.path.islink(tmp_path / "out.png")
    assert (tmp_path / "out.png").read_bytes() == b"result"
    os.symlink(target, tmp_path / "new.png")
    with pytest.raises(WriteFailed, match="it exists") as e:
        atomic_write(str(tmp_path / "new.png"), lambda f: f.write(b"result"), new=True)
    assert e.value.errno == errno.EEXIST and os.path.islink(tmp_path / "new.png") and not temp_files(tmp_path)
    os.symlink(target, tmp_path / "loss_log.txt")
    with pytest.raises(WriteFailed, match="symbolic link"):
        util.append_text(str(tmp_path / "loss_log.txt"), "a line\n")
    assert target.read_bytes() == b"input"
    util.append_text(str(tmp_path / "log.txt"), "one\n")
    util.append_text(str(tmp_path / "log.txt"), "two\n")
    assert (tmp_path / "log.txt").read_text() == "one\ntwo\n"


# ---- 4. a full disk: one line, a non-zero exit, no traceback, no temp file -------------------------------------
def test_a_failed_write_is_one_write_failed_and_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    disk = FullDisk(monkeypatch, tmp_path)
    disk.on = True
    for data in (b"x" * 100, b"x" * 100_000):  # in the buffer (fails at the flush), and past it
        with pytest.raises(WriteFailed) as e:
            atomic_write(str(path), lambda f, data=data: f.write(data))
        assert str(e.value) == f"cannot write {path}: {ENOSPC}" and e.value.errno == errno.ENOSPC
        assert path.read_bytes() == b"old" and not temp_files(tmp_path)
    img = Image.new("RGB", (64, 64))
    with pytest.raises(WriteFailed, match=ENOSPC):  # Pillow's encoder writes through the file object too
        util.save_image(np.zeros((64, 64, 3), np.uint8), str(tmp_path / "i.png"), 1.0)
    with pytest.raises(WriteFailed, match=ENOSPC):
        atomic_write(str(tmp_path / "i.tif"), lambda f: img.save(f, format="TIFF"))
    with pytest.raises(WriteFailed, match=ENOSPC):
        util.append_text(str(tmp_path / "log.txt"), "a line\n")
    assert not temp_files(tmp_path)


def test_a_write_the_kernel_refuses_is_one_write_failed(tmp_path):
    # A real failed write, not a patched one: the file size limit makes write(2) fail (EFBIG) at the flush and
    # again when the buffered file is closed; the first error must be the one reported.
    code = (
        "import resource, signal, sys; from util.util import WriteFailed, atomic_write\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
        "try:\n    atomic_write(sys.argv[1], lambda f: f.write(b'x' * 5000))\n"
        "except WriteFailed as e:\n    print('WriteFailed:', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.bin")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.strip() == f"WriteFailed: cannot write {tmp_path / 'f.bin'}: {os.strerror(errno.EFBIG)}"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("where", ["prepare_results", "translate_all", "write_metrics", "write_test_page"])
def test_full_disk_in_test_py_is_one_line(trained, tmp_path, monkeypatch, capsys, caplog, where):
    import test as test_script

    args, _ = trained
    disk = FullDisk(monkeypatch, tmp_path)
    disk.arm(test_script, where)  # test_opt.*, the images, metrics.json, the page (index.html, page.css)
    res = tmp_path / "res"
    if where == "prepare_results":
        err = error_of(capsys, lambda: test_script.main([*args, "--results_dir", str(res)]))
        assert err.endswith(f"test_opt.txt: {ENOSPC}\n")
    else:
        assert test_script.main([*args, "--results_dir", str(res)]) == 1
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and errors[0].startswith("cannot write ") and errors[0].endswith(ENOSPC), errors
    assert not temp_files(res)


@pytest.mark.parametrize("what", ["checkpoint", "page"])
def test_full_disk_in_train_py_is_one_line(tmp_path, monkeypatch, caplog, what):
    data = make_dataroot(tmp_path / "data", train=2)
    args = train_args(data, tmp_path / "ck", "r")
    args += ["--stop_after_iters", "2", "--save_latest_freq", "1"]
    args += ["--no_html"] if what == "checkpoint" else ["--display_freq", "1", "--update_html_freq", "1"]
    FullDisk(monkeypatch, tmp_path / "ck").arm(TrainLoop, "run")
    assert train.main(args) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("cannot write ") and ENOSPC in errors[0], errors
    assert not temp_files(tmp_path / "ck")


def test_full_disk_in_train_py_s_text_logs_is_one_line(tmp_path, monkeypatch, caplog):
    data = make_dataroot(tmp_path / "data", train=2)
    args = train_args(data, tmp_path / "ck", "r", "--no_html")
    disk = FullDisk(monkeypatch, tmp_path / "ck")
    disk.arm(TrainLoop, "run")  # loss_log.txt and losses.jsonl: the first writes of the loop (--print_freq 1)
    assert train.main([*args, "--stop_after_iters", "2", "--print_freq", "1", "--save_latest_freq", "100"]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and ("loss_log.txt" in errors[0] or "losses.jsonl" in errors[0]), errors


def test_full_disk_in_translate_py_and_export_py_is_one_line(generator, tmp_path, monkeypatch, caplog):
    for k in range(3):
        image(tmp_path / "in" / f"{k}.png", seed=k)
    disk = FullDisk(monkeypatch, tmp_path / "out")
    disk.on = True
    assert run_translate(generator, str(tmp_path / "in"), "--out", str(tmp_path / "out")) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [
        f"cannot write {tmp_path / 'out' / '0.png'}: {ENOSPC}; stopped: 0 of 3 images written to {tmp_path / 'out'}"
    ]
    assert os.listdir(tmp_path / "out") == []
    caplog.clear()
    out = tmp_path / "out" / "g.safetensors"
    assert xport.main(["--checkpoint", generator, "--format", "safetensors", "--out", str(out)]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"cannot write {out}: {ENOSPC}"] and os.listdir(tmp_path / "out") == []


def test_full_disk_in_the_dataset_scripts_is_one_line(tmp_path, monkeypatch, caplog):
    for k in range(2):
        image(tmp_path / "A" / f"{k}.png", seed=k, size=(6, 6))
        image(tmp_path / "B" / f"{k}.png", seed=10 + k, size=(6, 6))
    FullDisk(monkeypatch, tmp_path / "AB").on = True
    argv = ["--fold_A", str(tmp_path / "A"), "--fold_B", str(tmp_path / "B"), "--fold_AB", str(tmp_path / "AB")]
    assert combine_A_and_B.main([*argv, "--no_multiprocessing"]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"cannot write {tmp_path / 'AB' / '0.png'}: {ENOSPC}"] and os.listdir(tmp_path / "AB") == []
    caplog.clear()

    def build(root, **_):
        raise OSError(errno.ENOSPC, ENOSPC, os.path.join(root, "train", "astronaut_0.png"))

    monkeypatch.setattr(make_demo_dataset, "build_demo_dataset", build)
    assert make_demo_dataset.main(["--out", str(tmp_path / "demo")]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"cannot write the demo set: {tmp_path / 'demo' / 'train' / 'astronaut_0.png'}: {ENOSPC}"]


# ---- 10. names that are not UTF-8 ----------------------------------------------------------------------------
def test_test_py_writes_the_page_for_names_that_are_not_utf8(trained, tmp_path):
    args, _ = trained
    data = tmp_path / "latin1"
    make_pairs(str(data / "test"), 1)
    name = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: no UTF-8 character, a surrogate escape in Python
    os.replace(data / "test" / "img000.png", os.path.join(data, "test", name + ".png"))
    r = run_script("test.py", *args, "--dataroot", str(data), "--results_dir", str(tmp_path / "res"))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    web = tmp_path / "res" / "r" / "test_latest"
    page = open(web / "index.html", encoding="utf-8").read()
    assert "caf\\xe9" in page  # the name shown with its byte escaped
    assert 'src="images/caf%E9_fake_B.png"' in page  # the URL holds the file's bytes
    assert os.path.isfile(os.path.join(web, "images", name + "_fake_B.png"))
    assert "caf" in json.dumps(json.load(open(web / "metrics.json"))["per_image"])


# ---- 11. translate.py --out that cannot be the results folder ------------------------------------------------
def test_translate_out_that_cannot_be_a_folder_is_one_line(generator, tmp_path, capsys):
    a = image(tmp_path / "a.png")
    (tmp_path / "file").write_text("")
    for out, message in (
        (tmp_path / "file", "exists and is not a folder"),
        (tmp_path / "file" / "sub", "cannot create or write that folder: Not a directory"),
        ("/proc/pix2pix-results", "cannot create or write that folder"),
        (tmp_path / "result.png", "must be a folder"),
    ):
        assert message in error_of(capsys, lambda out=out: run_translate(generator, a, "--out", str(out))), out
    assert not os.path.exists(tmp_path / "result.png")


# ---- 15. long names, signals ---------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [251, 255])
def test_names_of_up_to_255_bytes_are_written(tmp_path, length):
    name = "é" * ((length - 4) // 2) + "x" * ((length - 4) % 2) + ".png"  # two bytes a character
    assert len(os.fsencode(name)) == length
    paths = []
    util.before_replace_hook = lambda path: paths.extend(glob.glob(str(tmp_path / "*.tmp")))
    try:
        atomic_write(str(tmp_path / name), lambda f: f.write(b"data"))
    finally:
        util.before_replace_hook = None
    assert os.listdir(tmp_path) == [name] and len(paths) == 1
    assert len(os.fsencode(os.path.basename(paths[0]))) <= 120  # short whatever the name


def test_stale_temp_files_are_recognised_and_only_they(tmp_path):
    seen = []
    util.before_replace_hook = lambda path: seen.extend(os.path.basename(p) for p in glob.glob(str(tmp_path / "*.tmp")))
    try:
        for name in ("latest.pth", "train_opt.txt", "train_opt.json", "losses.jsonl"):
            atomic_write(str(tmp_path / name), lambda f: f.write(b"x"))
    finally:
        util.before_replace_hook = None
    assert len(seen) == 4
    for name in seen:  # what an interrupted write leaves
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "notes.txt.backup.tmp").write_text("a user's file, not a temp file of a write")
    run_folder.remove_stale_temp_files(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["latest.pth", "train_opt.txt", "train_opt.json", "losses.jsonl", "notes.txt.backup.tmp"]
    )


def test_translate_py_and_test_py_write_names_of_255_bytes(generator, trained, tmp_path):
    long = "a" * 251
    image(tmp_path / "in" / f"{long}.png")
    image(tmp_path / "in" / f"{long}.jpg", seed=1)  # the same stem: the second result is renamed, and cut
    assert run_translate(generator, str(tmp_path / "in"), "--out", str(tmp_path / "out")) == 0
    assert sorted(os.listdir(tmp_path / "out")) == sorted([f"{long}.jpg", f"{'a' * 249}_2.png"])  # in sorted order
    import test as test_script

    args, _ = trained
    data = tmp_path / "data"
    make_pairs(str(data / "test"), 1)
    os.replace(data / "test" / "img000.png", data / "test" / f"{long}.png")
    assert test_script.main([*args, "--dataroot", str(data), "--results_dir", str(tmp_path / "res")]) == 0
    files = os.listdir(tmp_path / "res" / "r" / "test_latest" / "images")
    assert sorted(files) == sorted(f"{'a' * 244}_{label}.png" for label in ("real_A", "fake_B", "real_B"))


RUNNER = (
    "import sys, time, runpy; from util import util\n"
    "util.before_replace_hook = lambda path: time.sleep(0.3)\n"
    "sys.argv = ['translate.py', *sys.argv[1:]]; runpy.run_path('translate.py', run_name='__main__')\n"
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_translate_py_leaves_no_temp_file(generator, tmp_path, signum):
    for k in range(12):
        image(tmp_path / "in" / f"{k:02d}.png", seed=k)
    out = tmp_path / "out"
    args = ["--checkpoint", generator, str(tmp_path / "in"), "--out", str(out), "--batch_size", "2", "--eval"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    end = time.time() + 120
    while time.time() < end and not temp_files(out):  # a write between its temp file and the rename
        time.sleep(0.02)
    assert temp_files(out), "no write was caught in progress"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    written = os.listdir(out)
    assert not temp_files(out) and 0 < len(written) < 12
    for name in written:
        assert Image.open(out / name).size == (40, 30)


def test_no_folder_below_the_named_ones_is_filled_through_a_link(tiny_data, tmp_path, capsys):
    """--checkpoints_dir and --results_dir may be links (to a bigger disk); below them, a link somebody else made
    is never followed: test.py takes the next free result folder, train.py refuses a linked run folder."""
    import test as test_script

    ck, res, elsewhere = tmp_path / "ck", tmp_path / "res", tmp_path / "elsewhere"
    short = ["--n_epochs", "1", "--n_epochs_decay", "0", "--no_html"]
    assert train.main(train_args(tiny_data, ck, "r", *short)) == 0
    elsewhere.mkdir()
    (res / "r").mkdir(parents=True)
    os.symlink(elsewhere, res / "r" / "test_latest")  # an empty folder elsewhere, linked where results would go
    args = ["--checkpoints_dir", str(ck), "--name", "r", "--results_dir", str(res), "--num_threads", "0"]
    assert test_script.main(args) == 0
    assert os.listdir(elsewhere) == [] and (res / "r" / "test_latest_2" / "index.html").is_file()
    linked_res = tmp_path / "res_link"  # the named folder itself a link: used as it is
    os.symlink(res, linked_res)
    assert test_script.main([*args[:-4], "--results_dir", str(linked_res), "--num_threads", "0"]) == 0
    assert (res / "r" / "test_latest_3" / "index.html").is_file()
    os.symlink(elsewhere, ck / "linked")  # a run folder that is a link: refused, nothing created in its target
    with pytest.raises(SystemExit) as e:
        train.main(train_args(tiny_data, ck, "linked", *short))
    assert e.value.code == 2 and "linked: it is a symbolic link (never written through)" in capsys.readouterr().err
    assert os.listdir(elsewhere) == []
