"""The options of the four scripts: each composed of the consumers' frozen configs, parsed from flags generated
from their fields (each config checked on its own), saved with each run."""

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
from functools import cache
from importlib import metadata
from typing import Any, ClassVar

from data.config import AugmentConfig, PreprocessConfig, TestDataConfig, TrainDataConfig, ValuesConfig
from models.config import (
    DiscriminatorConfig,
    GeneratorConfig,
    InitConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    SourceConfig,
    SpeedConfig,
    TrainSpeedConfig,
)
from options.groups import (
    AppGroup,
    BasicOptions,
    CheckpointFileOptions,
    CheckpointOptions,
    ExportGroup,
    RunOptions,
    TestingOptions,
    TestMetricOptions,
    TranslateGroup,
    ValidationOptions,
)
from options.presets import preset_values
from reporting.visualizer import DisplayConfig
from util.config import Config, FlagValue, OptionError
from util.util import write_text

log = logging.getLogger(__name__)


class Options:
    """A script's options: one frozen config per consumer, by its key (opt.generator.netG, opt.data.dataroot), each
    handed on alone to the code that consumes it. The command line is flat (--netG, --dataroot): every flag name
    belongs to one config of a script. Frozen: a changed value is a new object (replace), made in the one resolve
    step of each script."""

    script: ClassVar[str]
    description: ClassVar[str]
    # Whether train.py's other flags are accepted (and ignored), so that a training command can be repeated.
    takes_train_flags: ClassVar[bool] = True

    @classmethod
    @cache  # typing.get_type_hints evaluates every annotation anew: uncached, it was 1.6 s of each script's start
    def config_classes(cls) -> tuple[type[Config], ...]:
        """The configs of this script, in --help order."""
        return tuple(typing.get_type_hints(cls)[f.name] for f in fields(cls))  # type: ignore[arg-type]

    @classmethod
    def names(cls) -> set[str]:
        """Every option of this script (its flags, without dashes)."""
        return {f.name for c in cls.config_classes() for f in fields(c)}  # type: ignore[arg-type]

    @classmethod
    def key_of(cls, name: str) -> str:
        """The key of the config that holds option `name` ('netG' -> 'generator'); KeyError for no such option."""
        for c in cls.config_classes():
            if name in {f.name for f in fields(c)}:  # type: ignore[arg-type]
                return c.key
        raise KeyError(f"{cls.script}.py has no option {name!r}")

    def configs(self) -> list[Config]:
        return [getattr(self, f.name) for f in fields(self)]  # type: ignore[arg-type]

    def flat(self) -> dict[str, Any]:
        """{flag name: value} over every config (as train_opt.txt lists them)."""
        return {f.name: getattr(c, f.name) for c in self.configs() for f in fields(c)}  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """All options by config key: {"generator": {"netG": ..., ...}, "data": {...}, ...}, JSON-able (a structured
        value as its flag text), as checkpoints store them."""
        return {c.key: c.to_dict() for c in self.configs()}

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> Any:
        """The options of {flag name: value}; names this script does not have are dropped, those left out get
        their defaults. Text of a structured flag is parsed (OptionError naming the flag)."""
        return cls(**{c.key: c.from_dict(values) for c in cls.config_classes()})

    @classmethod
    def from_dict(cls, saved: Mapping[str, Mapping[str, Any]]) -> Any:
        """The options saved by to_dict (by config key, or grouped otherwise by an older format): regrouped by
        name; fields the run lacks (older runs, newer switches) get their defaults, names this code no longer
        knows are dropped."""
        return cls.from_flat(flat_saved(saved))

    def replace(self, **changes: Any) -> Any:
        """A copy with options changed by flag name (seed=3, dataroot=...), each in the config that holds it."""
        by_key: dict[str, dict[str, Any]] = {}
        for name, v in changes.items():
            by_key.setdefault(self.key_of(name), {})[name] = v
        return dataclasses.replace(self, **{k: dataclasses.replace(getattr(self, k), **v) for k, v in by_key.items()})

    def check_fields(self) -> None:
        """Each config on its own: every field's choices and bounds, and the rules among its own fields. The rules
        across configs are options.rules', checked once in each script's resolve step."""
        for c in self.configs():
            c.validate()


