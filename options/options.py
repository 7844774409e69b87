"""The options of train.py and test.py: composed from the groups, parsed from flags generated from their fields,
validated once, saved with each run."""

from __future__ import annotations

import argparse
import dataclasses
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

from data.config import AugmentConfig, PreprocessConfig, TestDataConfig, TrainDataConfig, ValuesConfig
from models.config import (
    DiscriminatorConfig,
    GeneratorConfig,
    InitConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    SpeedConfig,
    TrainSpeedConfig,
)
from options.groups import (
    BasicOptions,
    CheckpointFileOptions,
    CheckpointOptions,
    DisplayOptions,
    ExportGroup,
    RunOptions,
    SourceOptions,
    TestingOptions,
    TestMetricOptions,
    TranslateGroup,
    ValidationOptions,
    gpu_id_list,
)
from options.presets import preset_values
from util.config import Config, OptionError, check_bounds
from util.util import write_text

log = logging.getLogger(__name__)


class Options:
    """What the scripts' options have in common: the configs they are made of, and their use. Frozen: a changed
    value is a new object (dataclasses.replace), made in the one resolve step of each script."""

    GROUPS: ClassVar[tuple[type[Config], ...]]
    script: ClassVar[str]
    # test.py, translate.py, export.py: the cross-field rules are checked once the checkpoint's configs are known
    # (engine.resolve), since they depend on the generator the run was trained with.
    CHECK_AFTER_CHECKPOINT: ClassVar[bool] = False

    @classmethod
    def config_class(cls, group: type[Config] | str) -> type[Config]:
        """This script's class for a config key or a config class (e.g. TrainSpeedConfig for SpeedConfig)."""
        key = group if isinstance(group, str) else group.key
        return next(g for g in cls.GROUPS if g.key == key)

    @classmethod
    def names(cls) -> set[str]:
        """Every option of this script (its flags, without dashes)."""
        return {f.name for f in fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def group_fields(cls, group: type[Config] | str) -> list[str]:
        return [f.name for f in fields(cls.config_class(group))]

    def config(self, group: type[Config] | str) -> Any:
        """One consumer's frozen config (a models.config.GeneratorConfig for "generator", ...)."""
        c = self.config_class(group)
        return c(**{k: getattr(self, k) for k in self.group_fields(c)})

    def group(self, group: type[Config] | str) -> dict[str, Any]:
        """One config's values as a plain dict (JSON-able, as checkpoints store them)."""
        return {k: getattr(self, k) for k in self.group_fields(group)}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """All options by consumer config: {"generator": {"netG": ..., ...}, "data": {...}, ...}, JSON-able."""
        return {g.key: self.group(g) for g in self.GROUPS}

    def model_config(self) -> ModelConfig:
        """What models.create_model takes (train.py's options only)."""
        return ModelConfig(*(self.config(k) for k in ("generator", "discriminator", "init", "loss", "optim", "speed")))

    def flat(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, saved: Mapping[str, Mapping[str, Any]]):
        """The options saved by to_dict; fields a group lacks (older runs, newer switches) get their defaults,
        names this code no longer knows are dropped."""
        known = cls.names()
        return cls(**{k: v for k, v in flat_saved(saved).items() if k in known})

    def check_fields(self) -> None:
        """Each field on its own: choices and bounds."""
        for g in self.GROUPS:
            check_bounds(g, self)

    def validate(self, before_checkpoint: bool = False) -> None:
        """Every value checked once: the bounds of each field, then each config's cross-field rules.
        before_checkpoint: all but the rules of configs a script takes from the run (engine.resolve checks the
        whole again with the run's values)."""
        self.check_fields()
        for g in self.GROUPS:
            if not (before_checkpoint and g.from_run):
                g.check(self.config(g), self)

    @property
    def gpu_ids_list(self) -> list[int]:
        return gpu_id_list(self.gpu_ids)  # type: ignore[attr-defined]


TRAIN_GROUPS = (
    BasicOptions,
    GeneratorConfig,
    DiscriminatorConfig,
    InitConfig,
    TrainSpeedConfig,
    TrainDataConfig,
    PreprocessConfig,
    ValuesConfig,
    ValidationOptions,
    AugmentConfig,
    LossConfig,
    OptimConfig,
    RunOptions,
    CheckpointOptions,
    DisplayOptions,
)
TEST_GROUPS = (
    BasicOptions,
    GeneratorConfig,
    DiscriminatorConfig,
    InitConfig,
    SpeedConfig,
    TestDataConfig,
    PreprocessConfig,
    ValuesConfig,
    TestMetricOptions,
    SourceOptions,
    TestingOptions,
)
# translate.py and export.py: a generator from a run (or a file), and what to do with it. The generator flags
# describe a reference implementation's file, which carries no options, and must agree with a run's.
TRANSLATE_GROUPS = (
    BasicOptions,
    GeneratorConfig,
    SpeedConfig,
    ValuesConfig,
    SourceOptions,
    CheckpointFileOptions,
    TranslateGroup,
)
EXPORT_GROUPS = (BasicOptions, GeneratorConfig, SourceOptions, CheckpointFileOptions, ExportGroup)


# The flat classes: every field of every group is an attribute (opt.ngf, opt.batch_size); opt.group(G) and
# opt.to_dict() give them back by group. Fields of a later base come first, so the bases are listed reversed.
@dataclass(frozen=True)
class TrainOptions(*reversed(TRAIN_GROUPS), Options):  # type: ignore[misc]
    GROUPS: ClassVar[tuple[type[Config], ...]] = TRAIN_GROUPS
    script: ClassVar[str] = "train"
    description: ClassVar[str] = "Train a pix2pix model on aligned image pairs."


@dataclass(frozen=True)
class TestOptions(*reversed(TEST_GROUPS), Options):  # type: ignore[misc]
    GROUPS: ClassVar[tuple[type[Config], ...]] = TEST_GROUPS
    script: ClassVar[str] = "test"
    CHECK_AFTER_CHECKPOINT: ClassVar[bool] = True
    description: ClassVar[str] = "Translate images with a trained pix2pix generator and write an HTML page."


@dataclass(frozen=True)
class TranslateOptions(*reversed(TRANSLATE_GROUPS), Options):  # type: ignore[misc]
    GROUPS: ClassVar[tuple[type[Config], ...]] = TRANSLATE_GROUPS
    script: ClassVar[str] = "translate"
    CHECK_AFTER_CHECKPOINT: ClassVar[bool] = True
    description: ClassVar[str] = "Translate image files with a trained generator; each result at its input's size."


@dataclass(frozen=True)
class ExportOptions(*reversed(EXPORT_GROUPS), Options):  # type: ignore[misc]
    GROUPS: ClassVar[tuple[type[Config], ...]] = EXPORT_GROUPS
    script: ClassVar[str] = "export"
    CHECK_AFTER_CHECKPOINT: ClassVar[bool] = True
    description: ClassVar[str] = "Export a trained generator to ONNX, TorchScript or safetensors."


# Derived from the groups, never listed by hand: what defines the generator (test.py takes it from the
# checkpoint), what must match to resume, and the data options test.py inherits from the training run.
ARCHITECTURE_KEYS = tuple(f.name for f in fields(GeneratorConfig))
RESUME_KEYS = ARCHITECTURE_KEYS + tuple(f.name for f in fields(DiscriminatorConfig))
INHERITED_DATA_KEYS = tuple(f.name for f in fields(PreprocessConfig))
INHERITED_VALUE_KEYS = tuple(f.name for f in fields(ValuesConfig))
# Flags whose value may start with '-' (--range_A -1024,3071): argparse would take it for a flag.
NEGATIVE_VALUE_FLAGS = ("--range_A", "--range_B")


def flat_saved(saved: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Options saved by config key ({"generator": {"netG": ...}, ...}) as one flat dict ({"netG": ...})."""
    return {k: v for group in saved.values() for k, v in group.items()}


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
    dataclasses are. The other scripts also take train.py's flags they do not have, unlisted in --help, so that
    a training command can be repeated (engine.resolve names them in one warning: they change nothing there)."""
    cls = options_class(which)
    # allow_abbrev=False: test.py must know exactly which flags were given
    epilog = None if cls is TrainOptions else "train.py's other flags are accepted and ignored (with a warning)."
    p = argparse.ArgumentParser(prog=f"{cls.script}.py", description=cls.description, epilog=epilog, allow_abbrev=False)
    for group in cls.GROUPS:
        g = p.add_argument_group(group.title)
        for f in fields(group):
            _add_flag(g, f, typing.get_type_hints(group)[f.name], hidden=False)
    if cls is not TrainOptions:
        own = cls.names()
        g = p.add_argument_group("train.py's other flags (accepted, and ignored)")
        for group in TrainOptions.GROUPS:
            for f in fields(group):
                if f.name not in own:
                    _add_flag(g, f, typing.get_type_hints(group)[f.name], hidden=True)
    return p


def _add_flag(g: Any, f: Any, annotation: Any, hidden: bool) -> None:
    """The flag of field f; hidden: not in --help, and absent from the parsed values unless given."""
    m, help_text = f.metadata, f.metadata["help"]
    kind = _flag_type(annotation)
    extra = {"help": argparse.SUPPRESS, "default": argparse.SUPPRESS} if hidden else {}
    if m["positional"]:
        g.add_argument(f.name, nargs="+", metavar=f.name.upper().rstrip("S"), help=help_text)
    elif kind is bool:
        g.add_argument(f"--{f.name}", action="store_true", **{"help": help_text, **extra})
    else:
        if "(default" not in help_text and f.default is not None:
            help_text += f" (default: {f.default})"
        extra = {"help": help_text, "default": f.default, **extra}
        g.add_argument(f"--{f.name}", type=kind, choices=m["choices"], **extra)


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """--range_A -1024,3071 -> --range_A=-1024,3071, which argparse reads (it takes '-1024,3071' for a flag)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in NEGATIVE_VALUE_FLAGS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def given_flags(argv: Sequence[str]) -> set[str]:
    """Names of the flags written on the command line (without dashes)."""
    return {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}


def foreign_flags(opt: Options, given: set[str]) -> list[str]:
    """train.py's flags given to another script, which has no use for them."""
    own = opt.names()
    return sorted(k for k in given if k not in own)


def parse(which: bool | type[Options], argv: Sequence[str] | None = None) -> Any:
    """Parse and validate the command line into train.py's (True), test.py's (False) or the given Options class;
    exits with status 2 and a message naming the flag on a bad value."""
    argv = join_negative_values(sys.argv[1:] if argv is None else argv)
    p = build_parser(which)
    cls = options_class(which)
    own = cls.names()
    values = vars(p.parse_args(argv))
    if values.get("preset", "none") != "none" and cls is TrainOptions:  # the command line's own flags win
        values.update(preset_values(values["preset"], given_flags(argv)))
    opt = settle(cls(**{k: v for k, v in values.items() if k in own}))
    try:
        if cls is not TrainOptions:  # train.py's flags it ignores are still checked as train.py checks them
            TrainOptions(**{k: v for k, v in values.items() if k not in own}).check_fields()
        # A resumed run, like test.py, takes what it leaves out from its checkpoint: checked whole once it has.
        opt.validate(before_checkpoint=opt.CHECK_AFTER_CHECKPOINT or getattr(opt, "continue_train", False))
    except OptionError as e:
        p.error(str(e))
    if isinstance(opt, TrainOptions) and opt.lambda_vgg == 0 and opt.vgg_weights is not None:
        log.warning("--vgg_weights is not used: the perceptual loss is off (--lambda_vgg 0)")
    return opt


def settle(opt: Options) -> Options:
    """Flags that are another flag's alias, folded into it once: the reference's --use_wandb is --logger wandb
    (a --logger other than none or wandb beside it is refused by DisplayOptions.check)."""
    if getattr(opt, "use_wandb", False) and opt.logger == "none":  # type: ignore[attr-defined]
        return dataclasses.replace(opt, logger="wandb")
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


def save_options(
    opt: Options, folder: str, prefix: str, argv: Sequence[str], extra: Mapping[str, Any] | None = None
) -> None:
    """Write <prefix>_opt.txt (readable) and <prefix>_opt.json (the options, flat for reading and for tools such as
    jq, the command, commit, versions, seed, and the entries of extra). Checkpoints keep them by group."""

    write_text(os.path.join(folder, f"{prefix}_opt.txt"), format_options(opt) + "\n")
    record = {
        "options": opt.flat(),
        "command": [sys.executable, sys.argv[0], *argv],
        "git_commit": git_commit(),
        "versions": package_versions(),
        "seed": opt.seed,  # type: ignore[attr-defined]
        **(extra or {}),
    }
    write_text(os.path.join(folder, f"{prefix}_opt.json"), json.dumps(record, indent=2))
