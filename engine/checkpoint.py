"""Checkpoints: what they hold (a format number, read back and migrated), atomic writes, weights_only loads, the
resume checks, generator snapshots and their pruning, and load_generator for every caller that needs a trained G.

Files of a run (checkpoints_dir/name/):
- latest.pth: kind "latest", the full training state (networks, optimisers, schedulers, scalers, EMA, epoch,
  iteration, options by group, RNG, best validation score);
- <epoch>_net_G.pth, iter_<N>_net_G.pth, best_net_G.pth: kind "generator", netG (+ netG_ema), options, epoch.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from models.reference import adapt_reference, is_bare_state_dict
from options.options import RESUME_KEYS, TrainOptions
from util.util import atomic_write, write_text  # noqa: F401  (write_text: re-exported for callers)

log = logging.getLogger("train")

# 1: options as one flat dict; snapshots carried no format number. 2: options by group, and a "kind".
FORMAT = 2


class CheckpointError(RuntimeError):
    """A file that cannot be used as asked; the message names it and says why."""


class NonFiniteWeights(RuntimeError):
    """Raised instead of saving a checkpoint whose weights hold NaN or inf."""


def atomic_save(obj: Any, path: str) -> None:
    """torch.save(obj) to path, atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


# ---- reading -------------------------------------------------------------------------------------------------
def read(path: str) -> Any:
    """torch.load on the CPU with weights_only=True (no code from pickles); CheckpointError says why a file
    cannot be read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # a truncated file, or one that holds pickled objects: say which and why
        text = str(e).strip()
        first = text.splitlines()[0] if text else ""
        reason = f"the file is truncated or not a PyTorch checkpoint ({type(e).__name__}: {first})"
        # Only a pickle that names a Python global (a class or function to call) holds objects; other unpickling
        # errors ("Unsupported operand", "invalid load key") mean the bytes are not a pickle at all.
        what = next((ln.strip() for ln in text.splitlines() if "unsupported global" in ln.lower()), "")
        if what:
            reason = f"it holds pickled Python objects, refused by weights_only=True ({what})"
        elif "Weights only load failed" in text:
            reason = "not a checkpoint: the file's bytes are not a PyTorch checkpoint (truncated, or other data)"
        raise CheckpointError(f"cannot load checkpoint {path}: {reason}") from e
    return state


def load(path: str) -> dict:
    """A checkpoint of this project, migrated to FORMAT."""
    return _project_checkpoint(read(path), path)


def _project_checkpoint(state: Any, path: str) -> dict:
    if not isinstance(state, dict) or "options" not in state:
        raise CheckpointError(f"cannot load checkpoint {path}: not a checkpoint of this project (no options)")
    return migrate(state, path)


def migrate(state: dict, path: str) -> dict:
    """Any format this code knows -> FORMAT. Options come back complete: by group, every field of today's
    TrainOptions, with the default for what an older run did not have."""
    version = state.get("format", 1)  # format-1 snapshots had no number
    if not isinstance(version, int) or version > FORMAT:
        raise CheckpointError(
            f"cannot load checkpoint {path}: it has format {version!r}, newer than this code reads ({FORMAT}); "
            "update this code to read it"
        )
    state = dict(state)
    if version == 1:
        flat = state["options"]
        state["options"] = {
            g.key: {k: flat[k] for k in TrainOptions.group_fields(g) if k in flat} for g in TrainOptions.GROUPS
        }
        state["kind"] = "latest" if "model" in state else "generator"
    state["options"] = TrainOptions.from_dict(state["options"]).to_dict()
    state["format"] = FORMAT
    return state


def load_latest(path: str) -> dict:
    """latest.pth, checked to be a full training state."""
    state = load(path)
    if state.get("kind") != "latest":
        raise CheckpointError(f"{path} is a generator snapshot, not a full training state (latest.pth)")
    return state


@dataclass
class GeneratorCheckpoint:
    """A trained generator from any file of a run: its weights, the run's options by group, and which ones."""

    netG: dict[str, torch.Tensor]
    options: dict[str, dict[str, Any]]
    ema: bool  # the weights are the exponential moving average
    epoch: int
    path: str
    reference: bool = False  # a reference implementation's bare state dict; options are the caller's