@dataclass(frozen=True)
class TrainOptions(Options):
    script: ClassVar[str] = "train"
    description: ClassVar[str] = "Train a pix2pix model on aligned image pairs."

    basic: BasicOptions = BasicOptions()
    generator: GeneratorConfig = GeneratorConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    init: InitConfig = InitConfig()
    speed: TrainSpeedConfig = TrainSpeedConfig()
    data: TrainDataConfig = TrainDataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    values: ValuesConfig = ValuesConfig()
    metrics: ValidationOptions = ValidationOptions()
    augment: AugmentConfig = AugmentConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    run: RunOptions = RunOptions()
    checkpoints: CheckpointOptions = CheckpointOptions()
    display: DisplayConfig = DisplayConfig()

    def model_config(self) -> ModelConfig:
        """What models.create_model takes."""
        return ModelConfig(self.generator, self.discriminator, self.init, self.loss, self.optim, self.speed)


@dataclass(frozen=True)
class TestOptions(Options):
    script: ClassVar[str] = "test"
    description: ClassVar[str] = "Translate images with a trained pix2pix generator and write an HTML page."

    basic: BasicOptions = BasicOptions()
    generator: GeneratorConfig = GeneratorConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    init: InitConfig = InitConfig()
    speed: SpeedConfig = SpeedConfig()
    data: TestDataConfig = TestDataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    values: ValuesConfig = ValuesConfig()
    metrics: TestMetricOptions = TestMetricOptions()
    source: SourceConfig = SourceConfig()
    testing: TestingOptions = TestingOptions()


# translate.py and export.py: a generator from a run (or a file), and what to do with it. The generator flags
# describe a reference implementation's file, which carries no options, and must agree with a run's.
@dataclass(frozen=True)
class TranslateOptions(Options):
    script: ClassVar[str] = "translate"
    description: ClassVar[str] = "Translate image files with a trained generator; each result at its input's size."

    basic: BasicOptions = BasicOptions()
    generator: GeneratorConfig = GeneratorConfig()
    speed: SpeedConfig = SpeedConfig()
    values: ValuesConfig = ValuesConfig()
    source: SourceConfig = SourceConfig()
    checkpoint_file: CheckpointFileOptions = CheckpointFileOptions()
    translate: TranslateGroup = TranslateGroup()


@dataclass(frozen=True)
class ExportOptions(Options):
    script: ClassVar[str] = "export"
    description: ClassVar[str] = "Export a trained generator to ONNX, TorchScript or safetensors."

    basic: BasicOptions = BasicOptions()
    generator: GeneratorConfig = GeneratorConfig()
    source: SourceConfig = SourceConfig()
    checkpoint_file: CheckpointFileOptions = CheckpointFileOptions()
    export: ExportGroup = ExportGroup()


@dataclass(frozen=True)
class AppOptions(Options):
    script: ClassVar[str] = "app"
    description: ClassVar[str] = "Serve a web page that translates images with any run of a checkpoints folder."
    takes_train_flags: ClassVar[bool] = False

    app: AppGroup = AppGroup()


# Derived from the configs, never listed by hand: what defines the generator (test.py takes it from the
# checkpoint), what must match to resume, what a resumed run trains on and how it samples it (engine.resume), and
# what test.py, translate.py and export.py take from the run unless given.
ARCHITECTURE_KEYS = tuple(f.name for f in fields(GeneratorConfig))
RESUME_KEYS = ARCHITECTURE_KEYS + tuple(f.name for f in fields(DiscriminatorConfig))
DATA_SOURCE_KEYS = tuple(k for c in TrainOptions.config_classes() for k in c.resume_keys("source"))
DATA_SAMPLING_KEYS = tuple(k for c in TrainOptions.config_classes() for k in c.resume_keys("sampling"))
VALUE_KEYS = tuple(k for c in TrainOptions.config_classes() for k in c.resume_keys("values"))
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


