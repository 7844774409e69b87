"""The test and training pages in headless Chromium, from file:// and over HTTP: every image loads, no script errors,
nothing is fetched from elsewhere, and the compare view, the sortable metric table and the full-size view work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import unquote, urlparse

import pytest
from PIL import Image

import test as test_script
import train
from browser_check import Chromium, find_chromium, free_port, stop, wait_for_port
from conftest import ROOT, TINY, make_pairs

ARTIFACTS = os.path.join(ROOT, "test-artifacts")
# page name -> its index.html relative to the served folder
PAGES = {"test": "res/run/test_latest/index.html", "train": "ck/run/web/index.html"}


def remote_requests(urls: list[str], base: str) -> list[str]:
    """The URLs that are neither under base (the site's file:// folder or the local server) nor file://."""
    allowed = ("file://",) if base.startswith("file:") else (base,)
    return [u for u in urls if not u.startswith(allowed)]


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
    make_pairs(str(data / "test"), 3, seed=2)  # three rows: sorting them has an order to get right
    # A name that must be percent-encoded in src and href: a space, '#' (a fragment if left raw), non-ASCII.
    os.replace(data / "test" / "img001.png", data / "test" / "pair #1 ü.png")
    ck, res = str(root / "ck"), str(root / "res")
    common = ["--dataroot", str(data), "--name", "run", "--checkpoints_dir", ck]
    # In this process (one torch thread, as tests/conftest.py sets): the pages are what the scripts write.
    train_args = ["--print_freq", "2", "--n_epochs", "1", "--n_epochs_decay", "1"]
    train_args += ["--val_split", "0.25"]  # validation scores, so the plot has its second panel
    assert train.main([*common, *TINY, *train_args]) == 0
    assert test_script.main([*common, "--results_dir", res, "--num_threads", "0"]) == 0
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

    # Offline: every request went to the page's own folder (file://) or the local server, nowhere else.
    assert not remote_requests(report.requests, base), f"{report.url}: fetched from elsewhere"
    asked = {os.path.basename(urlparse(u).path) for u in report.requests}
    assert {"page.css", "page.js"} <= asked, f"{report.url}: the stylesheet or script was not loaded: {asked}"
    assert browser.evaluate("getComputedStyle(document.querySelector('.row')).display") == "grid"
    assert browser.evaluate("typeof sortBy") == "function"

    assert os.path.getsize(shot) > 0
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.width > 0 and im.height > 0


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_non_ascii_names_read_back(browser, site, request, scheme):
    base = request.getfixturevalue("http_base") if scheme == "http" else site.as_uri() + "/"
    report = browser.check_page(base + PAGES["test"], os.path.join(ARTIFACTS, f"browser_test_text_{scheme}.png"))
    assert "pair #1 ü" in report.text, f"{report.url} read as {report.charset}"


def test_a_remote_request_is_caught(browser, tmp_path):
    """The offline check sees a page's remote fetches (here one that cannot resolve: .invalid never does)."""
    (tmp_path / "remote.html").write_text('<link rel="stylesheet" href="https://cdn.example.invalid/x.css">')
    browser.load((tmp_path / "remote.html").as_uri())
    found = remote_requests(browser.requests(), tmp_path.as_uri())
    assert found == ["https://cdn.example.invalid/x.css"]


# The src of the compare picture seen at a fraction of its width, half way down (clip-path clips hit tests too).
_SHOWN_AT = """(fx => {{ const b = document.querySelectorAll('.compare')[{n}]; b.scrollIntoView({{block: 'center'}});
    const r = b.getBoundingClientRect();
    return document.elementFromPoint(r.left + fx * r.width, r.top + r.height / 2).getAttribute('src'); }})({fx})"""


@pytest.mark.parametrize("page", sorted(PAGES))
def test_compare_view_follows_clicks_and_the_slider(browser, site, page):
    base = site.as_uri() + "/"
    browser.load(base + PAGES[page])
    n = browser.evaluate("document.querySelectorAll('.compare').length")
    rows = browser.evaluate("document.querySelectorAll('.row').length")
    assert n == rows > 0, "every row has a compare view"

    def shown(fx: float, i: int = 0) -> str:
        return os.path.basename(unquote(browser.evaluate(_SHOWN_AT.format(n=i, fx=fx))))

    clip = "getComputedStyle(document.querySelector('.compare > img.over')).clipPath"
    before = browser.evaluate(clip)
    # At first the split is in the middle: fake_B on the left, real_B on the right.
    assert shown(0.3).endswith("_fake_B.png") and shown(0.7).endswith("_real_B.png")
    browser.click("document.querySelector('.compare')", fx=0.1)  # a click moves the split there
    assert shown(0.3).endswith("_real_B.png"), "after a click at 10%, real_B shows at 30%"
    assert browser.evaluate(clip) != before
    assert abs(browser.evaluate("+document.querySelector('.compare + input').value") - 10) < 2
    browser.click("document.querySelector('.compare + input')", fx=0.9)  # the slider moves it too
    assert shown(0.7).endswith("_fake_B.png"), "after the slider went to 90%, fake_B shows at 70%"
    assert shown(0.7, i=1).endswith("_real_B.png"), "the other rows' splits stay where they were"
    browser.screenshot(os.path.join(ARTIFACTS, f"browser_{page}_compare.png"))
    assert not remote_requests(browser.requests(), base)


def test_sorting_a_metric_column_reorders_the_rows(browser, site):
    base = site.as_uri() + "/"
    browser.load(base + PAGES["test"])
    per = json.load(open(site / os.path.dirname(PAGES["test"]) / "metrics.json"))["per_image"]
    assert len(per) == 3

    def table() -> list[str]:
        return browser.evaluate(
            "Array.from(document.querySelectorAll('table.metrics tbody tr'), r => r.cells[0].innerText)"
        )

    def rows() -> list[str]:
        return browser.evaluate("Array.from(document.querySelectorAll('section.item h3'), h => h.innerText)")

    def sort_by(column: str) -> str:
        header = (
            f"Array.from(document.querySelectorAll('table.metrics th')).find(h => h.innerText.startsWith('{column}'))"
        )
        browser.click(header)
        return browser.evaluate(header + ".getAttribute('aria-sort')")

    assert table() == rows() == list(per)  # file name order, as written
    for column in ("psnr", "ssim"):
        by_value = sorted(per, key=lambda k: per[k][column])
        assert sort_by(column) == "ascending"
        assert table() == rows() == by_value, f"{column} ascending"
        assert sort_by(column) == "descending"
        assert table() == rows() == by_value[::-1], f"{column} descending"
    assert sort_by("name") == "ascending" and table() == rows() == sorted(per)
    # A name in the table leads to its row.
    href = browser.evaluate("document.querySelector('table.metrics tbody a').getAttribute('href')")
    assert browser.evaluate(f"document.querySelector('{href}').querySelector('h3').innerText") == table()[0]
    assert sort_by("psnr") == "ascending"
    browser.screenshot(os.path.join(ARTIFACTS, "browser_test_sorted.png"))
    assert not remote_requests(browser.requests(), base)


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_clicking_an_image_shows_it_full_size(browser, site, request, scheme):
    base = request.getfixturevalue("http_base") if scheme == "http" else site.as_uri() + "/"
    url = base + PAGES["test"]
    browser.load(url)
    first = "document.querySelector('.row a.full img')"
    browser.click(first)
    shown = browser.evaluate(
        "new Promise(ok => { const im = document.querySelector('#lightbox.open img');"
        " const done = () => ok({src: im.src, w: im.naturalWidth, shown: im.width});"
        " im.complete && im.naturalWidth ? done() : im.addEventListener('load', done); })"
    )
    assert shown["src"] == browser.evaluate(first + ".closest('a').href")
    assert shown["w"] > 0 and shown["shown"] >= shown["w"], "a small image is shown at least at its own size"
    assert browser.evaluate("location.href") == url, "the page stays; the image shows over it"
    browser.screenshot(os.path.join(ARTIFACTS, f"browser_test_full_size_{scheme}.png"))
    browser.press("Escape", 27)
    assert browser.evaluate("document.querySelector('#lightbox.open')") is None
    assert not remote_requests(browser.requests(), base)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_a_narrow_window_shrinks_the_rows(browser, site, page):
    browser.set_width(420)
    try:
        browser.load(site.as_uri() + "/" + PAGES[page])
        width = browser.evaluate("document.documentElement.clientWidth")
        assert browser.evaluate("document.documentElement.scrollWidth") <= width, "no sideways scrolling"
        rights = browser.evaluate("Array.from(document.images, im => im.getBoundingClientRect().right)")
        assert max(rights) <= width
        widths = browser.evaluate("Array.from(document.querySelectorAll('.row img'), im => im.width)")
        assert 0 < max(widths) < 256, "the images shrank below --display_winsize"
        browser.screenshot(os.path.join(ARTIFACTS, f"browser_{page}_narrow.png"))
    finally:
        browser.set_width(None)


def test_pages_name_nothing_remote_without_a_browser(tmp_path):
    """Where Chromium is missing: the page, its stylesheet and script sit together and name no other site."""
    from reporting.html import ASSETS, HTML

    page = HTML(str(tmp_path), "t")
    page.add_sortable_table(["psnr"], [("row0", "a", {"psnr": 1.0})])
    page.add_item("row0", "a", ["a_fake_B.png", "a_real_B.png"], ["fake_B", "real_B"], ["a_fake_B.png", "a_real_B.png"])
    page.save()
    for name in ("index.html", *ASSETS):
        text = (tmp_path / name).read_text()
        for remote in ("http:", "https:", "//cdn", 'src="//', 'href="//', "@import", "url("):
            assert remote not in text, f"{name} names {remote}"
