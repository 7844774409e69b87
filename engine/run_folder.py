"""One run per run folder: an OS lock held while training, and a resumed run's leftovers put right (temp files of
interrupted writes, log lines past the checkpoint it resumes from)."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import stat
import time

import torch

from reporting import run_log
from util.util import atomic_write

log = logging.getLogger("train")
LOCK_FILE = ".lock"
# The temp files that atomic writes (checkpoints, options, trim_logs) leave when killed: <file>.<random>.tmp, the
# 8 characters tempfile.mkstemp draws (util.util.atomic_write; a run folder's file names are never long enough to
# be cut there).
_TEMP = re.compile(r".+\.(pth|txt|jsonl?)\.[a-z0-9_]{8}\.tmp")
_LOSS_LINE = re.compile(r"total_iters: (\d+),")


class RunFolderBusy(RuntimeError):
    """Another live process trains in this run folder."""


class RunLock:
    """An exclusive flock on run_dir/.lock with the holder's pid in it. The kernel releases it when the process
    ends, however it ends, so a killed run never leaves a stale lock. The lock file is opened without following a
    link, and must be a regular file of one link: writing the pid truncates it, which must never reach another
    file (LockFileRefused, a RunFolderBusy, says what is wrong instead)."""

    def __init__(self, run_dir: str) -> None:
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.fd = _open_lock_file(self.path)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            self.release()
            raise RunFolderBusy(
                f"{run_dir} is in use by another training process (pid {holder}); wait for it to end, or train "
                "under another --name"
            ) from None
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:  # a full disk, say
            self.release()
            raise LockFileRefused(f"cannot write {self.path}: {_reason(e)}") from None

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1


class LockFileRefused(RunFolderBusy):
    """The lock file cannot be used: a link, not a regular file, unwritable (train.py reports it as it reports a
    busy run folder: one line, exit 2)."""


def _open_lock_file(path: str) -> int:
    """The lock file's descriptor, opened without following a link; LockFileRefused unless it is a regular file
    of one link (its truncation must never reach another file)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise LockFileRefused(f"cannot lock {path}: {_reason(e)}") from None
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
        return fd
    os.close(fd)
    what = "a file with other links to it" if stat.S_ISREG(st.st_mode) else "not a regular file"
    raise LockFileRefused(f"cannot lock {path}: {what}, never written to; remove it and start again")


def _reason(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "it is a symbolic link, never followed; remove it and start again"
    return e.strerror or str(e)


def claim(run_dir: str) -> RunLock:
    """Lock the run folder for this process (RunFolderBusy if another holds it), then clear its stale temp files."""
    lock = RunLock(run_dir)
    remove_stale_temp_files(run_dir)
    return lock


def held_run(run_dir: str) -> str | None:
    """What run the folder holds, in words ("epoch 3, saved 2026-12-07 13:40"), or None: a run is a latest.pth or
    a generator snapshot (*_net_G.pth)."""
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        return None
    files = [n for n in names if n == "latest.pth" or n.endswith("_net_G.pth")]
    if not files:
        return None
    newest = max(files, key=lambda n: os.lstat(os.path.join(run_dir, n)).st_mtime)
    saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.lstat(os.path.join(run_dir, newest)).st_mtime))
    epoch = latest_epoch(os.path.join(run_dir, "latest.pth")) if "latest.pth" in files else None
    done = f"epoch {epoch - 1} done" if epoch is not None else f"{len(files)} generator snapshot(s)"
    return f"{done}, saved {saved}"


def latest_epoch(path: str) -> int | None:
    """latest.pth's epoch (the one it resumes at), read without loading its tensors; None if it cannot be read."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # a truncated file, another format: the folder still holds a run
        return None


def keep_aside(run_dir: str) -> str:
    """Move every file of the run folder but its lock (held by this process) into a new folder beside it,
    <run_dir>.old-<date>-<time>; returns that folder. Nothing is deleted or written over."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        aside = f"{run_dir}.old-{stamp}" + (f"-{k}" if k else "")
        try:
            os.mkdir(aside)
            break
        except FileExistsError:
            continue
    for name in os.listdir(run_dir):
        if name != LOCK_FILE:
            os.rename(os.path.join(run_dir, name), os.path.join(aside, name))
    return aside


def remove_stale_temp_files(run_dir: str) -> None:
    """Temp files of writes that a killed run of this folder never finished (only this folder's, and only while
    this process holds its lock, so no live writer owns them)."""
    for name in os.listdir(run_dir):
        if _TEMP.fullmatch(name):
            os.remove(os.path.join(run_dir, name))
            log.info("removed %s, left by an interrupted write", name)


def trim_logs(run_dir: str, epoch: int, total_iters: int) -> None:
    """A resumed run continues its logs without repeating lines: loss lines past total_iters and validation
    records of epoch `epoch` or later (they will be written again) are dropped, from loss_log.txt, val_log.jsonl
    and losses.jsonl (its records parsed as JSON: util/run_log.is_past; a line that is not a record goes too)."""
    _rewrite(os.path.join(run_dir, "loss_log.txt"), lambda ln: _loss_iters(ln) <= total_iters)
    _rewrite(os.path.join(run_dir, "val_log.jsonl"), lambda ln: _val_epoch(ln) < epoch)
    _rewrite(os.path.join(run_dir, run_log.LOSSES_FILE), lambda ln: _record_kept(ln, epoch, total_iters))


def _record_kept(line: str, epoch: int, total_iters: int) -> bool:
    record = run_log.parse(line)
    return record is not None and not run_log.is_past(record, epoch, total_iters)


def _loss_iters(line: str) -> int:
    m = _LOSS_LINE.search(line)
    return int(m.group(1)) if m else -1  # headers and other lines stay


def _val_epoch(line: str) -> float:
    try:
        return json.loads(line)["epoch"]
    except (ValueError, KeyError, TypeError):
        return float("-inf")  # a torn last line of a killed run: dropped below only if it parses


def _rewrite(path: str, keep) -> None:
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    kept = [ln for ln in lines if ln.endswith("\n") and keep(ln)]  # a torn last line (no newline) goes too
    if len(kept) != len(lines):
        atomic_write(path, lambda f: f.write("".join(kept).encode()))
        log.info(
            "%s: %d line(s) past the checkpoint dropped; the resumed run writes them again",
            path,
            len(lines) - len(kept),
        )
