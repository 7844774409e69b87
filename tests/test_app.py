"""python app.py as a person uses it: the app started on a free port, driven in Chromium with Playwright (upload,
click, wait, download), its downloads byte-equal to translate.py's files; and the service behind it: the model
cache, one request at a time, every fault a message, nothing fetched from the network."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

import train
from browser_check import find_chromium, free_port, stop, wait_for_port
from conftest import ROOT, make_pairs, run_script, train_args
from data.arrays import encode
from options.options import AppOptions, parse
from webapp import runs
from webapp.service import AppError, TranslationService, Window

pytest.importorskip("gradio", reason="the app extra: pip install -r requirements-app.txt (.ci/run installs it)")
sync_playwright = pytest.importorskip(
    "playwright.sync_api", reason="pip install -r requirements-dev.txt"
).sync_playwright
from webapp import ui  # noqa: E402  (after the check that Gradio is there)
from webapp.pages import page_file  # noqa: E402

# The browser tests share one app server and one browser: they run in one xdist worker (--dist loadgroup).
browser_tests = pytest.mark.xdist_group("app")
SHORT = ["--n_epochs", "2", "--n_epochs_decay", "0", "--print_freq", "1", "--save_epoch_freq", "1"]
LABELS = [(0, 0, 170), (0, 85, 255), (255, 85, 0), (170, 255, 85)]  # a label map's class colours
# Run from app.py's folder: every connection the app makes to anything but this machine is written to the log
# file named by the first argument (an audit hook, so no library can go around it).
NETWORK_AUDIT = """
import runpy, sys
log = sys.argv.pop(1)
LOCAL = ("127.0.0.1", "::1", "localhost", "0.0.0.0")
def hook(event, args):
    host = None
    if event == "socket.connect" and isinstance(args[1], tuple):
        host = args[1][0]
    elif event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else args[0]
    if host is not None and str(host) not in LOCAL:
        with open(log, "a") as f:
            f.write(f"{event} {host}\\n")
