"""Typed configuration fields: a dataclass field that is also a command-line flag (default, help, bounds), the
structured values parsed once from a flag's text, the bounds check, and the error every bad value raises. Each
consumer (models/, data/, options/) declares its config with these; options/ turns the fields into flags."""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import field, fields
from functools import cache
from typing import Any, ClassVar, TypeVar


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
    resume: str | None = None,
) -> Any:
    """A dataclass field that is also a flag: default, help and, for numbers, bounds (lo <= v, v < below,
    v <= hi, or positive: v > 0), all checked once by check_bounds; note follows the bound in the message.
    unet_only: a value other than the default is refused with a ResNet generator. positional: a list of one or
    more values without a flag. resume: what the field is to a resumed run, "source" (what it trains on),
    "sampling" (how batches are drawn from it) or "values" (how data values map to the network's range and back);
    a config's resume_role applies to all its fields. The flag's type is the field's annotation."""
    meta = {"help": help, "choices": choices, "lo": lo, "below": below, "hi": hi, "positive": positive, "note": note}
    meta.update(unet_only=unet_only, positional=positional, resume=resume)
    return field(default=default, metadata=meta)


def need(cond: bool, msg: str) -> None:
    if not cond:
        raise OptionError(msg)


C = TypeVar("C", bound="Config")


class FlagValue:
    """A structured flag's value (a range, a channel list, device ids ...): parsed once from the flag's text by
    its classmethod parse(text, flag), which raises OptionError naming the flag and what is valid, and written
    back as that text by str() (in --help, train_opt.txt, saved options and checkpoints, which therefore hold
    text). A config field annotated with such a type holds the parsed value; text given to the config (from a
    saved run, a test) is parsed when the config is made. A subclass without parse() is refused when defined."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.__dict__.get("parse"), classmethod):
            raise TypeError(f"{cls.__name__}: a FlagValue defines the classmethod parse(text, flag)")


@cache
def value_types(cls: type) -> dict[str, type[FlagValue]]:
    """The fields of a config class whose type is a FlagValue, by name."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        kinds = [a for a in typing.get_args(hint) or (hint,) if isinstance(a, type) and issubclass(a, FlagValue)]
        if kinds:
            out[name] = kinds[0]
    return out


class Config:
    """Base of the frozen configs. key: the config's name in saved options and checkpoints; title: its heading in
    --help. check(): the rules among the config's own fields; rules across configs are options.rules'."""

    key: ClassVar[str]
    title: ClassVar[str]
    # Saved with a run and taken from it by test.py, translate.py and export.py: the rules that involve them are
    # checked once the run's values are known.
    from_run: ClassVar[bool] = False
    # What all the fields are to a resumed run (see arg's resume), unless a field says.
    resume_role: ClassVar[str | None] = None

    @classmethod
    def resume_keys(cls, role: str) -> tuple[str, ...]:
        """The fields whose resume role (arg's resume, else the config's resume_role) is role."""
        return tuple(f.name for f in fields(cls) if (f.metadata["resume"] or cls.resume_role) == role)  # type: ignore

    def __post_init__(self) -> None:
        for name, kind in value_types(type(self)).items():  # text (a saved run, a test) -> the parsed value
            v = getattr(self, name)
            if isinstance(v, str):
                object.__setattr__(self, name, kind.parse(v, name))

    def check(self) -> None:
        """Rules among this config's own fields beyond each one's bounds; the default has none."""

    def validate(self) -> None:
        """Each field's bounds and choices, then check(); OptionError naming the flag."""
        check_bounds(self)
        self.check()

    def to_dict(self) -> dict[str, Any]:
        """The values as plain JSON-able data (a FlagValue as its flag text), as saved with a run."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[C], saved: Mapping[str, Any]) -> C:
        """The config of saved values (to_dict's); names it does not know are dropped, those it lacks (an older
        run) get their defaults."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in saved.items() if k in known})


def _plain(v: Any) -> Any:
    return str(v) if isinstance(v, FlagValue) else v


def check_bounds(o: Any) -> None:
    """Every numeric field of config o within the bounds its arg() gives, and finite; choices. (unet_only is a
    rule across configs: options.rules.)"""
    for f in fields(o):
        v = getattr(o, f.name)
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
