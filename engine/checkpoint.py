"""Checkpoints: what they hold (a format number, read back and migrated), atomic writes, weights_only loads, the
generator snapshots and their pruning, and load_generator for every caller that needs a trained G. What a resumed
run does with a checkpoint is engine.resume's.

Files of a run (checkpoints_dir/name/):
- latest.pth: kind "latest", the full training state (networks, optimisers, schedulers, scalers, EMA, epoch,
  iteration, options by group, RNG, best validation score);
- <epoch>_net_G.pth, iter_<N>_net_G.pth, best_net_G.pth: kind "generator", netG (+ netG_ema), options, epoch.
"""

from __future__ import annotations

import dataclasses
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

from data.config import AugmentConfig, PreprocessConfig, TrainDataConfig, ValuesConfig
from models import build_generator
from models.config import (
    DiscriminatorConfig,
    GeneratorConfig,
    InitConfig,
    LossConfig,
    OptimConfig,
    TrainSpeedConfig,
)
from models.reference import is_bare_state_dict
from util.config import Config, OptionError, check_bounds
from util.util import WriteFailed, atomic_write, make_dirs_below

log = logging.getLogger("train")

# 1: options as one flat dict; snapshots carried no format number. 2: options by group, and a "kind". 3: options by
# consumer config (models.config, data.config, options.groups: skip_nonfinite moved from "run" to "optim").
FORMAT = 3
# The configs of a run that a checkpoint's reader completes with their defaults: those of models/ and data/. The
# scripts' own groups (run, checkpoints, display ...) are kept as saved, and completed by options.options when a
# script reads them; the Python API never needs them.
MODEL_AND_DATA_CONFIGS: tuple[type[Config], ...] = (
    GeneratorConfig,
    DiscriminatorConfig,
    InitConfig,
    TrainSpeedConfig,
    TrainDataConfig,
    PreprocessConfig,
    ValuesConfig,
    AugmentConfig,
    LossConfig,
    OptimConfig,
)


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
    return project_checkpoint(read(path), path)


def project_checkpoint(state: Any, path: str) -> dict:
    if not isinstance(state, dict) or "options" not in state:
        raise CheckpointError(f"cannot load checkpoint {path}: not a checkpoint of this project (no options)")
    return migrate(state, path)


def migrate(state: dict, path: str) -> dict:
    """Any format this code knows -> FORMAT. Options come back by config key, those of models/ and data/ complete
    (the default for what an older run did not have)."""
    version = state.get("format", 1)  # format-1 snapshots had no number
    if not isinstance(version, int) or version > FORMAT:
        raise CheckpointError(
            f"cannot load checkpoint {path}: it has format {version!r}, newer than this code reads ({FORMAT}); "
            "update this code to read it"
        )
    state = dict(state)
    if version == 1:  # one flat dict
        state["options"] = {"all": state["options"]}
        state["kind"] = "latest" if "model" in state else "generator"
    # Formats 1 and 2 differ from 3 in how the fields are grouped only: regrouped by name into today's configs.
    state["options"] = regroup(state["options"])
    state["format"] = FORMAT
    return state


