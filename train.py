"""Train pix2pix: python train.py --dataroot ./datasets/facades --name facades --direction BtoA."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

STARTUP_INTERRUPT = "train.py: interrupted during start-up; nothing was trained or saved"
if __name__ == "__main__":  # Ctrl-C while the libraries load or the data is scanned: one line, exit 130
    signal.signal(signal.SIGINT, lambda *_: (print(STARTUP_INTERRUPT, file=sys.stderr), os._exit(130)))

import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from data import EpochSampler, create_dataloader, create_dataset
from data.image_io import data_error
from engine import checkpoint, cli, resume, run_folder
from engine.checkpoint import CheckpointError, NonFiniteWeights
from engine.resolve import resolve_training, training_device
from engine.resume import Start
from engine.training import InterruptedTwice, LoopConfig, StopFlag, TrainLoop, saver_for, visualizer_for
from engine.validation import Validator, split_validation
from models import WeightsMismatch, create_model
from models.graphed_step import GraphedStep
from models.perceptual import WeightsMissing
from options import presets
from options.options import TrainOptions, format_options, given_flags, parse, save_options
from reporting.visualizer import NullVisualizer
from util import distributed
from util.config import OptionError
from util.util import WriteFailed, setup_logging

log = logging.getLogger("train")


def fail(msg: str) -> NoReturn:
    cli.fail("train", msg)


def build_data(opt: TrainOptions, d: distributed.Dist, device: torch.device):
    """(training set, validation set or None, sampler, loader); a data problem ends with exit status 2."""
    data, seed = opt.data, opt.run.seed
    try:
        dataset = create_dataset(data, opt.preprocess, opt.generator, opt.augment, seed, True, opt.values)
        dataset.check(data.skip_bad_images, data.max_bad_fraction, workers=max(1, data.num_threads))
        dataset.check_batchable(data.batch_size)
        dataset.check_min_size(opt.discriminator.min_side, data.skip_bad_images, data.max_bad_fraction)
        dataset, val_set = split_validation(opt.metrics, data, opt.preprocess, opt.generator, opt.values, seed, dataset)
        if data.cache_images:  # after the split: held-out images are not trained on, nor cached
            dataset.cache_images(workers=max(1, data.num_threads))
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        fail(str(e))
    if data.batch_size > len(dataset):
        fail(
            f"--batch_size {data.batch_size} is larger than the data set ({len(dataset)} images in "
            f"{data.dataroot}/{data.phase})"
        )
    sampler = EpochSampler(len(dataset), seed, not data.serial_batches, d.rank, d.world_size)
    loader = create_dataloader(dataset, data.batch_size, data.num_threads, sampler, device)
    log.info("%d training images in %s/%s, batch size %d", len(dataset), data.dataroot, data.phase, data.batch_size)
    if d.enabled:
        n = data.batch_size
        log.info("torchrun: %d processes, batch %d each (%d in all)", d.world_size, n, d.world_size * n)
    return dataset, val_set, sampler, loader


def build_model(opt: TrainOptions, device: torch.device):
    """The model, with --init_from's weights when given."""
    try:
        model = create_model(opt.model_config(), device)
    except WeightsMissing as e:
        fail(str(e))
    if opt.basic.verbose:
        log.debug("netG:\n%s\nnetD:\n%s", model.netG, model.netD)
    n_g, n_d = (sum(p.numel() for p in net.parameters()) / 1e6 for net in (model.netG, model.netD))
    log.info(
        "netG %s: %.3f M parameters; netD %s: %.3f M parameters", opt.generator.netG, n_g, opt.discriminator.netD, n_d
    )
    if opt.checkpoints.init_from is not None:
        try:
            resume.init_from(model, opt.checkpoints.init_from, opt.generator)
        except CheckpointError as e:
            fail(f"--init_from: {e}")
    return model


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opt = parse(True, argv)
    setup_logging(opt.basic.verbose)
    d = distributed.setup(use_cuda=bool(distributed.device_ids(opt.basic.gpu_ids)))
    if not d.is_main:  # under torchrun only rank 0 talks; errors still show
        logging.getLogger().setLevel(logging.ERROR)
    try:
        run_dir = checkpoint.prepare_run_dir(opt.basic.checkpoints_dir, opt.basic.name)
        lock = run_folder.claim(run_dir) if d.is_main else None  # under torchrun, rank 0 holds it
    except (CheckpointError, run_folder.RunFolderBusy) as e:
        fail(str(e))
    returned = False
    try:
        status = train(opt, argv, d, run_dir)
        returned = True  # every process stops at the same step, so all of them get here
        return status
    except WriteFailed as e:  # at start (options): nothing trained yet
        fail(str(e))
    finally:
        distributed.cleanup(d, together=returned)
        if lock is not None:
            lock.release()


