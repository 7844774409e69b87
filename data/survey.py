"""train.py's start: the value types of real_A and real_B found, their ranges settled (measured where asked, or
where float data has none), reported once with the share of values clipped, and saved with the run."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from data.aligned_dataset import find_pairs
from data.arrays import Kind
from data.config import DataConfig, ValuesConfig
from data.image_io import BadImageError, inspect_file, read_file
from data.values import (
    AUTO_PERCENTILES,
    DTYPE_RANGES,
    EIGHT_BIT,
    RangeSpec,
    ValueRange,
    fit_channels,
    fit_problem,
    measure,
)

log = logging.getLogger(__name__)
SAMPLE_FILES = 32  # files decoded to measure a range or count clipped values, spread evenly over the set


def settle_values(data: DataConfig, generator: Any, values: ValuesConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """({"range_A", "range_B", "output_dtype"} as this run uses them (a range: a RangeSpec of its numbers, or of
    the value type's own), {"A": real_A's value type, "B": real_B's}), each side reported in one line. generator:
    a models.config.GeneratorConfig (direction, channels). Raises FileNotFoundError, ValueError or
    data.image_io.BadImageError (a RuntimeError) naming what is wrong. Unreadable files are left to the data set's
    check, which names them (or skips them with --skip_bad_images); with no readable file in the sample, the
    options stay as they are and no types are known."""
    pairs = find_pairs(data.dataroot, data.phase, data.max_dataset_size)
    step = max(1, len(pairs) // SAMPLE_FILES)
    sample = pairs[::step][:SAMPLE_FILES]
    out: dict[str, Any] = {}
    kinds, ranges = {}, {}
    headers = {p: _kind(p) for pair in sample for p in pair if p is not None}  # each file's header read once
    for real, nc in (("A", generator.input_nc), ("B", generator.output_nc)):
        right = (real == "B") == (generator.direction == "AtoB")  # real_B is the right (B) image unless BtoA
        files = [((b if right else a), None) if b is not None else (a, right) for a, b in sample]
        spec = getattr(values, f"range_{real}")
        files = [(p, half, headers[p]) for p, half in files if headers[p] is not None]
        if not files:
            return {}, {}
        ranges[real], kinds[real], note = settle_side(files, nc, spec, f"range_{real}")
        rng = ranges[real]
        # The value type's range stays "" (it is the rule for any type: a 16-bit file given to a run trained on
        # 8-bit images maps 0..65535, as it always was); a measured or given range is saved as its numbers.
        out[f"range_{real}"] = spec if spec.own and kinds[real].dtype in DTYPE_RANGES else RangeSpec(rng)
        log.info("real_%s: %s, range %s%s", real, kinds[real].describe(), rng.text, note)
    out["output_dtype"] = kinds["B"].dtype if values.output_dtype == "auto" else values.output_dtype
    if out["range_B"] == RangeSpec() and out["output_dtype"] != kinds["B"].dtype:
        # One rule for a value type's own range, reading and writing: the network learnt real_B in its data's
        # type's range, so outputs of another type are mapped back by that range (then rounded and clipped to the
        # output type), never by the output type's own.
        out["range_B"] = RangeSpec(ranges["B"])
        log.info("outputs in %s are mapped back by real_B's range %s", out["output_dtype"], ranges["B"].text)
    return out, {real: kind.dtype for real, kind in kinds.items()}


def _kind(path: str) -> Kind | None:
    try:
        return inspect_file(path, decode=False)[1]
    except BadImageError:
        return None


def settle_side(
    files: list[tuple[str, bool | None, Kind]], nc: int, spec: RangeSpec, flag: str
) -> tuple[ValueRange, Kind, str]:
    """(range, kind of the first file, what to say about it) for one side; files: (path, half, kind) where half is
    None for a whole file, False/True for the left/right half of an A|B image. Files of another kind than the
    first are left out (the data set's check names them)."""
    kind = files[0][2]
    if spec.range is not None:
        rng, why = spec.range, f" (--{flag})"
    elif spec.own and kind.dtype in DTYPE_RANGES:
        return ValueRange(*DTYPE_RANGES[kind.dtype]), kind, " (the value type's)"
    else:
        rng, why = None, ""
    if rng is not None and (rng == EIGHT_BIT and kind.eight_bit or _holds(rng, kind)):
        return rng, kind, why  # nothing can be clipped
    arrays = [a for p, half, k in files if k == kind and (a := _values(p, half, nc)) is not None]
    if not arrays:
        raise ValueError(f"--{flag}: none of the {len(files)} files sampled could be read to measure a range")
    if rng is None:
        try:
            rng = measure(arrays)
        except ValueError as e:  # every value NaN or infinite: no range to measure
            raise ValueError(
                f"--{flag}: {e} in the {len(arrays)} files sampled of this side; give --{flag} MIN,MAX"
            ) from None
        lo, hi = AUTO_PERCENTILES
        why = f" (measured: the {lo:g} and {hi:g} percentiles of {len(arrays)} files; --{flag} MIN,MAX sets it)"
    clipped = sum(rng.clipped(a) for a in arrays) / max(1, sum(a.size for a in arrays))
    return rng, kind, f"{why}; {clipped:.2%} of the values of {len(arrays)} files outside it, clipped"


def _holds(rng: ValueRange, kind: Kind) -> bool:
    """Whether every value of the value type lies in rng."""
    lo_hi = DTYPE_RANGES.get(kind.dtype)
    return lo_hi is not None and rng.lo <= lo_hi[0] and rng.hi >= lo_hi[1]


def _values(path: str, half: bool | None, nc: int) -> np.ndarray | None:
    try:
        a = read_file(path)
    except BadImageError:
        return None
    if half is not None:
        w2 = a.shape[1] // 2
        a = a[:, w2 : 2 * w2] if half else a[:, :w2]
    return fit_channels(a, nc) if fit_problem(a.shape[2], nc) is None else a
