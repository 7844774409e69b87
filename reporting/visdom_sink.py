"""Live plots in visdom (--display_id > 0), when a server answers: one warning when it does not, and training goes
on; the curves are kept meanwhile and plotted whole once the server is back."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from urllib.parse import urlparse

import numpy as np

from reporting.plots import plotted_metrics
from reporting.sinks import Sink

log = logging.getLogger(__name__)
VISDOM_INSTALL_HINT = "bash scripts/install_visdom.sh"
# Offline-safe: `python -m visdom.server` first downloads its web assets and dies without the internet.
VISDOM_SERVER_HINT = 'python -c "from visdom.server.run_server import main; main()" -port {port}'
PROBE_SECONDS = 1.0  # the whole start-up probe of a visdom server: connect and first reply


class VisdomSink(Sink):
    """Windows display_id (losses, x in epochs), display_id + 1 (the current images), display_id + 2 (validation)
    in visdom environment env. clock: seconds for the retries and the probe's deadline (time.monotonic)."""

    def __init__(
        self,
        name: str,
        display_id: int,
        server: str,
        port: int,
        env: str,
        ncols: int,
        retry_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.display_id, self.ncols = name, display_id, ncols
        self.server, self.port, self.env = server, port, env
        self.retry_seconds, self.clock = retry_seconds, clock
        self.client = None  # a connected visdom.Visdom
        self.failed_at: float | None = None  # when it last could not connect (clock)
        self.loss_plot: dict[str, list] = {"X": [], "Y": [], "legend": []}
        self.val_plot: dict[str, list] = {"X": [], "Y": [], "legend": []}

    def check(self) -> bool:
        """At start-up: is the visdom display there? If not, one warning now says why and how to fix or silence
        it (later attempts stay quiet). True when plots will show; fast (PROBE_SECONDS)."""
        return self.connect() is not None

    def connect(self):
        """A connected Visdom client, or None; warns once per outage and retries every retry_seconds."""
        if self.display_id <= 0:
            return None
        if self.client is not None:
            return self.client
        now = self.clock()
        if self.failed_at is not None and now - self.failed_at < self.retry_seconds:
            return None
        visdom = self._import()
        if visdom is None:
            return None
        client = self._client(visdom) if self._server_answers() else None
        url = f"{self.server}:{self.port}"
        if client is None:
            if self.failed_at is None:
                log.warning(
                    "no visdom server answers at %s, so no live plots for now (retried every %.0f s); training "
                    "goes on. Start one with: %s (works offline; python -m visdom.server also fetches its web "
                    "assets from the internet on first start), or pass --display_id 0 to turn the display off",
                    url,
                    self.retry_seconds,
                    VISDOM_SERVER_HINT.format(port=self.port),
                )
            self.failed_at = now
            return None
        if self.failed_at is not None:
            log.info("visdom server at %s is back: live plots on", url)
        self.failed_at = None
        self.client = client
        return client

    def _import(self):
        """The visdom module, or None after one warning (the display is then off for good)."""
        try:
            import visdom
        except Exception as e:  # not installed, or installed but broken (setuptools without pkg_resources)
            why = (
                "is not installed" if isinstance(e, ImportError) and e.name == "visdom" else f"cannot be imported ({e})"
            )
            log.warning(
                "visdom %s, so no live plots; training goes on (install it with: %s; or pass --display_id 0 to "
                "turn the display off)",
                why,
                VISDOM_INSTALL_HINT,
            )
            self.display_id = 0
            return None
        return visdom

    def _client(self, visdom):
        """visdom's client for a server that has answered the probe, or None if it will not talk."""
        logging.getLogger("visdom").setLevel(logging.ERROR)  # its client logs every reconnect
        try:
            client = visdom.Visdom(
                server=self.server, port=self.port, env=self.env, raise_exceptions=True, use_incoming_socket=False
            )
            ok = client.check_connection(timeout_seconds=0)  # the server has answered; >0 prints "waiting"
        except Exception:  # visdom raises several kinds on refused connections
            return None
        return client if ok else None

    def _server_answers(self) -> bool:
        """Does an HTTP server answer at server:port within PROBE_SECONDS? Asked with a plain socket first:
        visdom's own client prints tracebacks when nobody listens, and waits without a timeout on a port that
        accepts but never replies."""
        url = urlparse(self.server if "://" in self.server else f"http://{self.server}")
        host = url.hostname or self.server
        deadline = self.clock() + PROBE_SECONDS
        try:
            with socket.create_connection((host, self.port), timeout=PROBE_SECONDS) as s:
                if url.scheme == "https":
                    return True  # TLS: the connect is all a plain socket can ask
                s.settimeout(min(PROBE_SECONDS, max(0.05, deadline - self.clock())))  # what is left of it
                s.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                return s.recv(5) == b"HTTP/"
        except OSError:
            return False

    def _call(self, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            log.warning("lost the visdom server at %s:%s; training goes on", self.server, self.port)
            self.client = None
            self.failed_at = self.clock()

    def images(self, images: dict[str, np.ndarray], epoch: int, total_iters: int, save: bool) -> None:
        """The first image of each visual, in one window (if they have one size)."""
        client = self.connect()
        if client is None:
            return
        arrs = [im.transpose(2, 0, 1) for im in images.values()]
        if len({a.shape for a in arrs}) == 1:
            title = f"{self.name} images: " + " | ".join(images)
            self._call(client.images, np.stack(arrs), nrow=self.ncols, win=self.display_id + 1, opts={"title": title})

    def live_losses(self, epoch_progress: float, losses: dict[str, float]) -> None:
        """Append a point per loss to the line plot; x is epochs as a float."""
        self.loss_plot["X"].append([epoch_progress] * len(losses))
        self.loss_plot["Y"].append([losses[k] for k in losses])
        self.loss_plot["legend"] = list(losses)
        opts = {"title": f"{self.name} loss over time", "xlabel": "epoch", "ylabel": "loss"}
        self._line(self.loss_plot, self.display_id, opts)

    def validation(self, epoch: int, metrics: dict[str, float], total_iters: int | None) -> None:
        """Append the validation metrics of an epoch to their window (display_id + 2)."""
        names = plotted_metrics(metrics)
        self.val_plot["X"].append([epoch] * len(names))
        self.val_plot["Y"].append([metrics[k] for k in names])
        self.val_plot["legend"] = names
        self._line(self.val_plot, self.display_id + 2, {"title": f"{self.name} validation", "xlabel": "epoch"})

    def _line(self, plot: dict[str, list], win: int, opts: dict) -> None:
        """The whole of a curve, points of an outage included, into window win."""
        client = self.connect()
        if client is None:
            return
        X, Y = np.array(plot["X"]), np.array(plot["Y"])
        self._call(client.line, X=X, Y=Y, win=win, opts={**opts, "legend": plot["legend"]})
