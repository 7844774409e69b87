"""Data values to the network's [-1, 1] and back: each side's declared range (--range_A, --range_B), channel counts
fitted to --input_nc/--output_nc, and the survey of a training set that settles the ranges at start."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from data.arrays import VALUE_TYPES, Kind
from util.config import FlagValue, OptionError

log = logging.getLogger(__name__)

DTYPE_RANGES = {"uint8": (0.0, 255.0), "uint16": (0.0, 65535.0), "int16": (-32768.0, 32767.0)}
AUTO_PERCENTILES = (0.1, 99.9)  # --range_X auto: the values between these percentiles are kept unclipped
RANGE_FLAGS = ("range_A", "range_B")


@dataclass(frozen=True)
class ValueRange:
    """lo..hi in the data's units, mapped linearly to [-1, 1]; values outside are clipped."""

    lo: float
    hi: float

    def to_unit(self, a: np.ndarray) -> np.ndarray:
        """Data values -> float32 in [-1, 1] (computed in float64: float32 data round-trips to float precision).
        NaN (no-data pixels of float data) reads as MIN, infinities as MIN or MAX."""
        u = (np.asarray(a, dtype=np.float64) - self.lo) * (2.0 / (self.hi - self.lo)) - 1.0
        return np.nan_to_num(np.clip(u, -1.0, 1.0), nan=-1.0).astype(np.float32)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """[-1, 1] -> data values, float64."""
        return (np.clip(np.asarray(u, dtype=np.float64), -1.0, 1.0) + 1.0) * ((self.hi - self.lo) / 2.0) + self.lo

    def clipped(self, a: np.ndarray) -> int:
        """How many values lie outside (NaN counted: it reads as MIN)."""
        return int(np.count_nonzero(~((a >= self.lo) & (a <= self.hi))))

    @property
    def text(self) -> str:
        """As the flag takes it: '-1024,3071'."""
        return f"{self.lo:.10g},{self.hi:.10g}"


EIGHT_BIT = ValueRange(*DTYPE_RANGES["uint8"])


@dataclass(frozen=True)
class RangeSpec(FlagValue):
    """--range_A / --range_B as given: MIN,MAX (range), the value type's own range ("": neither set), or auto
    (measured over the training set at train.py's start, which saves the numbers with the run)."""

    range: ValueRange | None = None
    auto: bool = False

    @classmethod
    def parse(cls, text: str, flag: str) -> RangeSpec:
        """'MIN,MAX', '' or 'auto'; OptionError naming the flag otherwise. MIN and MAX must be finite with a finite,
        non-zero span in float32 (the network's type), MIN below MAX."""
        if text in ("", "auto"):
            return cls(auto=text == "auto")
        parts = text.split(",")
        try:
            lo, hi = (float(p) for p in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            lo = hi = None
        if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
            raise OptionError(f"--{flag} {text!r}: give MIN,MAX (for example --{flag}=-1024,3071), or auto")
        if not lo < hi:
            raise OptionError(f"--{flag} {text}: MIN must be below MAX")
        with np.errstate(over="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the overflow is what is being checked
            lo32, hi32 = np.float32(lo), np.float32(hi)
            span = hi32 - lo32
        if not (np.isfinite(lo32) and np.isfinite(hi32) and np.isfinite(span) and span > 0):
            raise OptionError(
                f"--{flag} {text}: MIN, MAX and MAX - MIN must be finite and MAX - MIN above 0 in float32 (|values| "
                "below 3.4e38, and MAX - MIN within it)"
            )
        return cls(ValueRange(lo, hi))

    def __str__(self) -> str:
        return "auto" if self.auto else self.range.text if self.range is not None else ""

    @property
    def own(self) -> bool:
        """Neither numbers nor auto: the value type's own range (integer data only)."""
        return self.range is None and not self.auto


OWN_RANGE = RangeSpec()  # the default of --range_A and --range_B


class ChannelList(tuple, FlagValue):
    """--preview_channels: one channel (grey) or three (R,G,B) by index, e.g. 0 or 2,1,0; empty: the default."""

    @classmethod
    def parse(cls, text: str, flag: str) -> ChannelList:
        if text == "":
            return cls()
        try:
            chans = tuple(int(c) for c in text.split(","))
        except ValueError:
            chans = ()
        if len(chans) not in (1, 3) or min(chans) < 0:
            raise OptionError(f"--{flag} {text!r}: one channel (grey) or three (R,G,B), e.g. 0 or 2,1,0")
        return cls(chans)

    def __str__(self) -> str:
        return ",".join(map(str, self))

    __repr__ = __str__


def range_for(spec: RangeSpec, kind: Kind, flag: str) -> ValueRange:
    """The range a side's values are mapped by: the flag's MIN,MAX, else the value type's own for integers.
    Float data has none: ValueError naming the flag (train.py measures it; afterwards the run's is used)."""
    if spec.range is not None:
        return spec.range
    if kind.dtype in DTYPE_RANGES:
        return ValueRange(*DTYPE_RANGES[kind.dtype])
    raise ValueError(f"the {kind.describe()} images need --{flag} MIN,MAX: float values have no implied range")


def fit_problem(channels: int, nc: int) -> str | None:
    """Why a file of `channels` cannot be read as nc channels, or None: 1 <-> 3 are converted (grey repeated,
    colour to luma) as for 8-bit images; other counts must match."""
    if channels == nc or (channels in (1, 3) and nc in (1, 3)):
        return None
    return f"has {channels} channels, not {nc}"


def fit_channels(a: np.ndarray, nc: int) -> np.ndarray:
    """(H, W, C) -> (H, W, nc) by fit_problem's rules; luma as ITU-R 601-2 (Pillow's)."""
    c = a.shape[2]
    if c == nc:
        return a
    if c == 1 and nc == 3:
        return np.repeat(a, 3, axis=2)
    if c == 3 and nc == 1:
        return (a.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))[:, :, None]
    raise ValueError(fit_problem(c, nc) or "")


def to_output(u: np.ndarray, rng: ValueRange, dtype: str) -> np.ndarray:
    """(H, W, C) in [-1, 1] -> the data's units in dtype (integers rounded, within the type's bounds)."""
    if dtype not in VALUE_TYPES:
        raise ValueError(f"no such value type {dtype}")
    v = rng.from_unit(u)
    if dtype in DTYPE_RANGES:
        lo, hi = DTYPE_RANGES[dtype]
        v = np.clip(np.round(v), lo, hi)
    return v.astype(dtype)


def measure(arrays: list[np.ndarray]) -> ValueRange:
    """--range_X auto: the AUTO_PERCENTILES of the values (every channel) of the arrays given."""
    vals = np.concatenate([a.reshape(-1)[:: max(1, a.size // 262144)] for a in arrays]).astype(np.float64)
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        raise ValueError("no finite values to measure a range from")
    lo, hi = np.percentile(vals, AUTO_PERCENTILES)
    if not lo < hi:  # a constant image: any range holding its value
        lo, hi = lo - 1.0, hi + 1.0
    return ValueRange(float(lo), float(hi))
