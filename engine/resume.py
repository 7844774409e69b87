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
from models.config import GeneratorConfig
from models.reference import adapt_reference, is_bare_state_dict
from options.options import DATA_SAMPLING_KEYS, DATA_SOURCE_KEYS, RESUME_KEYS, VALUE_KEYS, TrainOptions

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
    data_changes: dict | None = None  # {flag: (checkpoint's, this run's)} with --new_data, recorded in train_opt.json
    saved: dict | None = None  # a resumed run's options as its checkpoint holds them: {flag: value}, parsed
    value_types: dict | None = None  # {"A": real_A's value type, "B": real_B's}: the data's, saved with the run


def plan_start(opt: TrainOptions, run_dir: str, given: set[str]) -> Start:
    """A new run, --continue_train (latest.pth) or --continue_train --epoch N (the generator of N_net_G.pth at
    epoch N + 1). A resumed run keeps its checkpoint's seed and epoch_count (the data order and the lr schedule
    depend on them): Start.opt holds them. Raises CheckpointError naming what does not fit."""
    if not opt.checkpoints.continue_train:
        return Start(opt, Progress(opt.optim.epoch_count, 0, 0))
    if "preset" in given and opt.run.preset != "none":  # it would be announced and recorded, not applied
        raise CheckpointError(
            f"--preset {opt.run.preset}: a preset sets the flags of a new run; --continue_train keeps the run's own "
            "(leave --preset out to resume, or start a new run with another --name)"
        )
    if opt.checkpoints.epoch != "latest":
        return _from_snapshot(opt, run_dir, given)
    path = os.path.join(run_dir, "latest.pth")
    if not os.path.exists(path):
        raise CheckpointError(f"--continue_train: no checkpoint at {path} (train without --continue_train first)")
    state = _load_for_resume(path, load_latest)
    saved = TrainOptions.from_dict(state["options"]).flat()  # parsed once; every check below reads it
    opt = _inherit(opt, saved, given)
    opt = _same_networks(opt, saved, given)
    _same_values(opt, saved, given)
    opt, changes = _resumed_data(opt, saved, given, mid_epoch=state["epoch_iter"] > 0)
    opt = _checkpoint_settings(opt, saved, given)
    p = Progress(state["epoch"], state["epoch_iter"], state["total_iters"])
    if changes and p.epoch_iter > 0:  # the epoch's first steps saw the old data: it is trained again, whole
        log.warning("epoch %d restarts from its first iteration on the new data", p.epoch)
        p = Progress(p.epoch, 0, p.total_iters)
    if state["epoch"] > opt.optim.last_epoch:
        log.info(
            "training already finished after epoch %d; raise --n_epochs or --n_epochs_decay to train longer",
            p.epoch - 1,
        )
        return Start(opt, p, state=state, finished=True, saved=saved, value_types=state.get("value_types"))
    log.info(
        "resuming latest.pth at epoch %d, iteration %d of the epoch (%d in all)", p.epoch, p.epoch_iter, p.total_iters
    )
    return Start(opt, p, state=state, data_changes=changes, saved=saved, value_types=state.get("value_types"))


def _resumed_data(opt: TrainOptions, flat: dict, given: set[str], mid_epoch: bool) -> tuple[TrainOptions, dict]:
    """opt, and {flag: (checkpoint's, command line's)} for the data options given with another value. What a run
    trains on (options.DATA_SOURCE_KEYS): another value is refused unless --new_data (a typo in a path must not
    silently switch the training set, nor count the epoch as done on other images). How it is sampled
    (DATA_SAMPLING_KEYS): another value is accepted at an epoch boundary (one warning each), refused mid-epoch,
    where the rest of the epoch must be the same batches. Raises CheckpointError for a change not allowed.
    flat: the checkpoint's options, {flag: value}."""
    now = opt.flat()
    keys = DATA_SOURCE_KEYS + DATA_SAMPLING_KEYS
    changes = {k: (flat[k], now[k]) for k in keys if k in given and not _same(k, flat[k], now[k])}
    shown = [f"--{k}: checkpoint {a!r}, command line {b!r}" for k, (a, b) in changes.items()]
    source = [line for line, k in zip(shown, changes, strict=True) if k in DATA_SOURCE_KEYS]
    if source and not opt.checkpoints.new_data:
        raise CheckpointError(
            "--continue_train: the checkpoint was trained on other data:\n  " + "\n  ".join(source) + "\n"
            "leave these flags out to continue on the checkpoint's data, or pass --new_data to continue on this data"
        )
    if mid_epoch and not opt.checkpoints.new_data and changes:
        raise CheckpointError(
            "--continue_train: the checkpoint was saved mid-epoch with other data options:\n  " + "\n  ".join(shown)
        )
    for line in shown:
        log.warning("--continue_train with other data: %s", line)
    return opt, changes


