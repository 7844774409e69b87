"""The options of train.py and test.py: composed from the groups, parsed from flags generated from their fields,
validated once, saved with each run."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

from options.groups import (
    AugmentOptions,
    BasicOptions,
    CheckpointFileOptions,
    CheckpointOptions,
    DiscriminatorOptions,
    DisplayOptions,
    ExportGroup,
    GeneratorOptions,
    Group,
    InitOptions,
    LossOptions,
    OptimOptions,
    OptionError,
    PreprocessOptions,
    RunOptions,
    SourceOptions,
    SpeedOptions,
    TestDataOptions,
    TestingOptions,
    TestMetricOptions,
    TrainDataOptions,
    TrainSpeedOptions,
    TranslateGroup,
    ValidationOptions,
    check_bounds,
    gpu_id_list,
)
from util.util import write_text

log = logging.getLogger(__name__)


class Options:
    """What train.py's and test.py's options have in common: the groups they are made of and their use."""

    GROUPS: ClassVar[tuple[type[Group], ...]]
    script: ClassVar[str]

    @classmethod
    def group_fields(cls, group: type[Group]) -> list[str]:
        """The field names of the group this script uses under that group's key (e.g. TrainSpeedOptions for
        SpeedOptions)."""
        own = next(g for g in cls.GROUPS if g.key == group.key)
        return [f.name for f in fields(own)]

    def group(self, group: type[Group]) -> dict[str, Any]:
        """One group's values as a plain dict (for the network builders and the checkpoint)."""
        return {k: getattr(self, k) for k in self.group_fields(group)}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """All options by group: {"generator": {"netG": ..., ...}, "data": {...}, ...}, JSON-able."""
        return {g.key: self.group(g) for g in self.GROUPS}

    def flat(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, saved: Mapping[str, Mapping[str, Any]]):
        """The options saved by to_dict; fields a group lacks (older runs, newer switches) get their defaults,
        names this code no longer knows are dropped."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        values = {k: v for group in saved.values() for k, v in group.items() if k in known}
        return cls(**values)

    def validate(self) -> None:
        """Every value checked once: the bounds of each field, then each group's cross-field rules."""
        for g in self.GROUPS:
            check_bounds(g, self)
        for g in self.GROUPS:
            g.check(self, self)

    @property
    def gpu_ids_list(self) -> list[int]:
        return gpu_id_list(self.gpu_ids)  # type: ignore[attr-defined]


TRAIN_GROUPS = (
    BasicOptions,
    GeneratorOptions,
    DiscriminatorOptions,
    InitOptions,
    TrainSpeedOptions,
    TrainDataOptions,
    PreprocessOptions,
    ValidationOptions,
    AugmentOptions,
    LossOptions,
    OptimOptions,
    RunOptions,
    CheckpointOptions,
    DisplayOptions,
)
TEST_GROUPS = (
    BasicOptions,
    GeneratorOptions,
    DiscriminatorOptions,
    InitOptions,
    SpeedOptions,
    TestDataOptions,
    PreprocessOptions,
    TestMetricOptions,
    SourceOptions,
    TestingOptions,
)
# translate.py and export.py: a generator from a run (or a file), and what to do with it. GeneratorOptions only
# describe a reference implementation's file, which carries no options.
TRANSLATE_GROUPS = (BasicOptions, GeneratorOptions, SpeedOptions, SourceOptions, CheckpointFileOptions, TranslateGroup)
EXPORT_GROUPS = (BasicOptions, GeneratorOptions, SourceOptions, CheckpointFileOptions, ExportGroup)


# The flat classes: every field of every group is an attribute (opt.ngf, opt.batch_size); opt.group(G) and
# opt.to_dict() give them back by group. Fields of a later base come first, so the bases are listed reversed.
@dataclass
class TrainOptions(*reversed(TRAIN_GROUPS), Options):  # type: ignore[misc]
    GROUPS: ClassVar[tuple[type[Group], ...]] = TRAIN_GROUPS
    script: ClassVar[str] = "train"
    description: ClassVar[str] = "Train a pix2pix model on aligned image pairs."


@dataclass
class TestOptions(*reversed(TEST_GROUPS), Options):  # type: ignore[misc]
    GROUPS: ClassVar[tuple[type[Group], ...]] = TEST_GROUPS
    script: ClassVar[str] = "test"
    description: ClassVar[str] = "Translate images with a trained pix2pix generator and write an HTML page."


@dataclass
class TranslateOptions(*reversed(TRANSLATE_GROUPS), Options):  # type: ignore[misc]
    GROUPS: ClassVar[tuple[type[Group], ...]] = TRANSLATE_GROUPS
    script: ClassVar[str] = "translate"
    description: ClassVar[str] = "Translate image files with a trained generator; each result at its input's size."


