"""Train pix2pix: python train.py --dataroot ./datasets/facades --name facades --direction BtoA."""

from __future__ import annotations

import argparse
import glob
import itertools
import logging
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from data import EpochSampler, create_dataloader, create_dataset
from data.demo import ensure_demo_dataset
from data.image_io import data_error
from models import create_model
from models.perceptual import WeightsMissing
from options.options import ARCHITECTURE_KEYS, build_parser, format_options, option_dict, parse, save_options
from util import checkpoint, distributed
from util.util import setup_logging
from util.validation import Validator, split_validation
from util.visualizer import NullVisualizer, Visualizer

log = logging.getLogger("train")
CHECKPOINT_FORMAT = 1
# Options that must match a checkpoint to resume from it (they define the networks' shapes).
RESUME_KEYS = (*ARCHITECTURE_KEYS, "netD", "ndf", "n_layers_D", "num_D")


def fail(msg: str) -> None:
    """Stop before any work with exit status 2, like a bad flag."""
    print(f"train.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


class StopFlag:
    """First SIGINT/SIGTERM asks the loop to stop after the current step; a second one exits at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def uninstall(self) -> None:
        """Give the signals back (main() may run inside another program, such as a test runner)."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)

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
    """Keep the newest keep_last <epoch>_net_G.pth and the newest keep_last iter_<N>_net_G.pth (0 keeps all)."""
    if keep_last <= 0:
        return
    for pattern in (r"(\d+)_net_G\.pth", r"iter_(\d+)_net_G\.pth"):
        found = []
        for p in glob.glob(os.path.join(run_dir, "*_net_G.pth")):
            m = re.fullmatch(pattern, os.path.basename(p))
            if m:
                found.append((int(m.group(1)), p))
        for _, p in sorted(found)[:-keep_last]:
            os.remove(p)


class NonFiniteWeights(RuntimeError):
    """Raised instead of saving a checkpoint whose weights hold NaN or inf."""


def check_resumable(opt: argparse.Namespace, saved: dict) -> None:
    """The command line must describe the same networks as the checkpoint; list every difference."""
    defaults = build_parser(True)  # older checkpoints lack newer switches: they had the defaults
    diffs = [
        f"--{k}: checkpoint {saved.get(k, defaults.get_default(k))!r}, command line {getattr(opt, k)!r}"
        for k in RESUME_KEYS
        if saved.get(k, defaults.get_default(k)) != getattr(opt, k)
    ]
    if diffs:
        fail("--continue_train: the checkpoint was trained with other networks:\n  " + "\n  ".join(diffs))


def main(argv: Sequence[str] | None = None) -> int:
    opt = parse(True, argv)
    setup_logging(opt.verbose)
    d = distributed.setup(use_cuda=bool(opt.gpu_ids_list))
    opt.dist = d
    if not d.is_main:  # under torchrun only rank 0 talks; errors still show
        logging.getLogger().setLevel(logging.ERROR)
    run_dir = os.path.join(opt.checkpoints_dir, opt.name)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:
        fail(f"--checkpoints_dir {opt.checkpoints_dir}: cannot create {run_dir}: {e}")
    try:  # a real write: os.access says yes to root even on a read-only file system
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as e:
        fail(f"--checkpoints_dir {opt.checkpoints_dir}: cannot write in {run_dir}: {e}")
    latest = os.path.join(run_dir, "latest.pth")

    state = None
    snapshot = None  # --continue_train --epoch N: generator weights only
    resumed_iters = 0
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
        resumed_iters = snapshot.get("total_iters", 0)
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
        if state["epoch_iter"] > 0:  # mid-epoch: the rest of the epoch must be the same batches
            diffs = [
                f"--{k}: checkpoint {saved.get(k)!r}, command line {getattr(opt, k)!r}"
                for k in ("batch_size", "serial_batches", "max_dataset_size")
                if saved.get(k) != getattr(opt, k)
            ]
            if diffs:
                fail(
                    "--continue_train: the checkpoint was saved mid-epoch with other data options:\n  "
                    + "\n  ".join(diffs)
                )
        if state["epoch"] > opt.n_epochs + opt.n_epochs_decay:
            log.info(
                "training already finished after epoch %d; raise --n_epochs or --n_epochs_decay to train longer",
                state["epoch"] - 1,
            )
            return 0
        if opt.seed is not None and opt.seed != saved["seed"]:
            log.warning("--seed %s ignored: resuming with the checkpoint's seed %s", opt.seed, saved["seed"])
        # The data order and lr schedule of the run being resumed depend on these.
        opt.seed, opt.epoch_count = saved["seed"], saved["epoch_count"]
    if opt.seed is None:
        opt.seed = random.SystemRandom().randrange(2**31)
    opt.seed = distributed.broadcast_int(d, opt.seed)  # every process must share the data order
    if opt.dataroot is None:
        if not d.is_main:
            distributed.barrier(d)  # rank 0 builds the demo set first
        opt.dataroot = ensure_demo_dataset()
        if d.is_main:
            distributed.barrier(d)

    if d.is_main:
        log.info("\n%s", format_options(opt))
        save_options(opt, run_dir, "train")

    device = torch.device(f"cuda:{opt.gpu_ids_list[0]}" if opt.gpu_ids_list else "cpu")
    if d.enabled:
        device = torch.device(f"cuda:{d.local_rank}" if opt.gpu_ids_list else "cpu")
        log.info(
            "torchrun: %d processes, batch %d each (%d in all)",
            d.world_size,
            opt.batch_size,
            d.world_size * opt.batch_size,
        )
        if opt.norm == "batch":
            log.warning(
                "--norm batch with %d processes: each process normalises with its own batch's "
                "statistics (--norm syncbatch shares them, on CUDA)",
                d.world_size,
            )
        if opt.compile:
            log.warning("--compile is not used under torchrun yet; running eagerly")
            opt.compile = False
    if len(opt.gpu_ids_list) > 1:
        log.warning(
            "--gpu_ids %s: this trainer uses one device per process; using cuda:%d", opt.gpu_ids, opt.gpu_ids_list[0]
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # Fixed-size crops: let cuDNN pick the fastest convolution algorithms once.
        torch.backends.cudnn.benchmark = opt.preprocess in ("resize_and_crop", "crop", "scale_width_and_crop")
        # TF32 tensor cores for fp32 matmuls and convolutions: ~fp32 accuracy for GAN training, much faster.
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(opt.seed)

    try:
        dataset = create_dataset(opt, train=True)
        dataset.check(opt.skip_bad_images, opt.max_bad_fraction, workers=max(1, opt.num_threads))
        dataset.check_batchable(opt.batch_size)
        val_set = split_validation(opt, dataset)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        fail(str(e))
    if opt.batch_size > len(dataset):
        fail(
            f"--batch_size {opt.batch_size} is larger than the data set ({len(dataset)} images in "
            f"{opt.dataroot}/{opt.phase})"
        )
    sampler = EpochSampler(len(dataset), opt.seed, not opt.serial_batches, d.rank, d.world_size)
    loader = create_dataloader(dataset, opt.batch_size, opt.num_threads, sampler, pin_memory=device.type == "cuda")
    log.info("%d training images in %s/%s, batch size %d", len(dataset), opt.dataroot, opt.phase, opt.batch_size)

    try:
        model = create_model(vars(opt), device, train=True)
    except WeightsMissing as e:
        fail(str(e))
    opt.saved_options = option_dict(opt)
    validator = Validator(opt, val_set, device) if val_set is not None else None
    if validator is not None:
        log.info(
            "validating on %d images every %d epoch(s); best_net_G.pth by %s",
            validator.n,
            opt.val_freq,
            opt.best_metric,
        )
    if opt.verbose:
        log.debug("netG:\n%s\nnetD:\n%s", model.netG, model.netD)
    n_g = sum(p.numel() for p in model.netG.parameters())
    n_d = sum(p.numel() for p in model.netD.parameters())
    log.info("netG %s: %.3f M parameters; netD %s: %.3f M parameters", opt.netG, n_g / 1e6, opt.netD, n_d / 1e6)

    start_epoch, start_step, total_iters = opt.epoch_count, 0, resumed_iters
    if snapshot is not None:
        model.netG.load_state_dict(snapshot["netG"])
    if opt.init_from is not None:
        try:
            source = checkpoint.load(opt.init_from)
        except RuntimeError as e:
            fail(f"--init_from: {e}")
        nets = source.get("model", source)  # a full latest.pth, or a generator snapshot
        for name, net in (("netG", model.netG), ("netD", model.netD)):
            if name not in nets:
                log.info("--init_from: %s has no %s; it starts from scratch", opt.init_from, name)
                continue
            loaded, skipped = checkpoint.load_matching(net, nets[name])
            log.info(
                "--init_from: %s: loaded %d tensors, kept %d of this network's own (%s)",
                name,
                len(loaded),
                len(skipped),
                ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else ""),
            )
    if state is not None:
        model.load_state_dict(state["model"])
        start_epoch, start_step, total_iters = state["epoch"], state["epoch_iter"], state["total_iters"]
        if validator is not None:
            validator.best = state.get("best")
        log.info(
            "resuming %s at epoch %d, iteration %d of the epoch (%d in all)",
            latest,
            start_epoch,
            start_step,
            total_iters,
        )
    if d.enabled:
        if opt.norm == "syncbatch":
            model.netG = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.netG)
            model.netD = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.netD)
        model.wrap_ddp(d)
    if not d.is_main:
        validator = None
    vis = (Visualizer if d.is_main else NullVisualizer)(
        run_dir,
        opt.name,
        not opt.no_html,
        opt.display_id,
        opt.display_server,
        opt.display_port,
        opt.display_env,
        opt.display_winsize,
        opt.display_ncols,
        tensorboard=opt.logger == "tensorboard",
    )
    if state is not None:
        checkpoint.set_rng_state(state["rng"], device)  # last: nothing above may draw random numbers after this

    stop = StopFlag()
    stop.install()
    progress = Progress(start_epoch, start_step, total_iters)
    try:
        with logging_redirect_tqdm():
            return train_loop(opt, model, loader, sampler, vis, stop, progress, len(dataset), validator)
    except NonFiniteWeights as e:
        log.error("%s; not saved: %s keeps the last good state", e, latest)
        return 1
    except (RuntimeError, ValueError) as e:
        msg = data_error(e)
        if msg is None:
            raise
        log.error("%s (%s keeps the last saved state)", msg, latest)
        return 1
    finally:
        stop.uninstall()
        distributed.cleanup(d)