sys.addaudithook(hook)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def ramp16(size: int, seed: int) -> np.ndarray:
    base = np.add.outer(np.arange(size), np.arange(size + 8)) * (40000 // (2 * size))
    return (base + seed * 997).astype(np.uint16)


def label_map(seed: int, size: int = 32) -> np.ndarray:
    """(size, size, 3) uint8: 8x8 blocks of the LABELS colours in shuffled places, 7 : 4 : 3 : 2 of them."""
    n = (size // 8) ** 2
    counts = [n * k // 16 for k in (7, 4, 3)]
    cls = np.repeat(np.arange(len(LABELS)), [*counts, n - sum(counts)])
    cls = np.random.default_rng(seed).permutation(cls).reshape(size // 8, size // 8)
    return np.asarray(LABELS, np.uint8)[np.kron(cls, np.ones((8, 8), np.int64))]


def write_runs(root) -> str:
    """Three tiny runs in root/ck: photo (8-bit RGB, validated, so it has a best score), sixteen (16-bit grey) and
    labels (label-map inputs, for the canvas)."""
    ck = str(root / "ck")
    photo = root / "photo"
    make_pairs(str(photo / "train"), 3)
    make_pairs(str(photo / "val"), 2, seed=4)
    assert train.main(train_args(str(photo), ck, "photo", *SHORT, "--val_phase", "val")) == 0
    sixteen = root / "sixteen" / "train"
    for side in ("A", "B"):
        os.makedirs(sixteen / side)
    for i in range(3):
        a = ramp16(32, i)[:, :32]
        (sixteen / "A" / f"{i}.png").write_bytes(encode(a[:, :, None], "png"))
        (sixteen / "B" / f"{i}.png").write_bytes(encode((65535 - a)[:, :, None], "png"))
    one = ["--input_nc", "1", "--output_nc", "1", "--no_html"]
    assert train.main(train_args(str(root / "sixteen"), ck, "sixteen", *SHORT, *one)) == 0
    labels = root / "labels" / "train"
    os.makedirs(labels)
    for i in range(3):
        pair = np.concatenate([label_map(i), np.full((32, 32, 3), 90 * i, np.uint8)], axis=1)
        Image.fromarray(pair).save(labels / f"{i}.png")
    assert train.main(train_args(str(root / "labels"), ck, "labels", *SHORT, "--no_html")) == 0
    return ck


@pytest.fixture(scope="module")
def ck(tmp_path_factory) -> str:
    return write_runs(tmp_path_factory.mktemp("app_runs"))


@pytest.fixture(scope="module")
def app(ck, tmp_path_factory):
    """(url, network log path): app.py serving ck on a free port, under the network audit hook."""
    tmp = tmp_path_factory.mktemp("app_server")
    port, netlog = free_port(), str(tmp / "network.log")
    env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_TEMP_DIR=str(tmp / "gradio"), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-c", NETWORK_AUDIT, netlog, os.path.join(ROOT, "app.py")]
    cmd += ["--checkpoints_dir", ck, "--port", str(port), "--device", "cpu"]
    with open(tmp / "app.log", "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, timeout=180)
        yield f"http://127.0.0.1:{port}/", netlog
    finally:
        stop(proc)
        print((tmp / "app.log").read_text())  # shown when a test failed


@pytest.fixture(scope="module")
def browser():
    chromium = find_chromium()
    assert chromium, "Chromium is needed (Debian: apt-get install chromium; .ci/run installs it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """One browser tab on the app, every request it makes recorded."""

    def __init__(self, browser, url: str) -> None:
        self.url = url
        self.page = browser.new_page(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
        self.requests: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url)
        self.page.wait_for_function(
            "document.querySelector('#run input') && document.querySelector('#run input').value"
        )

    def choose(self, dropdown: str, name: str) -> list[str]:
        """Open a dropdown, click the option that starts with "name:"; the options it listed."""
        self.page.click(f"{dropdown} input")
        options = self.page.locator("[role=option]")
        options.first.wait_for()
        listed = options.all_inner_texts()
        self.page.locator(f'[role=option][aria-label^="{name}:"]').click()
        return listed

    def choose_run(self, name: str) -> list[str]:
        listed = self.choose("#run", name)
        self.page.wait_for_function(f"document.querySelector('#run-info').innerText.startsWith('{name}:')")
        return listed

    def translate(self, path: str, button: str = "#translate") -> str:
        """Upload path (if given), click, and wait for the status line; its text."""
        if path:
            self.page.set_input_files("#input-file input[type=file]", path)
            self.page.wait_for_selector("#input-file a")  # uploaded: the file is listed
        state = """() => [document.querySelector('#status').innerText,
                         (document.querySelector('#output-preview img') || {}).src || null]"""
        before = self.page.evaluate(state)
        self.page.click(button)
        done = f"""([before]) => {{
            const now = ({state})();  // a new status line or a new output (a repeated request's status is the same)
            return (now[0] !== before[0] || now[1] !== before[1]) && /translated in|Cannot translate/.test(now[0]);
        }}"""
        self.page.wait_for_function(done, arg=[before], timeout=60000)
        return self.page.inner_text("#status")

    def download(self, selector: str = "#download a") -> tuple[str, bytes]:
        with self.page.expect_download() as d:
            self.page.click(selector)
        path = d.value.path()
        return d.value.suggested_filename, open(path, "rb").read()

    def close(self) -> None:
        hosts = {u.split("/")[2] for u in self.requests if u.startswith(("http://", "https://", "ws://", "wss://"))}
        self.page.close()
        assert hosts <= {self.url.split("/")[2]}, f"the page fetched from elsewhere: {sorted(hosts)}"


def translate_py(ck: str, name: str, path: str, out: str, *extra: str) -> bytes:
    res = run_script("translate.py", "--checkpoints_dir", ck, "--name", name, path, "--out", out, *extra)
    assert res.returncode == 0, res.stderr
    return open(os.path.join(out, os.listdir(out)[0]), "rb").read()


def assert_offline(netlog: str) -> None:
    assert not os.path.exists(netlog), f"the app connected to the network: {open(netlog).read()}"


@browser_tests
def test_an_8_bit_upload_downloads_translate_py_s_bytes(app, browser, ck, tmp_path):
    url, netlog = app
    src = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 52, 3), np.uint8)).save(src)  # not /32
    want = translate_py(ck, "photo", str(src), str(tmp_path / "out"))
    page = Page(browser, url)
    listed = " ".join(page.choose_run("photo"))
    assert "photo: unet_256, 32x32, epoch 2, psnr" in listed and "sixteen: unet_256, 32x32, epoch 2" in listed
    # Chosen, the run's generator is loaded at once, before any request
    page.page.wait_for_function(
        "/photo @ latest: (loaded in|already loaded)/.test(document.querySelector('#status').innerText)"
    )
    status = page.translate(str(src))
    assert "photo @ latest: translated in" in status and "model loaded" not in status, status
    name, data = page.download()
    assert (name, data) == ("photo.png", want)
    assert page.page.locator("#output-preview img").count() == 1
    # The Run tab: the run's records; its training page served, nothing else of the run folder
    page.page.get_by_role("tab", name="Run").click()
    summary = page.page.locator("#run-summary").inner_text()
    assert "6 loss records (losses.jsonl), 2 validations (val_log.jsonl)" in summary, summary
    get = page.page.request.get
    assert get(url + "pages/photo/index.html").ok and "<html" in get(url + "pages/photo/index.html").text()
    for bad in ("pages/photo/..%2Flatest.pth", "pages/photo/%00", "pages/..%2Fphoto/latest.pth"):
        assert get(url + bad).status == 404, bad
    page.close()
    assert_offline(netlog)


@browser_tests
def test_a_16_bit_upload_downloads_translate_py_s_16_bit_file(app, browser, ck, tmp_path):
    url, netlog = app
    src = tmp_path / "scan.png"
    src.write_bytes(encode(ramp16(40, 5)[:, :, None], "png"))
    want = translate_py(ck, "sixteen", str(src), str(tmp_path / "out"))
    page = Page(browser, url)
    page.choose_run("sixteen")
    page.page.click("text=Refresh the list")  # the list read again: the chosen run stays chosen
    time.sleep(1)
    assert page.page.inner_text("#run-info").startswith("sixteen:")
    status = page.translate(str(src))
    assert "sixteen @ latest: translated in" in status, status
    name, data = page.download()
    assert (name, data) == ("scan.png", want)
    out = np.asarray(Image.open(io.BytesIO(data)))
    assert out.dtype == np.uint16 and out.shape == (40, 48) and len(np.unique(out)) > 256
    page.close()
    assert_offline(netlog)


@browser_tests
def test_a_bad_file_is_a_message_in_the_page(app, browser, tmp_path):
    url, netlog = app
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page = Page(browser, url)
    status = page.translate(str(bad))
    assert status.startswith("Cannot translate: notes.png is not an image this app reads"), status
    assert "Traceback" not in page.page.content()
    page.close()
    assert_offline(netlog)


@browser_tests
def test_a_drawn_label_map_is_translated_and_a_second_run_compared(app, browser, ck, tmp_path):
    url, netlog = app
    page = Page(browser, url)
    page.choose_run("labels")
    page.page.get_by_role("tab", name="Draw a label map").click()
    note = page.page.locator("text=The colours of this run's training inputs")
    assert "(4)" in note.inner_text()
    page.page.get_by_text("Options").click()
    page.choose("#compare-run", "photo")
    page.page.wait_for_function("document.querySelector('#compare-snapshot input').value === 'latest'")
    for _ in range(3):  # a stroke made while the canvas still loads its background is lost: draw again
        box = page.page.locator("#canvas canvas").first.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2  # the picture sits in the middle
        page.page.mouse.move(cx - 50, cy - 30)  # a stroke must start on the picture
        page.page.mouse.down()
        page.page.mouse.move(cx + 50, cy + 30, steps=10)
        page.page.mouse.up()
        status = page.translate("", button="#translate-drawing")
        shown = page.page.request.get(page.page.locator("#input-preview img").get_attribute("src")).body()
        colours = {tuple(c) for c in np.unique(np.asarray(Image.open(io.BytesIO(shown))).reshape(-1, 3), axis=0)}
        if len(colours) > 1:
            break
    assert colours == {LABELS[0], LABELS[1]}, colours  # the background, the stroke: snapped to the palette
    assert "labels @ latest: translated in" in status and "photo @ latest: translated in" in status, status
    name, data = page.download()
    assert name == "drawing.png" and Image.open(io.BytesIO(data)).size == (32, 32)
    # the file translate.py writes for the drawing saved as a PNG (the input preview shows the drawing as it is)
    Image.open(io.BytesIO(shown)).convert("RGB").save(tmp_path / "drawing.png")
    assert data == translate_py(ck, "labels", str(tmp_path / "drawing.png"), str(tmp_path / "out"))
    name, _ = page.download("#compare-download a")
    assert name == "drawing.png"
    page.close()
    assert_offline(netlog)


# ---- the service and the run list, without a browser ----------------------------------------------------------
def service(ck: str, **kw) -> TranslationService:
    args = {"cache_size": 2, "tile": 1024, "overlap": 32, "max_pixels": 2**24, **kw}
    return TranslationService(ck, torch.device("cpu"), **args)


def write_png(path, size=(36, 20), seed=0) -> str:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)).save(path)
    return str(path)


def test_the_run_list_shows_name_generator_size_epoch_and_best_score(ck):
    listed = {r.name: r for r in runs.list_runs(ck)}
    assert sorted(listed) == ["labels", "photo", "sixteen"]
    photo = listed["photo"]
    assert photo.snapshots == ("latest", "best", "2", "1")
    metric, value, epoch = photo.best()
    assert metric == "psnr" and epoch in (1, 2) and np.isfinite(value)
    assert photo.describe().startswith("unet_256, 32x32, epoch 2, psnr ")
    assert listed["sixteen"].describe() == "unet_256, 32x32, epoch 2, no validation"


def test_each_snapshot_is_loaded_once_the_cache_is_bounded_and_a_rewritten_file_reloaded(ck, tmp_path):
    run = tmp_path / "ck" / "photo"
    shutil.copytree(os.path.join(ck, "photo"), run)
    s, src = service(str(tmp_path / "ck"), cache_size=2), write_png(tmp_path / "x.png")
    loads = [s.translate_file("photo", snap, src).load_seconds is not None for snap in ("1", "2", "1", "latest", "2")]
    assert loads == [True, True, False, True, True]  # latest pushed out 2, the least recently used
    assert len(s.cache.models) == 2
    before = s.translate_file("photo", "latest", src)
    # A run still training: a temp file being written is not a snapshot, and latest.pth replaced is loaded anew.
    (run / "latest.pth.abcd1234.tmp").write_bytes(b"half a file")
    assert runs.snapshots(str(run)) == ("latest", "best", "2", "1")
    shutil.copy(run / "1_net_G.pth", run / "new.tmp")
    os.replace(run / "new.tmp", run / "latest.pth")
    after = s.translate_file("photo", "latest", src)
    assert after.load_seconds is not None and after.data != before.data
    assert after.data == s.translate_file("photo", "1", src).data


def test_faults_are_one_sentence_each(ck, tmp_path):
    s = service(ck, max_pixels=50 * 50)
    src = write_png(tmp_path / "ok.png")
    with pytest.raises(AppError, match=r"^big.png: 60x60 is 3600 pixels, over this app's limit of 2500"):
        s.translate_file("photo", "latest", write_png(tmp_path / "big.png", (60, 60)))
    np.save(tmp_path / "two.npy", np.zeros((16, 16, 2), np.uint8))
    with pytest.raises(AppError, match=r"^two.npy: .*2 channels.*\(the generator takes 3\)"):
        s.translate_file("photo", "latest", str(tmp_path / "two.npy"))
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(AppError, match=r"^empty.tif is not an image this app reads"):
        s.translate_file("photo", "latest", str(tmp_path / "empty.tif"))
    with pytest.raises(AppError, match=r"^no run 'nope' in "):
        s.translate_file("nope", "latest", src)
    with pytest.raises(AppError, match=r"^run photo has no snapshot '9' \(it has latest, best, 2, 1\)"):
        s.translate_file("photo", "9", src)
    with pytest.raises(AppError, match=r"the target is 36x20 pixels, the input 20x36"):
        s.translate_file("photo", "latest", write_png(tmp_path / "t.png", (20, 36)), target=src)
    with pytest.raises(AppError, match=r"^the drawing: 60x60 is 3600 pixels, over this app's limit"):
        s.translate_drawing("photo", "latest", np.zeros((60, 60, 3), np.uint8))
    broken = tmp_path / "ck" / "photo"
    shutil.copytree(os.path.join(ck, "photo"), broken)
    data = (broken / "latest.pth").read_bytes()
    (broken / "latest.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(AppError, match=r"^cannot load .*latest.pth: "):
        service(str(tmp_path / "ck")).translate_file("photo", "latest", src)
    os.remove(broken / "2_net_G.pth")  # removed after the list was read
    s2 = service(str(tmp_path / "ck"))
    s2.run = lambda name: runs.Run(name, str(broken), {}, ("latest", "best", "2", "1"))
    with pytest.raises(AppError, match=r"2_net_G.pth does not exist"):
        s2.translate_file("photo", "2", src)


def test_a_large_image_is_translated_in_tiles_as_translate_py_tile(ck, tmp_path):
    s, src = service(ck, tile=64, overlap=16), write_png(tmp_path / "wide.png", (100, 70))
    r = s.translate_file("photo", "latest", src)
    assert r.tiles == (64, 16) and "in tiles, as translate.py --tile 64 --overlap 16" in r.summary("photo")
    assert r.data == translate_py(ck, "photo", src, str(tmp_path / "out"), "--tile", "64", "--overlap", "16")
    assert service(ck, tile=128).translate_file("photo", "latest", src).tiles is None  # fits in one tile


def test_a_pair_file_is_split_and_scored_against_its_other_half(ck, tmp_path):
    s = service(ck)
    pair = make_pairs(str(tmp_path / "pairs"), 1)[0]
    r = s.translate_file("photo", "latest", pair, pair=True, eval=True)
    assert r.input.shape == r.output.shape == r.target.shape == (32, 32, 3)
    a = np.asarray(Image.open(pair))
    assert np.array_equal(r.target, a[:, 32:])  # AtoB: the right half is the target
    assert r.psnr is not None and np.isfinite(r.psnr) and not r.exact  # half a pair: no file translate.py had
    single = write_png(tmp_path / "a.png")
    Image.fromarray(a[:, :32]).save(single)
    alone = s.translate_file("photo", "latest", single, eval=True)  # read as a file, not as half an array
    assert np.abs(alone.output.astype(int) - r.output.astype(int)).max() <= 1


def test_the_preview_window_shows_data_values_and_never_changes_the_file(ck, tmp_path):
    s, src = service(ck), str(tmp_path / "dim.png")
    Image.fromarray(np.random.default_rng(0).integers(100, 140, (32, 32, 3), np.uint8)).save(src)
    run, image = (
        s.translate_file("photo", "latest", src),
        s.translate_file("photo", "latest", src, window=Window("image")),
    )
    custom = s.translate_file("photo", "latest", src, window=Window("custom", 100, 140))
    assert run.data == image.data == custom.data
    assert np.array_equal(run.input, np.asarray(Image.open(src)))  # the run's 0..255: as it is
    assert image.input.min() <= 2 and image.input.max() >= 253  # stretched to its own 0.5-99.5 percentiles
    want = np.clip((np.asarray(Image.open(src)).astype(float) - 100) * 255 / 40, 0, 255).round()
    assert np.abs(custom.input - want).max() <= 1  # data values read back from [-1, 1] in float32


def test_requests_are_translated_one_at_a_time(ck, tmp_path, monkeypatch):
    s, src = service(ck), write_png(tmp_path / "x.png")
    s.translate_file("photo", "latest", src)  # loaded
    active, most = [0], [0]
    t = next(iter(s.cache.models.values()))
    real = t.translate

    def counting(*args, **kw):
        active[0] += 1
        most[0] = max(most[0], active[0])
        time.sleep(0.05)
        active[0] -= 1
        return real(*args, **kw)

    monkeypatch.setattr(t, "translate", counting)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(s.translate_file("photo", "latest", src))) for _ in range(4)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert most[0] == 1 and len(results) == 4 and len({r.data for r in results}) == 1


def test_the_palette_is_the_label_maps_colours_most_used_first(ck, tmp_path):
    found = runs.label_palette(runs.read_options(os.path.join(ck, "labels")))
    assert found == LABELS
    # JPEG's noise around the class colours, and the blends at their edges, are not colours of the palette.
    buf = io.BytesIO()
    Image.fromarray(np.concatenate([label_map(s, 64) for s in range(4)], axis=1)).save(buf, "JPEG", quality=90)
    noisy = np.asarray(Image.open(buf))
    got = runs.palette_of(runs.flat_pixels(noisy))
    assert len(got) == len(LABELS)
    for want, have in zip(LABELS, got, strict=True):
        assert max(abs(int(w) - int(h)) for w, h in zip(want, have, strict=True)) <= 8, (LABELS, got)
    assert runs.label_palette({"dataroot": str(tmp_path / "gone")}) is None


def test_what_no_handler_foresaw_is_one_line_in_the_page_and_the_whole_in_the_log(ck, caplog):
    page = ui.Page(service(ck))
    try:

        def broken(name, snapshot, window):
            raise RuntimeError("boom\nsecond line")

        out = ui.respond(page, broken, "photo", "latest", None, None, Window())
        assert out[0] == "**Cannot translate:** RuntimeError: boom (the app's log has the details)"
        assert out[1:] == (None,) * 7 and "Traceback" in caplog.text and "second line" in caplog.text
    finally:
        page.close()


def test_snapping_to_the_palette_takes_each_pixel_to_its_nearest_colour():
    rgb = np.array([[[0, 0, 160], [10, 90, 250]], [[250, 80, 10], [128, 128, 128]]], np.uint8)
    want = np.array([[LABELS[0], LABELS[1]], [LABELS[2], LABELS[3]]], np.uint8)
    assert np.array_equal(ui.snap_to(rgb, LABELS), want)
    big = np.random.default_rng(0).integers(0, 256, (300, 500, 3), np.uint8)  # several row chunks
    d = ((big[:, :, None].astype(int) - np.asarray(LABELS)) ** 2).sum(3)
    assert np.array_equal(ui.snap_to(big, LABELS), np.asarray(LABELS, np.uint8)[d.argmin(2)])


def test_pages_serve_a_run_s_web_folder_and_nothing_else(tmp_path):
    web = tmp_path / "ck" / "r" / "web"
    os.makedirs(web)
    (web / "index.html").write_text("<html>")
    (tmp_path / "ck" / "r" / "latest.pth").write_bytes(b"weights")
    os.symlink(tmp_path / "ck" / "r" / "latest.pth", web / "link.pth")
    ck = str(tmp_path / "ck")
    assert page_file(ck, "r", "") == page_file(ck, "r", "index.html") == os.path.realpath(web / "index.html")
    for name, path in [("r", "../latest.pth"), ("r", "link.pth"), ("..", "r/latest.pth"), ("r", "missing.html")]:
        assert page_file(ck, name, path) is None, (name, path)


def test_app_options_are_checked_once_with_the_flag_named(capsys):
    opt = parse(AppOptions, [])
    assert (opt.app.host, opt.app.port, opt.app.checkpoints_dir) == ("127.0.0.1", 7860, "./checkpoints")
    for argv, msg in [
        (["--device", "gpu"], "--device gpu: must be cpu, cuda or cuda:N"),
        (["--tile", "64", "--overlap", "64"], "--overlap 64: must be smaller than --tile 64"),
        (["--ngf", "4"], "unrecognized arguments: --ngf 4"),
    ]:
        with pytest.raises(SystemExit) as e:
            parse(AppOptions, argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err
