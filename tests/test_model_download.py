"""Tests of scripts/download_pix2pix_model.sh, offline: the "server" is a folder reached through a file:// URL."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "download_pix2pix_model.sh"
NAMES = ["edges2shoes", "sat2map", "map2sat", "facades_label2photo", "day2night"]


def _run(
    script: Path,
    args: list[str],
    cwd: Path,
    base_url: str | None,
    checkpoints: Path | None,
    path: str | None = None,
) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for var in ("PIX2PIX_MODEL_URL", "CHECKPOINTS_DIR"):
        env.pop(var, None)
    if base_url is not None:
        env["PIX2PIX_MODEL_URL"] = base_url
    if checkpoints is not None:
        env["CHECKPOINTS_DIR"] = str(checkpoints)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        ["bash", str(script), *args], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def download(tmp_path):
    """run(name, base_url, path=None): the script with CHECKPOINTS_DIR=tmp_path/ckpt, from another directory
    (the script must not depend on the current one); returns (checkpoints folder, run)."""
    ckpt = tmp_path / "ckpt"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()

    def run(name: str, base_url: str | None, path: str | None = None) -> subprocess.CompletedProcess:
        return _run(SCRIPT, [name], cwd, base_url, ckpt, path)

    return ckpt, run


def _server(tmp_path: Path, name: str, legacy: bool = False) -> Path:
    """A folder holding NAME.pth, a tiny state dict saved by torch.save."""
    server = tmp_path / "server"
    server.mkdir(exist_ok=True)
    torch.save(
        {"w": torch.zeros(2), "b": torch.ones(3)}, server / f"{name}.pth", _use_new_zipfile_serialization=not legacy
    )
    return server


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize(
    "name, dataroot, direction, legacy",
    [
        ("facades_label2photo", "./datasets/facades", "BtoA", False),
        ("sat2map", "./datasets/maps", "AtoB", True),  # the legacy (pre-zip) format: starts with the pickle byte
        ("map2sat", "./datasets/maps", "BtoA", False),
        ("edges2shoes", "./datasets/edges2shoes", "AtoB", False),
        ("day2night", "./datasets/night2day", "BtoA", False),
    ],
)
def test_download_from_file_url(tmp_path, download, name, dataroot, direction, legacy):
    ckpt, run = download
    server = _server(tmp_path, name, legacy)
    proc = run(name, f"file://{server}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    target = ckpt / f"{name}_pretrained" / "latest_net_G.pth"
    assert _tree(ckpt) == [f"{name}_pretrained", f"{name}_pretrained/latest_net_G.pth"]  # no scratch file left
    assert target.read_bytes() == (server / f"{name}.pth").read_bytes()
    state = torch.load(target, map_location="cpu", weights_only=True)
    assert torch.equal(state["w"], torch.zeros(2)) and torch.equal(state["b"], torch.ones(3))
    assert os.stat(target).st_mode & 0o044 == 0o044  # readable as a normal new file, not mktemp's 0600
    assert str(target) in proc.stdout
    command = f"python test.py --dataroot {dataroot} --name {name}_pretrained --direction {direction}"
    assert command in proc.stdout
    assert f"--checkpoints_dir {ckpt}" in proc.stdout  # CHECKPOINTS_DIR is not the default: test.py must be told
    assert "unet_256" in proc.stdout and "batch" in proc.stdout


def test_existing_file_is_kept(tmp_path, download):
    ckpt, run = download
    server = _server(tmp_path, "map2sat")
    assert run("map2sat", f"file://{server}").returncode == 0
    target = ckpt / "map2sat_pretrained" / "latest_net_G.pth"
    target.write_bytes(b"PK\x03\x04 kept as it is")
    proc = run("map2sat", "file:///nonexistent")  # already there: no download at all
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "already exists" in proc.stdout and "remove it" in proc.stdout
    assert target.read_bytes() == b"PK\x03\x04 kept as it is"
    assert _tree(ckpt) == ["map2sat_pretrained", "map2sat_pretrained/latest_net_G.pth"]


def test_default_target_is_repo_root_checkpoints(tmp_path):
    """Without CHECKPOINTS_DIR the file goes to checkpoints/ beside the script's scripts/ folder, whatever the
    current directory (a copy of the script in a fake repository, so nothing lands in this one)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    script = repo / "scripts" / SCRIPT.name
    shutil.copy(SCRIPT, script)
    server = _server(tmp_path, "edges2shoes")
    proc = _run(script, ["edges2shoes"], tmp_path, f"file://{server}/", None)  # a trailing slash is fine too
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (repo / "checkpoints" / "edges2shoes_pretrained" / "latest_net_G.pth").is_file()
    assert _tree(repo / "checkpoints") == ["edges2shoes_pretrained", "edges2shoes_pretrained/latest_net_G.pth"]
    assert "--name edges2shoes_pretrained --direction AtoB" in proc.stdout
    assert "--checkpoints_dir" not in proc.stdout  # the default: test.py finds it by itself


