"""The frozen configs data/ consumes: where the images are and how they are read, scaled, cropped and augmented.
Each field is also a flag (options/ generates them); the preprocess modes and their rules live in data.transforms."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

from data.arrays import OUTPUT_FORMATS, VALUE_TYPES, png_problem
from data.transforms import CROP_MODES, PREPROCESS_MODES, RESIZE_CROP_MODES, RESIZE_FILTERS
from data.values import check_range_flag
from util.config import Config, OptionError, arg, need
from util.util import preview_channels


def default_threads() -> int:
    return min(4, os.cpu_count() or 1)


def plain_name(flag: str, value: str, examples: str) -> None:
    need(
        value not in ("", ".", "..") and "/" not in value and "\\" not in value,
        f"--{flag} {value!r}: must be a plain folder name such as {examples}",
    )


@dataclass(frozen=True)
class DataConfig(Config):
    key: ClassVar[str] = "data"
    title: ClassVar[str] = "data"

    dataroot: str | None = arg(
        None,
        "folder with train/, test/ ... sub-folders of A|B images, or A/ and B/ folders (default: a small demo set "
        "built offline on first use under datasets/demo)",
    )
    dataset_mode: str = arg("aligned", "aligned pairs or A only", choices=("aligned", "single"))
    phase: str = arg("train", "sub-folder of --dataroot to read")
    batch_size: int = arg(1, "images per batch", lo=1)
    no_flip: bool = arg(False, "no random horizontal flips")
    num_threads: int = arg(default_threads(), "data loader worker processes (0 = main)", lo=0)
    serial_batches: bool = arg(False, "take images in order, not shuffled")
    skip_bad_images: bool = arg(
        False, "decode every image first and skip unreadable ones (default: stop at the first, naming it)"
    )
    max_bad_fraction: float = arg(
        0.05, "with --skip_bad_images, stop if more than this share of the images is unreadable", lo=0, below=1
    )
    max_dataset_size: int | None = arg(None, "use at most this many images (default: all)", lo=1)

    def check(self, o: Any) -> None:
        plain_name("phase", self.phase, "train, test or val")
        if self.dataroot is not None:
            need(os.path.isdir(self.dataroot), f"--dataroot {self.dataroot}: no such folder")


@dataclass(frozen=True)
class TrainDataConfig(DataConfig):
    cache_images: bool = arg(
        False,
        "decode every training image once into shared memory that all loader workers read (resizing, cropping "
        "and flips stay per sample; the data order and resume are unchanged); stops at start if they do not fit",
    )
    device_preprocess: bool = arg(
        False,
        "the loader hands over the images as read (uint8) with each sample's drawn crop and flip; resizing, "
        "cropping, flips and --aug_* then run batched on the training device: the same crops, flips and data "
        "order, resized pixels within 2 levels of 256 of the loader's, nearly all equal. For a GPU the loader "
        "cannot keep fed",
    )

    def check(self, o: Any) -> None:
        super().check(o)
        if self.device_preprocess:
            lanczos = [f"--{k} lanczos" for k in ("filter_A", "filter_B") if getattr(o, k, None) == "lanczos"]
            need(not lanczos, f"--device_preprocess: {', '.join(lanczos)} has no torch kernel; use bicubic")


@dataclass(frozen=True)
class TestDataConfig(DataConfig):
    """test.py's data flags: the same, with test.py's own --dataroot default and phase."""

    dataroot: str | None = arg(
        None,
        "folder with test/ ... sub-folders of A|B images, or A/ and B/ folders (default: the training run's "
        "--dataroot)",
    )
    phase: str = arg("test", "sub-folder of --dataroot to read")


@dataclass(frozen=True)
class PreprocessConfig(Config):
    """How images are scaled and cropped; test.py takes the training run's unless given."""

    key: ClassVar[str] = "preprocess"
    title: ClassVar[str] = "preprocessing (test.py takes the training run's unless given)"
    from_run: ClassVar[bool] = True

    load_size: int = arg(286, "scale images to this size before cropping", lo=1)
    crop_size: int = arg(256, "then crop to this size", lo=1)
    preprocess: str = arg("resize_and_crop", "how images are scaled and cropped", choices=PREPROCESS_MODES)
    filter_A: str = arg("bicubic", "resampling filter for real_A (input)", choices=RESIZE_FILTERS)
    filter_B: str = arg("bicubic", "resampling filter for real_B (target)", choices=RESIZE_FILTERS)

    @property
    def crops(self) -> bool:
        """Every image is cut to crop_size x crop_size (so a batch has one size)."""
        return self.preprocess in CROP_MODES

    def check(self, o: Any) -> None:
        check_sizes(self, o.config("generator"), trained=getattr(o, "CHECK_AFTER_CHECKPOINT", False))


