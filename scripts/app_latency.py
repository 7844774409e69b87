"""How long the app takes from a click to the output on the page: python scripts/app_latency.py --checkpoints_dir
CK --name RUN --image IMG. Starts app.py on a free port, chooses the run in Chromium (the model loads then), uploads
IMG (shifted a little each time) and clicks Translate --repeats times; prints the model's load time and each
click's time to the output image.

Needs the app extra and Playwright (requirements-dev.txt) and Chromium (/usr/bin/chromium, or --chromium)."""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = """() => [(document.querySelector('#status') || {}).innerText || '',
                  (document.querySelector('#output-preview img') || {}).src || null]"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"app.py exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"app.py did not listen on {port} within {timeout:.0f} s")


def variants(image: str, n: int, folder: str) -> list[str]:
    """n different images of image's size (shifted by a few pixels): each click gets its own output, so the page
    shows a new picture each time (Gradio names its files by their content)."""
    a = np.asarray(Image.open(image).convert("RGB"))
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"{i}_{os.path.basename(image)}.png")
        Image.fromarray(np.roll(a, 3 * i, axis=1)).save(path)
        paths.append(path)
    return paths


def measure(url: str, name: str, images: list[str], chromium: str) -> tuple[float, list[tuple[float, float]]]:
    """(model load seconds, [(click to output on the page, the translation itself) per image])."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        page.wait_for_function("(document.querySelector('#run input') || {}).value")
        page.click("#run input")
        page.locator(f'[role=option][aria-label^="{name}:"]').click()
        loaded = f"/{name} @ .*: loaded in/.test((document.querySelector('#status') || {{}}).innerText)"
        page.wait_for_function(loaded, timeout=300000)
        load = float(re.search(r"loaded in ([\d.]+) s", page.inner_text("#status")).group(1))
        clicks = []
        for image in images:
            if page.locator("#input-file button[aria-label=Clear]").count():
                page.click("#input-file button[aria-label=Clear]")
            page.set_input_files("#input-file input[type=file]", image)
            page.wait_for_selector("#input-file a")
            before = page.evaluate(STATE)
            start = time.perf_counter()
            page.click("#translate")
            page.wait_for_function(
                f"([b]) => {{ const n = ({STATE})(); return n[1] && n[1] !== b[1] && /translated in/.test(n[0]); }}",
                arg=[before],
                timeout=300000,
            )
            page.wait_for_function("document.querySelector('#output-preview img').complete")  # decoded, shown
            shown = time.perf_counter() - start
            took = float(re.search(r"translated in ([\d.]+) s", page.inner_text("#status")).group(1))
            clicks.append((shown, took))
        browser.close()
    return load, clicks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints_dir", required=True)
    p.add_argument("--name", required=True, help="the run")
    p.add_argument("--image", required=True, help="the image to translate")
    p.add_argument("--repeats", type=int, default=5, help="clicks, each timed")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--app_flags", default="", help="more app.py flags, e.g. '--device cpu'")
    a = p.parse_args()
    port = free_port()
    cmd = [sys.executable, os.path.join(ROOT, "app.py"), "--checkpoints_dir", a.checkpoints_dir, "--port", str(port)]
    started = time.perf_counter()
    proc = subprocess.Popen([*cmd, *a.app_flags.split()], cwd=ROOT)
    try:
        wait_for_port(port, proc, 300)
        print(f"app.py listening after {time.perf_counter() - started:.1f} s", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            images = variants(a.image, a.repeats, tmp)
            load, clicks = measure(f"http://127.0.0.1:{port}/", a.name, images, a.chromium)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"model load: {load:.2f} s")
    for i, (shown, took) in enumerate(clicks, 1):
        print(f"click {i}: output on the page after {shown:.2f} s (the translation itself {took:.2f} s)")
    print(f"first click {clicks[0][0]:.2f} s; median of {len(clicks)} {statistics.median(c[0] for c in clicks):.2f} s")


if __name__ == "__main__":
    main()
