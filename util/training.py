"""The training loop: epochs of steps, logging, display, checkpoints, validation and clean stops on signals."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tqdm import tqdm

from util import checkpoint, distributed
from util.checkpoint import Progress, Saver

log = logging.getLogger("train")


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


@dataclass
class TrainLoop:
    """Runs the epochs from `progress` on. opt: the run's TrainOptions; dist: util.distributed.Dist."""

    opt: object
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

    def best(self) -> dict | None:
        return self.validator.best if self.validator is not None else None

    def save_latest(self, progress: Progress) -> None:
        self.saver.latest(self.model, progress, checkpoint.rng_state(self.model.device), self.best())

    def run(self) -> int:
        """Returns the exit status: 0 done or stopped by --stop_after_iters, 130 interrupted, 1 non-finite loss."""
        opt, p = self.opt, self.progress
        self.steps_this_process = 0
        for epoch in range(p.epoch, opt.last_epoch + 1):
            if epoch != p.epoch:
                p.epoch, p.epoch_iter = epoch, 0
            status = self.epoch()
            if status is not None:
                return status
            self.end_epoch(epoch)
        log.info("training done: %s", self.saver.run_dir)
        if self.stop.signum is not None:  # it came during the last epoch's end work, which was finished
            log.warning("interrupted after the last step: training had finished and everything is saved")
            return 130
        return 0

    def epoch(self) -> int | None:
        """The rest of epoch progress.epoch; an exit status if the run stops within it."""
        opt, p, k = self.opt, self.progress, self.opt.accum_steps  # k batches per optimiser step
        self.sampler.set_epoch(p.epoch, p.epoch_iter * opt.batch_size * k)  # epoch_iter counts steps
        self.t_window = time.perf_counter()
        total = p.epoch_iter + -(-len(self.loader) // k)
        desc = f"epoch {p.epoch}/{opt.last_epoch}"
        with tqdm(
            total=total, initial=p.epoch_iter, desc=desc, unit="it", disable=None, leave=False, dynamic_ncols=True
        ) as bar:
            for batches in batched(self.loader, k):
                self.model.train_step(batches)
                if os.environ.get("PIX2PIX_TEST_DIE_AT") == f"{self.dist.rank}:{p.total_iters + 1}":
                    os._exit(3)  # test hook: a process that dies mid-run, as a crash or an OOM kill would
                p.epoch_iter += 1
                p.total_iters += 1
                self.steps_this_process += 1
                bar.update(1)
                status = self.after_step(bar)
                if status is not None:
                    return status
        return None

    def after_step(self, bar) -> int | None:
        """Logging, display and saving on their schedules; an exit status when the run stops here."""
        opt, p, d = self.opt, self.progress, self.dist
        stop_now = self.stop.signum is not None
        if p.total_iters % opt.print_freq == 0:
            if d.enabled:  # every process must stop at the same step: agree at print boundaries
                stop_now = distributed.any_over_ranks(d, stop_now)
            if not self.print_losses(bar):
                return 1
        if p.total_iters % opt.display_freq == 0:
            self.vis.display_current_results(self.model.current_visuals(), p.epoch, p.total_iters, save_result=False)
        if p.total_iters % opt.update_html_freq == 0:
            self.vis.display_current_results(self.model.current_visuals(), p.epoch, p.total_iters, save_result=True)
        if p.total_iters % opt.save_latest_freq == 0:
            self.save_latest(p)
            log.info("saved latest (epoch %d, total_iters %d)", p.epoch, p.total_iters)
        at_boundary = not d.enabled or p.total_iters % opt.print_freq == 0
        if not ((stop_now and at_boundary) or self.steps_this_process == opt.stop_after_iters):
            return None
        bar.close()
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

    def print_losses(self, bar) -> bool:
        """Log the mean losses of the last print_freq steps; False when one is not finite."""
        opt, p = self.opt, self.progress
        losses, finite = self.model.pop_losses(self.dist if self.dist.enabled else None)
        per_image = (time.perf_counter() - self.t_window) / (opt.print_freq * opt.batch_size * opt.accum_steps)
        self.t_window = time.perf_counter()
        lr = self.model.optimizer_G.param_groups[0]["lr"]
        log.info(self.vis.print_current_losses(p.epoch, p.epoch_iter, p.total_iters, losses, per_image, lr))
        if self.model.skipped_steps:
            log.warning("%d steps skipped so far for a non-finite loss", self.model.skipped_steps)
        bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
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

    def end_epoch(self, epoch: int) -> None:
        """The lr step, validation, the page, the epoch's snapshot, then latest.pth pointing at the next epoch.

        latest.pth is written last: until it is, it still says "this epoch, its last step", so a run killed
        anywhere in here redoes all of it on resume (the lr step is not saved before, the snapshot is rewritten
        with the same weights, the validation line is logged once: see util/run_folder.trim_logs)."""
        opt, p = self.opt, self.progress
        lr = self.model.update_learning_rate()
        # A run resumed from the epoch's last step ran no batch here: no images of this epoch to show.
        ran = self.model.real_A.numel() > 0
        visuals = {k: v.detach().clone() for k, v in self.model.current_visuals().items()} if ran else {}
        if self.validator is not None and epoch % opt.val_freq == 0:
            self.vis.plot_validation(epoch, self.validator(self.model, epoch, p.total_iters))
        if not opt.no_html and visuals:
            self.vis.display_current_results(visuals, epoch, p.total_iters, save_result=True)
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