def batched(iterable, k: int):
    """Lists of k items (the last may be shorter)."""
    it = iter(iterable)
    while chunk := list(itertools.islice(it, k)):
        yield chunk


@dataclass
class Progress:
    """Where training stands: epoch_iter steps of `epoch` are done, total_iters in all."""

    epoch: int
    epoch_iter: int
    total_iters: int


def save_latest(opt: argparse.Namespace, model, progress: Progress, best: dict | None = None) -> None:
    """Write the full training state to latest.pth (and iter_<N>_net_G.pth with --save_by_iter).

    Refuses (NonFiniteWeights) to replace a good checkpoint with weights holding NaN or inf.
    Under torchrun only rank 0 writes.
    """
    if getattr(opt, "dist", None) is not None and not opt.dist.is_main:
        return
    run_dir = os.path.join(opt.checkpoints_dir, opt.name)
    bad = checkpoint.non_finite_tensors(model.netG.state_dict()) + checkpoint.non_finite_tensors(
        model.netD.state_dict()
    )
    if bad:
        raise NonFiniteWeights(f"weights {', '.join(bad[:5])} hold NaN or inf at iteration {progress.total_iters}")
    opts_saved = getattr(opt, "saved_options", None) or option_dict(opt)
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "epoch": progress.epoch,
        "epoch_iter": progress.epoch_iter,
        "total_iters": progress.total_iters,
        "options": opts_saved,
        "rng": checkpoint.rng_state(model.device),
        "best": best,
    }
    checkpoint.atomic_save(state, os.path.join(run_dir, "latest.pth"))
    if opt.save_by_iter:
        snap = {
            **model.generator_weights(),
            "options": opts_saved,
            "epoch": progress.epoch,
            "total_iters": progress.total_iters,
        }
        checkpoint.atomic_save(snap, snapshot_path(run_dir, f"iter_{progress.total_iters}"))
        prune_snapshots(run_dir, opt.keep_last)


