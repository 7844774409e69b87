"""Start-up feedback about the visdom display, and --logger wandb (the reference's --use_wandb) read back from
wandb's offline run files."""

from __future__ import annotations

import glob
import json
import logging
import os
import socket
import struct
import sys
import types

import pytest
import torch
from test_visdom_live import logged_losses, visdom_server  # noqa: F401  (a fixture)

from browser_check import free_port
from conftest import TINY_DISPLAYED, run_script, train_args, visualizer
from engine.training import visualizer_for
from options.options import parse
from reporting import run_log, visdom_sink
from reporting.visdom_sink import VisdomSink
from reporting.visualizer import NullVisualizer, Visualizer

LOSSES = ["G_GAN", "G_L1", "D_real", "D_fake"]
VISUALS = ("real_A", "fake_B", "real_B")


@pytest.fixture(autouse=True)
def no_proxy_for_localhost(monkeypatch):
    """visdom's client (requests) would send its calls for 127.0.0.1 to an http_proxy."""
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, ",".join(filter(None, [os.environ.get(var, ""), "127.0.0.1", "localhost"])))


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def use_display(vis, times: int = 3) -> None:
    """What the training loop does with the display: losses and images, several times."""
    visuals = {k: torch.zeros(1, 3, 8, 8) for k in VISUALS}
    for i in range(times):
        vis.plot_current_losses(i / 10, {"G_GAN": 1.0, "G_L1": 2.0})
        vis.display_current_results(visuals, 1, i, save_result=False)
        vis.plot_validation(1, {"psnr": 10.0, "n": 2})


# ---- visdom said up front -------------------------------------------------------------------------------------
def test_visdom_missing_is_one_warning_at_start(tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "visdom", None)  # import visdom raises ImportError
    caplog.set_level(logging.WARNING)
    vis = visualizer(str(tmp_path), display_id=1, retry_seconds=0)
    assert warnings_of(caplog) == []  # creating it probes nothing; check_display does, at start-up
    assert vis.check_display() is False
    (msg,) = warnings_of(caplog)
    assert "visdom is not installed" in msg and "bash scripts/install_visdom.sh" in msg and "--display_id 0" in msg
    use_display(vis)
    assert len(warnings_of(caplog)) == 1  # nothing more for the same cause


class ProbeSpy:
    """A stand-in visdom module whose client must not be made (it waits and retries on its own), and the probe's
    sockets, recording the timeout of every call that can block: the probe must be bounded by construction,
    not by how fast this machine happens to be."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[str, float | None]] = []
        self.clients = 0
        spy = self

        class Visdom:
            def __init__(self, **kwargs):
                spy.clients += 1

            def check_connection(self, timeout_seconds=1):
                return True

        class Sock:
            def __init__(self, s):
                self.s = s

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.s.close()

            def settimeout(self, t):
                self.s.settimeout(t)

            def sendall(self, data):
                spy.calls.append(("send", self.s.gettimeout()))
                self.s.sendall(data)

            def recv(self, n):
                spy.calls.append(("recv", self.s.gettimeout()))
                if self.s.gettimeout() is None:
                    pytest.fail("the probe waits for a reply without a timeout: for ever on a mute port")
                return self.s.recv(n)

        connect = socket.create_connection

        def create_connection(address, timeout=None):
            spy.calls.append(("connect", timeout))
            if timeout is None:
                pytest.fail("the probe connects without a timeout")
            return Sock(connect(address, timeout=timeout))

        monkeypatch.setitem(sys.modules, "visdom", types.SimpleNamespace(Visdom=Visdom))
        monkeypatch.setattr(visdom_sink.socket, "create_connection", create_connection)


def test_no_visdom_server_is_one_fast_warning_at_start(tmp_path, caplog, monkeypatch):
    """Fast because nothing in it waits unbounded: only a plain connect with a PROBE_SECONDS timeout (refused at
    once), and visdom's own client, which retries, is never made."""
    spy = ProbeSpy(monkeypatch)
    port = free_port()  # nobody listens there
    caplog.set_level(logging.WARNING)
    vis = visualizer(str(tmp_path), display_id=1, display_server="http://127.0.0.1", display_port=port)
    vis.retry_seconds = 0  # retry at every call: still no second warning
    assert vis.check_display() is False
    assert spy.calls == [("connect", visdom_sink.PROBE_SECONDS)] and spy.clients == 0
    (msg,) = warnings_of(caplog)
    assert f"no visdom server answers at http://127.0.0.1:{port}" in msg
    assert f'python -c "from visdom.server.run_server import main; main()" -port {port}' in msg
    assert "--display_id 0" in msg
    use_display(vis)
    assert len(warnings_of(caplog)) == 1
    assert set(spy.calls) == {("connect", visdom_sink.PROBE_SECONDS)} and spy.clients == 0