def record_options(start: Start, run_dir: str, argv: list[str]) -> None:
    """The options in force to the log and train_opt.*, with the data changes a --new_data resume made."""
    preset, given = start.opt.run.preset, given_flags(argv)
    if preset != "none" and start.state is None and start.netG_state is None:  # a new run: the preset applied
        log.info("%s", presets.describe(preset, presets.preset_values(preset, given), given))
    log.info("\n%s", format_options(start.opt))
    changes = {k: {"checkpoint": a, "now": b} for k, (a, b) in (start.data_changes or {}).items()}
    save_options(start.opt, run_dir, "train", argv, {"data_changes": changes} if changes else None)


def train(opt: TrainOptions, argv: list[str], d: distributed.Dist, run_dir: str) -> int:
    """Resolve and save the options, build, restore and run the loop; returns the exit status."""
    try:
        start = resolve_training(opt, d, run_dir, given_flags(argv))
        device = training_device(start.opt, d)
    except (CheckpointError, OptionError) as e:
        fail(str(e))
    if start.finished:
        return 0
    opt = start.opt
    if start.state is not None and d.is_main:
        run_folder.trim_logs(run_dir, start.progress.epoch, start.progress.total_iters)
    if d.is_main:  # only now: every value above is the one this run uses
        record_options(start, run_dir, argv)
    torch.manual_seed(opt.run.seed)
    dataset, val_set, sampler, loader = build_data(opt, d, device)
    model = build_model(opt, device)
    saver = saver_for(opt, run_dir, d.is_main, start.value_types)
    validator = None
    if val_set is not None and d.is_main:
        validator = Validator(opt.metrics, opt.run.seed, val_set, device, saver)
    vis = visualizer_for(opt, run_dir) if d.is_main else NullVisualizer()
    vis.check_display()  # one warning now if the visdom display asked for is not there
    try:
        resume.restore(start, model, validator, device)  # last: nothing may draw random numbers after this
    except WeightsMismatch as e:
        fail(f"--continue_train: {e}")
    if d.enabled:
        model.wrap_ddp()
    stop = StopFlag()
    stop.install()
    loop = TrainLoop(
        LoopConfig.from_options(opt),
        model,
        loader,
        sampler,
        vis,
        saver,
        stop,
        start.progress,
        len(dataset),
        d,
        validator,
        GraphedStep(model) if opt.speed.cuda_graph else None,
    )
    try:
        with logging_redirect_tqdm():
            return loop.run()
    except (NonFiniteWeights, WriteFailed) as e:  # a full disk, say: what was saved before is intact
        log.error("%s; not saved: %s", e, saver.what_is_kept())
        return 1
    except (RuntimeError, ValueError) as e:
        msg = data_error(e)
        if msg is None:
            raise
        log.error("%s (%s)", msg, saver.what_is_kept())
        return 1
    finally:
        stop.uninstall()
        vis.close()  # every sink: the text logs, the page, visdom, TensorBoard, W&B


def command() -> NoReturn:
    """train.py's entry, and the console command pix2pix-train that pip install gives."""
    twice = {InterruptedTwice: "interrupted twice: stopped at once, without saving"}
    cli.run("train", main, STARTUP_INTERRUPT.removeprefix("train.py: "), twice)  # Ctrl-C before training started


if __name__ == "__main__":
    command()
