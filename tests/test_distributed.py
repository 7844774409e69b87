"""torchrun with gloo on the CPU: 2 processes equal 1 process at the same global batch; rank 0 writes; the
processes leave the group together after a good run."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import pytest
import torch
from torch import nn

import test as test_script
import train
from browser_check import free_port
from conftest import ROOT, TINY, make_pairs
from engine import checkpoint
from models import build_generator
from models.config import GeneratorConfig

# The tiny run, instance norm and no dropout: 2 processes then compute what 1 does (no batch statistics, no masks).
ARGS = [*TINY, "--norm", "instance", "--no_dropout", "--no_html"]
ARGS += ["--n_epochs", "1", "--n_epochs_decay", "1", "--print_freq", "2"]


def torchrun(
    nproc: int, args: list[str], hooks: list[str] | None = None, then: Sequence[list[str]] = (), timeout: int = 240
):
    """train.py under torchrun; with hooks (tests/hooked.py's options, e.g. --die_at 1:3) or further runs (then: the
    train.py arguments of each, run in turn in the same processes and process group) through hooked.py."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    script = [os.path.join(ROOT, "train.py")]
    if hooks or then:
        # hooks first: torchrun's parser drops a '--' right after the script ('--save_pause 0' is no hook)
        script = [os.path.join(ROOT, "tests", "hooked.py"), *(hooks or ["--save_pause", "0"]), "--"]
        args = [*args, *(a for run in then for a in ("--", *run))]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        *script,
        *args,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def biases_before_instance_norm(opts: dict) -> set[str]:
    """Conv biases followed by an instance norm: it subtracts the mean, so their true gradient is 0 and
    Adam turns the float noise left in it into full-size steps. They cannot be compared across runs."""
    net = build_generator(GeneratorConfig(**opts["generator"]), init=None, grad_checkpoint=False)
    names = set()
    for prefix, mod in net.named_modules():
        if isinstance(mod, nn.Sequential):
            layers = list(mod.named_children())
            for (name, a), (_, b) in zip(layers, layers[1:], strict=False):
                if isinstance(a, nn.Conv2d | nn.ConvTranspose2d) and isinstance(b, nn.InstanceNorm2d):
                    names.add(f"{prefix}.{name}.bias")
    return names


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp") / "data"
    make_pairs(str(root / "train"), 8, seed=1)
    make_pairs(str(root / "test"), 2, seed=2)
    return str(root)


# The data loader's path, and the device's (crop-only: bit-exact there): flags of the run of 2 processes, of both.
SAME_BATCH_CASES = {"loader": ([], []), "device_preprocess": (["--device_preprocess"], ["--preprocess", "crop"])}


def test_two_processes_equal_one_at_the_same_global_batch(data, tmp_path):
    """Each case's run of 2 processes against a run of 1 at the same global batch; the runs of 2 processes share one
    torchrun launch."""
    common = {
        c: ["--dataroot", data, "--checkpoints_dir", str(tmp_path), *ARGS, *both]
        for c, (_, both) in SAME_BATCH_CASES.items()
    }
    two = [
        [*common[c], "--name", f"{c}_two", "--batch_size", "1", *two_only]
        for c, (two_only, _) in SAME_BATCH_CASES.items()
    ]
    r = torchrun(2, two[0], then=two[1:])
    assert r.returncode == 0, r.stderr[-3000:]
    # Only rank 0 writes: nothing else in stdout (one line per run), one header and one line per print in loss_log.txt.
    assert r.stdout.count("training done") == len(SAME_BATCH_CASES)
    for case in SAME_BATCH_CASES:
        assert train.main([*common[case], "--name", f"{case}_one", "--batch_size", "2"]) == 0
        a = checkpoint.load(str(tmp_path / f"{case}_one" / "latest.pth"))
        b = checkpoint.load(str(tmp_path / f"{case}_two" / "latest.pth"))
        assert a["total_iters"] == b["total_iters"] == 8
        assert b["options"]["data"]["device_preprocess"] == (case == "device_preprocess")
        skip = biases_before_instance_norm(a["options"])
        assert skip  # the exclusion is real, and small
        for k, v in a["model"]["netG"].items():
            if k not in skip:
                assert torch.allclose(v, b["model"]["netG"][k], atol=1e-5), (case, k)
        for k, v in a["model"]["netD"].items():
            if not k.endswith("bias") or k == "model.0.bias" or k == "model.11.bias":  # D's convs before norm
                assert torch.allclose(v, b["model"]["netD"][k], atol=1e-5), (case, k)
        log = open(tmp_path / f"{case}_two" / "loss_log.txt").read()
        assert log.count("Training Loss") == 1 and log.count("G_GAN") == 4, case
        # The checkpoint has no DDP 'module.' prefixes: a single-process test.py loads it.
        assert not any(k.startswith("module.") for k in b["model"]["netG"])
        res = ["--results_dir", str(tmp_path / "res"), "--num_threads", "0"]
        assert test_script.main(["--checkpoints_dir", str(tmp_path), "--name", f"{case}_two", *res]) == 0


