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
from engine import resume
from engine.checkpoint import CheckpointError, GeneratorCheckpoint
from engine.inference import open_checkpoint
from engine.resume import Start
from options.options import (
    ARCHITECTURE_KEYS,
    INHERITED_DATA_KEYS,
    INHERITED_VALUE_KEYS,
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
    start = resume.plan_start(opt, run_dir, given)
    opt = start.opt
    seed = opt.seed if opt.seed is not None else random.SystemRandom().randrange(2**31)
    settled = {"seed": distributed.broadcast_int(d, seed)}  # every process must share the data order
    if opt.dataroot is None:
        if not d.is_main:
            distributed.barrier(d)  # rank 0 builds the demo set first
        settled["dataroot"] = ensure_demo_dataset()
        if d.is_main:
            distributed.barrier(d)
    if d.enabled and opt.compile:
        log.warning("--compile is not used under torchrun yet; running eagerly")
        settled["compile"] = False
    opt = dataclasses.replace(opt, **settled)
    try:  # the value types of the data and their ranges (measured where asked), before the options are saved
        c = opt.config
        opt = dataclasses.replace(opt, **settle_values(c("data"), c("generator"), c("values")))
    except (FileNotFoundError, ValueError, BadImageError) as e:
        raise OptionError(str(e)) from None
    opt.validate()  # the checkpoint's data options beside the command line's must fit together too
    return dataclasses.replace(start, opt=opt)


def training_device(opt: TrainOptions, d: distributed.Dist) -> torch.device:
    """This process's device, with a warning for settings that do not do what they might seem to; OptionError for
    --cuda_graph off a single CUDA device."""
    if d.enabled and opt.norm == "batch":
        log.warning(
            "--norm batch with %d processes: each process normalises with its own batch's statistics "
            "(--norm syncbatch shares them, on CUDA)",
            d.world_size,
        )
    if len(opt.gpu_ids_list) > 1:
        log.warning("--gpu_ids %s: this trainer uses one device per process; using the first", opt.gpu_ids)
    device = distributed.training_device(d, opt.gpu_ids_list, opt.config("preprocess").crops)
    if opt.cuda_graph and (device.type != "cuda" or d.enabled):
        where = "under torchrun" if d.enabled else f"on the {device.type.upper()}"
        raise OptionError(f"--cuda_graph captures the step's CUDA kernels in one process; this run is {where}")
    return device


def contradictions(opt: Options, ckpt: GeneratorCheckpoint, given: set[str]) -> list[str]:
    """One line for each generator flag written on the command line whose value is not the run's: '--netG
    unet_128 ignored: the checkpoint was trained with unet_256'. The run's own values are accepted silently."""
    saved = ckpt.options["generator"]
    return [
        f"--{k} {getattr(opt, k)} ignored: the checkpoint was trained with {saved[k]}"
        for k in ARCHITECTURE_KEYS
        if k in given and getattr(opt, k) != saved[k]
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
    ckpt, tag = open_checkpoint(opt)
    if opt.seed is None:  # type: ignore[attr-defined]
        run_seed = None if ckpt.reference else TrainOptions.from_dict(ckpt.options).seed
        opt = dataclasses.replace(opt, seed=run_seed or 0)
    if ckpt.reference:
        if "load_size" in opt.names() and "load_size" not in given:
            opt = dataclasses.replace(opt, load_size=opt.crop_size)  # type: ignore[attr-defined]
    else:
        for line in contradictions(opt, ckpt, given):  # the weights define the generator; the flag cannot
            logging.getLogger(opt.script).warning("%s", line)
        opt = dataclasses.replace(opt, **inherited(opt, ckpt, given))
    if hasattr(opt, "dataroot"):
        opt = settle_dataroot(opt, ckpt, given)
    opt.validate()
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
    if opt.dataroot is None or (opt.dataroot == demo_dir() and not os.path.isdir(demo_dir())):
        return dataclasses.replace(opt, dataroot=ensure_demo_dataset())
    if not os.path.isdir(opt.dataroot):
        where = "" if "dataroot" in given else " (from the training run)"
        raise OptionError(f"--dataroot {opt.dataroot}{where}: no such folder")
    return opt


__all__ = ["CheckpointError", "resolve_checkpoint"]
