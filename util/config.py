"""Typed configuration fields: a dataclass field that is also a command-line flag (default, help, bounds), the
bounds check, and the error every bad value raises. Each consumer (models/, data/, options/) declares its config
with these; options/ turns the fields into flags."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import field, fields
from typing import Any, ClassVar


class OptionError(ValueError):
    """A bad option value; the message starts with the flag and says what is valid."""


def arg(
    default: Any,
    help: str,
    *,
    choices: Sequence | None = None,
    lo: float | None = None,
    below: float | None = None,
    hi: float | None = None,
    positive: bool = False,
    note: str = "",
    unet_only: bool = False,
    positional: bool = False,
) -> Any:
    """A dataclass field that is also a flag: default, help and, for numbers, bounds (lo <= v, v < below,
    v <= hi, or positive: v > 0), all checked once by check_bounds; note follows the bound in the message.
    unet_only: a value other than the default is refused with a ResNet generator. positional: a list of one or
    more values without a flag. The flag's type is the field's annotation."""
    meta = {"help": help, "choices": choices, "lo": lo, "below": below, "hi": hi, "positive": positive, "note": note}
    meta.update(unet_only=unet_only, positional=positional)
    return field(default=default, metadata=meta)


def need(cond: bool, msg: str) -> None:
    if not cond:
        raise OptionError(msg)


class Config:
    """Base of the frozen configs. key: the config's name in saved options and checkpoints; title: its heading in
    --help. check(o): cross-field rules, where o is the whole option set (flat: o.netG, o.crop_size, ...)."""

    key: ClassVar[str]
    title: ClassVar[str]
    # Saved with a run and taken from it by test.py, translate.py and export.py: their cross-field rules are
    # checked once the run's values are known.
    from_run: ClassVar[bool] = False

    def check(self, o: Any) -> None:
        """Rules that involve more than one field's bounds; the default has none."""


def check_bounds(cls: type, o: Any) -> None:
    """Every numeric field of cls within the bounds its arg() gives, and finite; U-Net-only fields at their
    default unless the generator is a U-Net (o.is_unet, which the generator's config answers)."""
    for f in fields(cls):
        v = getattr(o, f.name)
        if f.metadata["unet_only"] and v != f.default and not o.is_unet:
            shown = f"--{f.name}" if v is True else f"--{f.name} {v}"
            raise OptionError(f"{shown}: applies to U-Net generators only, not --netG {o.netG}")
        choices = f.metadata["choices"]
        if choices is not None and not isinstance(v, list) and v not in choices:
            raise OptionError(f"--{f.name} {v!r}: must be one of {', '.join(map(str, choices))}")
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        m = f.metadata
        shown = f"--{f.name} {v}"
        if isinstance(v, float):
            need(math.isfinite(v), f"{shown}: must be a finite number")
        lo, below, hi = m["lo"], m["below"], m["hi"]
        ok = (lo is None or v >= lo) and (below is None or v < below) and (hi is None or v <= hi)
        if m["positive"]:
            ok = v > 0
        if not ok:
            raise OptionError(f"{shown}: must be {describe_bounds(m, isinstance(v, int))}")


def describe_bounds(m: Any, integer: bool) -> str:
    """'a positive integer', '0 or more', 'in [0, 1)', ... from an arg()'s bounds."""
    lo, below, hi, note = m["lo"], m["below"], m["hi"], m["note"]
    if m["positive"]:
        text = "positive"
    elif hi is not None and hi >= 2**16 - 1:
        text = f"{lo:g}..{hi:g}"
    elif hi is not None:
        text = f"in [{lo:g}, {hi:g}]"
    elif below is not None and below < 2**62:  # a seed's 2**63 is not worth saying
        text = f"in [{lo:g}, {below:g})"
    elif lo == 1 and integer:
        text = "a positive integer"
    else:
        text = f"{lo:g} or more"
    return f"{text} {note}" if note else text
