"""The demo set and a shortened quickstart: restoring degraded photos beats the no-op baseline on held-out ones."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil

import numpy as np
from PIL import Image

from conftest import ROOT, run_script
from data.demo import TEST_PHOTOS, TRAIN_PHOTOS, build_demo_dataset, demo_dir

# Measured with these flags on the size-64 demo set, seeds 1 to 4: PSNR 22.84 to 22.86 dB against the
# baseline's 22.13 (+0.71 to +0.73), SSIM 0.664 to 0.669 against 0.613 (+0.051 to +0.057). The test asks for
# half the smallest gain.
SHORT_RUN = [
    *("--residual", "--netG", "unet_128", "--num_downs", "5", "--ngf", "32", "--ndf", "16"),
    *("--preprocess", "crop", "--crop_size", "32", "--lr", "0.001", "--n_epochs", "8", "--n_epochs_decay", "4"),
    *("--display_id", "0", "--num_threads", "0", "--no_html", "--seed", "3"),
]
MIN_GAIN = {"psnr": 0.35, "ssim": 0.025}


def test_the_demo_pairs_a_degraded_photo_with_the_clean_one_and_holds_out_the_test_photos(tmp_path):
    root = build_demo_dataset(str(tmp_path / "demo"), size=48, train_per_photo=2)
    train, test = sorted(os.listdir(os.path.join(root, "train"))), sorted(os.listdir(os.path.join(root, "test")))
    assert {f.rsplit("_", 1)[0] for f in train} == set(TRAIN_PHOTOS)
    assert {f.rsplit("_", 1)[0] for f in test} == set(TEST_PHOTOS) and not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    pair = np.asarray(Image.open(os.path.join(root, "test", test[0])), dtype=np.float64)
    assert pair.shape == (48, 96, 3)
    a, b = pair[:, :48], pair[:, 48:]
    diff = np.abs(a - b).mean()
    assert 5 < diff < 40  # degraded, but the same picture
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.7


def test_from_a_clone_the_demo_set_goes_to_datasets_demo_whatever_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PIX2PIX_HOME", str(tmp_path / "home"))
    assert demo_dir() == os.path.join(ROOT, "datasets", "demo")


def installed_demo(site):
    """data/demo.py as installed: a copy in site/data/ beside a datasets/ folder of another package (as many ML
    environments have), imported from there."""
    os.makedirs(site / "data")
    os.makedirs(site / "datasets")
    (site / "datasets" / "__init__.py").write_text("")
    shutil.copy(os.path.join(ROOT, "data", "demo.py"), site / "data" / "demo.py")
    spec = importlib.util.spec_from_file_location("installed_demo", site / "data" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tree(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), folder) for d, ds, fs in os.walk(folder) for n in ds + fs)


def test_installed_the_demo_set_goes_to_the_user_cache_and_nothing_beside_the_package(monkeypatch, tmp_path):
    site = tmp_path / "site-packages"
    demo = installed_demo(site)
    before = tree(site)
    monkeypatch.delenv("PIX2PIX_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert demo.demo_dir() == str(tmp_path / "user" / ".cache" / "pix2pix" / "demo")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as the XDG rule says
    assert demo.demo_dir() == str(tmp_path / "user" / ".cache" / "pix2pix" / "demo")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert demo.demo_dir() == str(tmp_path / "xdg" / "pix2pix" / "demo")  # read at each call, not at import
    monkeypatch.setenv("PIX2PIX_HOME", str(tmp_path / "p2p"))
    assert demo.demo_dir() == str(tmp_path / "p2p" / "demo")
    # train.py's and test.py's path when no --dataroot is given: built (small here) under PIX2PIX_HOME
    monkeypatch.setattr(
        demo, "build_demo_dataset", functools.partial(demo.build_demo_dataset, size=16, train_per_photo=1)
    )
    root = demo.ensure_demo_dataset()
    assert root == str(tmp_path / "p2p" / "demo")
    assert len(os.listdir(tmp_path / "p2p" / "demo" / "test")) == 4 * len(TEST_PHOTOS)
    assert tree(site) == before  # nothing beside the package, nothing in the other package's datasets/
    assert not os.path.exists(tmp_path / "xdg") and not os.path.exists(tmp_path / "user")


def test_a_short_demo_run_beats_the_no_op_baseline_on_photos_it_never_saw(tmp_path):
    root = build_demo_dataset(str(tmp_path / "demo"), size=64, train_per_photo=4)
    common = ["--dataroot", root, "--checkpoints_dir", str(tmp_path / "ck"), "--name", "demo"]
    r = run_script("train.py", *common, *SHORT_RUN)
    assert r.returncode == 0, r.stderr
    res = tmp_path / "res"
    r = run_script("test.py", *common, "--results_dir", str(res), "--preprocess", "none", "--num_threads", "0")
    assert r.returncode == 0, r.stderr
    record = json.load(open(res / "demo" / "test_latest" / "metrics.json"))
    model, baseline = record["summary"], record["baseline"]["summary"]
    assert model["n"] == baseline["n"] == 4 * len(TEST_PHOTOS)  # 4 crops of each held-out photo
    for metric, gain in MIN_GAIN.items():
        assert model[metric] - baseline[metric] > gain, (metric, model[metric], baseline[metric])
    page = open(res / "demo" / "test_latest" / "index.html").read()
    assert "no-op baseline" in page and f"{baseline['psnr']:.4g}" in page