def test_a_port_that_never_replies_is_probed_within_a_second(tmp_path, caplog, monkeypatch):
    """A listener that accepts but never answers: visdom's own client would wait for ever. The probe's connect
    and its wait for a reply share one deadline of PROBE_SECONDS: with a clock that has moved on by 0.3 s
    between the two, the wait gets what is left."""
    spy = ProbeSpy(monkeypatch)
    monkeypatch.setattr(visdom_sink, "PROBE_SECONDS", 0.5)  # the real wait below: 0.5 - 0.3 s
    ticks = iter([100.0, 100.0, 100.3])  # the retry check, the deadline, the wait
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        caplog.set_level(logging.WARNING)
        vis = visualizer(
            str(tmp_path), display_id=1, display_server="http://127.0.0.1", display_port=mute.getsockname()[1]
        )
        vis.visdom.clock = lambda: next(ticks, 100.3)
        assert vis.check_display() is False
    assert [name for name, _ in spy.calls] == ["connect", "send", "recv"] and spy.clients == 0
    assert spy.calls[0][1] == 0.5
    assert spy.calls[2][1] == pytest.approx(0.2)
    assert len(warnings_of(caplog)) == 1 and "no visdom server answers" in warnings_of(caplog)[0]


def test_display_off_probes_nothing(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(VisdomSink, "_server_answers", lambda self: pytest.fail("probed with --display_id 0"))
    monkeypatch.setitem(sys.modules, "visdom", None)  # importing it would warn
    vis = visualizer(str(tmp_path), display_id=0)
    assert vis.visdom is None
    assert vis.check_display() is False
    use_display(vis)
    assert warnings_of(caplog) == []


@pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")  # visdom's client
def test_live_visdom_server_no_warning(visdom_server, tmp_path, caplog):  # noqa: F811
    caplog.set_level(logging.WARNING)
    vis = visualizer(str(tmp_path), display_id=1, display_server="http://127.0.0.1", display_port=visdom_server)
    assert vis.check_display() is True
    use_display(vis, times=1)
    assert warnings_of(caplog) == []


def test_train_says_it_at_start_up(tiny_data, tmp_path):
    """The warning comes at start-up, before any loss line (not at the first --display_freq step)."""
    r = run_script(
        "train.py",
        *("--dataroot", tiny_data, "--name", "run", "--checkpoints_dir", str(tmp_path / "ck"), *TINY_DISPLAYED),
        *("--n_epochs", "1", "--n_epochs_decay", "0", "--print_freq", "1", "--display_freq", "1"),
        *("--display_server", "http://127.0.0.1", "--display_port", str(free_port())),
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    lines = out.splitlines()
    warned = [i for i, line in enumerate(lines) if "WARNING" in line and "visdom" in line]
    assert len(warned) == 1, out
    assert warned[0] < min(i for i, line in enumerate(lines) if "(epoch: 1, iters: 1" in line), out


# ---- --logger wandb -------------------------------------------------------------------------------------------
def test_null_visualizer_has_every_call():
    """Ranks other than 0 get a NullVisualizer under torchrun: only rank 0 talks to visdom, TensorBoard or W&B."""
    public = {k for k in vars(Visualizer) if not k.startswith("_") and callable(getattr(Visualizer, k))} - {"for_run"}
    assert public <= set(vars(NullVisualizer)), public - set(vars(NullVisualizer))


def parse_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        parse(True, argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_wandb_flags(capsys):
    pytest.importorskip("wandb", reason="wandb not installed (pip install wandb)")
    display = parse(True, ["--use_wandb"]).display  # the reference's flag, resolved once into --logger
    assert (display.logger, display.wandb_project_name) == ("wandb", "CycleGAN-and-pix2pix")
    facades = parse(True, ["--logger", "wandb", "--wandb_project_name", "facades"])
    assert facades.display.wandb_project_name == "facades"
    assert parse(True, []).display.logger == "none"
    err = parse_error(capsys, ["--use_wandb", "--logger", "tensorboard"])
    assert "--use_wandb means --logger wandb; it cannot be combined with --logger tensorboard" in err


@pytest.mark.parametrize("flags", [["--use_wandb"], ["--logger", "wandb"]])
def test_wandb_missing_exits_2_naming_the_package(capsys, monkeypatch, flags):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    err = parse_error(capsys, [*flags, "--wandb_project_name", "X"])
    assert f"{flags[0]}" in err and "the wandb package is not installed (pip install wandb)" in err


def wandb_records(path: str):
    """The records of a run-*.wandb file (wandb's LevelDB-style log: 7-byte file header, then 32 KiB blocks of
    chunks with a 7-byte header each: crc32, length, type full/first/middle/last), as wandb.proto Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    block = 32768
    with open(path, "rb") as f:
        data = f.read()
    assert data[:7] == struct.pack("<4sHB", b":W&B", 0xBEE1, 0), f"not a version-0 W&B log: {data[:7]!r}"
    pos, parts = 7, []
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:  # a block's tail too short for a header is padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zero padding up to the block's end
            pos += room
            continue
        parts.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # full, or the last of first/middle/last
            record = pb.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def read_offline_run(path: str) -> dict:
    """run id, project, name, config and history ({step: {key: value}}) of one offline run file."""
    run: dict = {"config": {}, "history": {}}
    for r in wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run.update(id=r.run.run_id, project=r.run.project, name=r.run.display_name)
            run["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            run["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "history":
            row = run["history"].setdefault(r.history.step.num, {})
            for i in r.history.item:
                row["/".join(i.nested_key) if not i.key else i.key] = json.loads(i.value_json)
    return run


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """wandb in offline mode, every file of it under tmp_path/wandb_home; yields WANDB_DIR."""
    pytest.importorskip("wandb", reason="wandb not installed (pip install wandb)")
    home = tmp_path / "wandb_home"
    for var in ("WANDB_PROJECT", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_NAME", "WANDB_ENTITY", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var, sub in (("WANDB_DIR", "dir"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache")):
        (home / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("WANDB_DATA_DIR", str(home / "cache"))
    return home / "dir"


def test_wandb_reference_command_logs_and_resumes(wandb_offline, tiny_data, tmp_path):
    ck = str(tmp_path / "ck")
    args = [
        *train_args(tiny_data, ck, "run"),
        *("--n_epochs_decay", "0", "--print_freq", "2", "--display_freq", "2", "--val_phase", "test"),
        *("--use_wandb", "--wandb_project_name", "X"),  # as a command for the reference would have it
    ]
    r = run_script("train.py", *args, "--n_epochs", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = os.path.join(ck, "run")
    with open(os.path.join(run_dir, "wandb_id.txt")) as f:
        run_id = f.read().strip()
    (path,) = glob.glob(str(wandb_offline / "wandb" / "offline-run-*" / "run-*.wandb"))
    run = read_offline_run(path)
    assert (run["id"], run["project"], run["name"]) == (run_id, "X", "run")

    # the losses by name at the global iteration steps, as loss_log.txt has them
    logged = logged_losses(os.path.join(run_dir, "loss_log.txt"))
    steps = sorted(s for s, row in run["history"].items() if "G_GAN" in row)
    assert steps == [2, 4]  # 4 images, batch 1, --print_freq 2
    records = run_log.read(os.path.join(run_dir, run_log.LOSSES_FILE), run_log.LOSS)
    assert [r["total_iters"] for r in records] == steps
    for name in LOSSES:
        assert [f"{run['history'][s][name]:.3f}" for s in steps] == logged[name], name
        assert [run["history"][s][name] for s in steps] == pytest.approx([r["losses"][name] for r in records]), name
    # the images at display time, validation scores at the epoch's end
    for label in VISUALS:
        assert run["history"][2][f"{label}/_type"] == "image-file", sorted(run["history"][2])
    assert any("val/psnr" in row and row["epoch"] == 1 for row in run["history"].values()), run["history"]
    # the run's options as its config
    cfg = run["config"]
    assert (cfg["ngf"], cfg["crop_size"], cfg["netG"], cfg["seed"]) == (4, 32, "unet_256", 3)
    assert (cfg["logger"], cfg["use_wandb"], cfg["wandb_project_name"]) == ("wandb", True, "X")

    # --continue_train: the same W&B run, its steps going on
    r = run_script("train.py", *args, "--n_epochs", "2", "--continue_train")
    assert r.returncode == 0, r.stdout + r.stderr
    with open(os.path.join(run_dir, "wandb_id.txt")) as f:
        assert f.read().strip() == run_id
    runs = [read_offline_run(p) for p in glob.glob(str(wandb_offline / "wandb" / "offline-run-*" / "run-*.wandb"))]
    assert len(runs) == 2 and {x["id"] for x in runs} == {run_id}
    (second,) = [x for x in runs if 6 in x["history"]]
    assert sorted(s for s, row in second["history"].items() if "G_GAN" in row) == [6, 8]


def test_new_run_gets_a_new_wandb_id(wandb_offline, tmp_path):
    """Without --continue_train the run folder's wandb_id.txt is replaced: a new W&B run."""
    ids = []
    for _ in range(2):
        vis = visualizer_for(parse(True, ["--display_id", "0", "--use_wandb", "--name", "run"]), str(tmp_path))
        try:
            ids.append(vis.wandb.id)
            vis.print_current_losses(1, 2, 2, {"G_GAN": 1.0}, 0.1, 0.0002)
        finally:
            vis.close()
        with open(tmp_path / "wandb_id.txt") as f:
            assert f.read().strip() == ids[-1]
    assert ids[0] != ids[1]
