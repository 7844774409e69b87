"""Tests of the dataset scripts in datasets/: combine_A_and_B.py, download_pix2pix_dataset.sh, make_demo_dataset.py."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS_DIR = REPO_ROOT / "datasets"
DOWNLOAD_SCRIPT = DATASETS_DIR / "download_pix2pix_dataset.sh"


def _load_combine():
    spec = importlib.util.spec_from_file_location("combine_A_and_B", DATASETS_DIR / "combine_A_and_B.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


combine_A_and_B = _load_combine()


def _save_random(path: Path, size: tuple[int, int], seed: int) -> np.ndarray:
    """A random RGB image of size (width, height) saved at path; returns its pixels."""
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# --- combine_A_and_B ------------------------------------------------------------------------------


def test_combine_subfolders_exact_halves(tmp_path, caplog):
    A, B, AB = tmp_path / "A", tmp_path / "B", tmp_path / "AB"
    expected = {}
    for i, (phase, stem) in enumerate([("train", "1"), ("train", "2"), ("test", "x")]):
        a = _save_random(A / phase / f"{stem}.png", (8, 6), seed=2 * i)
        b = _save_random(B / phase / f"{stem}.PNG", (8, 6), seed=2 * i + 1)  # extension case does not matter
        expected[(phase, stem)] = (a, b)
    _save_random(A / "train" / "lonely.png", (8, 6), seed=99)  # no partner in B
    with caplog.at_level(logging.WARNING):
        n = combine_A_and_B.combine(str(A), str(B), str(AB), workers=1)
    assert n == 3
    assert "lonely.png" in caplog.text
    assert not (AB / "train" / "lonely.png").exists()
    for (phase, stem), (a, b) in expected.items():
        out = _pixels(AB / phase / f"{stem}.png")
        assert out.shape == (6, 16, 3)
        np.testing.assert_array_equal(out[:, :8], a)
        np.testing.assert_array_equal(out[:, 8:], b)


def test_combine_flat_layout_resizes_B(tmp_path, caplog):
    A, B, AB = tmp_path / "A", tmp_path / "B", tmp_path / "AB"
    a = _save_random(A / "p.png", (10, 4), seed=0)
    _save_random(B / "p.jpg", (5, 2), seed=1)  # other extension and size: still the partner of p.png
    with caplog.at_level(logging.WARNING):
        n = combine_A_and_B.combine(str(A), str(B), str(AB), workers=1)
    assert n == 1
    assert "p.jpg" in caplog.text and "resized" in caplog.text
    out = _pixels(AB / "p.png")
    assert out.shape == (4, 20, 3)
    np.testing.assert_array_equal(out[:, :10], a)


def test_combine_no_pairs_exits_2(tmp_path, caplog):
    A, B = tmp_path / "A", tmp_path / "B"
    _save_random(A / "a.png", (4, 4), seed=0)
    _save_random(B / "b.png", (4, 4), seed=1)
    assert combine_A_and_B.main(["--fold_A", str(A), "--fold_B", str(B), "--fold_AB", str(tmp_path / "AB")]) == 2
    assert "no pairs" in caplog.text
    missing = ["--fold_A", str(tmp_path / "nope"), "--fold_B", str(B), "--fold_AB", str(tmp_path / "AB")]
    assert combine_A_and_B.main(missing) == 2


def test_combine_command_line(tmp_path):
    A, B, AB = tmp_path / "A", tmp_path / "B", tmp_path / "AB"
    for i in range(3):
        _save_random(A / "val" / f"{i}.png", (6, 6), seed=i)
        _save_random(B / "val" / f"{i}.png", (6, 6), seed=10 + i)
    script = DATASETS_DIR / "combine_A_and_B.py"
    cmd = [sys.executable, str(script), "--fold_A", str(A), "--fold_B", str(B), "--fold_AB", str(AB)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)  # with multiprocessing
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (AB / "val").iterdir()) == ["0.png", "1.png", "2.png"]
    proc = subprocess.run(
        cmd[:2] + ["--fold_A", str(A), "--fold_B", str(tmp_path / "empty")], check=False, capture_output=True
    )
    assert proc.returncode == 2  # argparse: --fold_AB missing


# --- download_pix2pix_dataset.sh (offline, through file:// URLs) ---------------------------------


@pytest.fixture
def download(tmp_path):
    """Run a copy of the download script placed in tmp_path/datasets/, so nothing lands in the repo."""
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    script = datasets / DOWNLOAD_SCRIPT.name
    shutil.copy(DOWNLOAD_SCRIPT, script)

    def run(name: str, base_url: str | None, path: str | None = None) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env.pop("PIX2PIX_DATASET_URL", None)
        if base_url is not None:
            env["PIX2PIX_DATASET_URL"] = base_url
        if path is not None:
            env["PATH"] = path
        # Run from another directory: the script must find its own folder.
        return subprocess.run(
            ["bash", str(script), name], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )

    return datasets, run


def _make_facades_archive(folder: Path) -> Path:
    src = folder / "src" / "facades"
    for phase in ("train", "test"):
        _save_random(src / phase / "1.jpg", (8, 4), seed=0)
    archive = folder / "server" / "facades.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="facades")
    return archive.parent


def test_download_from_file_url(tmp_path, download):
    datasets, run = download
    server = _make_facades_archive(tmp_path)
    proc = run("facades", f"file://{server}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (datasets / "facades" / "train" / "1.jpg").is_file()
    assert (datasets / "facades" / "test" / "1.jpg").is_file()
    assert sorted(p.name for p in datasets.iterdir()) == ["download_pix2pix_dataset.sh", "facades"]  # no leftovers
    proc = run("facades", "file:///nonexistent")  # already there: no download at all
    assert proc.returncode == 0 and "already exists" in proc.stdout


def test_download_without_curl_or_wget(tmp_path, download):
    """The file:// fallback copies with cp when neither curl nor wget is on PATH."""
    datasets, run = download
    server = _make_facades_archive(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "tar", "gzip", "mktemp", "cp", "mv", "rm", "mkdir", "dirname", "basename", "cat"):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} not found")
        (bin_dir / tool).symlink_to(found)
    proc = run("facades", f"file://{server}", path=str(bin_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (datasets / "facades" / "train" / "1.jpg").is_file()


def test_download_bad_url_fails(tmp_path, download):
    datasets, run = download
    proc = run("maps", f"file://{tmp_path}/missing")
    assert proc.returncode != 0
    assert f"file://{tmp_path}/missing/maps.tar.gz" in proc.stderr
    assert sorted(p.name for p in datasets.iterdir()) == ["download_pix2pix_dataset.sh"]  # nothing half-done


def test_download_refuses_cityscapes_and_unknown_names(download):
    _, run = download
    proc = run("cityscapes", "file:///nonexistent")
    assert proc.returncode != 0
    assert "licence" in proc.stderr.lower() or "license" in proc.stderr.lower()
    proc = run("not_a_dataset", "file:///nonexistent")
    assert proc.returncode == 2
    assert "edges2shoes" in proc.stderr  # the valid names are listed


# --- make_demo_dataset.py -----------------------------------------------------------------------


def test_make_demo_dataset_command_line(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "datasets/make_demo_dataset.py", "--out", str(out), "--size", "64", "--train_per_photo", "1"]
    proc = subprocess.run(cmd, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for phase in ("train", "test"):
        files = sorted((out / phase).iterdir())
        assert files, phase
        for f in files:
            with Image.open(f) as im:
                assert im.size == (128, 64)


@pytest.mark.parametrize(
    "flag, value", [("--size", "0"), ("--size", "-8"), ("--size", "100000"), ("--n_train", "-3"), ("--seed", "-1")]
)
def test_make_phantoms_refuses_sizes_and_counts_out_of_bounds(tmp_path, flag, value):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets", "make_phantoms.py")
    out = tmp_path / "ph"
    r = subprocess.run([sys.executable, script, "--out", str(out), flag, value], capture_output=True, text=True)
    assert r.returncode == 2 and f"argument {flag}: {value} is not in" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