def load_generator(
    path: str, prefer_ema: bool, reference_options: Callable[[], dict[str, dict[str, Any]]] | None = None
) -> GeneratorCheckpoint:
    """The generator of latest.pth, of a snapshot, of an exported .safetensors file, or of the pix2pix reference
    implementation's <epoch>_net_G.pth; with prefer_ema the EMA weights when the run kept them. A reference file
    is a bare state dict without options: reference_options() (by group, from the caller's flags; called only for
    such a file) describe it."""
    if path.endswith(".safetensors"):
        return load_safetensors(path)
    raw = read(path)
    if is_bare_state_dict(raw):
        if reference_options is None:
            raise CheckpointError(f"{path} is a bare state dict (a reference implementation's file) without options")
        return GeneratorCheckpoint(dict(raw), reference_options(), False, 0, path, reference=True)
    state = _project_checkpoint(raw, path)
    weights = state["model"] if state["kind"] == "latest" else state
    ema = weights.get("netG_ema")
    if "netG_ema_avg" in weights:  # latest.pth: the AveragedModel's own state, its module's keys prefixed
        ema = {k[len("module.") :]: v for k, v in weights["netG_ema_avg"].items() if k.startswith("module.")}
    use_ema = prefer_ema and ema is not None
    return GeneratorCheckpoint(ema if use_ema else weights["netG"], state["options"], use_ema, state["epoch"], path)


SAFETENSORS_KIND = "pix2pix-generator"


def save_safetensors(ckpt: GeneratorCheckpoint, path: str) -> None:
    """The generator's weights with its options (JSON) as metadata: no pickle, loadable by load_generator."""
    from safetensors.torch import save

    metadata = {
        "kind": SAFETENSORS_KIND,
        "format": str(FORMAT),
        "options": json.dumps(ckpt.options),
        "ema": json.dumps(ckpt.ema),
        "epoch": str(ckpt.epoch),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in ckpt.netG.items()}
    data = save(tensors, metadata=metadata)
    atomic_write(path, lambda f: f.write(data))


def load_safetensors(path: str) -> GeneratorCheckpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot load {path}: not a safetensors file ({e})") from e
    if metadata.get("kind") != SAFETENSORS_KIND or "options" not in metadata:
        raise CheckpointError(
            f"cannot load {path}: a safetensors file without this project's metadata (kind {SAFETENSORS_KIND!r} "
            "and options); write it with export.py --format safetensors"
        )
    options = TrainOptions.from_dict(json.loads(metadata["options"])).to_dict()
    return GeneratorCheckpoint(tensors, options, json.loads(metadata["ema"]), int(metadata["epoch"]), path)


# ---- writing -------------------------------------------------------------------------------------------------
def generator_snapshot(model, options: dict, epoch: int, total_iters: int, best: dict | None = None) -> dict:
    """What every generator file holds (epoch snapshots, iter_<N>, best_net_G.pth)."""
    snap = {"format": FORMAT, "kind": "generator", **model.generator_weights()}
    snap.update(options=options, epoch=epoch, total_iters=total_iters)
    if best is not None:
        snap["best"] = best
    return snap


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


@dataclass
class Progress:
    """Where training stands: epoch_iter steps of `epoch` are done, total_iters in all."""

    epoch: int
    epoch_iter: int
    total_iters: int


@dataclass
class Saver:
    """Writes a run's checkpoints: only on the main process under torchrun, never with non-finite weights."""

    run_dir: str
    options: dict  # by group, as they are saved
    save_by_iter: bool
    keep_last: int
    enabled: bool = True

    @property
    def latest_path(self) -> str:
        return os.path.join(self.run_dir, "latest.pth")

    def what_is_kept(self) -> str:
        """For messages after a failure: what the run folder still holds."""
        if os.path.exists(self.latest_path):
            return f"{self.latest_path} keeps the last good state"
        return f"nothing was saved yet (no {self.latest_path})"

    def latest(self, model, progress: Progress, rng: dict, best: dict | None) -> None:
        """The full training state to latest.pth (and iter_<N>_net_G.pth with --save_by_iter). Refuses
        (NonFiniteWeights) to replace a good checkpoint with weights holding NaN or inf."""
        if not self.enabled:
            return
        bad = non_finite_tensors(model.netG.state_dict()) + non_finite_tensors(model.netD.state_dict())
        if bad:
            raise NonFiniteWeights(f"weights {', '.join(bad[:5])} hold NaN or inf at iteration {progress.total_iters}")
        state = {
            "format": FORMAT,
            "kind": "latest",
            "model": model.state_dict(),
            "epoch": progress.epoch,
            "epoch_iter": progress.epoch_iter,
            "total_iters": progress.total_iters,
            "options": self.options,
            "rng": rng,
            "best": best,
        }
        atomic_save(state, self.latest_path)
        if self.save_by_iter:
            self.generator(model, f"iter_{progress.total_iters}", progress.epoch, progress.total_iters)

    def generator(self, model, tag: str, epoch: int, total_iters: int, best: dict | None = None) -> None:
        """<tag>_net_G.pth; numbered snapshots are pruned to --keep_last."""
        if not self.enabled:
            return
        atomic_save(generator_snapshot(model, self.options, epoch, total_iters, best), snapshot_path(self.run_dir, tag))
        if tag != "best":
            prune_snapshots(self.run_dir, self.keep_last)


