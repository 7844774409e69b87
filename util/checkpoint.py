"""Checkpoints: atomic writes (temp file + fsync + rename) and weights_only loads."""

from __future__ import annotations

import math
import os
import tempfile
import time
from typing import Any

import torch


def atomic_save(obj: Any, path: str) -> None:
    """Write obj to path so that a crash at any moment leaves either the old file or the new one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        # Test hook: a pause between the complete temp file and the rename, so a test can SIGKILL here.
        pause = float(os.environ.get("PIX2PIX_TEST_SAVE_PAUSE", "0"))
        if pause > 0:
            time.sleep(pause)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path: str) -> dict:
    """Load a checkpoint on the CPU with weights_only=True (no arbitrary code from pickles)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # a truncated file, or one that holds pickled objects: say which and why
        text = str(e).strip()
        first = text.splitlines()[0] if text else ""
        reason = f"the file is truncated or not a PyTorch checkpoint ({type(e).__name__}: {first})"
        if "Weights only load failed" in text or "Unsupported global" in text:
            what = next((ln.strip() for ln in text.splitlines() if "Unsupported global" in ln), "")
            reason = f"it holds pickled Python objects, refused by weights_only=True ({what or 'unsafe content'})"
        raise RuntimeError(f"cannot load checkpoint {path}: {reason}") from e
    if not isinstance(state, dict):
        raise RuntimeError(f"cannot load checkpoint {path}: not a checkpoint of this project")
    return state


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
