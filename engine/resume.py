"""Resume policy: where a run starts (new, latest.pth, an epoch's generator, --init_from) and the one call that
restores everything a checkpoint holds (weights, optimisers, schedulers, scalers, EMA, best score, RNG). The file
format and its migration are engine.checkpoint's."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from engine.checkpoint import CheckpointError, Progress, load, load_latest, project_checkpoint, read, snapshot_path
from models.reference import adapt_reference, is_bare_state_dict
from options.options import RESUME_KEYS, TrainOptions

log = logging.getLogger("train")


@dataclass
class Start:
    """Where a run starts: the options it runs with (a resumed run's seed, epoch_count and optimiser settings are
    its checkpoint's), its progress, and what to restore (latest.pth's full state, or a snapshot's generator)."""

    opt: TrainOptions
    progress: Progress
    state: dict | None = None
    netG_state: dict | None = None
    finished: bool = False  # latest.pth says every epoch is done


def plan_start(opt: TrainOptions, run_dir: str, given: set[str]) -> Start:
    """A new run, --continue_train (latest.pth) or --continue_train --epoch N (the generator of N_net_G.pth at
    epoch N + 1). A resumed run keeps its checkpoint's seed and epoch_count (the data order and the lr schedule
    depend on them): Start.opt holds them. Raises CheckpointError naming what does not fit."""
    if not opt.continue_train:
        return Start(opt, Progress(opt.epoch_count, 0, 0))
    if opt.epoch != "latest":
        return _from_snapshot(opt, run_dir, given)
    path = os.path.join(run_dir, "latest.pth")
    if not os.path.exists(path):
        raise CheckpointError(f"--continue_train: no checkpoint at {path} (train without --continue_train first)")
    state = _load_for_resume(path, load_latest)
    saved = state["options"]
    _check_same_networks(opt, saved)
    if state["epoch_iter"] > 0:  # mid-epoch: the rest of the epoch must be the same batches
        diffs = mid_epoch_differences(opt, saved)
        if diffs:
            raise CheckpointError(
                "--continue_train: the checkpoint was saved mid-epoch with other data options:\n  " + "\n  ".join(diffs)
            )
    opt = _checkpoint_settings(opt, saved, given)
    p = Progress(state["epoch"], state["epoch_iter"], state["total_iters"])
    if state["epoch"] > opt.last_epoch:
        log.info(
            "training already finished after epoch %d; raise --n_epochs or --n_epochs_decay to train longer",
            p.epoch - 1,
        )
        return Start(opt, p, state=state, finished=True)
    log.info(
        "resuming latest.pth at epoch %d, iteration %d of the epoch (%d in all)", p.epoch, p.epoch_iter, p.total_iters
    )
    return Start(opt, p, state=state)


def _checkpoint_settings(opt: TrainOptions, saved: dict, given: set[str]) -> TrainOptions:
    """opt with the checkpoint's seed, epoch_count and the optimiser settings its saved state holds; a flag given
    with another value is named in a warning."""
    if opt.seed is not None and opt.seed != saved["run"]["seed"]:
        log.warning("--seed %s ignored: resuming with the checkpoint's seed %s", opt.seed, saved["run"]["seed"])
    kept = {"seed": saved["run"]["seed"], "epoch_count": saved["optim"]["epoch_count"]}
    for k in ("lr", "lr_D", "beta1", "weight_decay"):  # the optimisers' saved state holds these
        if k in given and getattr(opt, k) != saved["optim"][k]:
            log.warning("--%s %s ignored: resuming with the checkpoint's %s", k, getattr(opt, k), saved["optim"][k])
        kept[k] = saved["optim"][k]
    return dataclasses.replace(opt, **kept)


def _from_snapshot(opt: TrainOptions, run_dir: str, given: set[str]) -> Start:
    """--continue_train --epoch N: the generator of N_net_G.pth, from epoch N + 1 unless --epoch_count says."""
    path = snapshot_path(run_dir, opt.epoch)
    if not os.path.exists(path):
        raise CheckpointError(f"--continue_train --epoch {opt.epoch}: no snapshot at {path}")
    snap = _load_for_resume(path, load)
    _check_same_networks(opt, snap["options"])
    if "epoch_count" not in given:  # continue after the snapshot's epoch
        opt = dataclasses.replace(opt, epoch_count=snap["epoch"] + 1)
    log.warning(
        "starting from the generator of %s at epoch %d; the discriminator and optimisers start afresh "
        "(--epoch latest resumes the full state)",
        path,
        opt.epoch_count,
    )
    return Start(opt, Progress(opt.epoch_count, 0, snap.get("total_iters", 0)), netG_state=snap["netG"])


def restore(start: Start, model, validator, device: torch.device) -> None:
    """Everything a start holds, in one call, into a freshly built model (before any DDP wrap): the full state of
    latest.pth (networks, optimisers, schedulers, scalers, EMA, the best validation score, then the RNG streams)
    or a snapshot's generator. Call it last before the loop: nothing may draw random numbers after it. Raises
    models.WeightsMismatch when the weights do not fit."""
    if start.netG_state is not None:
        model.netG.load_state_dict(start.netG_state)
    if start.state is None:
        return
    model.load_state_dict(start.state["model"])
    if validator is not None:
        validator.best = start.state["best"]
    set_rng_state(start.state["rng"], device)


def _load_for_resume(path: str, loader) -> dict:
    try:
        return loader(path)
    except CheckpointError as e:
        raise CheckpointError(f"--continue_train: {e}") from e


def _check_same_networks(opt: TrainOptions, saved: dict) -> None:
    diffs = resume_differences(opt, saved)
    if diffs:
        raise CheckpointError(
            "--continue_train: the checkpoint was trained with other networks:\n  " + "\n  ".join(diffs)
        )


def init_from(model, path: str) -> None:
    """--init_from: every tensor of another run's netG and netD whose name and shape match; the rest is listed."""
    raw = read(path)
    if is_bare_state_dict(raw):  # the reference's <epoch>_net_G.pth, and its <epoch>_net_D.pth beside it
        nets = {"netG": adapt_reference(model.netG, raw, zero_bias=False)}
        d_path = path.removesuffix("_net_G.pth") + "_net_D.pth"
        if d_path != path + "_net_D.pth" and os.path.exists(d_path):
            nets["netD"] = adapt_reference(model.netD, read(d_path), zero_bias=False)
    else:
        source = project_checkpoint(raw, path)
        nets = source["model"] if source["kind"] == "latest" else source
    if "netG" not in nets:
        raise CheckpointError(f"{path} holds no generator (netG): not a latest.pth or *_net_G.pth of a run")
    for name, net in (("netG", model.netG), ("netD", model.netD)):
        if name not in nets:  # a generator snapshot: D starts afresh
            log.info("--init_from: %s has no %s; it starts from scratch", path, name)
            continue
        loaded, skipped = load_matching(net, nets[name])
        shown = ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else "")
        log.info(
            "--init_from: %s: loaded %d tensors, kept %d of this network's own (%s)",
            name,
            len(loaded),
            len(skipped),
            shown,
        )


def resume_differences(opt: TrainOptions, saved: dict) -> list[str]:
    """Every option that defines the networks and differs between the command line and saved options."""
    flat = {k: v for group in saved.values() for k, v in group.items()}
    return [
        f"--{k}: checkpoint {flat[k]!r}, command line {getattr(opt, k)!r}"
        for k in RESUME_KEYS
        if flat[k] != getattr(opt, k)
    ]


def mid_epoch_differences(opt: TrainOptions, saved: dict) -> list[str]:
    """The data options that must match to finish an epoch with the same batches."""
    data = saved["data"]
    return [
        f"--{k}: checkpoint {data[k]!r}, command line {getattr(opt, k)!r}"
        for k in ("batch_size", "serial_batches", "max_dataset_size")
        if data[k] != getattr(opt, k)
    ]


def load_matching(net: torch.nn.Module, state: dict) -> tuple[list[str], list[str]]:
    """Copy every tensor of `state` whose name and shape match `net`'s; returns (loaded, skipped) names,
    skipped meaning the net's tensors left as they were (absent from state, or of another shape)."""
    own = net.state_dict()
    take = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    own.update(take)
    net.load_state_dict(own)
    return sorted(take), sorted(k for k in own if k not in take)


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