# ---- resuming ------------------------------------------------------------------------------------------------
def prepare_run_dir(checkpoints_dir: str, name: str) -> str:
    """checkpoints_dir/name, created and proven writable (a real write: os.access says yes to root even on a
    read-only file system)."""
    run_dir = os.path.join(checkpoints_dir, name)
    try:
        os.makedirs(run_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as e:
        raise CheckpointError(f"--checkpoints_dir {checkpoints_dir}: cannot write in {run_dir}: {e}") from e
    return run_dir


@dataclass
class Start:
    """Where a run starts: progress, and what to restore (latest.pth's full state, or a snapshot's generator)."""

    progress: Progress
    state: dict | None = None
    netG_state: dict | None = None
    finished: bool = False  # latest.pth says every epoch is done


def plan_start(opt: TrainOptions, run_dir: str, given: set[str]) -> Start:
    """A new run, --continue_train (latest.pth) or --continue_train --epoch N (the generator of N_net_G.pth at
    epoch N + 1). A resumed run keeps its checkpoint's seed and epoch_count (the data order and the lr schedule
    depend on them): they are set on opt. Raises CheckpointError naming what does not fit."""
    if not opt.continue_train:
        return Start(Progress(opt.epoch_count, 0, 0))
    if opt.epoch != "latest":
        path = snapshot_path(run_dir, opt.epoch)
        if not os.path.exists(path):
            raise CheckpointError(f"--continue_train --epoch {opt.epoch}: no snapshot at {path}")
        snap = _load_for_resume(path, load)
        _check_same_networks(opt, snap["options"])
        if "epoch_count" not in given:  # continue after the snapshot's epoch
            opt.epoch_count = snap["epoch"] + 1
        log.warning(
            "starting from the generator of %s at epoch %d; the discriminator and optimisers start afresh "
            "(--epoch latest resumes the full state)",
            path,
            opt.epoch_count,
        )
        return Start(Progress(opt.epoch_count, 0, snap.get("total_iters", 0)), netG_state=snap["netG"])
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
    if opt.seed is not None and opt.seed != saved["run"]["seed"]:
        log.warning("--seed %s ignored: resuming with the checkpoint's seed %s", opt.seed, saved["run"]["seed"])
    opt.seed, opt.epoch_count = saved["run"]["seed"], saved["optim"]["epoch_count"]
    for k in ("lr", "lr_D", "beta1", "weight_decay"):  # the optimisers' saved state holds these
        if k in given and getattr(opt, k) != saved["optim"][k]:
            log.warning("--%s %s ignored: resuming with the checkpoint's %s", k, getattr(opt, k), saved["optim"][k])
        setattr(opt, k, saved["optim"][k])
    p = Progress(state["epoch"], state["epoch_iter"], state["total_iters"])
    if state["epoch"] > opt.last_epoch:
        log.info(
            "training already finished after epoch %d; raise --n_epochs or --n_epochs_decay to train longer",
            p.epoch - 1,
        )
        return Start(p, state=state, finished=True)
    log.info(
        "resuming latest.pth at epoch %d, iteration %d of the epoch (%d in all)", p.epoch, p.epoch_iter, p.total_iters
    )
    return Start(p, state=state)


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
        source = _project_checkpoint(raw, path)
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


def non_finite_tensors(state_dict: dict) -> list[str]:
    """Names of floating-point tensors holding NaN or inf (one reduction per tensor, at save time only)."""
    bad = []
    for name, t in state_dict.items():
        if torch.is_tensor(t) and t.is_floating_point() and not math.isfinite(float(t.float().abs().sum())):
            bad.append(name)
    return bad


def rng_state(device: torch.device) -> dict[str, Any]:
    """The torch RNG states as tensors (dropout and the wgangp mix draw from these): the CPU's, and the
    training device's when it is a GPU (only that one, so a resume on another machine still works)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