def regroup(saved: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Saved options in any grouping -> by config key: the configs of models/ and data/ complete with their
    defaults; every other field kept, under its saved group (format 3) or "other" (an older format)."""
    flat = {k: v for group in saved.values() for k, v in group.items()}
    out = {c.key: c.from_dict(flat).to_dict() for c in MODEL_AND_DATA_CONFIGS}
    taken = {k for group in out.values() for k in group}
    for key, group in saved.items():
        rest = {k: v for k, v in group.items() if k not in taken}
        if rest:
            out.setdefault(key if key not in out else "other", {}).update(rest)
    return out


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
    epoch: int  # the last epoch whose training the weights hold in full
    path: str
    reference: bool = False  # a reference implementation's bare state dict; options are the caller's

    @property
    def generator(self) -> GeneratorConfig:
        """The generator's frozen config, as the run saved it."""
        return GeneratorConfig(**self.options["generator"])

    @property
    def seed(self) -> int:
        """The dropout seed of train-mode testing unless one is given (test.py, translate.py, the app): the run's
        --seed, so repeating the training command's changes nothing; 0 for a file without options."""
        if self.reference:
            return 0
        # The seed sits in the run group, or in "other" for an older format's file (regroup): wherever it is.
        return next((g["seed"] for g in self.options.values() if isinstance(g, dict) and "seed" in g), None) or 0


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
    state = project_checkpoint(raw, path)
    weights = state["model"] if state["kind"] == "latest" else state
    ema = weights.get("netG_ema")
    if "netG_ema_avg" in weights:  # latest.pth: the AveragedModel's own state, its module's keys prefixed
        ema = {k[len("module.") :]: v for k, v in weights["netG_ema_avg"].items() if k.startswith("module.")}
    use_ema = prefer_ema and ema is not None
    # A snapshot's epoch is the one it ended; latest.pth's is the one in progress, so it holds one epoch fewer
    # done (and part of that one when epoch_iter > 0).
    done = state["epoch"] - 1 if state["kind"] == "latest" else state["epoch"]
    return GeneratorCheckpoint(ema if use_ema else weights["netG"], state["options"], use_ema, done, path)


SAFETENSORS_KIND = "pix2pix-generator"


def save_safetensors(ckpt: GeneratorCheckpoint, path: str, new: bool = False) -> None:
    """The generator's weights with its options (JSON) as metadata: no pickle, loadable by load_generator. new: path
    must not exist (util.util.atomic_write)."""
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
    atomic_write(path, lambda f: f.write(data), new=new)


def load_safetensors(path: str) -> GeneratorCheckpoint:
    """An exported generator, its metadata validated as a checkpoint's are (format number, options parsed and
    checked) and its tensors' shapes checked against the generator its options describe before anything is built:
    CheckpointError with the reason, never a traceback from crafted metadata or a huge allocation."""
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
    missing = [k for k in ("format", "ema", "epoch") if k not in metadata]
    if missing:
        raise CheckpointError(f"cannot load {path}: its metadata lacks {', '.join(missing)}")
    version = metadata["format"]
    if not re.fullmatch(r"[1-9][0-9]{0,5}", version) or int(version) > FORMAT:
        raise CheckpointError(
            f"cannot load {path}: it has format {version!r}, not one this code reads (1 to {FORMAT}); "
            "update this code to read it"
        )
    try:
        ema, epoch = json.loads(metadata["ema"]), int(metadata["epoch"])
    except ValueError as e:
        raise CheckpointError(f"cannot load {path}: bad ema or epoch metadata ({e})") from e
    if not isinstance(ema, bool):
        raise CheckpointError(f"cannot load {path}: bad ema metadata {metadata['ema']!r} (true or false)")
    options = safetensors_options(metadata["options"], path)
    check_generator_shapes(GeneratorConfig(**options["generator"]), tensors, path)
    return GeneratorCheckpoint(tensors, options, ema, epoch, path)


def safetensors_options(text: str, path: str) -> dict[str, dict[str, Any]]:
    """The options JSON of an exported file, migrated as migrate() does and checked as a command line's are (each
    field's choices and bounds, the generator fields' types, the generator's cross-field rules)."""
    try:
        saved = json.loads(text)
        if not isinstance(saved, dict) or not all(isinstance(g, dict) for g in saved.values()):
            raise ValueError("not an object of option groups")
        options = regroup(saved)
        configs = [c.from_dict(options[c.key]) for c in MODEL_AND_DATA_CONFIGS]
        g = configs[0]
        for f in dataclasses.fields(GeneratorConfig):
            value, default = getattr(g, f.name), f.default
            kinds = (int,) if default is None else (int, float) if isinstance(default, float) else (type(default),)
            if value is not None or default is not None:
                if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, kinds):
                    raise OptionError(f"--{f.name} {value!r}: not a {kinds[0].__name__}")
        for c in configs:
            check_bounds(c)
        g.check()
    except (ValueError, TypeError) as e:  # OptionError is a ValueError; json.JSONDecodeError too
        raise CheckpointError(f"cannot load {path}: bad options in its metadata: {e}") from e
    return options