def _same(key: str, a, b) -> bool:
    if key == "dataroot" and a is not None and b is not None:
        return os.path.realpath(a) == os.path.realpath(b)
    return a == b


def _checkpoint_settings(opt: TrainOptions, flat: dict, given: set[str]) -> TrainOptions:
    """opt with the checkpoint's seed, epoch_count and the optimiser settings its saved state holds (flat: the
    checkpoint's options, {flag: value}); a flag given with another value is named in a warning."""
    seed = opt.run.seed
    if seed is not None and seed != flat["seed"]:
        log.warning("--seed %s ignored: resuming with the checkpoint's seed %s", seed, flat["seed"])
    kept = {"seed": flat["seed"], "epoch_count": flat["epoch_count"]}
    for k in ("lr", "lr_D", "beta1", "weight_decay"):  # the optimisers' saved state holds these
        mine = getattr(opt.optim, k)
        if k in given and mine != flat[k]:
            log.warning("--%s %s ignored: resuming with the checkpoint's %s", k, mine, flat[k])
        kept[k] = flat[k]
    return opt.replace(**kept)


def _from_snapshot(opt: TrainOptions, run_dir: str, given: set[str]) -> Start:
    """--continue_train --epoch N: the generator of N_net_G.pth, from epoch N + 1 unless --epoch_count says."""
    path = snapshot_path(run_dir, opt.checkpoints.epoch)
    if not os.path.exists(path):
        raise CheckpointError(f"--continue_train --epoch {opt.checkpoints.epoch}: no snapshot at {path}")
    snap = _load_for_resume(path, load)
    saved = TrainOptions.from_dict(snap["options"]).flat()
    opt = _inherit(opt, saved, given)
    opt = _same_networks(opt, saved, given)
    _same_values(opt, saved, given)
    if "epoch_count" not in given:  # continue after the snapshot's epoch
        opt = opt.replace(epoch_count=snap["epoch"] + 1)
    log.warning(
        "starting from the generator of %s at epoch %d; the discriminator and optimisers start afresh "
        "(--epoch latest resumes the full state)",
        path,
        opt.optim.epoch_count,
    )
    progress = Progress(opt.optim.epoch_count, 0, snap.get("total_iters", 0))
    return Start(opt, progress, netG_state=snap["netG"], saved=saved, value_types=snap.get("value_types"))


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
    """The checkpoint, its options complete by config key (those of the scripts' own groups too)."""
    try:
        state = loader(path)
    except CheckpointError as e:
        raise CheckpointError(f"--continue_train: {e}") from e
    return {**state, "options": TrainOptions.from_dict(state["options"]).to_dict()}


# Options of this process only, never taken from the checkpoint: how to resume and where to run.
NOT_INHERITED = ("continue_train", "epoch", "new_data", "init_from", "stop_after_iters", "gpu_ids", "num_threads")
NOT_INHERITED += ("verbose", "progress_every", "name", "checkpoints_dir")


def _inherit(opt: TrainOptions, flat: dict, given: set[str]) -> TrainOptions:
    """opt with the checkpoint's value for every option the command line leaves out (but NOT_INHERITED): a run
    resumes with --continue_train alone, with its networks, data, schedule and logging. Its value description
    (VALUE_KEYS: the ranges and output type its start settled) is its own: "auto" asks for it, as the command
    that started the run did; with --new_data what is not given is settled again on the new data. flat: the
    checkpoint's options, {flag: value}."""
    now = opt.flat()
    given = {k for k in given if not (k in VALUE_KEYS and _auto(now[k]))}
    skip = set(NOT_INHERITED) | (set(VALUE_KEYS) if opt.checkpoints.new_data else set())
    return opt.replace(**{k: v for k, v in flat.items() if k not in given and k not in skip})


def _auto(v: Any) -> bool:
    """A value description's "measure it" / "find it": --range_X auto, --output_dtype auto."""
    return v == "auto" or getattr(v, "auto", False)


def _same_values(opt: TrainOptions, flat: dict, given: set[str]) -> None:
    """CheckpointError listing the value options given with another value than the checkpoint's (flat, {flag:
    value}), unless --new_data: data values mapped otherwise than the network learnt them would be silently
    wrong."""
    now = opt.flat()
    diffs = [
        f"--{k}: checkpoint {str(flat[k])!r}, command line {str(now[k])!r}"
        for k in VALUE_KEYS
        if k in given and not _auto(now[k]) and now[k] != flat[k]
    ]
    if diffs and not opt.checkpoints.new_data:
        raise CheckpointError(
            "--continue_train: the run maps its data values otherwise:\n  " + "\n  ".join(diffs) + "\n"
            "a run's value description is part of the run: leave these flags out, or pass --new_data to continue on "
            "other data with the values settled again (each change warned about and recorded)"
        )