def _flag_type(annotation: Any) -> Any:
    """int | None -> int; str -> str; a structured value (data.values.RangeSpec, ...) is read as text and parsed
    when its config is made."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    kind = args[0] if args else annotation
    return str if isinstance(kind, type) and issubclass(kind, FlagValue) else kind


def build_parser(which: bool | type[Options]) -> argparse.ArgumentParser:
    """The parser of train.py (True), test.py (False) or an Options class: one flag per field, grouped by config.
    The other scripts also take train.py's flags they do not have, unlisted in --help, so that a training command
    can be repeated (engine.resolve names them in one warning: they change nothing there)."""
    cls = options_class(which)
    # allow_abbrev=False: test.py must know exactly which flags were given
    foreign = cls is not TrainOptions and cls.takes_train_flags
    epilog = "train.py's other flags are accepted and ignored (with a warning)." if foreign else None
    p = argparse.ArgumentParser(prog=f"{cls.script}.py", description=cls.description, epilog=epilog, allow_abbrev=False)
    for config in cls.config_classes():
        g = p.add_argument_group(config.title)
        for f in fields(config):  # type: ignore[arg-type]
            _add_flag(g, f, typing.get_type_hints(config)[f.name], hidden=False)
    if foreign:
        own = cls.names()
        g = p.add_argument_group("train.py's other flags (accepted, and ignored)")
        for config in TrainOptions.config_classes():
            for f in fields(config):  # type: ignore[arg-type]
                if f.name not in own:
                    _add_flag(g, f, typing.get_type_hints(config)[f.name], hidden=True)
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
    """Parse the command line into train.py's (True), test.py's (False) or the given Options class, each config
    checked on its own (structured values parsed, bounds, the rules among its fields); exits with status 2 and a
    message naming the flag on a bad value. The rules across configs are checked once, by the script's resolve
    step (engine.resolve), on the values it runs with."""
    argv = join_negative_values(sys.argv[1:] if argv is None else argv)
    p = build_parser(which)
    cls = options_class(which)
    own = cls.names()
    values = vars(p.parse_args(argv))
    if values.get("preset", "none") != "none" and cls is TrainOptions:  # the command line's own flags win
        values.update(preset_values(values["preset"], given_flags(argv)))
    try:
        opt = settle(cls.from_flat({k: v for k, v in values.items() if k in own}))
        opt.check_fields()
        if cls is not TrainOptions:  # train.py's flags it ignores are still checked as train.py checks them
            foreign = {k: v for k, v in values.items() if k not in own}
            for config in TrainOptions.from_flat(foreign).configs():
                if any(f.name in foreign for f in fields(config)):  # type: ignore[arg-type]
                    config.validate()
    except OptionError as e:
        p.error(str(e))
    if isinstance(opt, TrainOptions) and opt.loss.lambda_vgg == 0 and opt.loss.vgg_weights is not None:
        log.warning("--vgg_weights is not used: the perceptual loss is off (--lambda_vgg 0)")
    return opt


def settle(opt: Options) -> Options:
    """Flags that are another flag's alias, folded into it once: the reference's --use_wandb is --logger wandb
    (a --logger other than none or wandb beside it is refused by DisplayConfig.check)."""
    display = getattr(opt, "display", None)
    if display is not None and display.use_wandb and display.logger == "none":
        return opt.replace(logger="wandb")
    return opt


def default_of(cls: type[Options], name: str) -> Any:
    config = next(c for c in cls.config_classes() if name in {f.name for f in fields(c)})  # type: ignore[arg-type]
    f = next(f for f in fields(config) if f.name == name)  # type: ignore[arg-type]
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
    """The versions of Python and the main packages, read from the installed packages' metadata (importing them
    would cost seconds: torchvision loads its detection models, torch its compiler)."""
    out = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "numpy", "pillow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def save_options(
    opt: Options, folder: str, prefix: str, argv: Sequence[str], extra: Mapping[str, Any] | None = None
) -> None:
    """Write <prefix>_opt.txt (readable) and <prefix>_opt.json (the options, flat for reading and for tools such as
    jq, the command, commit, versions, seed, and the entries of extra). Checkpoints keep them by group."""

    write_text(os.path.join(folder, f"{prefix}_opt.txt"), format_options(opt) + "\n")
    record = {
        "options": flat_saved(opt.to_dict()),
        "command": [sys.executable, sys.argv[0], *argv],
        "git_commit": git_commit(),
        "versions": package_versions(),
        "seed": opt.flat()["seed"],
        **(extra or {}),
    }
    write_text(os.path.join(folder, f"{prefix}_opt.json"), json.dumps(record, indent=2))