def check_sizes(p: PreprocessConfig, generator: Any, trained: bool = False) -> None:
    """Crops must fit the generator's depth (generator: a models.config.GeneratorConfig) and fit inside the
    loaded image. trained: the generator is a trained run's (test.py), whose depth is no longer a choice."""
    if p.crops:
        m = generator.size_multiple
        if p.crop_size % m:
            lo, hi = (p.crop_size // m) * m, (p.crop_size // m + 1) * m
            valid = f"{lo} or {hi}" if lo > 0 else f"{hi}"
            fix = "the trained run's depth" if trained else "or use a generator with fewer downsamplings (--num_downs)"
            raise OptionError(
                f"--crop_size {p.crop_size} does not fit {generator.describe()}: it must be a multiple of {m} "
                f"(for example {valid}), {fix}"
            )
    if p.preprocess in RESIZE_CROP_MODES:
        need(
            p.crop_size <= p.load_size,
            f"--crop_size {p.crop_size} is larger than --load_size {p.load_size}: "
            f"the crop must fit inside the resized image (use --load_size >= {p.crop_size})",
        )


@dataclass(frozen=True)
class AugmentConfig(Config):
    key: ClassVar[str] = "augment"
    title: ClassVar[str] = "augmentation (off by default; same geometry for A and B)"

    aug_scale: float = arg(0.0, "random zoom in [1 - S, 1 + S]", lo=0, below=1)
    aug_rotate: float = arg(0.0, "random rotation in [-D, D] degrees", lo=0, hi=180, note="degrees")
    aug_color: float = arg(0.0, "brightness/contrast/saturation jitter (hue a quarter of it)", lo=0, hi=1)
    aug_color_on: str = arg("input", "jitter real_A only, or A and B alike", choices=("input", "both"))

    def check(self, o: Any) -> None:
        g = o.config("generator")
        jittered = [("input_nc", g.input_nc)] + ([("output_nc", g.output_nc)] if self.aug_color_on == "both" else [])
        for flag, nc in jittered:
            need(
                not self.aug_color or nc in (1, 3),
                f"--aug_color jitters brightness, contrast and colour of grey or RGB images: --{flag} is {nc} "
                "(use --aug_scale and --aug_rotate, which work on any channels)",
            )


@dataclass(frozen=True)
class ValuesConfig(Config):
    """How data values become the network's [-1, 1] and outputs go back to the data's units; train.py settles them
    (ranges measured, the output type found) and saves them with the run, which test.py and translate.py take."""

    key: ClassVar[str] = "values"
    title: ClassVar[str] = "data values (16-bit, float, many channels; test.py takes the training run's unless given)"
    from_run: ClassVar[bool] = True

    range_A: str = arg(
        "",
        "MIN,MAX of real_A's values, mapped to [-1, 1], values outside clipped (a CT window: --range_A=-1024,3071); "
        "auto: measured over the training set (0.1 and 99.9 percentiles); default: the value type's range for "
        "integer images (0..255, 0..65535), measured for float ones",
    )
    range_B: str = arg("", "the same for real_B and fake_B (outputs are mapped back by it)")
    output_dtype: str = arg(
        "auto",
        "value type of written outputs (default: real_B's in the training data, saved with the run)",
        choices=("auto", *VALUE_TYPES),
    )
    output_format: str = arg(
        "auto",
        "file format of full-precision outputs (default: PNG for 8- and 16-bit images of 1, 3 or 4 channels, "
        "TIFF otherwise); 8-bit runs with the default write the PNGs they always did",
        choices=OUTPUT_FORMATS,
    )
    preview_channels: str = arg(
        "",
        "channels the pages and visdom show of images with other than 1 or 3 channels: one (grey) or three "
        "(R,G,B), e.g. 0 or 2,1,0 (default: the first, as grey)",
    )

    def check(self, o: Any) -> None:
        check_range_flag(self.range_A, "range_A")
        check_range_flag(self.range_B, "range_B")
        try:
            chans = preview_channels(self.preview_channels)
        except ValueError as e:
            raise OptionError(str(e)) from None
        g = o.config("generator")
        for flag, nc in (("input_nc", g.input_nc), ("output_nc", g.output_nc)):
            need(
                not chans or nc in (1, 3) or max(chans) < nc,
                f"--preview_channels {self.preview_channels}: --{flag} is {nc} (channels 0 to {nc - 1})",
            )
        if self.output_format == "png":
            problem = png_problem("uint8" if self.output_dtype == "auto" else self.output_dtype, g.output_nc)
            need(problem is None, f"--output_format png: {problem}; use tif or npy")
