"""Training feedback: loss_log.txt, the training HTML page, live visdom plots when a server answers, and the
optional loggers (--logger tensorboard | wandb)."""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import string
import time
from urllib.parse import urlparse

import numpy as np
import torch

from util.html import HTML
from util.plots import plot_training
from util.util import save_image, tensor2im, write_text

log = logging.getLogger(__name__)
_IMG_RE = re.compile(r"^epoch(\d+)_iter(\d+)_(\w+)\.png$")
VISDOM_INSTALL_HINT = "bash scripts/install_visdom.sh"
# Offline-safe: `python -m visdom.server` first downloads its web assets and dies without the internet.
VISDOM_SERVER_HINT = 'python -c "from visdom.server.run_server import main; main()" -port {port}'
PROBE_SECONDS = 1.0  # the whole start-up probe of a visdom server: connect and first reply
WANDB_ID_FILE = "wandb_id.txt"  # in the run folder: --continue_train continues the same W&B run


class Visualizer:
    def __init__(
        self,
        run_dir: str,
        name: str,
        *,
        use_html: bool,
        display_id: int,
        display_server: str,
        display_port: int,
        display_env: str,
        display_winsize: int,
        display_ncols: int,
        tensorboard: bool,
        wandb_project: str | None = None,
        wandb_config: dict | None = None,
        resume: bool = False,
        retry_seconds: float = 60.0,
    ) -> None:
        """wandb_project: log to Weights & Biases in that project (config: the run's options); resume: continue
        the W&B run whose id is in run_dir/wandb_id.txt."""
        self.name, self.use_html, self.winsize = name, use_html, display_winsize
        self.display_id, self.ncols = display_id, display_ncols
        self.server, self.port, self.env = display_server, display_port, display_env
        self.retry_seconds = retry_seconds
        self.run_dir = run_dir
        self.web_dir = os.path.join(run_dir, "web")
        self.img_dir = os.path.join(self.web_dir, "images")
        if use_html:
            os.makedirs(self.img_dir, exist_ok=True)
        self.log_name = os.path.join(run_dir, "loss_log.txt")
        with open(self.log_name, "a") as f:
            f.write(f"================ Training Loss ({time.strftime('%c')}) ================\n")
        self.vis = None
        self._vis_failed_at: float | None = None
        self._plot: dict[str, list] = {"X": [], "Y": [], "legend": []}
        self._val_plot: dict[str, list] = {"X": [], "Y": [], "legend": []}
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(run_dir, "tensorboard"))
        self.wandb = None  # the wandb Run
        self._wandb_step = 0  # the highest step logged to it (its steps must not go back)
        self._wandb_image_step: int | None = None
        if wandb_project is not None:
            self.wandb = start_wandb(run_dir, name, wandb_project, wandb_config or {}, resume)

    @classmethod
    def for_run(cls, opt, run_dir: str) -> Visualizer:
        """The visualizer of a run's TrainOptions."""
        return cls(
            run_dir,
            opt.name,
            use_html=not opt.no_html,
            display_id=opt.display_id,
            display_server=opt.display_server,
            display_port=opt.display_port,
            display_env=opt.display_env,
            display_winsize=opt.display_winsize,
            display_ncols=opt.display_ncols,
            tensorboard=opt.logger == "tensorboard",
            wandb_project=opt.wandb_project_name if opt.logger == "wandb" else None,
            wandb_config=opt.flat(),
            # --continue_train --epoch N restarts from an older snapshot: its steps go back, so a new W&B run
            resume=opt.continue_train and opt.epoch == "latest",
        )

    def check_display(self) -> bool:
        """At start-up: is the visdom display that was asked for there? If not, one warning now says why and how
        to fix or silence it (later attempts stay quiet). True when plots will show; fast (PROBE_SECONDS)."""
        return self._visdom() is not None

    def close(self) -> None:
        """Flush and close the loggers (W&B marks the run finished). Safe to call twice."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb is not None:
            run, self.wandb = self.wandb, None
            try:
                run.finish()
            except Exception as e:
                log.warning("wandb: could not finish the run (%s)", e)

    # ---- visdom -----------------------------------------------------------------------------------
    def _visdom(self):
        """A connected Visdom client, or None; warns once per outage and retries every retry_seconds."""
        if self.display_id <= 0:
            return None
        if self.vis is not None:
            return self.vis
        now = time.monotonic()
        if self._vis_failed_at is not None and now - self._vis_failed_at < self.retry_seconds:
            return None
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
        url = f"{self.server}:{self.port}"
        ok = self._server_answers()
        if ok:
            logging.getLogger("visdom").setLevel(logging.ERROR)  # its client logs every reconnect
            try:
                vis = visdom.Visdom(
                    server=self.server, port=self.port, env=self.env, raise_exceptions=True, use_incoming_socket=False
                )
                ok = vis.check_connection(timeout_seconds=0)  # the server has answered; >0 prints "waiting"
            except Exception:  # visdom raises several kinds on refused connections
                ok = False
        if not ok:
            if self._vis_failed_at is None:
                log.warning(
                    "no visdom server answers at %s, so no live plots for now (retried every %.0f s); training "
                    "goes on. Start one with: %s (works offline; python -m visdom.server also fetches its web "
                    "assets from the internet on first start), or pass --display_id 0 to turn the display off",
                    url,
                    self.retry_seconds,
                    VISDOM_SERVER_HINT.format(port=self.port),
                )
            self._vis_failed_at = now
            return None
        if self._vis_failed_at is not None:
            log.info("visdom server at %s is back: live plots on", url)
        self._vis_failed_at = None
        self.vis = vis
        return vis

    def _server_answers(self) -> bool:
        """Does an HTTP server answer at display_server:display_port within PROBE_SECONDS? Asked with a plain
        socket first: visdom's own client prints tracebacks when nobody listens, and waits without a timeout
        on a port that accepts but never replies."""
        url = urlparse(self.server if "://" in self.server else f"http://{self.server}")
        host = url.hostname or self.server
        deadline = time.monotonic() + PROBE_SECONDS
        try:
            with socket.create_connection((host, self.port), timeout=PROBE_SECONDS) as s:
                if url.scheme == "https":
                    return True  # TLS: the connect is all a plain socket can ask
                s.settimeout(max(0.05, deadline - time.monotonic()))
                s.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                return s.recv(5) == b"HTTP/"
        except OSError:
            return False

    def _vis_call(self, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            log.warning("lost the visdom server at %s:%s; training goes on", self.server, self.port)
            self.vis = None
            self._vis_failed_at = time.monotonic()

    # ---- images -----------------------------------------------------------------------------------
    def display_current_results(
        self, visuals: dict[str, torch.Tensor], epoch: int, total_iters: int, save_result: bool
    ) -> None:
        """Show the first image of each visual in visdom; with save_result add a row to the HTML page."""
        images = {label: tensor2im(t) for label, t in visuals.items()}
        if self.tb is not None:
            for label, im in images.items():
                self.tb.add_image(label, im, total_iters, dataformats="HWC")
        if self.wandb is not None and self._wandb_image_step != total_iters:  # once per step (display, page)
            import wandb

            self._wandb_image_step = total_iters
            self._wandb_log(
                {label: wandb.Image(im, caption=f"{label}, epoch {epoch}") for label, im in images.items()}, total_iters
            )
        vis = self._visdom()
        if vis is not None:
            arrs = [im.transpose(2, 0, 1) for im in images.values()]
            if len({a.shape for a in arrs}) == 1:
                self._vis_call(
                    vis.images,
                    np.stack(arrs),
                    nrow=self.ncols,
                    win=self.display_id + 1,
                    opts={"title": f"{self.name} images: " + " | ".join(images)},
                )
        if self.use_html and save_result:
            for label, im in images.items():
                save_image(im, os.path.join(self.img_dir, f"epoch{epoch:03d}_iter{total_iters:08d}_{label}.png"), 1.0)
            self.write_page()

    def write_page(self) -> str:
        """Rebuild web/index.html from the images on disk, newest step first (survives a resume)."""
        rows: dict[tuple[int, int], list[str]] = {}
        for f in os.listdir(self.img_dir):
            m = _IMG_RE.match(f)
            if m:
                rows.setdefault((int(m.group(1)), int(m.group(2))), []).append(f)
        order = {"real_A": 0, "fake_B": 1, "real_B": 2}
        page = HTML(self.web_dir, f"Experiment name = {self.name}", refresh=0)
        page.add_header(f"training run {self.name}")
        if plot_training(self.run_dir, os.path.join(self.web_dir, "plot.png")):
            stamp = str(int(os.path.getmtime(os.path.join(self.web_dir, "plot.png"))))
            page.add_image("plot.png", "loss and validation curves", version=stamp)
        opt_file = os.path.join(self.run_dir, "train_opt.txt")
        if os.path.exists(opt_file):
            with open(opt_file) as f:
                page.add_pre(f.read(), summary_text="options of this run")
        for (epoch, it), files in sorted(rows.items(), reverse=True):
            files.sort(key=lambda f: order.get(_IMG_RE.match(f).group(3), 9))
            page.add_header(f"epoch {epoch}, iteration {it}")
            labels = [_IMG_RE.match(f).group(3) for f in files]
            page.add_images(files, labels, files, width=self.winsize)
        return page.save()

    # ---- losses -------------------------------------------------------------------------------------
    def plot_current_losses(self, epoch_progress: float, losses: dict[str, float]) -> None:
        """Append a point per loss to the visdom line plot; x is epochs as a float."""
        self._plot["X"].append([epoch_progress] * len(losses))
        self._plot["Y"].append([losses[k] for k in losses])
        self._plot["legend"] = list(losses)
        vis = self._visdom()
        if vis is None:
            return
        self._vis_call(
            vis.line,
            X=np.array(self._plot["X"]),
            Y=np.array(self._plot["Y"]),
            win=self.display_id,
            opts={
                "title": f"{self.name} loss over time",
                "legend": self._plot["legend"],
                "xlabel": "epoch",
                "ylabel": "loss",
            },
        )

    def plot_validation(self, epoch: int, metrics: dict[str, float], total_iters: int | None = None) -> None:
        """Append the validation metrics of an epoch to their visdom window (display_id + 2). W&B logs them at
        total_iters (default: the last step logged), with the epoch."""
        names = [k for k in metrics if k != "n" and not k.startswith("swd_")]
        if self.tb is not None:
            for k in names:
                self.tb.add_scalar(f"val/{k}", metrics[k], epoch)
            self.tb.flush()
        if self.wandb is not None:
            step = self._wandb_step if total_iters is None else total_iters
            self._wandb_log({"epoch": epoch, **{f"val/{k}": metrics[k] for k in names}}, step)
        self._val_plot["X"].append([epoch] * len(names))
        self._val_plot["Y"].append([metrics[k] for k in names])
        self._val_plot["legend"] = names
        vis = self._visdom()
        if vis is None:
            return
        self._vis_call(
            vis.line,
            X=np.array(self._val_plot["X"]),
            Y=np.array(self._val_plot["Y"]),
            win=self.display_id + 2,
            opts={"title": f"{self.name} validation", "legend": names, "xlabel": "epoch"},
        )

    def print_current_losses(
        self,
        epoch: int,
        epoch_iter: int,
        total_iters: int,
        losses: dict[str, float],
        t_comp: float,
        lr: float,
    ) -> str:
        """Log one line of losses and append it to loss_log.txt. t_comp: seconds per image."""
        if self.tb is not None:
            for k, v in losses.items():
                self.tb.add_scalar(f"loss/{k}", v, total_iters)
            self.tb.flush()
        if self.wandb is not None:
            self._wandb_log({**losses, "epoch": epoch, "lr": lr}, total_iters)
        msg = f"(epoch: {epoch}, iters: {epoch_iter}, total_iters: {total_iters}, time: {t_comp:.3f}, lr: {lr:.7f}) "
        msg += " ".join(f"{k}: {v:.3f}" for k, v in losses.items())
        with open(self.log_name, "a") as f:
            f.write(msg + "\n")
        return msg

    def _wandb_log(self, data: dict, step: int) -> None:
        """One W&B history row at the global iteration step; a failure warns once and turns W&B off."""
        try:
            self.wandb.log(data, step=step)
        except Exception as e:
            log.warning("wandb: logging failed (%s); training goes on without W&B", e)
            self.wandb = None
            return
        self._wandb_step = max(self._wandb_step, step)


def start_wandb(run_dir: str, name: str, project: str, config: dict, resume: bool):
    """A W&B run named after the run, with its options as config, or None (one warning) when wandb cannot start.
    Its id is kept in run_dir/wandb_id.txt (written atomically): with resume the run continues under that id.
    WANDB_MODE, WANDB_DIR and the rest of wandb's environment apply as they are."""
    import wandb

    id_file = os.path.join(run_dir, WANDB_ID_FILE)
    run_id = None
    if resume and os.path.exists(id_file):
        with open(id_file) as f:
            run_id = f.read().strip() or None
    if run_id is None:
        run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # as wandb's
        write_text(id_file, run_id + "\n")
    if wandb.run is not None:  # an earlier run in this process (train.main called twice): close it first
        wandb.run.finish()
    try:
        run = wandb.init(project=project, name=name, id=run_id, resume="allow", config=config)
        run.define_metric("val/*", step_metric="epoch")
    except Exception as e:  # not logged in, no network, a bad project name ...
        log.warning(
            "wandb could not start (%s: %s); training goes on without W&B (log in with: wandb login, or set "
            "WANDB_MODE=offline to log locally and upload later with wandb sync)",
            type(e).__name__,
            e,
        )
        return None
    log.info("wandb: run %s in project %s (id %s, %s)", name, project, run_id, WANDB_ID_FILE)
    return run


class NullVisualizer:
    """What processes other than rank 0 get under torchrun: the same calls, no output."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def check_display(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def display_current_results(self, *args, **kwargs) -> None:
        pass

    def write_page(self) -> None:
        pass

    def plot_current_losses(self, *args, **kwargs) -> None:
        pass

    def plot_validation(self, *args, **kwargs) -> None:
        pass

    def print_current_losses(self, *args, **kwargs) -> str:
        return ""