def exit_codes(report: str) -> dict[int, int]:
    """rank -> exit code in torchrun's failure report; a negative code is the signal that ended the process."""
    found = re.findall(r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s+exitcode\s*:\s*(-?\d+)", report)
    return {int(rank): int(code) for rank, code in found}


def test_a_dead_process_ends_the_job(data, tmp_path):
    # A hang would last the process group's 5-minute timeout: the subprocess timeout below turns it into a failure.
    r = torchrun(
        2,
        ["--dataroot", data, "--checkpoints_dir", str(tmp_path), *ARGS, "--name", "die"],
        ["--die_at", "1:3"],
        timeout=200,
    )
    assert r.returncode != 0
    codes = exit_codes(r.stderr)
    assert codes.get(1) == 3, r.stderr[-3000:]  # the hook's death, reported as such
    # Rank 0 ended because of it: its collective failed at once (the peer's connection closed), or torchrun's
    # SIGTERM stopped it. Not torchrun's SIGKILL after a SIGTERM left unanswered, nor a collective's timeout.
    assert codes.get(0) in (1, -signal.SIGTERM), r.stderr[-3000:]
    assert "timed out" not in r.stderr.lower()
    assert "training done" not in r.stdout and not (tmp_path / "die" / "latest.pth").exists()


def test_accumulation_equals_the_larger_batch(data, tmp_path):
    common = ["--dataroot", data, "--checkpoints_dir", str(tmp_path), *ARGS]
    assert train.main([*common, "--name", "acc", "--batch_size", "1", "--accum_steps", "2"]) == 0
    assert train.main([*common, "--name", "big", "--batch_size", "2"]) == 0
    a = checkpoint.load(str(tmp_path / "big" / "latest.pth"))
    b = checkpoint.load(str(tmp_path / "acc" / "latest.pth"))
    assert a["total_iters"] == b["total_iters"] == 8  # steps, not micro-batches
    skip = biases_before_instance_norm(a["options"])
    for k, v in a["model"]["netG"].items():
        if k not in skip:
            assert torch.allclose(v, b["model"]["netG"][k], atol=1e-5), k
    for k, v in a["model"]["netD"].items():
        if not k.endswith("bias") or k in ("model.0.bias", "model.11.bias"):
            assert torch.allclose(v, b["model"]["netD"][k], atol=1e-5), k


def test_accumulation_with_two_processes_and_resume(data, tmp_path):
    common = ["--dataroot", data, "--checkpoints_dir", str(tmp_path), *ARGS, "--accum_steps", "2", "--name", "ar"]
    r = torchrun(2, [*common, "--stop_after_iters", "1", "--compile"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "--compile is not used under torchrun" in r.stdout + r.stderr
    # What the run recorded is what it ran with: compile off.
    assert json.load(open(tmp_path / "ar" / "train_opt.json"))["options"]["compile"] is False
    assert checkpoint.load(str(tmp_path / "ar" / "latest.pth"))["options"]["speed"]["compile"] is False
    assert checkpoint.load(str(tmp_path / "ar" / "latest.pth"))["epoch_iter"] == 1
    r = torchrun(2, [*common, "--continue_train"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert checkpoint.load(str(tmp_path / "ar" / "latest.pth"))["total_iters"] == 4  # 8 images / (2 x 2) x 2


def test_ctrl_c_under_torchrun_saves_and_ends_the_job(data, tmp_path):
    args = ["--dataroot", data, "--checkpoints_dir", str(tmp_path), *ARGS, "--n_epochs", "500", "--name", "int"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        os.path.join(ROOT, "train.py"),
        *args,
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "int" / "loss_log.txt"
    end = time.time() + 120
    while time.time() < end and not (log.exists() and log.read_text().count("G_GAN") >= 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode != 0
    assert "interrupted: saved the full state" in out
    state = checkpoint.load(str(tmp_path / "int" / "latest.pth"))
    assert state["total_iters"] >= 4 and state["total_iters"] % 2 == 0  # stopped at a print_freq boundary


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


GENERATOR_RUNS = {
    "double_unet_256": ["--num_downs", "5"],
    "c2f_unet_512": ["--num_downs", "6", "--fix_global_epochs", "1"],
}


def test_double_unet_and_coarse_to_fine_under_torchrun(tmp_path):
    """2 processes equal 1 for the two generators with more than one output path: Double U-Net (its first output
    in the loss) and coarse-to-fine with its global generator fixed in epoch 1 (parameters without gradients). The
    two runs of 2 processes share one torchrun launch (tests/hooked.py runs them one after the other)."""
    root = tmp_path / "data"
    make_pairs(str(root / "train"), 4, w=64, h=64, seed=1)
    common = ["--dataroot", str(root), "--checkpoints_dir", str(tmp_path), *ARGS]
    runs = {
        netG: [*common, "--netG", netG, *flags, "--load_size", "64", "--crop_size", "64"]
        for netG, flags in GENERATOR_RUNS.items()
    }
    two = [[*args, "--name", f"{netG}_two", "--batch_size", "1"] for netG, args in runs.items()]
    r = torchrun(2, two[0], then=two[1:])
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("torchrun: 2 processes, batch 1 each") == 2  # each run, in the shared process group
    assert r.stdout.count("training done") == 2  # each run, from rank 0 only
    for netG, args in runs.items():
        assert train.main([*args, "--name", f"{netG}_one", "--batch_size", "2"]) == 0
        a = checkpoint.load(str(tmp_path / f"{netG}_one" / "latest.pth"))
        b = checkpoint.load(str(tmp_path / f"{netG}_two" / "latest.pth"))
        assert a["options"]["generator"]["netG"] == b["options"]["generator"]["netG"] == netG
        assert a["total_iters"] == b["total_iters"] == 4
        skip = biases_before_instance_norm(a["options"])
        # 5e-5: the reduction order differs, and Adam's first steps (lr 2e-4 each) scale float noise up; a gradient
        # missing or counted twice moves whole tensors by several steps' worth
        for k, v in a["model"]["netG"].items():
            if k not in skip:
                assert torch.allclose(v, b["model"]["netG"][k], atol=5e-5), (netG, k)
