"""The training loop: epochs of steps, logging, display, checkpoints, validation and clean stops on signals."""

from __future__ import annotations

import itertools
import logging
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from engine import checkpoint
from engine.checkpoint import Progress, Saver
from options.options import flat_saved
from reporting.progress import ProgressReport, Timed, hms
from reporting.visualizer import Visualizer
from util import distributed

log = logging.getLogger("train")

# Tests set this (tests/hooked.py) to act after a step, e.g. to kill the process as a crash would:
# step_hook(rank, total_iters) after each step. None in normal runs: nothing is read per step.
step_hook: Callable[[int, int], None] | None = None


class InterruptedTwice(KeyboardInterrupt):
    """A second SIGINT/SIGTERM while the loop was finishing its step: stop at once, without saving."""


class StopFlag:
    """First SIGINT/SIGTERM asks the loop to stop after the current step; a second one exits at once."""

    def __init__(self, what: str = "finishing this step and saving latest") -> None:
        self.signum: int | None = None
        self.what = what

    def install(self) -> None:
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def uninstall(self) -> None:
        """Give the signals back (train.main may run inside another program, such as a test runner)."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, _frame) -> None:
        if self.signum is not None:
            raise InterruptedTwice
        self.signum = signum
        log.warning("got %s: %s (again to quit at once)", signal.Signals(signum).name, self.what)


def batched(iterable: Iterable, k: int) -> Iterator[list]:
    """Lists of k items (the last may be shorter)."""
    it = iter(iterable)
    while chunk := list(itertools.islice(it, k)):
        yield chunk


@dataclass(frozen=True)
class LoopConfig:
    """What the loop reads of a run's options: the schedule of epochs, steps, logging, display and saving."""

    last_epoch: int
    batch_size: int
    accum_steps: int
    stop_after_iters: int
    progress_every: float
    print_freq: int
    display_freq: int
    update_html_freq: int
    save_latest_freq: int
    save_epoch_freq: int
    val_freq: int
    no_html: bool

    @classmethod
    def from_options(cls, opt: Any) -> LoopConfig:
        """From train.py's options (options.options.TrainOptions), each value from its config."""
        run, display, ckpt = opt.run, opt.display, opt.checkpoints
        return cls(
            last_epoch=opt.optim.last_epoch,
            batch_size=opt.data.batch_size,
            accum_steps=run.accum_steps,
            stop_after_iters=run.stop_after_iters,
            progress_every=opt.basic.progress_every,
            print_freq=display.print_freq,
            display_freq=display.display_freq,
            update_html_freq=display.update_html_freq,
            save_latest_freq=ckpt.save_latest_freq,
            save_epoch_freq=ckpt.save_epoch_freq,
            val_freq=opt.metrics.val_freq,
            no_html=display.no_html,
        )


def saver_for(opt: Any, run_dir: str, enabled: bool, value_types: dict | None) -> Saver:
    """The checkpoint writer of a run (options.options.TrainOptions): its options by key, how many snapshots, and
    the training data's value types (engine.resolve settles them), written into every file."""
    ck = opt.checkpoints
    return Saver(run_dir, opt.to_dict(), ck.save_by_iter, ck.keep_last, enabled, value_types)


def visualizer_for(opt: Any, run_dir: str) -> Visualizer:
    """The display of a run (options.options.TrainOptions); --continue_train --epoch N restarts from an older
    snapshot whose steps go back: a new W&B run then, not the same one continued."""
    resume = opt.checkpoints.continue_train and opt.checkpoints.epoch == "latest"
    flat = flat_saved(opt.to_dict())  # what W&B records: JSON-able
    return Visualizer.for_run(opt.display, run_dir, opt.basic.name, resume, opt.values.preview_channels, flat)


