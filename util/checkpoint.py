"""Checkpoints: atomic writes (temp file + fsync + rename) and weights_only loads."""

from __future__ import annotations

import os
import tempfile
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
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path: str) -> dict:
    """Load a checkpoint on the CPU with weights_only=True (no arbitrary code from pickles)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # a truncated or foreign file: say which
        raise RuntimeError(f"cannot load checkpoint {path}: {e}") from e


def rng_state() -> dict[str, Any]:
    """Global torch RNG states as tensors (dropout and the wgangp mix draw from these)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