def _same_networks(opt: TrainOptions, flat: dict, given: set[str]) -> TrainOptions:
    """opt, or CheckpointError listing the network options given with another value than the checkpoint's."""
    diffs = resume_differences(opt, flat)
    if diffs:
        raise CheckpointError(
            "--continue_train: the checkpoint was trained with other networks:\n  " + "\n  ".join(diffs)
        )
    return opt


# --init_from: the least share of the generator's tensors that must match by name and shape. Below it the file is
# another architecture (a ResNet, another --ngf, other channels) and "initialising" from it would train from
# scratch while saying otherwise. Going one level deeper (unet_256 -> unet_512) keeps about 80%.
INIT_FROM_MIN_SHARE = 0.5


def init_from(model, path: str, generator: GeneratorConfig) -> None:
    """--init_from: every tensor of another run's netG and netD whose name and shape match; the rest is listed.
    A generator of which less than INIT_FROM_MIN_SHARE of the tensors match is refused (CheckpointError naming
    what differs); a discriminator that mostly does not match (another --num_D, say) starts from scratch."""
    raw = read(path)
    saved_generator = None
    if is_bare_state_dict(raw):  # the reference's <epoch>_net_G.pth, and its <epoch>_net_D.pth beside it
        nets = {"netG": adapt_reference(model.netG, raw, zero_bias=False)}
        d_path = path.removesuffix("_net_G.pth") + "_net_D.pth"
        if d_path != path + "_net_D.pth" and os.path.exists(d_path):
            nets["netD"] = adapt_reference(model.netD, read(d_path), zero_bias=False)
    else:
        source = project_checkpoint(raw, path)
        nets = source["model"] if source["kind"] == "latest" else source
        saved_generator = source["options"]["generator"]
    if "netG" not in nets:
        raise CheckpointError(f"{path} holds no generator (netG): not a latest.pth or *_net_G.pth of a run")
    netG = model.netG
    if hasattr(netG, "init_target"):  # a coarse-to-fine G: a half-size U-Net's weights are its global generator's
        netG = netG.init_target(nets["netG"])
    check_generator_share(netG, nets["netG"], path, saved_generator, generator)
    for name, net in (("netG", netG), ("netD", model.netD)):
        if name not in nets:  # a generator snapshot: D starts afresh
            log.info("--init_from: %s has no %s; it starts from scratch", path, name)
            continue
        loaded, skipped = load_matching(net, nets[name])
        shown = ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else "")
        share = len(loaded) / max(1, len(loaded) + len(skipped))
        level = logging.INFO if share >= INIT_FROM_MIN_SHARE else logging.WARNING
        log.log(
            level,
            "--init_from: %s: loaded %d tensors (%.0f%%), kept %d of this network's own (%s)",
            name,
            len(loaded),
            100 * share,
            len(skipped),
            shown,
        )


def check_generator_share(
    net: torch.nn.Module, state: dict, path: str, saved: dict | None, generator: GeneratorConfig
) -> None:
    """CheckpointError when less than INIT_FROM_MIN_SHARE of net's tensors have a tensor of the same name and
    shape in state: the message gives the share, a few tensors that differ, and the generator flags of the file
    (when it has options) that differ from this run's."""
    own = net.state_dict()
    same = [k for k, v in own.items() if k in state and state[k].shape == v.shape]
    if len(same) >= INIT_FROM_MIN_SHARE * len(own):
        return
    differ = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" if k in state else f"{k} (not in the file)"
        for k, v in own.items()
        if k not in same
    ]
    flags = ""
    if saved is not None:
        diffs = [f"--{k} {saved[k]}" for k, v in dataclasses.asdict(generator).items() if saved.get(k, v) != v]
        ours = [
            f"--{k} {getattr(generator, k)}" for k, v in dataclasses.asdict(generator).items() if saved.get(k, v) != v
        ]
        flags = f"; the file's generator has {' '.join(diffs)}, this run {' '.join(ours)}" if diffs else ""
    raise CheckpointError(
        f"{path}: only {len(same)} of the generator's {len(own)} tensors match by name and shape (at least "
        f"{INIT_FROM_MIN_SHARE:.0%} must: it is another architecture){flags}. First differences: "
        + ", ".join(differ[:4])
    )


def resume_differences(opt: TrainOptions, flat: dict) -> list[str]:
    """Every option that defines the networks and differs between the command line and the checkpoint's (flat,
    {flag: value})."""
    now = opt.flat()
    return [f"--{k}: checkpoint {flat[k]!r}, command line {now[k]!r}" for k in RESUME_KEYS if flat[k] != now[k]]


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
