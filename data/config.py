"""The frozen configs data/ consumes: where the images are and how they are read, scaled, cropped and augmented.
Each field is also a flag (options/ generates them); the preprocess modes and their rules live in data.transforms."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from data.arrays import OUTPUT_FORMATS, VALUE_TYPES
from data.transforms import CROP_MODES, PREPROCESS_MODES, RESIZE_CROP_MODES, RESIZE_FILTERS
from data.values import OWN_RANGE, ChannelList, RangeSpec
from util.config import Config, arg, need


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
        resume="source",
    )
    dataset_mode: str = arg("aligned", "aligned pairs or A only", choices=("aligned", "single"), resume="source")
    phase: str = arg("train", "sub-folder of --dataroot to read", resume="source")
    batch_size: int = arg(1, "images per batch", lo=1, resume="sampling")
    no_flip: bool = arg(False, "no random horizontal flips", resume="sampling")
    num_threads: int = arg(default_threads(), "data loader worker processes (0 = main)", lo=0)
    serial_batches: bool = arg(False, "take images in order, not shuffled", resume="sampling")
    skip_bad_images: bool = arg(
        False, "decode every image first and skip unreadable ones (default: stop at the first, naming it)"
    )
    max_bad_fraction: float = arg(
        0.05, "with --skip_bad_images, stop if more than this share of the images is unreadable", lo=0, below=1
    )
    max_dataset_size: int | None = arg(None, "use at most this many images (default: all)", lo=1, resume="source")

    def check(self) -> None:
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
    resume_role: ClassVar[str | None] = "sampling"  # another value is how batches are drawn

    load_size: int = arg(286, "scale images to this size before cropping", lo=1)
    crop_size: int = arg(256, "then crop to this size", lo=1)
    preprocess: str = arg("resize_and_crop", "how images are scaled and cropped", choices=PREPROCESS_MODES)
    filter_A: str = arg("bicubic", "resampling filter for real_A (input)", choices=RESIZE_FILTERS)
    filter_B: str = arg("bicubic", "resampling filter for real_B (target)", choices=RESIZE_FILTERS)

    @property
    def crops(self) -> bool:
        """Every image is cut to crop_size x crop_size (so a batch has one size)."""
        return self.preprocess in CROP_MODES

    def check(self) -> None:
        if self.preprocess in RESIZE_CROP_MODES:
            need(
                self.crop_size <= self.load_size,
                f"--crop_size {self.crop_size} is larger than --load_size {self.load_size}: "
                f"the crop must fit inside the resized image (use --load_size >= {self.crop_size})",
            )


@dataclass(frozen=True)
class AugmentConfig(Config):
    key: ClassVar[str] = "augment"
    title: ClassVar[str] = "augmentation (off by default; same geometry for A and B)"
    resume_role: ClassVar[str | None] = "sampling"

    aug_scale: float = arg(0.0, "random zoom in [1 - S, 1 + S]", lo=0, below=1)
    aug_rotate: float = arg(0.0, "random rotation in [-D, D] degrees", lo=0, hi=180, note="degrees")
    aug_color: float = arg(0.0, "brightness/contrast/saturation jitter (hue a quarter of it)", lo=0, hi=1)
    aug_color_on: str = arg("input", "jitter real_A only, or A and B alike", choices=("input", "both"))


@dataclass(frozen=True)
class ValuesConfig(Config):
    """How data values become the network's [-1, 1] and outputs go back to the data's units; train.py settles them
    (ranges measured, the output type found) and saves them with the run, which test.py and translate.py take."""

    key: ClassVar[str] = "values"
    title: ClassVar[str] = "data values (16-bit, float, many channels; test.py takes the training run's unless given)"
    from_run: ClassVar[bool] = True

    range_A: RangeSpec = arg(
        OWN_RANGE,
        "MIN,MAX of real_A's values, mapped to [-1, 1], values outside clipped (a CT window: --range_A=-1024,3071); "
        "auto: measured over the training set (0.1 and 99.9 percentiles); default: the value type's range for "
        "integer images (0..255, 0..65535), measured for float ones",
        resume="values",
    )
    range_B: RangeSpec = arg(
        OWN_RANGE, "the same for real_B and fake_B (outputs are mapped back by it)", resume="values"
    )
    output_dtype: str = arg(
        "auto",
        "value type of written outputs (default: real_B's in the training data, saved with the run)",
        choices=("auto", *VALUE_TYPES),
        resume="values",
    )
    output_format: str = arg(
        "auto",
        "file format of full-precision outputs (default: PNG for 8- and 16-bit images of 1 or 3 channels, "
        "TIFF otherwise); 8-bit runs with the default write the PNGs they always did",
        choices=OUTPUT_FORMATS,
    )
    preview_channels: ChannelList = arg(
        ChannelList(),
        "channels the pages and visdom show of images with other than 1 or 3 channels: one (grey) or three "
        "(R,G,B), e.g. 0 or 2,1,0 (default: the first, as grey)",
    )