def check_generator_shapes(g: GeneratorConfig, tensors: dict[str, torch.Tensor], path: str) -> None:
    """The file's weights have the names and shapes of those of the generator of g, checked on the meta device
    (shapes only, no memory), so options that do not fit the weights (ngf 100000) never allocate anything.
    Spectral norm's weights are compared as the plain weights they normalise (its u and v vectors, and a
    parametrization the file lacks, are left to models.layers.load_weights, which allocates nothing large)."""
    depth = g.depth or 0
    if depth > len(tensors):  # each U-Net level has tensors of its own: not worth building to see
        raise CheckpointError(f"cannot load {path}: its options' U-Net depth {depth} is more than its tensors")
    try:
        with torch.device("meta"):  # without spectral norm, whose power iteration is slow on meta tensors
            net = build_generator(dataclasses.replace(g, spectral_norm="none"), init=None, grad_checkpoint=False)
        own = net.state_dict()
    except (ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"cannot load {path}: its options do not describe a generator ({e})") from e
    plain = {
        re.sub(r"\.parametrizations\.weight\.original$", ".weight", k): v
        for k, v in tensors.items()
        if not re.search(r"\.parametrizations\.weight\.0\._[uv]$", k)
    }
    wrong = sorted(set(own) ^ set(plain)) + [k for k in own if k in plain and own[k].shape != plain[k].shape]
    if wrong:
        k = wrong[0]
        have = tuple(plain[k].shape) if k in plain else "none"
        want = tuple(own[k].shape) if k in own else "none"
        raise CheckpointError(
            f"cannot load {path}: its tensors are not those of the generator its options describe "
            f"({g.describe()}, ngf {g.ngf}): {len(wrong)} differ, e.g. {k}: file {have}, options {want}"
        )


# ---- writing -------------------------------------------------------------------------------------------------
def generator_snapshot(
    model, options: dict, epoch: int, total_iters: int, best: dict | None = None, value_types: dict | None = None
) -> dict:
    """What every generator file holds (epoch snapshots, iter_<N>, best_net_G.pth)."""
    snap = {"format": FORMAT, "kind": "generator", **model.generator_weights()}
    snap.update(options=options, epoch=epoch, total_iters=total_iters)
    if value_types:
        snap["value_types"] = value_types
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
    # {"A": real_A's value type, "B": real_B's} in the training data: part of the run's value description, with
    # its ranges and output type in the options; a --new_data resume compares them (engine.resolve).
    value_types: dict | None = None

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
            **({"value_types": self.value_types} if self.value_types else {}),
        }
        atomic_save(state, self.latest_path)
        if self.save_by_iter:
            self.generator(model, f"iter_{progress.total_iters}", progress.epoch, progress.total_iters)

    def generator(self, model, tag: str, epoch: int, total_iters: int, best: dict | None = None) -> None:
        """<tag>_net_G.pth; numbered snapshots are pruned to --keep_last."""
        if not self.enabled:
            return
        snap = generator_snapshot(model, self.options, epoch, total_iters, best, self.value_types)
        atomic_save(snap, snapshot_path(self.run_dir, tag))
        if tag != "best":
            prune_snapshots(self.run_dir, self.keep_last)


def prepare_run_dir(checkpoints_dir: str, name: str) -> str:
    """checkpoints_dir/name, created and proven writable (a real write: os.access says yes to root even on a
    read-only file system)."""
    run_dir = os.path.join(checkpoints_dir, name)
    try:
        make_dirs_below(checkpoints_dir, run_dir)  # --checkpoints_dir may be a link; the run folder must not be
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except WriteFailed as e:  # a link, a file in the way, no permission: named by the folder
        raise CheckpointError(f"--checkpoints_dir {checkpoints_dir}: {e}") from e
    except OSError as e:
        raise CheckpointError(f"--checkpoints_dir {checkpoints_dir}: cannot write in {run_dir}: {e}") from e
    return run_dir


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
