"""Where training feedback goes: one small class per destination, all with the methods of Sink. The Visualizer
(reporting/visualizer.py) hands every call to the sinks a run has enabled: TextSink always (loss_log.txt and
losses.jsonl), PageSink unless --no_html (web/index.html), VisdomSink (reporting/visdom_sink.py) with --display_id > 0,
TensorBoardSink with --logger tensorboard, WandbSink with --logger wandb."""

from __future__ import annotations

import logging
import os
import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reporting import run_log
from reporting.html import HTML
from reporting.plots import plot_training, plotted_metrics
from util.util import append_text, save_image, write_text

log = logging.getLogger(__name__)
_IMG_RE = re.compile(r"^epoch(\d+)_iter(\d+)_(\w+)\.png$")
LOSS_LOG = "loss_log.txt"
LOGGERS = ("none", "tensorboard", "wandb")  # --logger: the sinks beside the text logs and the page (TensorBoardSink,
# WandbSink)
WANDB_ID_FILE = "wandb_id.txt"  # in the run folder: --continue_train continues the same W&B run


@dataclass(frozen=True)
class LossStep:
    """One loss print: the mean losses since the previous one, where in the run, and how fast."""

    epoch: int
    iteration: int  # the epoch's iteration
    total_iters: int
    losses: dict[str, float]
    time: float  # seconds per image
    lr: float

    def line(self) -> str:
        """loss_log.txt's line, as the reference implementation writes it."""
        msg = f"(epoch: {self.epoch}, iters: {self.iteration}, total_iters: {self.total_iters}, "
        msg += f"time: {self.time:.3f}, lr: {self.lr:.7f}) "
        return msg + " ".join(f"{k}: {v:.3f}" for k, v in self.losses.items())


class Sink:
    """The calls every sink takes; each does nothing here, and a sink overrides those it has a use for.
    images are HxWx3 uint8 arrays by label (real_A, fake_B, real_B)."""

    def losses(self, step: LossStep) -> None:
        """Every loss print, non-finite values included."""

    def live_losses(self, epoch_progress: float, losses: dict[str, float]) -> None:
        """The finite losses of a print again, with x in epochs as a float (the live plot)."""

    def images(self, images: dict[str, np.ndarray], epoch: int, total_iters: int, save: bool) -> None:
        """The current visuals; save: keep them (the page's rows), not only show them."""

    def validation(self, epoch: int, metrics: dict[str, float], total_iters: int | None) -> None:
        """The scores of an epoch's validation; total_iters None: the last step logged."""

    def close(self) -> None:
        """Flush and let go of what the sink holds; safe to call twice."""


class TextSink(Sink):
    """loss_log.txt, the reference's text log (a header at each start, a line per print), and losses.jsonl, the
    same losses and the validation scores for machines: a record a line, of kind "loss" or "validation"
    (reporting/run_log.py). Both are appended to, never written over. clock: the records' wall-clock timestamps."""

    def __init__(self, run_dir: str, clock: Callable[[], float] = time.time) -> None:
        self.log_name = os.path.join(run_dir, LOSS_LOG)
        self.jsonl_name = os.path.join(run_dir, run_log.LOSSES_FILE)
        self.clock = clock
        append_text(self.log_name, f"================ Training Loss ({time.strftime('%c')}) ================\n")

    def losses(self, step: LossStep) -> None:
        append_text(self.log_name, step.line() + "\n")
        record = run_log.loss_record(
            step.epoch, step.iteration, step.total_iters, step.losses, step.lr, step.time, self.clock()
        )
        run_log.append(self.jsonl_name, record)

    def validation(self, epoch: int, metrics: dict[str, float], total_iters: int | None) -> None:
        run_log.append(self.jsonl_name, run_log.validation_record(epoch, total_iters, metrics, self.clock()))


class PageSink(Sink):
    """web/index.html: the loss and validation plot, the run's options, and a row of saved images per step,
    newest first; the images are kept in web/images/."""

    def __init__(self, run_dir: str, name: str, winsize: int) -> None:
        self.run_dir, self.name, self.winsize = run_dir, name, winsize
        self.web_dir = os.path.join(run_dir, "web")
        self.img_dir = os.path.join(self.web_dir, "images")
        os.makedirs(self.img_dir, exist_ok=True)

    def images(self, images: dict[str, np.ndarray], epoch: int, total_iters: int, save: bool) -> None:
        if not save:
            return
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


class TensorBoardSink(Sink):
    """run_dir/tensorboard: loss/<name> at each print's total_iters, the images, val/<metric> by epoch."""

    def __init__(self, run_dir: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(os.path.join(run_dir, "tensorboard"))

    def losses(self, step: LossStep) -> None:
        for k, v in step.losses.items():
            self.writer.add_scalar(f"loss/{k}", v, step.total_iters)
        self.writer.flush()

    def images(self, images: dict[str, np.ndarray], epoch: int, total_iters: int, save: bool) -> None:
        for label, im in images.items():
            self.writer.add_image(label, im, total_iters, dataformats="HWC")

    def validation(self, epoch: int, metrics: dict[str, float], total_iters: int | None) -> None:
        for k in plotted_metrics(metrics):
            self.writer.add_scalar(f"val/{k}", metrics[k], epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class WandbSink(Sink):
    """A Weights & Biases run (start_wandb): the losses, epoch and lr at each print's total_iters, the images once
    per step, val/<metric> with the epoch. A failure warns once and turns W&B off; training goes on."""

    def __init__(self, run) -> None:
        self.run = run  # the wandb Run; None once it failed or was finished
        self.step = 0  # the highest step logged (W&B steps must not go back)
        self.image_step: int | None = None

    def losses(self, step: LossStep) -> None:
        self._log({**step.losses, "epoch": step.epoch, "lr": step.lr}, step.total_iters)

    def images(self, images: dict[str, np.ndarray], epoch: int, total_iters: int, save: bool) -> None:
        if self.run is None or self.image_step == total_iters:  # once per step (display, page)
            return
        import wandb

        self.image_step = total_iters
        self._log(
            {label: wandb.Image(im, caption=f"{label}, epoch {epoch}") for label, im in images.items()}, total_iters
        )

    def validation(self, epoch: int, metrics: dict[str, float], total_iters: int | None) -> None:
        step = self.step if total_iters is None else total_iters
        self._log({"epoch": epoch, **{f"val/{k}": metrics[k] for k in plotted_metrics(metrics)}}, step)

    def close(self) -> None:
        """Mark the run finished."""
        if self.run is not None:
            run, self.run = self.run, None
            try:
                run.finish()
            except Exception as e:
                log.warning("wandb: could not finish the run (%s)", e)

    def _log(self, data: dict, step: int) -> None:
        """One W&B history row at the global iteration step."""
        if self.run is None:
            return
        try:
            self.run.log(data, step=step)
        except Exception as e:
            log.warning("wandb: logging failed (%s); training goes on without W&B", e)
            self.run = None
            return
        self.step = max(self.step, step)


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