def train_loop(
    opt, model, loader, sampler, vis, stop: StopFlag, progress: Progress, n_images: int, validator=None
) -> int:
    """Run the epochs from `progress` on; returns the exit status."""
    d = opt.dist

    def best() -> dict | None:
        return validator.best if validator is not None else None

    run_dir = os.path.join(opt.checkpoints_dir, opt.name)
    latest = os.path.join(run_dir, "latest.pth")
    last_epoch = opt.n_epochs + opt.n_epochs_decay
    steps_this_process = 0
    p = progress
    for epoch in range(p.epoch, last_epoch + 1):
        if epoch != p.epoch:
            p.epoch, p.epoch_iter = epoch, 0
        k = opt.accum_steps  # batches per optimiser step; epoch_iter counts steps
        sampler.set_epoch(epoch, p.epoch_iter * opt.batch_size * k)
        t_window = time.perf_counter()
        bar = tqdm(
            total=p.epoch_iter + -(-len(loader) // k),
            initial=p.epoch_iter,
            desc=f"epoch {epoch}/{last_epoch}",
            unit="it",
            disable=None,
            leave=False,
            dynamic_ncols=True,
        )
        for micro in batched(loader, k):
            if k == 1:
                model.set_input(micro[0])
                model.optimize_parameters()
            else:
                model.optimize_accumulated(micro)
            if os.environ.get("PIX2PIX_TEST_DIE_AT") == f"{d.rank}:{p.total_iters + 1}":
                os._exit(3)  # test hook: a process that dies mid-run, as a crash or an OOM kill would
            p.epoch_iter += 1
            p.total_iters += 1
            steps_this_process += 1
            bar.update(1)

            stop_now = stop.signum is not None
            if p.total_iters % opt.print_freq == 0:
                if d.enabled:  # every process must stop at the same step: agree at print boundaries
                    stop_now = distributed.any_over_ranks(d, stop_now)
                losses, finite = model.pop_losses()
                per_image = (time.perf_counter() - t_window) / (opt.print_freq * opt.batch_size * k)
                t_window = time.perf_counter()
                lr = model.optimizer_G.param_groups[0]["lr"]
                log.info(vis.print_current_losses(epoch, p.epoch_iter, p.total_iters, losses, per_image, lr))
                if model.skipped_steps:
                    log.warning("%d steps skipped so far for a non-finite loss", model.skipped_steps)
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
                if not finite:
                    log.error(
                        "non-finite loss within iterations %d..%d: %s; stopping, %s keeps the last good state",
                        p.total_iters - opt.print_freq + 1,
                        p.total_iters,
                        losses,
                        latest,
                    )
                    return 1
                vis.plot_current_losses(epoch - 1 + p.epoch_iter * opt.batch_size * k / n_images, losses)
            if p.total_iters % opt.display_freq == 0:
                vis.display_current_results(model.current_visuals(), epoch, p.total_iters, save_result=False)
            if p.total_iters % opt.update_html_freq == 0:
                vis.display_current_results(model.current_visuals(), epoch, p.total_iters, save_result=True)
            if p.total_iters % opt.save_latest_freq == 0:
                save_latest(opt, model, p, best())
                log.info("saved latest (epoch %d, total_iters %d)", epoch, p.total_iters)
            at_boundary = not d.enabled or p.total_iters % opt.print_freq == 0
            if (stop_now and at_boundary) or steps_this_process == opt.stop_after_iters:
                bar.close()
                save_latest(opt, model, p, best())
                why = "interrupted" if stop.signum is not None else f"stopped after {steps_this_process} iterations"
                log.warning(
                    "%s: saved the full state to %s (epoch %d, iteration %d); resume with --continue_train",
                    why,
                    latest,
                    epoch,
                    p.epoch_iter,
                )
                return 130 if stop_now else 0
        bar.close()

        lr = model.update_learning_rate()
        visuals = {k: v.detach().clone() for k, v in model.current_visuals().items()}
        if validator is not None and epoch % opt.val_freq == 0:
            vis.plot_validation(epoch, validator(model, epoch, p.total_iters))
        if not opt.no_html:
            vis.display_current_results(visuals, epoch, p.total_iters, save_result=True)
        save_latest(opt, model, Progress(epoch + 1, 0, p.total_iters), best())
        if d.is_main and (epoch % opt.save_epoch_freq == 0 or epoch == last_epoch):
            snap = {
                **model.generator_weights(),
                "options": opt.saved_options,
                "epoch": epoch,
                "total_iters": p.total_iters,
            }
            checkpoint.atomic_save(snap, snapshot_path(run_dir, str(epoch)))
            prune_snapshots(run_dir, opt.keep_last)
        log.info(
            "end of epoch %d / %d, %d iterations; learning rate now %.7f; saved %s",
            epoch,
            last_epoch,
            p.total_iters,
            lr,
            latest,
        )
    log.info("training done: %s", run_dir)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("train.py: interrupted twice: stopped at once, without saving", file=sys.stderr)
        sys.exit(130)
