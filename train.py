"""Train pix2pix: python train.py --dataroot ./datasets/facades --name facades --direction BtoA."""

from __future__ import annotations

import argparse
import glob
import logging
import os
import random
import re
import signal
import sys
import time
from collections.abc import Sequence

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from data import EpochSampler, create_dataloader, create_dataset
from data.demo import ensure_demo_dataset
from models import create_model
from options.options import ARCHITECTURE_KEYS, format_options, option_dict, parse, save_options
from util import checkpoint
from util.util import setup_logging
from util.visualizer import Visualizer

log = logging.getLogger("train")
CHECKPOINT_FORMAT = 1
# Options that must match a checkpoint to resume from it (they define the networks' shapes).
RESUME_KEYS = (*ARCHITECTURE_KEYS, "netD", "ndf", "n_layers_D")


def fail(msg: str) -> None:
    """Stop before any work with exit status 2, like a bad flag."""
    print(f"train.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


class StopFlag:
    """First SIGINT/SIGTERM asks the loop to stop after the current step; a second one exits at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning(
            "got %s: finishing this step and saving latest (again to quit at once)", signal.Signals(signum).name
        )


def snapshot_path(run_dir: str, tag: str) -> str:
    return os.path.join(run_dir, f"{tag}_net_G.pth")


def prune_snapshots(run_dir: str, keep_last: int) -> None:
    """Keep the newest keep_last epoch snapshots <epoch>_net_G.pth (0 keeps all)."""
    if keep_last <= 0:
        return
    found = []
    for p in glob.glob(os.path.join(run_dir, "*_net_G.pth")):
        m = re.fullmatch(r"(\d+)_net_G\.pth", os.path.basename(p))
        if m:
            found.append((int(m.group(1)), p))
    for _, p in sorted(found)[:-keep_last]:
        os.remove(p)


def check_resumable(opt: argparse.Namespace, saved: dict) -> None:
    """The command line must describe the same networks as the checkpoint; list every difference."""
    diffs = [
        f"--{k}: checkpoint {saved.get(k)!r}, command line {getattr(opt, k)!r}"
        for k in RESUME_KEYS
        if saved.get(k) != getattr(opt, k)
    ]
    if diffs:
        fail("--continue_train: the checkpoint was trained with other networks:\n  " + "\n  ".join(diffs))


def main(argv: Sequence[str] | None = None) -> int:
    opt = parse(True, argv)
    setup_logging(opt.verbose)
    run_dir = os.path.join(opt.checkpoints_dir, opt.name)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:
        fail(f"--checkpoints_dir {opt.checkpoints_dir}: cannot create {run_dir}: {e}")
    if not os.access(run_dir, os.W_OK):
        fail(f"--checkpoints_dir {opt.checkpoints_dir}: {run_dir} is not writable")
    latest = os.path.join(run_dir, "latest.pth")

    state = None
    snapshot = None  # --continue_train --epoch N: generator weights only
    if opt.continue_train and opt.epoch != "latest":
        path = snapshot_path(run_dir, opt.epoch)
        if not os.path.exists(path):
            fail(f"--continue_train --epoch {opt.epoch}: no snapshot at {path}")
        try:
            snapshot = checkpoint.load(path)
        except RuntimeError as e:
            fail(f"--continue_train: {e}")
        check_resumable(opt, snapshot["options"])
        if "epoch_count" not in opt.given:
            opt.epoch_count = snapshot["epoch"] + 1
        log.warning(
            "starting from the generator of %s at epoch %d; the discriminator and optimisers start afresh "
            "(--epoch latest resumes the full state)",
            path,
            opt.epoch_count,
        )
    elif opt.continue_train:
        if not os.path.exists(latest):
            fail(f"--continue_train: no checkpoint at {latest} (train without --continue_train first)")
        try:
            state = checkpoint.load(latest)
        except RuntimeError as e:
            fail(f"--continue_train: {e}")
        saved = state["options"]
        check_resumable(opt, saved)
        if opt.seed is not None and opt.seed != saved["seed"]:
            log.warning("--seed %s ignored: resuming with the checkpoint's seed %s", opt.seed, saved["seed"])
        # The data order and lr schedule of the run being resumed depend on these.
        opt.seed, opt.epoch_count = saved["seed"], saved["epoch_count"]
    if opt.seed is None:
        opt.seed = random.SystemRandom().randrange(2**31)
    if opt.dataroot is None:
        opt.dataroot = ensure_demo_dataset()

    log.info("\n%s", format_options(opt))
    save_options(opt, run_dir, "train")

    device = torch.device(f"cuda:{opt.gpu_ids_list[0]}" if opt.gpu_ids_list else "cpu")
    if len(opt.gpu_ids_list) > 1:
        log.warning(
            "--gpu_ids %s: this trainer uses one device per process; using cuda:%d", opt.gpu_ids, opt.gpu_ids_list[0]
        )
    torch.manual_seed(opt.seed)

    try:
        dataset = create_dataset(opt, train=True)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        fail(str(e))
    if opt.batch_size > len(dataset):
        fail(
            f"--batch_size {opt.batch_size} is larger than the data set ({len(dataset)} images in "
            f"{opt.dataroot}/{opt.phase})"
        )
    sampler = EpochSampler(len(dataset), opt.seed, shuffle=not opt.serial_batches)
    loader = create_dataloader(dataset, opt.batch_size, opt.num_threads, sampler, pin_memory=device.type == "cuda")
    log.info("%d training images in %s/%s, batch size %d", len(dataset), opt.dataroot, opt.phase, opt.batch_size)

    model = create_model(vars(opt), device, train=True)
    if opt.verbose:
        log.debug("netG:\n%s\nnetD:\n%s", model.netG, model.netD)
    n_g = sum(p.numel() for p in model.netG.parameters())
    n_d = sum(p.numel() for p in model.netD.parameters())
    log.info("netG %s: %.3f M parameters; netD %s: %.3f M parameters", opt.netG, n_g / 1e6, opt.netD, n_d / 1e6)

    start_epoch, start_step, total_iters = opt.epoch_count, 0, 0
    if snapshot is not None:
        model.netG.load_state_dict(snapshot["netG"])
    if state is not None:
        model.load_state_dict(state["model"])
        start_epoch, start_step, total_iters = state["epoch"], state["epoch_iter"], state["total_iters"]
        log.info(
            "resuming %s at epoch %d, iteration %d of the epoch (%d in all)",
            latest,
            start_epoch,
            start_step,
            total_iters,
        )
    vis = Visualizer(
        run_dir,
        opt.name,
        not opt.no_html,
        opt.display_id,
        opt.display_server,
        opt.display_port,
        opt.display_env,
        opt.display_winsize,
        opt.display_ncols,
    )
    if state is not None:
        checkpoint.set_rng_state(state["rng"])  # last: nothing above may draw random numbers after this

    stop = StopFlag()
    stop.install()
    opts_saved = option_dict(opt)
    last_epoch = opt.n_epochs + opt.n_epochs_decay

    def save_latest(epoch: int, epoch_iter: int) -> None:
        """(epoch, epoch_iter) is where a resumed run starts: epoch_iter steps of epoch are done."""
        checkpoint.atomic_save(
            {
                "format": CHECKPOINT_FORMAT,
                "model": model.state_dict(),
                "epoch": epoch,
                "epoch_iter": epoch_iter,
                "total_iters": total_iters,
                "options": opts_saved,
                "rng": checkpoint.rng_state(),
            },
            latest,
        )
        if opt.save_by_iter:
            checkpoint.atomic_save(
                {"netG": model.netG.state_dict(), "options": opts_saved, "epoch": epoch},
                snapshot_path(run_dir, f"iter_{total_iters}"),
            )

    steps_this_process = 0
    with logging_redirect_tqdm():
        for epoch in range(start_epoch, last_epoch + 1):
            first = start_step if epoch == start_epoch else 0
            sampler.set_epoch(epoch, first * opt.batch_size)
            epoch_iter = first
            t_window = time.perf_counter()
            bar = tqdm(
                total=first + len(loader),
                initial=first,
                desc=f"epoch {epoch}/{last_epoch}",
                unit="it",
                disable=None,
                leave=False,
                dynamic_ncols=True,
            )
            for batch in loader:
                model.set_input(batch)
                model.optimize_parameters()
                epoch_iter += 1
                total_iters += 1
                steps_this_process += 1
                bar.update(1)

                if total_iters % opt.print_freq == 0:
                    losses, finite = model.pop_losses()
                    per_image = (time.perf_counter() - t_window) / (opt.print_freq * opt.batch_size)
                    t_window = time.perf_counter()
                    lr = model.optimizer_G.param_groups[0]["lr"]
                    log.info(vis.print_current_losses(epoch, epoch_iter, total_iters, losses, per_image, lr))
                    bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
                    if not finite:
                        log.error(
                            "non-finite loss within iterations %d..%d: %s; stopping, %s keeps the last good state",
                            total_iters - opt.print_freq + 1,
                            total_iters,
                            losses,
                            latest,
                        )
                        return 1
                    vis.plot_current_losses(epoch - 1 + epoch_iter / len(dataset) * opt.batch_size, losses)
                if total_iters % opt.display_freq == 0:
                    vis.display_current_results(model.current_visuals(), epoch, total_iters, save_result=False)
                if total_iters % opt.update_html_freq == 0:
                    vis.display_current_results(model.current_visuals(), epoch, total_iters, save_result=True)
                if total_iters % opt.save_latest_freq == 0:
                    save_latest(epoch, epoch_iter)
                    log.info("saved latest (epoch %d, total_iters %d)", epoch, total_iters)
                if stop.signum is not None or steps_this_process == opt.stop_after_iters:
                    bar.close()
                    save_latest(epoch, epoch_iter)
                    why = "interrupted" if stop.signum is not None else f"stopped after {steps_this_process} iterations"
                    log.warning(
                        "%s: saved %s (epoch %d, iteration %d); resume with --continue_train",
                        why,
                        latest,
                        epoch,
                        epoch_iter,
                    )
                    return 130 if stop.signum is not None else 0
            bar.close()

            lr = model.update_learning_rate()
            if not opt.no_html:
                vis.display_current_results(model.current_visuals(), epoch, total_iters, save_result=True)
            save_latest(epoch + 1, 0)
            if epoch % opt.save_epoch_freq == 0 or epoch == last_epoch:
                checkpoint.atomic_save(
                    {"netG": model.netG.state_dict(), "options": opts_saved, "epoch": epoch},
                    snapshot_path(run_dir, str(epoch)),
                )
                prune_snapshots(run_dir, opt.keep_last)
            log.info(
                "end of epoch %d / %d, %d iterations; learning rate now %.7f; saved %s",
                epoch,
                last_epoch,
                total_iters,
                lr,
                latest,
            )
    log.info("training done: %s", run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
