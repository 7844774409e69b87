"""Training feedback, fanned out to sinks (reporting/sinks.py): loss_log.txt and losses.jsonl, the training HTML page,
live visdom plots when a server answers, and the optional loggers (--logger tensorboard | wandb)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from reporting.sinks import LOGGERS, LossStep, PageSink, Sink, TensorBoardSink, TextSink, WandbSink, start_wandb
from reporting.visdom_sink import VisdomSink
from util.config import Config, OptionError, arg, need
from util.util import tensor2im

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DisplayConfig(Config):
    """Logging and display. logger is the one field the code reads for TensorBoard or W&B; the reference's
    --use_wandb is settled into it once, when the options are parsed (--use_wandb == --logger wandb)."""

    key: ClassVar[str] = "display"
    title: ClassVar[str] = "logging and display"

    print_freq: int = arg(100, "log losses every N iterations", lo=1)
    display_freq: int = arg(400, "show images in visdom every N iterations", lo=1)
    update_html_freq: int = arg(1000, "add images to the HTML page every N iterations", lo=1)
    no_html: bool = arg(False, "do not write checkpoints_dir/name/web/")
    display_id: int = arg(1, "visdom window id; 0 turns visdom off")
    display_server: str = arg("http://localhost", "visdom server")
    display_port: int = arg(8097, "visdom port", lo=0, hi=65535)
    display_env: str = arg("main", "visdom environment")
    display_winsize: int = arg(256, "visdom image size", lo=1)
    display_ncols: int = arg(3, "images per row in visdom")
    logger: str = arg(
        "none",
        "also log losses, validation scores and images to TensorBoard (checkpoints_dir/name/tensorboard) or to "
        "Weights & Biases (project --wandb_project_name; WANDB_MODE=offline logs locally)",
        choices=LOGGERS,
    )
    use_wandb: bool = arg(False, "the reference's flag: the same as --logger wandb")
    wandb_project_name: str = arg("CycleGAN-and-pix2pix", "Weights & Biases project of --logger wandb")

    def check(self) -> None:
        need(
            not self.use_wandb or self.logger in ("none", "wandb"),
            f"--use_wandb means --logger wandb; it cannot be combined with --logger {self.logger}",
        )
        if self.logger == "tensorboard":
            try:
                import torch.utils.tensorboard  # noqa: F401
            except ImportError:
                raise OptionError(
                    "--logger tensorboard: the tensorboard package is not installed (pip install tensorboard)"
                ) from None
        if self.logger == "wandb" or self.use_wandb:
            flag = "--use_wandb" if self.use_wandb else "--logger wandb"
            try:
                import wandb  # noqa: F401
            except Exception as e:  # not installed, or installed but broken (a protobuf it cannot use, say)
                missing = isinstance(e, ImportError) and e.name == "wandb"
                why = "is not installed" if missing else f"cannot be imported ({type(e).__name__}: {e})"
                raise OptionError(f"{flag}: the wandb package {why} (pip install wandb)") from None
            need(self.wandb_project_name.strip() != "", "--wandb_project_name: must not be empty")


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
    def for_run(
        cls,
        display: DisplayConfig,
        run_dir: str,
        name: str,
        resume: bool,
        preview: tuple[int, ...],
        config: dict[str, Any],
    ) -> Visualizer:
        """The visualizer of a run: its display config, whether it continues the run's logs (W&B: the same run),
        the channels previewed, the run's options (flat, JSON-able) for W&B."""
        return cls(
            run_dir,
            name,
            use_html=not display.no_html,
            display_id=display.display_id,
            display_server=display.display_server,
            display_port=display.display_port,
            display_env=display.display_env,
            display_winsize=display.display_winsize,
            display_ncols=display.display_ncols,
            tensorboard=display.logger == "tensorboard",
            wandb_project=display.wandb_project_name if display.logger == "wandb" else None,
            wandb_config=config,
            resume=resume,
            preview=preview,
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
