"""The test and training pages in headless Chromium, from file:// and over HTTP: every image loads, no script errors."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import unquote, urlparse

import pytest
from PIL import Image

from browser_check import Chromium, find_chromium, free_port, stop, wait_for_port
from conftest import ROOT, make_pairs, run_script

TINY = [
    *("--ngf", "4", "--ndf", "4", "--netG", "unet_256", "--num_downs", "5"),
    *("--load_size", "36", "--crop_size", "32", "--num_threads", "0", "--seed", "3"),
]
ARTIFACTS = os.path.join(ROOT, "test-artifacts")
# page name -> its index.html relative to the served folder
PAGES = {"test": "res/run/test_latest/index.html", "train": "ck/run/web/index.html"}


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium (/usr/bin/chromium, or chromium on PATH); .ci/run installs Debian's chromium")
    try:
        import websocket  # noqa: F401
    except ImportError as e:
        pytest.skip(f"websocket-client, which drives Chromium over DevTools, cannot be imported ({e})")
    with Chromium(exe) as c:
        yield c


@pytest.fixture(scope="module")
def site(tmp_path_factory, browser):
    """A folder holding a tiny training run (ck/run/web) and its test results (res/run/test_latest)."""
    root = tmp_path_factory.mktemp("site")
    data = root / "data"
    make_pairs(str(data / "train"), 4, seed=1)
    make_pairs(str(data / "test"), 2, seed=2)
    # A name that must be percent-encoded in src and href: a space, '#' (a fragment if left raw), non-ASCII.
    os.replace(data / "test" / "img001.png", data / "test" / "pair #1 ü.png")
    ck, res = str(root / "ck"), str(root / "res")
    common = ["--dataroot", str(data), "--name", "run", "--checkpoints_dir", ck]
    # One OpenMP thread: tiny networks run fastest so, and two threads on a busy 2-CPU machine take ~1 s a step.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        train_args = ["--display_id", "0", "--print_freq", "2", "--n_epochs", "1", "--n_epochs_decay", "1"]
        r = run_script("train.py", *common, *TINY, *train_args)
        assert r.returncode == 0, r.stderr + r.stdout
        r = run_script("test.py", *common, "--results_dir", res, "--num_threads", "0")
        assert r.returncode == 0, r.stderr + r.stdout
    return root


@pytest.fixture(scope="module")
def http_base(site):
    """http.server on 127.0.0.1 serving the site folder; stopped after the module."""
    port = free_port()
    log = open(site / "http.log", "w")  # closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc, timeout=30)
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop(proc)
        log.close()


@pytest.mark.parametrize("scheme", ["file", "http"])
@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_renders_every_image(browser, site, request, page, scheme):
    rel = PAGES[page]
    base = request.getfixturevalue("http_base") if scheme == "http" else site.as_uri() + "/"
    shot = os.path.join(ARTIFACTS, f"browser_{page}_{scheme}.png")
    report = browser.check_page(base + rel, shot)

    assert report.images, f"{report.url}: the page has no <img>"
    assert not report.broken_images(), f"{report.url}: images that did not load: {report.broken_images()}"
    assert not report.script_errors, f"{report.url}: script errors: {report.script_errors}"
    assert not report.failed_requests, f"{report.url}: requests that failed: {report.failed_requests}"
    # Every image written next to the page is shown on it.
    images_dir = site / os.path.dirname(rel) / "images"
    on_disk = set(os.listdir(images_dir))
    shown = {os.path.basename(unquote(urlparse(im["src"]).path)) for im in report.images}
    assert on_disk and on_disk <= shown, f"not on the page: {sorted(on_disk - shown)}"
    # Every link leads to a file that exists (the links are percent-encoded like the images).
    for href in report.links:
        path = unquote(urlparse(href).path)
        target = path if scheme == "file" else os.path.join(site, path.lstrip("/"))
        assert os.path.isfile(target), f"{report.url}: link {href} leads nowhere"

    assert os.path.getsize(shot) > 0
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.width > 0 and im.height > 0


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_non_ascii_names_read_back(browser, site, request, scheme):
    base = request.getfixturevalue("http_base") if scheme == "http" else site.as_uri() + "/"
    report = browser.check_page(base + PAGES["test"], os.path.join(ARTIFACTS, f"browser_test_text_{scheme}.png"))
    assert "pair #1 ü" in report.text, f"{report.url} read as {report.charset}"