def test_unknown_name_and_usage_exit_2(download):
    ckpt, run = download
    proc = run("facades", "file:///nonexistent")  # a data set, not a model
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unknown model 'facades'" in proc.stderr
    for name in NAMES:
        assert name in proc.stderr  # the valid names are listed
    proc = _run(SCRIPT, [], ckpt.parent, None, ckpt)
    assert proc.returncode == 2 and "usage" in proc.stderr
    proc = _run(SCRIPT, ["sat2map", "map2sat"], ckpt.parent, None, ckpt)
    assert proc.returncode == 2 and "usage" in proc.stderr
    assert not ckpt.exists()


def test_missing_remote_file_leaves_nothing(tmp_path, download):
    ckpt, run = download
    proc = run("day2night", f"file://{tmp_path}/missing")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"file://{tmp_path}/missing/day2night.pth" in proc.stderr
    assert not ckpt.exists()  # the folders this run created are gone again
    # A checkpoints folder that was already there stays, with what it held and nothing more.
    (ckpt / "other_run").mkdir(parents=True)
    assert run("day2night", f"file://{tmp_path}/missing").returncode == 1
    assert _tree(ckpt) == ["other_run"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n", "HTML"),
        (b"", "empty"),
        (b"Not Found\n", "not a PyTorch file"),
    ],
)
def test_not_a_pytorch_file_is_refused(tmp_path, download, content, message):
    ckpt, run = download
    server = tmp_path / "server"
    server.mkdir()
    (server / "sat2map.pth").write_bytes(content)
    proc = run("sat2map", f"file://{server}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert not ckpt.exists()


def _path_without_curl(tmp_path: Path) -> str:
    """A PATH with only the tools the script needs symlinked: no curl, no wget."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = ("bash", "mktemp", "cp", "mv", "rm", "rmdir", "mkdir", "dirname", "basename", "head", "od", "chmod")
    for tool in tools:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} not found")
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_download_without_curl_or_wget(tmp_path, download):
    """The file:// fallback copies with cp when neither curl nor wget is on PATH; the checks still hold."""
    ckpt, run = download
    path = _path_without_curl(tmp_path)
    server = _server(tmp_path, "facades_label2photo")
    (server / "map2sat.pth").write_bytes(b"<html>error</html>")
    proc = run("map2sat", f"file://{server}", path=path)  # refused without curl too, and nothing left
    assert proc.returncode == 1 and "HTML" in proc.stderr, proc.stdout + proc.stderr
    assert not ckpt.exists()
    proc = run("facades_label2photo", f"file://{server}", path=path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    target = ckpt / "facades_label2photo_pretrained" / "latest_net_G.pth"
    assert target.read_bytes() == (server / "facades_label2photo.pth").read_bytes()
    assert _tree(ckpt) == ["facades_label2photo_pretrained", "facades_label2photo_pretrained/latest_net_G.pth"]
    proc = run("edges2shoes", "http://example.invalid/models", path=path)  # no tool for http://
    assert proc.returncode == 1 and "neither curl nor wget" in proc.stderr
    assert _tree(ckpt) == ["facades_label2photo_pretrained", "facades_label2photo_pretrained/latest_net_G.pth"]
