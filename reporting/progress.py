"""Progress a user can plan by: a bar over the whole loop on a terminal, a plain log line every --progress_every
seconds otherwise (log files, nohup, schedulers), and the whole loop's estimated time after a short warm-up."""

from __future__ import annotations

import datetime
import logging
import sys
import time

from tqdm import tqdm

WARMUP_STEPS = 5  # first steps (allocation, cuDNN autotuning, compilation) are left out of the speed
ESTIMATE_AFTER = (20, 30.0)  # the first estimate after this many measured steps or seconds, whichever first


def hms(seconds: float) -> str:
    """3725 -> '1:02:05'."""
    return str(datetime.timedelta(seconds=round(max(0.0, seconds))))


class ProgressReport:
    """Counts steps of a loop of `total` steps (`done` of them already done, as after a resume). Each step is
    `per_step` images. On a terminal: a tqdm bar over the whole loop (its description set by update(), img/s and
    ETA shown); otherwise one log line every `every` seconds. estimate_line() is logged once after warm-up."""

    def __init__(
        self,
        total: int,
        done: int,
        per_step: int,
        every: float,
        desc: str,
        log: logging.Logger,
        terminal: bool | None = None,
        what: str = "iterations",
    ) -> None:
        self.total, self.done, self.per_step, self.every, self.log, self.what = total, done, per_step, every, log, what
        self.start_done = done
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.t_start = self.t_line = time.perf_counter()
        self.t_warm: float | None = None  # when warm-up ended, and the step count then
        self.n_warm = 0
        self.estimated = False
        self.desc = desc
        self.extra: dict[str, str] = {}  # shown on the bar beside img/s (the latest losses)
        self.bar = tqdm(
            total=total, initial=done, desc=desc, unit="it", disable=not self.terminal, dynamic_ncols=True, leave=False
        )

    # ---- speed ---------------------------------------------------------------------------------------------
    def steps_per_second(self) -> float | None:
        """Measured after warm-up, over everything since (end-of-epoch work included, so the ETA holds)."""
        if self.t_warm is None:
            return None
        dt, n = time.perf_counter() - self.t_warm, self.done - self.n_warm
        return n / dt if n > 0 and dt > 0 else None

    def eta(self) -> float | None:
        rate = self.steps_per_second()
        return (self.total - self.done) / rate if rate else None

    # ---- reporting -----------------------------------------------------------------------------------------
    def update(self, n: int = 1, desc: str | None = None) -> None:
        self.done += n
        now = time.perf_counter()
        if self.t_warm is None and self.done - self.start_done >= WARMUP_STEPS:
            self.t_warm, self.n_warm = now, self.done
        if desc is not None and desc != self.desc:
            self.desc = desc
            self.bar.set_description(desc, refresh=False)
        self._postfix()
        self.bar.update(n)
        if not self.estimated and self.t_warm is not None:
            measured, elapsed = self.done - self.n_warm, now - self.t_warm
            if measured >= ESTIMATE_AFTER[0] or elapsed >= ESTIMATE_AFTER[1] or self.done == self.total:
                self.estimated = True
                if self.done < self.total:  # a loop that is already over needs no estimate
                    self.log.info("%s", self.estimate_line())
        if not self.terminal and now - self.t_line >= self.every:
            self.t_line = now
            self.log.info("%s", self.line())

    def estimate_line(self) -> str:
        rate, eta = self.steps_per_second(), self.eta()
        if not rate or eta is None:
            return f"{self.total - self.done} {self.what} to go"
        end = datetime.datetime.now() + datetime.timedelta(seconds=eta)
        return (
            f"measured speed {rate * self.per_step:.3g} img/s: the remaining {self.total - self.done} {self.what} take "
            f"about {hms(eta)} (until about {end:%H:%M})"
        )

    def line(self) -> str:
        """'epoch 3/20: 1234/9600 iterations (12.9%), 1.8 img/s, elapsed 0:11:24, ETA 1:17:02'."""
        rate, eta = self.steps_per_second(), self.eta()
        pct = 100.0 * self.done / self.total if self.total else 100.0
        parts = [f"{self.desc}: {self.done}/{self.total} {self.what} ({pct:.1f}%)"]
        parts.append(f"{rate * self.per_step:.3g} img/s" if rate else "measuring speed")
        parts.append(f"elapsed {hms(time.perf_counter() - self.t_start)}")
        parts.append(f"ETA {hms(eta)}" if eta is not None else "ETA unknown yet")
        return ", ".join(parts)

    def set_postfix(self, values: dict[str, str]) -> None:
        """Extra values on the bar (the latest losses)."""
        self.extra = values
        self._postfix()

    def _postfix(self) -> None:
        rate = self.steps_per_second()
        speed = {"img/s": f"{rate * self.per_step:.3g}"} if rate else {}
        self.bar.set_postfix({**self.extra, **speed}, refresh=False)

    def close(self) -> None:
        self.bar.close()


class Timed:
    """with Timed(log, "validation"): ... logs how long the block took when it took longer than `over` seconds."""

    def __init__(self, log: logging.Logger, what: str, over: float = 3.0) -> None:
        self.log, self.what, self.over = log, what, over

    def __enter__(self) -> Timed:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        dt = time.perf_counter() - self.t0
        if exc[0] is None and dt > self.over:
            self.log.info("%s took %.1f s", self.what, dt)
