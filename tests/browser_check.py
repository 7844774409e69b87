"""Real local processes for tests: a free port, waiting for a server, and headless Chromium over DevTools."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

CHROMIUM_CANDIDATES = ("/usr/bin/chromium",)
# The closed network and the container (root, small /dev/shm, no GPU) need these; none downloads anything.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--window-size=1280,900",
    "--remote-debugging-port=0",  # the port Chromium picks is written to <user-data-dir>/DevToolsActivePort
]

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # DevTools is local, whatever http_proxy says

# Every <img> of the page after load: what the test checks. src is resolved (absolute) by the browser.
_IMAGES_JS = """JSON.stringify(Array.from(document.images, im => ({
    src: im.currentSrc || im.src, complete: im.complete, naturalWidth: im.naturalWidth,
    naturalHeight: im.naturalHeight})))"""


def free_port() -> int:
    """A TCP port nobody listens on at the moment (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Return once 127.0.0.1:port accepts a connection; raise if proc exits or timeout passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    """Terminate a process this test started, then kill it if it does not exit within 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def find_chromium() -> str | None:
    """Chromium's path: /usr/bin/chromium (Debian's), else `chromium` on PATH; None when there is none."""
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


@dataclass
class PageReport:
    """What one page load showed."""

    url: str
    title: str = ""
    charset: str = ""  # the encoding the browser read the page in
    text: str = ""  # document.body.innerText
    images: list[dict] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # every <a href>, resolved to an absolute URL
    script_errors: list[str] = field(default_factory=list)  # exceptions, console.error, Log entries of level error
    failed_requests: list[str] = field(default_factory=list)  # resources that did not load (besides favicon)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for (Network.requestWillBeSent)
    screenshot: str = ""

    def broken_images(self) -> list[dict]:
        return [im for im in self.images if not im["complete"] or im["naturalWidth"] <= 0]


class Chromium:
    """One headless Chromium and one page target, driven over the DevTools protocol with websocket-client."""

    def __init__(self, executable: str, timeout: float = 30.0) -> None:
        self.executable, self.timeout = executable, timeout
        self.proc: subprocess.Popen | None = None
        self.ws = None
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self._next_id = 0
        self._events: list[dict] = []

    # ---- life cycle ---------------------------------------------------------------------------------
    def __enter__(self) -> Chromium:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        import websocket  # websocket-client, a dependency of visdom; imported here so a missing one can skip

        self._stderr = open(os.path.join(self._profile, "stderr.txt"), "w+")  # closed in close()
        self.proc = subprocess.Popen(
            [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        port = self._devtools_port()
        deadline = time.monotonic() + self.timeout
        while True:  # the page target appears shortly after the port file
            with _NO_PROXY.open(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not pages:
            raise RuntimeError("Chromium started but shows no page target")
        # Our own socket: websocket-client would otherwise go through an http_proxy from the environment.
        sock = socket.create_connection(("127.0.0.1", port), timeout=self.timeout)
        self.ws = websocket.create_connection(
            # No Origin header: DevTools refuses web origins unless --remote-allow-origins lists them.
            pages[0]["webSocketDebuggerUrl"],
            timeout=self.timeout,
            suppress_origin=True,
            socket=sock,
        )
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def _devtools_port(self) -> int:
        path = os.path.join(self._profile, "DevToolsActivePort")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Chromium exited with status {self.proc.returncode}: {self._stderr_tail()}")
            try:
                with open(path) as f:
                    first = f.readline().strip()
                if first:
                    return int(first)
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Chromium wrote no DevToolsActivePort within {self.timeout:.0f} s: {self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()[-2000:]

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:
                pass
            self.ws = None
        if self.proc is not None:
            stop(self.proc)
        if hasattr(self, "_stderr"):
            self._stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    # ---- protocol -----------------------------------------------------------------------------------
    def _recv(self, deadline: float) -> dict:
        self.ws.settimeout(max(0.05, deadline - time.monotonic()))
        return json.loads(self.ws.recv())

    def send(self, method: str, params: dict | None = None) -> dict:
        """Call a DevTools method and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        msg_id = self._next_id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._recv(deadline)
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self._events.append(msg)

    def wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, ev in enumerate(self._events):
                if ev["method"] == method:
                    return self._events.pop(i)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {self.timeout:.0f} s")
            msg = self._recv(deadline)
            if "method" in msg:
                self._events.append(msg)

    def evaluate(self, expression: str):
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"evaluating {expression!r}: {res['exceptionDetails']}")
        return res["result"].get("value")

    # ---- a page -------------------------------------------------------------------------------------
    def load(self, url: str) -> None:
        """Navigate to url and wait for its load event; the events from here on are kept (see requests())."""
        self._events.clear()
        nav = self.send("Page.navigate", {"url": url})
        if nav.get("errorText"):
            raise RuntimeError(f"navigating to {url}: {nav['errorText']}")
        self.wait_event("Page.loadEventFired")

    def requests(self) -> list[str]:
        """Every URL requested since load(), in order, up to now."""
        self.send("Runtime.evaluate", {"expression": "0"})  # events sent before this answer are collected
        return [ev["params"]["request"]["url"] for ev in self._events if ev["method"] == "Network.requestWillBeSent"]

    def click(self, element_js: str, fx: float = 0.5, fy: float = 0.5) -> None:
        """A real left click (move, press, release) at the fraction (fx, fy) of an element's box; element_js is
        an expression for the element, scrolled into view first."""
        x, y, w, h = self.evaluate(
            f"(() => {{ const el = {element_js}; el.scrollIntoView({{block: 'center'}});"
            " const r = el.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
        )
        at = {"x": x + fx * w, "y": y + fy * h}
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", **at})
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "button": "left", "buttons": 1, "clickCount": 1, **at})

    def press(self, key: str, code: int) -> None:
        """A key pressed and released (key as KeyboardEvent.key names it, code its Windows key code)."""
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code})

    def set_width(self, width: int | None, height: int = 900) -> None:
        """Lay pages out as in a window width CSS pixels wide; None: the window's own size again."""
        if width is None:
            self.send("Emulation.clearDeviceMetricsOverride")
        else:
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )

    def screenshot(self, path: str) -> str:
        """The whole page, beyond the window too, as a PNG at path."""
        metrics = self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            },
        )
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        return path

    def check_page(self, url: str, screenshot: str) -> PageReport:
        """Load url, wait for its load event, read every <img>, collect errors, write a full-page PNG."""
        self.load(url)
        report = PageReport(url=url)
        report.title = self.evaluate("document.title")
        report.charset = self.evaluate("document.characterSet")
        report.text = self.evaluate("document.body ? document.body.innerText : ''")
        report.images = json.loads(self.evaluate(_IMAGES_JS))
        report.links = self.evaluate("Array.from(document.links, a => a.href)")
        # Events up to now (an error thrown during load is delivered before the evaluate answers).
        report.requests = self.requests()
        failed_ids = set()
        for ev in self._events:
            m, p = ev["method"], ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                report.script_errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description"))) for a in p["args"])
                report.script_errors.append(f"console.{p['type']}: {args}")
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                entry = p["entry"]
                if entry.get("source") == "network":  # a resource that failed: reported below instead
                    continue
                report.script_errors.append(f"{entry.get('source')}: {entry.get('text')} ({entry.get('url', '')})")
            elif m == "Network.loadingFailed":
                failed_ids.add(p["requestId"])
            elif m == "Network.responseReceived" and p["response"].get("status", 200) >= 400:
                failed_ids.add(p["requestId"])
        urls = {
            ev["params"]["requestId"]: ev["params"]["request"]["url"]
            for ev in self._events
            if ev["method"] == "Network.requestWillBeSent"
        }
        report.failed_requests = sorted(
            urls.get(i, i) for i in failed_ids if not urls.get(i, "").endswith("/favicon.ico")
        )
        report.screenshot = self.screenshot(screenshot)
        return report
