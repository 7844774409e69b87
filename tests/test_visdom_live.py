"""Training against a real visdom server: the plotted losses equal losses.jsonl's and loss_log.txt's; without a
server, one warning."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from browser_check import free_port, stop, wait_for_port
from conftest import TINY_DISPLAYED, run_script
from reporting import run_log

# 8 iterations of the tiny run (4 images, 2 epochs), printed and shown every 2
SHOWN = [*TINY_DISPLAYED, "--n_epochs", "1", "--n_epochs_decay", "1", "--print_freq", "2", "--display_freq", "2"]
LOSSES = ["G_GAN", "G_L1", "D_real", "D_fake"]
# visdom's entry point minus download_scripts() (python -m visdom.server fetches web assets first, offline it dies).
SERVER = "import sys; sys.argv = ['visdom', *sys.argv[1:]]; from visdom.server.run_server import main; main()"


@pytest.fixture(autouse=True)
def local_env(monkeypatch):
    """One OpenMP thread: tiny networks run fastest so (two on a busy 2-CPU machine take ~1 s a step).
    No proxy for 127.0.0.1: visdom's client (requests) would otherwise send its calls to an http_proxy."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, ",".join(filter(None, [os.environ.get(var, ""), "127.0.0.1", "localhost"])))


@pytest.fixture
def visdom_server(tmp_path):
    """A visdom server on 127.0.0.1 at a free port, with its own env_path; yields the port, then stops it."""
    try:
        import visdom  # noqa: F401
    except ImportError as e:  # not installed, or installed but broken (e.g. setuptools without pkg_resources)
        pytest.skip(f"visdom cannot be imported ({e}); install it with bash scripts/install_visdom.sh")
    port = free_port()
    env_path = tmp_path / "visdom_env"
    env_path.mkdir()
    log = open(tmp_path / "visdom.log", "w")  # closed below
    args = ["-port", str(port), "--hostname", "127.0.0.1", "-bind_local", "-env_path", str(env_path)]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, *args, "-logging_level", "WARNING"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            wait_for_port(port, proc, timeout=30)
        except (RuntimeError, TimeoutError) as e:
            log.flush()
            pytest.fail(f"visdom server: {e}\n{(tmp_path / 'visdom.log').read_text()}")
        yield port
    finally:
        stop(proc)
        log.close()


def logged_losses(path: str) -> dict[str, list[str]]:
    """The loss values of loss_log.txt, per name, as printed (3 decimals)."""
    values: dict[str, list[str]] = {}
    with open(path) as f:
        for line in f:
            if line.startswith("(epoch"):
                for name, v in re.findall(r"(\w+): (\S+)", line.split(") ", 1)[1]):
                    values.setdefault(name, []).append(v)
    return values


@pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")  # visdom's client
def test_losses_and_images_reach_a_live_visdom(visdom_server, tiny_data, tmp_path):
    from visdom import Visdom

    port, env, ck = visdom_server, "pix2pix_live_test", str(tmp_path / "ck")
    r = run_script(
        "train.py",
        *("--dataroot", tiny_data, "--name", "run", "--checkpoints_dir", ck, *SHOWN),
        *("--display_server", "http://127.0.0.1", "--display_port", str(port), "--display_env", env),
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert not [line for line in out.splitlines() if "visdom" in line.lower() and "warn" in line.lower()], out

    vis = Visdom(server="http://127.0.0.1", port=port, use_incoming_socket=False, raise_exceptions=True)
    windows = json.loads(vis.get_window_data(env=env))
    assert set(windows) >= {"1", "2"}, f"windows in {env}: {sorted(windows)}"  # display_id 1: losses, 2: images

    plot = windows["1"]
    assert plot["type"] == "plot" and "run" in plot["title"]
    traces = {t["name"]: t for t in plot["content"]["data"]}
    assert list(traces) == LOSSES
    logged = logged_losses(os.path.join(ck, "run", "loss_log.txt"))
    assert len(logged["G_GAN"]) == 4  # 8 iterations, print_freq 2
    records = run_log.read(os.path.join(ck, "run", run_log.LOSSES_FILE), run_log.LOSS)
    assert [r["total_iters"] for r in records] == [2, 4, 6, 8]
    for name in LOSSES:
        assert [f"{y:.3f}" for y in traces[name]["y"]] == logged[name], name
        assert traces[name]["y"] == pytest.approx([r["losses"][name] for r in records], rel=1e-9), name
        assert traces[name]["x"] == [0.5, 1.0, 1.5, 2.0], name  # epochs as a float

    images = windows["2"]
    assert images["type"] == "image"
    src = images["content"]["src"]
    assert src.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
        assert im.width > 0 and im.height > 0


def test_no_visdom_server_is_one_warning(tiny_data, tmp_path):
    port = free_port()  # nobody listens there
    r = run_script(
        "train.py",
        *("--dataroot", tiny_data, "--name", "run", "--checkpoints_dir", str(tmp_path / "ck"), *SHOWN),
        *("--display_server", "http://127.0.0.1", "--display_port", str(port)),
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Traceback" not in out, out
    warnings = [line for line in out.splitlines() if "visdom" in line.lower() and "warn" in line.lower()]
    assert len(warnings) == 1, out