@dataclass
class ExportOptions(*reversed(EXPORT_GROUPS), Options):  # type: ignore[misc]
    GROUPS: ClassVar[tuple[type[Group], ...]] = EXPORT_GROUPS
    script: ClassVar[str] = "export"
    description: ClassVar[str] = "Export a trained generator to ONNX, TorchScript or safetensors."


# Derived from the groups, never listed by hand: what defines the generator (test.py takes it from the
# checkpoint), what must match to resume, and the data options test.py inherits from the training run.
ARCHITECTURE_KEYS = tuple(f.name for f in fields(GeneratorOptions))
RESUME_KEYS = ARCHITECTURE_KEYS + tuple(f.name for f in fields(DiscriminatorOptions))
INHERITED_DATA_KEYS = tuple(f.name for f in fields(PreprocessOptions))


def options_class(which: bool | type[Options]) -> type[Options]:
    """train.py's (True) or test.py's (False) options, or the class given."""
    if isinstance(which, bool):
        return TrainOptions if which else TestOptions
    return which


def _flag_type(annotation: Any) -> type:
    """int | None -> int; str -> str."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def build_parser(which: bool | type[Options]) -> argparse.ArgumentParser:
    """The parser of train.py (True), test.py (False) or an Options class: one flag per field, grouped as the
    dataclasses are."""
    cls = options_class(which)
    # allow_abbrev=False: test.py must know exactly which flags were given
    p = argparse.ArgumentParser(prog=f"{cls.script}.py", description=cls.description, allow_abbrev=False)
    for group in cls.GROUPS:
        g = p.add_argument_group(group.title)
        hints = typing.get_type_hints(group)
        for f in fields(group):
            m, help_text = f.metadata, f.metadata["help"]
            kind = _flag_type(hints[f.name])
            if m["positional"]:
                g.add_argument(f.name, nargs="+", metavar=f.name.upper().rstrip("S"), help=help_text)
                continue
            if kind is bool:
                g.add_argument(f"--{f.name}", action="store_true", help=help_text)
                continue
            if "(default" not in help_text and f.default is not None:
                help_text += f" (default: {f.default})"
            g.add_argument(f"--{f.name}", type=kind, default=f.default, choices=m["choices"], help=help_text)
    return p


def given_flags(argv: Sequence[str]) -> set[str]:
    """Names of the flags written on the command line (without dashes)."""
    return {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}


def parse(which: bool | type[Options], argv: Sequence[str] | None = None) -> Any:
    """Parse and validate the command line into train.py's (True), test.py's (False) or the given Options class;
    exits with status 2 and a message naming the flag on a bad value."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = build_parser(which)
    opt = options_class(which)(**vars(p.parse_args(argv)))
    try:
        opt.validate()
    except OptionError as e:
        p.error(str(e))
    if isinstance(opt, TrainOptions) and opt.lambda_vgg == 0 and opt.vgg_weights is not None:
        log.warning("--vgg_weights is not used: the perceptual loss is off (--lambda_vgg 0)")
    return opt


def default_of(cls: type[Options], name: str) -> Any:
    f = next(f for f in fields(cls) if f.name == name)  # type: ignore[arg-type]
    return f.default if f.default is not MISSING else None


def format_options(opt: Options) -> str:
    """A table of options, non-defaults marked with their default."""
    cls = type(opt)
    lines = ["----------------- Options ---------------"]
    for k, v in sorted(opt.flat().items()):
        default = default_of(cls, k)
        mark = f"\t[default: {default}]" if v != default else ""
        lines.append(f"{k:>25}: {str(v):<30}{mark}")
    lines.append("----------------- End -------------------")
    return "\n".join(lines)


def git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    import numpy
    import PIL
    import torch
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
    }


def save_options(opt: Options, folder: str, prefix: str, argv: Sequence[str]) -> None:
    """Write <prefix>_opt.txt (readable) and <prefix>_opt.json (the options, flat for reading and for tools such as
    jq, the command, commit, versions and seed). Checkpoints keep them by group."""

    write_text(os.path.join(folder, f"{prefix}_opt.txt"), format_options(opt) + "\n")
    record = {
        "options": opt.flat(),
        "command": [sys.executable, sys.argv[0], *argv],
        "git_commit": git_commit(),
        "versions": package_versions(),
        "seed": opt.seed,  # type: ignore[attr-defined]
    }
    write_text(os.path.join(folder, f"{prefix}_opt.json"), json.dumps(record, indent=2))
