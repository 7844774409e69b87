"""Training feedback, fanned out to sinks (util/sinks.py): loss_log.txt and losses.jsonl, the training HTML page,
live visdom plots when a server answers, and the optional loggers (--logger tensorboard | wandb)."""

from __future__ import annotations

import logging
import os

import torch

from util.sinks import LossStep, PageSink, Sink, TensorBoardSink, TextSink, WandbSink, start_wandb
from util.util import preview_channels, tensor2im
from util.visdom_sink import VisdomSink

log = logging.getLogger(__name__)


class Visualizer:
    """The sinks a run has enabled, each called in turn: text (always), tensorboard, wandb, visdom, page."""

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
        preview: tuple[int, ...] = (),
    ) -> None:
        """wandb_project: log to Weights & Biases in that project (config: the run's options); resume: continue
        the W&B run whose id is in run_dir/wandb_id.txt; preview: the channels shown of images with other than 1
        or 3 (util.util.tensor2im)."""
        self.name, self.run_dir, self.use_html, self.preview = name, run_dir, use_html, preview
        self.text = TextSink(run_dir)
        self.log_name = self.text.log_name
        self.page = PageSink(run_dir, name, display_winsize) if use_html else None
        self.web_dir = os.path.join(run_dir, "web")
        self.img_dir = os.path.join(self.web_dir, "images")
        self.visdom: VisdomSink | None = None
        if display_id > 0:
            server = {"server": display_server, "port": display_port, "env": display_env}
            self.visdom = VisdomSink(name, display_id, **server, ncols=display_ncols, retry_seconds=retry_seconds)
        self.tensorboard = TensorBoardSink(run_dir) if tensorboard else None
        self.wandb_sink: WandbSink | None = None
        if wandb_project is not None:
            run = start_wandb(run_dir, name, wandb_project, wandb_config or {}, resume)
            self.wandb_sink = WandbSink(run) if run is not None else None
        sinks = (self.text, self.tensorboard, self.wandb_sink, self.visdom, self.page)
        self.sinks: list[Sink] = [s for s in sinks if s is not None]
        self._retry_seconds = retry_seconds
        self._closed = False

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
            preview=preview_channels(opt.preview_channels),
        )

    @property
    def retry_seconds(self) -> float:
        """How long visdom stays unasked after it did not answer."""
        return self._retry_seconds

    @retry_seconds.setter
    def retry_seconds(self, seconds: float) -> None:
        self._retry_seconds = seconds
        if self.visdom is not None:
            self.visdom.retry_seconds = seconds

    @property
    def wandb(self):
        """The W&B run being logged to, or None (no --logger wandb, it failed, or it was finished)."""
        return self.wandb_sink.run if self.wandb_sink is not None else None

    def check_display(self) -> bool:
        """At start-up: is the visdom display that was asked for there? If not, one warning now says why and how
        to fix or silence it (later attempts stay quiet). True when plots will show; fast (PROBE_SECONDS)."""
        return self.visdom is not None and self.visdom.check()

    def close(self) -> None:
        """Close every sink (TensorBoard flushes, W&B marks the run finished); one that fails to close is warned
        about and the others are still closed. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as e:
                log.warning("%s: could not close (%s: %s)", type(sink).__name__, type(e).__name__, e)

    def display_current_results(
        self, visuals: dict[str, torch.Tensor], epoch: int, total_iters: int, save_result: bool
    ) -> None:
        """Show the first image of each visual (visdom, TensorBoard, W&B); with save_result add a row to the page."""
        images = {label: tensor2im(t, self.preview) for label, t in visuals.items()}
        for sink in self.sinks:
            sink.images(images, epoch, total_iters, save_result)

    def write_page(self) -> str | None:
        """Rebuild web/index.html from the images on disk, newest step first (survives a resume); None with
        --no_html."""
        return self.page.write_page() if self.page is not None else None

    def plot_current_losses(self, epoch_progress: float, losses: dict[str, float]) -> None:
        """The live plot of the losses (visdom); x is epochs as a float."""
        for sink in self.sinks:
            sink.live_losses(epoch_progress, losses)

    def plot_validation(self, epoch: int, metrics: dict[str, float], total_iters: int | None = None) -> None:
        """The validation metrics of an epoch: a "validation" record in losses.jsonl, TensorBoard and visdom by
        epoch, W&B at total_iters (default: the last step logged) with the epoch."""
        for sink in self.sinks:
            sink.validation(epoch, metrics, total_iters)

    def print_current_losses(
        self,
        epoch: int,
        epoch_iter: int,
        total_iters: int,
        losses: dict[str, float],
        t_comp: float,
        lr: float,
    ) -> str:
        """Hand one print of losses to the sinks (a line of loss_log.txt, a record of losses.jsonl, ...) and
        return loss_log.txt's line. t_comp: seconds per image."""
        step = LossStep(epoch, epoch_iter, total_iters, dict(losses), t_comp, lr)
        for sink in self.sinks:
            sink.losses(step)
        return step.line()


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
