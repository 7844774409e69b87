"""The one resolve step of each script, after which no option changes. train.py: resume, seed, demo data and
compile settled into new frozen options. test.py, translate.py and export.py: the generator's checkpoint is read
first, its configs complete the command line's, and only then is everything validated, against the run's own
generator."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from typing import Any

import torch

from data.demo import demo_dir, ensure_demo_dataset
from data.image_io import BadImageError
from data.survey import settle_values
from engine import resume, run_folder
from engine.checkpoint import CheckpointError, GeneratorCheckpoint, load_generator
from engine.inference import checkpoint_path, reference_options
from engine.resume import Start
from options import rules
from options.options import (
    ARCHITECTURE_KEYS,
    INHERITED_DATA_KEYS,
    INHERITED_VALUE_KEYS,
    VALUE_KEYS,
    Options,
    TrainOptions,
    foreign_flags,
)
from util import distributed
from util.config import OptionError

log = logging.getLogger("train")


def resolve_training(opt: TrainOptions, d: distributed.Dist, run_dir: str, given: set[str]) -> Start:
    """The one resolve step: where the run starts (resume reads the checkpoint's seed, epoch_count and optimiser
    settings), then the seed, the data set and compile under torchrun, settled into new frozen options
    (Start.opt) before they are saved. Nothing changes them after this. Raises CheckpointError, and OptionError
    when the checkpoint's data options and the command line's do not fit together."""
    parsed = opt
    new_run_in(opt, d, run_dir)
    start = resume.plan_start(opt, run_dir, given)
    opt = start.opt
    check_settled(parsed, opt, values=False)  # before any data is read: the rules the values take no part in
    parsed = opt
    seed = opt.run.seed if opt.run.seed is not None else random.SystemRandom().randrange(2**31)
    settled = {"seed": distributed.broadcast_int(d, seed)}  # every process must share the data order
    if opt.data.dataroot is None:
        if not d.is_main:
            distributed.barrier(d)  # rank 0 builds the demo set first
        settled["dataroot"] = ensure_demo_dataset()
        if d.is_main:
            distributed.barrier(d)
    if d.enabled and opt.speed.compile:
        log.warning("--compile is not used under torchrun yet; running eagerly")
        settled["compile"] = False
    opt = opt.replace(**settled)
    try:  # the value types of the data and their ranges (measured where asked), before the options are saved
        values, types = settle_values(opt.data, opt.generator, opt.values)
        opt = opt.replace(**values)
    except (FileNotFoundError, ValueError, BadImageError) as e:
        raise OptionError(str(e)) from None
    check_settled(parsed, opt, values=True)
    changes = value_changes(start, opt, types)
    return dataclasses.replace(start, opt=opt, data_changes=changes, value_types=types or start.value_types)


def value_changes(start: Start, opt: TrainOptions, types: dict[str, str]) -> dict | None:
    """The start's data changes, with those of the value description a --new_data resume settled again on the
    new data (each warned about): the run's inputs or outputs are now in other units or another type."""
    changes = dict(start.data_changes or {})
    if start.saved is not None and opt.checkpoints.new_data:
        for real, was in (start.value_types or {}).items():  # runs saved before value types were: none
            if types.get(real, was) != was:
                log.warning("--new_data: real_%s is %s data, the checkpoint's was %s", real, types[real], was)
                changes[f"value_type_{real}"] = (was, types[real])
        before, now = start.saved, opt.flat()
        for k in VALUE_KEYS:
            if str(before[k]) != str(now[k]):
                log.warning(
                    "--new_data: --%s settled again on the new data: %r (the checkpoint's %r)",
                    k,
                    str(now[k]),
                    str(before[k]),
                )
                changes[k] = (str(before[k]), str(now[k]))
    return changes or None


def new_run_in(opt: TrainOptions, d: distributed.Dist, run_dir: str) -> None:
    """A new run's folder must hold no run: a trained model is the user's work. CheckpointError naming the run and
    the ways on, unless --start_over, which moves the old run's files aside (rank 0; the others wait)."""
    held = None if opt.checkpoints.continue_train else run_folder.held_run(run_dir)
    if held is None:
        return
    if not opt.checkpoints.start_over:
        raise CheckpointError(
            f"{run_dir} holds a run ({held}): resume it with --continue_train, train under another --name, or "
            "start over with --start_over (the old run's files are kept aside, not deleted)"
        )
    if d.is_main:
        log.warning("--start_over: the run in %s (%s) moved to %s", run_dir, held, run_folder.keep_aside(run_dir))
    distributed.barrier(d)


def check_settled(parsed: Options, opt: Options, values: bool | None = None) -> None:
    """The options a script runs with, checked once: the configs the resolve step changed (a checkpoint's,
    measured ranges) on their own, as parse() checked the command line's, then the rules across configs (values:
    see options.rules.check)."""
    for before, after in zip(parsed.configs(), opt.configs(), strict=True):
        if after != before:
            after.validate()
    rules.check(opt, values)


def training_device(opt: TrainOptions, d: distributed.Dist) -> torch.device:
    """This process's device, with a warning for settings that do not do what they might seem to; OptionError for
    --cuda_graph off a single CUDA device."""
    if d.enabled and opt.generator.norm == "batch":
        log.warning(
            "--norm batch with %d processes: each process normalises with its own batch's statistics "
            "(--norm syncbatch shares them, on CUDA)",
            d.world_size,
        )
    ids = distributed.device_ids(opt.basic.gpu_ids)
    if len(ids) > 1:
        log.warning("--gpu_ids %s: this trainer uses one device per process; using the first", opt.basic.gpu_ids)
    device = distributed.training_device(d, ids, opt.preprocess.crops)
    if opt.speed.cuda_graph and (device.type != "cuda" or d.enabled):
        where = "under torchrun" if d.enabled else f"on the {device.type.upper()}"
        raise OptionError(f"--cuda_graph captures the step's CUDA kernels in one process; this run is {where}")
    return device


