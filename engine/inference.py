"""The Python API: load_translator(path) -> ImageTranslator, which turns PIL images or tensors into translated
ones; test.py, translate.py and export.py use it too, so there is one inference path."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image

from data.arrays import Kind, as_hwc, as_value_type, encode, output_format, probe, read_array
from data.config import PreprocessConfig, ValuesConfig
from data.image_io import check_mode, convert, inspect_file, load_image, read_file
from data.transforms import array_to_tensor, to_tensor
from data.values import EIGHT_BIT, ValueRange, fit_channels, fit_problem, range_for, to_output
from engine.checkpoint import CheckpointError, GeneratorCheckpoint, load_generator
from models import build_translator
from models.config import GeneratorConfig, SourceConfig, SpeedConfig
from models.tiling import translate_tiled
from models.translator import Translator, frozen_state
from util.util import tensor2im


def reference_options(generator: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Options by config for a file that has none (a reference state dict): the defaults (the reference's:
    unet_256, batch norm, dropout, ngf 64) with the given generator flags, checked as a command line's are.
    Raises util.config.OptionError naming a bad flag, TypeError for one that is not a generator flag."""
    g = GeneratorConfig(**generator)
    g.validate()
    return {"generator": g.to_dict(), "preprocess": PreprocessConfig().to_dict(), "values": ValuesConfig().to_dict()}


def checkpoint_path(run_dir: str, epoch: str, load_iter: int) -> tuple[str, str]:
    """(file, tag) in a run folder: latest.pth (a reference run's latest_net_G.pth when there is none) for --epoch
    latest, best_net_G.pth, <N>_net_G.pth, or iter_<N>_net_G.pth for --load_iter."""
    if load_iter > 0:  # the reference names these result folders <phase>_<epoch>_iter<N>
        return os.path.join(run_dir, f"iter_{load_iter}_net_G.pth"), f"{epoch}_iter{load_iter}"
    if epoch == "latest":
        path = os.path.join(run_dir, "latest.pth")
        reference = os.path.join(run_dir, "latest_net_G.pth")
        return (reference if not os.path.exists(path) and os.path.exists(reference) else path), "latest"
    if epoch == "best":
        return os.path.join(run_dir, "best_net_G.pth"), "best"
    return os.path.join(run_dir, f"{epoch}_net_G.pth"), epoch


def find_checkpoint(path: str) -> str:
    """A file as it is; a run folder: its latest.pth, else a reference run's latest_net_G.pth."""
    if os.path.isdir(path):
        path = checkpoint_path(path, "latest", 0)[0]
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint {path}")
    return path


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_translator(
    path: str,
    *,
    device: str | torch.device | None = None,
    amp: str = SpeedConfig.amp,  # the defaults of the flags of the same names
    channels_last: bool = SpeedConfig.channels_last,
    eval: bool = SourceConfig.eval,
    prefer_ema: bool = True,
    **generator: Any,
) -> ImageTranslator:
    """The trained generator of a checkpoint, ready to translate.

    path: a run folder (checkpoints/NAME), latest.pth, <epoch>_net_G.pth, best_net_G.pth, an exported .safetensors,
    or a pix2pix reference implementation's <epoch>_net_G.pth. A reference file holds no options: pass its
    architecture as generator flags (netG="unet_256", norm="batch", ngf=64, no_dropout=False, ...; those are the
    defaults). device: default CUDA if available. amp: "none", "bf16" or "fp16" autocast. eval: running batch-norm
    statistics and no dropout; the default is pix2pix's test-time convention (dropout on, the image's own batch
    statistics), so outputs then depend on torch's RNG (torch.manual_seed for repeatable ones). prefer_ema: the
    run's exponential moving average of G when it kept one.

    Raises FileNotFoundError, engine.checkpoint.CheckpointError (an unreadable file), models.WeightsMismatch
    (weights that do not fit their architecture; the message names the flags to try) and ValueError."""
    path = find_checkpoint(str(path))
    ckpt = load_generator(path, prefer_ema, lambda: reference_options(generator))
    if generator and not ckpt.reference:
        raise ValueError(
            f"{path} holds its own options; {', '.join(sorted(generator))} apply to reference files (bare state "
            "dicts) only"
        )
    return ImageTranslator.from_checkpoint(ckpt, torch.device(device or default_device()), amp, channels_last, eval)