@dataclass
class TrainLoop:
    """Runs the epochs from `progress` on. opt: a LoopConfig; dist: util.distributed.Dist."""

    opt: LoopConfig
    model: object
    loader: object
    sampler: object
    vis: object
    saver: Saver
    stop: StopFlag
    progress: Progress
    n_images: int
    dist: distributed.Dist
    validator: object | None = None
    step: Callable[[list[dict]], None] | None = None  # the training step (default model.train_step; --cuda_graph)

    def best(self) -> dict | None:
        return self.validator.best if self.validator is not None else None

    def save_latest(self, progress: Progress) -> None:
        self.saver.latest(self.model, progress, checkpoint.rng_state(self.model.device), self.best())

    def run(self) -> int:
        """Returns the exit status: 0 done or stopped by --stop_after_iters, 130 interrupted, 1 non-finite loss."""
        opt, p = self.opt, self.progress
        self.steps_this_process = 0
        self.report = self.start_report()
        try:
            for epoch in range(p.epoch, opt.last_epoch + 1):
                if epoch != p.epoch:
                    p.epoch, p.epoch_iter = epoch, 0
                status = self.epoch()
                if status is not None:
                    return status
                if not self.end_epoch(epoch):
                    return self.stopped_in_validation(epoch)
        finally:
            self.report.close()
        log.info("training done: %s (%s)", self.saver.run_dir, hms(time.perf_counter() - self.report.t_start))
        if self.stop.signum is not None:  # it came during the last epoch's end work, which was finished
            log.warning("interrupted after the last step: training had finished and everything is saved")
            return 130
        return 0

    def steps_per_epoch(self) -> int:
        return -(-len(self.loader) // self.opt.accum_steps)

    def start_report(self) -> ProgressReport:
        """Say what lies ahead, and start counting towards it."""
        opt, p, spe = self.opt, self.progress, self.steps_per_epoch()
        to_end = max(0, spe - p.epoch_iter) + spe * max(0, opt.last_epoch - p.epoch)
        ahead = min(to_end, opt.stop_after_iters) if opt.stop_after_iters else to_end  # 0: no limit
        per_step = opt.batch_size * opt.accum_steps * self.dist.world_size
        run = f"epochs {p.epoch}..{opt.last_epoch} of {spe} iterations, {per_step} images each"
        if ahead < to_end:
            run = f"then --stop_after_iters stops; {to_end} to the end of the run: {run}"
        log.info("%d iterations ahead: %s (speed and time to go follow after a few iterations)", ahead, run)
        desc = f"epoch {p.epoch}/{opt.last_epoch}"
        return ProgressReport(p.total_iters + ahead, p.total_iters, per_step, opt.progress_every, desc, log)

    def epoch(self) -> int | None:
        """The rest of epoch progress.epoch; an exit status if the run stops within it."""
        opt, p, k = self.opt, self.progress, self.opt.accum_steps  # k batches per optimiser step
        self.sampler.set_epoch(p.epoch, p.epoch_iter * opt.batch_size * k)  # epoch_iter counts steps
        self.model.set_epoch(p.epoch)
        self.t_window, self.window_steps = time.perf_counter(), 0  # the loss log's time per image
        desc = f"epoch {p.epoch}/{opt.last_epoch}"
        step = self.step or self.model.train_step
        for batches in batched(self.loader, k):
            step(batches)
            if step_hook is not None:
                step_hook(self.dist.rank, p.total_iters + 1)
            p.epoch_iter += 1
            p.total_iters += 1
            self.steps_this_process += 1
            self.window_steps += 1
            self.report.update(1, desc)
            status = self.after_step()
            if status is not None:
                return status
        return None

    def after_step(self) -> int | None:
        """Logging, display and saving on their schedules; an exit status when the run stops here."""
        opt, p, d = self.opt, self.progress, self.dist
        stop_now = self.stop.signum is not None
        if p.total_iters % opt.print_freq == 0:
            if d.enabled:  # every process must stop at the same step: agree at print boundaries
                stop_now = distributed.any_over_ranks(d, stop_now)
            if not self.print_losses():
                return 1
        if p.total_iters % opt.display_freq == 0:
            self.vis.display_current_results(self.model.current_visuals(), p.epoch, p.total_iters, save_result=False)
        if p.total_iters % opt.update_html_freq == 0:
            self.vis.display_current_results(self.model.current_visuals(), p.epoch, p.total_iters, save_result=True)
        if p.total_iters % opt.save_latest_freq == 0:
            with Timed(log, "saving latest.pth"):
                self.save_latest(p)
            log.info("saved latest (epoch %d, total_iters %d)", p.epoch, p.total_iters)
        at_boundary = not d.enabled or p.total_iters % opt.print_freq == 0
        if not ((stop_now and at_boundary) or self.steps_this_process == opt.stop_after_iters):
            return None
        self.report.close()
        self.save_latest(p)
        why = "interrupted" if self.stop.signum is not None else f"stopped after {self.steps_this_process} iterations"
        log.warning(
            "%s: saved the full state to %s (epoch %d, iteration %d); resume with --continue_train",
            why,
            self.saver.latest_path,
            p.epoch,
            p.epoch_iter,
        )
        return 130 if stop_now else 0

    def print_losses(self) -> bool:
        """Log the mean losses of the last print_freq steps; False when one is not finite."""
        opt, p = self.opt, self.progress
        losses, finite = self.model.pop_losses(self.dist if self.dist.enabled else None)
        # Seconds per image over the steps since the window began (a print, or the epoch's start: the end-of-epoch
        # work is not training time), not over print_freq steps, which an epoch may not have had.
        images = max(1, self.window_steps) * opt.batch_size * opt.accum_steps
        per_image = (time.perf_counter() - self.t_window) / images
        self.t_window, self.window_steps = time.perf_counter(), 0
        lr = self.model.current_lr()
        log.info(self.vis.print_current_losses(p.epoch, p.epoch_iter, p.total_iters, losses, per_image, lr))
        if self.model.skipped_steps:
            log.warning("%d steps skipped so far for a non-finite loss", self.model.skipped_steps)
        self.report.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
        if not finite:
            log.error(
                "non-finite loss within iterations %d..%d: %s; stopping: %s",
                p.total_iters - opt.print_freq + 1,
                p.total_iters,
                losses,
                self.saver.what_is_kept(),
            )
            return False
        done = p.epoch - 1 + p.epoch_iter * opt.batch_size * opt.accum_steps / self.n_images
        self.vis.plot_current_losses(done, losses)
        return True

    def end_epoch(self, epoch: int) -> bool:
        """Validation, the lr step, the page, the epoch's snapshot, then latest.pth pointing at the next epoch;
        False when a signal stopped the validation (in a single process: under torchrun every process must reach
        the next step together), with nothing of the epoch's end done.

        latest.pth is written last: until it is, it still says "this epoch, its last step", so a run killed
        anywhere in here redoes all of it on resume (the lr step is not saved before, the snapshot is rewritten
        with the same weights, the validation line is logged once: see util/run_folder.trim_logs)."""
        opt, p = self.opt, self.progress
        if self.validator is not None and epoch % opt.val_freq == 0:
            stop = None if self.dist.enabled else (lambda: self.stop.signum is not None)
            with Timed(log, "validation"):
                scores = self.validator(self.model, epoch, p.total_iters, stop)
            if scores is None:
                return False
            self.vis.plot_validation(epoch, scores, p.total_iters)
        lr = self.model.update_learning_rate()
        # A run resumed from the epoch's last step ran no batch here: no images of this epoch to show.
        ran = self.model.real_A.numel() > 0
        visuals = {k: v.detach().clone() for k, v in self.model.current_visuals().items()} if ran else {}
        if not opt.no_html and visuals:
            self.vis.display_current_results(visuals, epoch, p.total_iters, save_result=True)
        with Timed(log, f"saving epoch {epoch}'s checkpoints"):
            if epoch % opt.save_epoch_freq == 0 or epoch == opt.last_epoch:
                self.saver.generator(self.model, str(epoch), epoch, p.total_iters)
            self.save_latest(Progress(epoch + 1, 0, p.total_iters))
        log.info(
            "end of epoch %d / %d, %d iterations; learning rate now %.7f; saved %s",
            epoch,
            opt.last_epoch,
            p.total_iters,
            lr,
            self.saver.latest_path,
        )
        return True

    def stopped_in_validation(self, epoch: int) -> int:
        """A signal during the validation: save the state of the epoch's last step, so that a resumed run does
        the epoch's end (validation included) again, and exit 130 without waiting for the rest of the pass."""
        self.report.close()
        self.save_latest(self.progress)
        log.warning(
            "interrupted during epoch %d's validation: saved the state of its last step to %s; --continue_train "
            "validates it again",
            epoch,
            self.saver.latest_path,
        )
        return 130