def contradictions(opt: Options, ckpt: GeneratorCheckpoint, given: set[str]) -> list[str]:
    """One line for each generator flag written on the command line whose value is not the run's: '--netG
    unet_128 ignored: the checkpoint was trained with unet_256'. The run's own values are accepted silently."""
    saved = ckpt.options["generator"]
    return [
        f"--{k} {getattr(opt.generator, k)} ignored: the checkpoint was trained with {saved[k]}"
        for k in ARCHITECTURE_KEYS
        if k in given and getattr(opt.generator, k) != saved[k]
    ]


def inherited(opt: Options, ckpt: GeneratorCheckpoint, given: set[str]) -> dict[str, Any]:
    """What the run's configs fill in: its generator, and for a script that reads data, the preprocessing and
    the data folder the command line leaves out."""
    saved = ckpt.options
    values = dict(saved["generator"])
    names = opt.names()
    values.update({k: saved["preprocess"][k] for k in INHERITED_DATA_KEYS if k in names and k not in given})
    kept = saved.get("values", {})  # runs before format 3's value ranges: the value types' own (the defaults)
    values.update({k: kept[k] for k in INHERITED_VALUE_KEYS if k in names and k in kept and k not in given})
    if "dataroot" in names and "dataroot" not in given:
        values["dataroot"] = saved["data"]["dataroot"]
    return values


def resolve_checkpoint(opt: Options, given: set[str]) -> tuple[Options, GeneratorCheckpoint, str]:
    """(the options this script runs with, the generator's checkpoint, its tag). A run's file: its configs
    complete the command line, whose generator flags must agree with them. A reference implementation's file
    (weights only): the command line describes it, and, as the reference's test.py does, images are resized to
    --crop_size unless --load_size is given. The result is validated once, as a whole, against the run's
    generator. Raises CheckpointError for a file that cannot be used and OptionError for flags that do not fit."""
    foreign = foreign_flags(opt, given)
    if foreign:
        shown = " ".join(f"--{k}" for k in foreign)
        logging.getLogger(opt.script).warning("%s: train.py's flags, ignored by %s.py", shown, opt.script)
    parsed = opt
    ckpt, tag = open_checkpoint(opt)
    if opt.source.seed is None:  # type: ignore[attr-defined]
        opt = opt.replace(seed=ckpt.seed)
    if ckpt.reference:
        if "load_size" in opt.names() and "load_size" not in given:
            opt = opt.replace(load_size=opt.preprocess.crop_size)  # type: ignore[attr-defined]
    else:
        for line in contradictions(opt, ckpt, given):  # the weights define the generator; the flag cannot
            logging.getLogger(opt.script).warning("%s", line)
        opt = opt.replace(**inherited(opt, ckpt, given))
    if hasattr(opt, "data"):
        opt = settle_dataroot(opt, ckpt, given)
    check_settled(parsed, opt)
    if ckpt.ema:
        logging.getLogger(opt.script).info(
            "using the generator's exponential moving average (--no_ema for the trained weights)"
        )
    return opt, ckpt, tag


def settle_dataroot(opt: Any, ckpt: GeneratorCheckpoint, given: set[str]) -> Any:
    """The data folder test.py reads: the command line's, else the run's; the demo set (built on first use) when
    the run trained on it or names none. Raises OptionError when there is no such folder."""
    if ckpt.reference and "dataroot" not in given:
        raise OptionError(f"{ckpt.path} holds no options, so no --dataroot either: pass --dataroot")
    root = opt.data.dataroot
    if root is None or (root == demo_dir() and not os.path.isdir(demo_dir())):
        return opt.replace(dataroot=ensure_demo_dataset())
    if not os.path.isdir(root):
        where = "" if "dataroot" in given else " (from the training run)"
        raise OptionError(f"--dataroot {root}{where}: no such folder")
    return opt


def open_checkpoint(opt: Any) -> tuple[GeneratorCheckpoint, str]:
    """The generator a script's options name (--checkpoint FILE, or --checkpoints_dir/--name/--epoch/--load_iter)
    and its tag; a reference file is described by the options' generator flags. Raises CheckpointError with a
    message for the user (a missing file lists what the run folder has)."""
    file = opt.checkpoint_file.checkpoint if hasattr(opt, "checkpoint_file") else None
    source = opt.source
    if file is not None:
        path, tag = file, os.path.splitext(os.path.basename(file))[0]
    else:
        run_dir = os.path.join(opt.basic.checkpoints_dir, opt.basic.name)
        path, tag = checkpoint_path(run_dir, source.epoch, source.load_iter)
        if not os.path.exists(path):
            have = sorted(f for f in os.listdir(run_dir) if f.endswith(".pth")) if os.path.isdir(run_dir) else []
            found = "found: " + ", ".join(have) if have else "that run folder has none"
            raise CheckpointError(f"no checkpoint {path} (--name {opt.basic.name}, --epoch {source.epoch}); {found}")
    generator = opt.generator.to_dict()
    return load_generator(path, not source.no_ema, lambda: reference_options(generator)), tag


__all__ = ["CheckpointError", "resolve_checkpoint"]