class ImageTranslator:
    """A trained generator with what it takes to use it: direction, channels, normalisation to [-1, 1], padding
    to the network's size multiple (inputs of any size), --residual, precision and device.

    t(pil_image) -> PIL image, read as the data loader reads files (alpha dropped, EXIF orientation applied;
    16-bit and float images at full precision, mapped by the run's --range_A); an output that is not 8-bit
    (16-bit, float, other than 1 or 3 channels) comes back as a NumPy array instead. t(array) -> array: an (H, W)
    or (H, W, C) NumPy array in the data's units -> (H, W, output_nc) in the run's output value type and units.
    t(tensor) -> tensor, for (C, H, W) or (N, C, H, W) floating point in [-1, 1] (float16/float64 computed in
    fp32; integer tensors are refused), returned in fp32 on the input's device. tile=T, overlap=O translate in
    overlapping tiles (images too large for memory). Translating never changes the generator's state_dict, in
    train or eval mode (frozen_state)."""

    def __init__(
        self, translator: Translator, checkpoint: GeneratorCheckpoint, eval: bool, values: ValuesConfig | None = None
    ) -> None:
        """values: how values map in and out (default: the run's; test.py and translate.py pass theirs, which are
        the run's unless given)."""
        self.translator = translator
        self.checkpoint = checkpoint
        self.values = values or ValuesConfig.from_dict(checkpoint.options.get("values", {}))
        self.set_eval(eval)

    @classmethod
    def from_checkpoint(
        cls,
        ckpt: GeneratorCheckpoint,
        device: torch.device,
        amp: str,
        channels_last: bool,
        eval: bool,
        values: ValuesConfig | None = None,
    ) -> ImageTranslator:
        """Raises models.WeightsMismatch when the weights do not fit the checkpoint's options."""
        t = build_translator(ckpt.generator, ckpt.netG, device, amp, channels_last, reference=ckpt.reference)
        return cls(t, ckpt, eval, values)

    # ---- what it is --------------------------------------------------------------------------------------
    @property
    def options(self) -> dict[str, dict[str, Any]]:
        """The run's options by group (for a reference file: the flags it was loaded with)."""
        return self.checkpoint.options

    @property
    def generator(self) -> GeneratorConfig:
        return self.checkpoint.generator

    @property
    def net(self) -> torch.nn.Module:
        return self.translator.net

    @property
    def device(self) -> torch.device:
        return self.translator.G.device

    @property
    def direction(self) -> str:
        return self.generator.direction

    @property
    def input_nc(self) -> int:
        return self.generator.input_nc

    @property
    def output_nc(self) -> int:
        return self.generator.output_nc

    @property
    def pad_multiple(self) -> int:
        """Inputs are padded to multiples of this (2**num_downs for a U-Net) and the output cropped back."""
        return self.translator.pad_multiple

    @property
    def eval(self) -> bool:
        return not self.net.training

    def set_eval(self, eval: bool) -> None:
        """eval: running statistics and no dropout; otherwise pix2pix's train-mode testing."""
        self.net.train(not eval)

    @property
    def batch_statistics(self) -> bool:
        """Whether outputs depend on the other images of a batch (train-mode batch norm)."""
        bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in self.net.modules())
        return bn and not self.eval

    # ---- translating -------------------------------------------------------------------------------------
    def translate(self, real_A: torch.Tensor, tile: int | None = None, overlap: int = 0) -> torch.Tensor:
        """real_A (N, input_nc, H, W) in [-1, 1], any floating dtype (computed in fp32), on any device -> fake_B
        (N, output_nc, H, W), fp32, on self.device. tile: translate in tile x tile pieces overlapping by `overlap`
        pixels. The generator's buffers (batch-norm running statistics, spectral-norm vectors) are left as they
        were. Raises TypeError for an integer, bool or complex tensor."""
        x = self.translator.to_device(as_float32(real_A))
        with torch.no_grad(), frozen_state(self.net):
            if tile is None or (x.shape[-2] <= tile and x.shape[-1] <= tile):
                return self.translator(x)
            return translate_tiled(self.translator, x, self.output_nc, tile, overlap)

    def __call__(self, x: Image.Image | np.ndarray | torch.Tensor, tile: int | None = None, overlap: int = 0):
        if isinstance(x, Image.Image):
            out = self.translate(self.to_tensor(x), tile, overlap)
            return self.to_array(out) if self.full_output else self.to_image(out)
        if isinstance(x, np.ndarray):
            return self.to_array(self.translate(self.array_to_tensor(x), tile, overlap))
        if not torch.is_tensor(x) or x.dim() not in (3, 4):
            raise TypeError(f"expected a PIL image, a NumPy array or a (C, H, W) / (N, C, H, W) tensor, not {type(x)}")
        batch = x if x.dim() == 4 else x[None]
        if not batch.numel():
            raise ValueError(f"the image is empty: a tensor of shape {tuple(x.shape)}")
        if batch.shape[1] != self.input_nc:
            raise ValueError(f"the generator takes {self.input_nc}-channel input, not {batch.shape[1]} channels")
        out = self.translate(batch, tile, overlap).to(x.device)
        return out if x.dim() == 4 else out[0]

    # ---- values in and out: the run's ranges (--range_A, --range_B) and output type -------------------------
    def input_range(self, dtype: str) -> ValueRange:
        """The range real_A's values are mapped by, for input data of value type dtype."""
        return range_for(self.values.range_A, _kind(dtype), "range_A")

    @property
    def output_dtype(self) -> str:
        """The value type outputs are written in: the run's real_B's (uint8 for runs before value types)."""
        return "uint8" if self.values.output_dtype == "auto" else self.values.output_dtype

    @property
    def output_range(self) -> ValueRange:
        return range_for(self.values.range_B, _kind(self.output_dtype), "range_B")

    @property
    def full_output(self) -> bool:
        """Whether outputs are written at full precision (16-bit, float, any channels, a declared range, or a chosen
        --output_format), not as the 8-bit images (previews) of a plain 8-bit run."""
        plain = self.output_dtype == "uint8" and self.output_nc in (1, 3) and self.output_range == EIGHT_BIT
        return self.values.output_format != "auto" or not plain

    @property
    def output_extension(self) -> str:
        """.png, .tif or .npy: the file format of full-precision outputs (--output_format)."""
        return "." + output_format(self.values.output_format, self.output_dtype, self.output_nc)

    def read(self, path: str, max_pixels: int | None = None) -> torch.Tensor:
        """A file -> (1, input_nc, H, W) in [-1, 1], read as the data loader reads it (8-bit images through Pillow,
        others at full precision mapped by the run's range). Raises data.image_io.BadImageError, ValueError."""
        _, kind = inspect_file(path, decode=False, max_pixels=max_pixels)
        rng = self.input_range(kind.dtype)
        if kind.eight_bit and rng == EIGHT_BIT:
            return to_tensor(load_image(path, self.input_nc, max_pixels))[None]
        return self.array_to_tensor(read_file(path, max_pixels), rng, path)

    def array_to_tensor(self, a: np.ndarray, rng: ValueRange | None = None, label: str | None = None) -> torch.Tensor:
        """An (H, W) or (H, W, C) array in the data's units -> (1, input_nc, H, W) in [-1, 1]."""
        a = as_value_type(as_hwc(a))  # as the loader holds file values
        rng = rng or self.input_range(str(a.dtype))
        problem = fit_problem(a.shape[2], self.input_nc)
        if problem:
            raise ValueError(f"{label or 'the array'} {problem} (the generator takes {self.input_nc})")
        return array_to_tensor(rng.to_unit(fit_channels(a, self.input_nc)))[None]

    def to_tensor(self, img: Image.Image) -> torch.Tensor:
        """A PIL image -> (1, input_nc, H, W) in [-1, 1]: 8-bit images converted to L or RGB by the data loader's
        rules (data.image_io.convert), 16-bit and float ones at full precision; ValueError for a mode it refuses."""
        check_mode(img)
        _, kind = probe("image", img)  # no extension: a 16-bit colour PNG Pillow reads as 8-bit is refused
        rng = self.input_range(kind.dtype)
        if kind.eight_bit and rng == EIGHT_BIT:
            return to_tensor(convert(img, self.input_nc))[None]
        return self.array_to_tensor(read_array("image", img), rng)

    def to_array(self, t: torch.Tensor) -> np.ndarray:
        """The first image of a (N, C, H, W) or (C, H, W) tensor in [-1, 1] -> (H, W, C) in the run's output value
        type and units (mapped back by --range_B; integers rounded)."""
        t = t[0] if t.dim() == 4 else t
        u = t.detach().float().cpu().permute(1, 2, 0).numpy()
        return to_output(u, self.output_range, self.output_dtype)

    def encode(self, t: torch.Tensor) -> bytes:
        """to_array(t) as a file's bytes in the output format (output_extension)."""
        return encode(self.to_array(t), self.output_extension[1:])

    def result_extension(self, input_name: str) -> str:
        """The extension of the result file of an input file (translate.py's, the app's download): the output
        format's for full-precision outputs; else the input's own when Pillow writes it, .png otherwise."""
        if self.full_output:
            return self.output_extension
        ext = os.path.splitext(input_name)[1]
        return ext if ext.lower() in Image.registered_extensions() else ".png"

    def result_bytes(self, t: torch.Tensor, ext: str) -> bytes:
        """The first image of t as the result file's bytes for extension ext (result_extension): full-precision
        outputs encoded in the data's type and units, an 8-bit output in the format ext names (JPEG at quality
        95). Raises ValueError or OSError for an image the format cannot hold."""
        if self.full_output:
            return self.encode(t)
        fmt = Image.registered_extensions().get(ext.lower(), "PNG")
        buf = io.BytesIO()
        self.to_image(t).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        return buf.getvalue()

    def to_image(self, t: torch.Tensor) -> Image.Image:
        """The first image of a (N, C, H, W) or (C, H, W) tensor in [-1, 1] -> an 8-bit PIL image (L for one
        channel): the image itself for a plain 8-bit run, a preview (--preview_channels) otherwise."""
        chans = self.values.preview_channels
        c = t.shape[-3]
        shown = c if c in (1, 3) else len(chans or (0,))
        arr = tensor2im(t, chans)
        return Image.fromarray(arr[..., 0] if shown == 1 else arr)

    def split_pair(self, img: Image.Image) -> tuple[Image.Image, Image.Image]:
        """An A|B pair image (A left, B right) -> (input, target) as the run's --direction takes them."""
        w, h = img.size
        a, b = img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, w // 2 * 2, h))
        return (a, b) if self.direction == "AtoB" else (b, a)


def _kind(dtype: str) -> Kind:
    return Kind(1, dtype, dtype == "uint8")


def as_float32(x: torch.Tensor) -> torch.Tensor:
    """A floating-point tensor in fp32 (the weights' dtype; --amp autocasts inside); TypeError for other dtypes,
    whose value range the API cannot guess (uint8 images: x.float() / 127.5 - 1)."""
    if x.dtype == torch.float32:
        return x
    if not x.is_floating_point():
        hint = " (an 8-bit image: x.float() / 127.5 - 1)" if x.dtype == torch.uint8 else ""
        raise TypeError(f"expected a floating-point tensor in [-1, 1], not {x.dtype}{hint}")
    return x.float()


__all__ = [
    "CheckpointError",
    "ImageTranslator",
    "checkpoint_path",
    "find_checkpoint",
    "load_translator",
]
