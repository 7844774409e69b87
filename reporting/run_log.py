"""losses.jsonl: the machine-readable log of a training run, one JSON object a line, beside loss_log.txt.

Every record has "kind" and "timestamp" (wall-clock seconds since the Unix epoch, when it was written):

    {"kind": "loss", "epoch": 2, "iteration": 10, "total_iters": 30, "losses": {"G_GAN": 1.25, "G_L1": 20.1, ...},
     "lr": 0.0002, "time": 0.103, "timestamp": 1714000000.123}
        one per loss print (--print_freq), as loss_log.txt's line: iteration counts the epoch's iterations,
        total_iters the run's; losses are the means since the previous print, by name; lr is the generator's
        learning rate; time is seconds per image (loss_log.txt's "time:").
    {"kind": "validation", "epoch": 2, "total_iters": 30, "metrics": {"psnr": 21.3, "n": 4, ...}, "timestamp": ...}
        one per validation (--val_freq), at the end of the epoch it scores. val_log.jsonl, which
        engine/validation.py writes, keeps the same scores without kind and timestamp for its older readers.

A reader picks the records of the kind it wants and skips other kinds (later versions may add some). Non-finite
numbers are written as null, so every line is strict JSON (jq, JavaScript's JSON.parse); read() gives NaN back.
Each record is appended as one line and flushed; the file is never written over, and a resumed run appends to it
after util/run_folder.trim_logs has dropped the records past its checkpoint.
"""

from __future__ import annotations

import json
import math
import numbers
import os

from util.util import append_text

LOSSES_FILE = "losses.jsonl"
LOSS = "loss"
VALIDATION = "validation"


def loss_record(
    epoch: int, iteration: int, total_iters: int, losses: dict[str, float], lr: float, time: float, timestamp: float
) -> dict:
    return {
        "kind": LOSS,
        "epoch": epoch,
        "iteration": iteration,
        "total_iters": total_iters,
        "losses": dict(losses),
        "lr": lr,
        "time": time,
        "timestamp": timestamp,
    }


def validation_record(epoch: int, total_iters: int | None, metrics: dict[str, float], timestamp: float) -> dict:
    return {
        "kind": VALIDATION,
        "epoch": epoch,
        "total_iters": total_iters,
        "metrics": dict(metrics),
        "timestamp": timestamp,
    }


def append(path: str, record: dict) -> None:
    """Append record as one line and flush it (append mode: whatever the file held stays)."""
    line = json.dumps(_strict(record), allow_nan=False) + "\n"
    append_text(path, line)


def parse(line: str) -> dict | None:
    """The record of a line, or None for a line that is not one (a torn last line of a killed run, say).
    Nulls inside "losses" and "metrics" come back as NaN."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    for key in ("losses", "metrics"):
        values = record.get(key)
        if isinstance(values, dict):
            record[key] = {k: math.nan if v is None else v for k, v in values.items()}
    return record


def read(path: str, kind: str | None = None) -> list[dict]:
    """The records of the file (of that kind, if given), in order; [] if there is no file. Lines that do not
    parse, and a last line without its newline, are skipped."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            record = parse(line) if line.endswith("\n") else None
            if record is not None and (kind is None or record.get("kind") == kind):
                records.append(record)
    return records


def is_past(record: dict, epoch: int, total_iters: int) -> bool:
    """Is this record past a checkpoint at (epoch, total_iters), so that a run resumed there writes it again?
    Validation records go by epoch (the epoch `epoch` is validated again), the others by total_iters."""
    if record.get("kind") == VALIDATION:
        e = record.get("epoch")
        return not isinstance(e, numbers.Real) or e >= epoch
    it = record.get("total_iters")
    return isinstance(it, numbers.Real) and it > total_iters


def _strict(v):
    """v with numpy/torch scalars as Python numbers and non-finite floats as None."""
    if isinstance(v, dict):
        return {str(k): _strict(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_strict(x) for x in v]
    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else None
