"""The rules that involve more than one config (crop size against the generator's depth and the discriminator's
reach, channels against previews and outputs, flags that cannot be combined), checked once per script by its
resolve step (engine.resolve) on the values it runs with. A config's own rules are its check()."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from data.arrays import png_problem
from models.config import check_unet_only
from util.config import OptionError, need
from util.distributed import device_ids

Rule = Callable[[Any], None]  # takes a script's options (options.options.Options)


def unet_only(o: Any) -> None:
    """The other configs' fields declared unet_only (--grad_checkpoint) at their default unless G is a U-Net (the
    generator's own: GeneratorConfig.check)."""
    for config in o.configs():
        check_unet_only(config, o.generator)


def crop_fits_generator(o: Any) -> None:
    """Crops must be a multiple of the generator's size multiple (2 ** depth for a U-Net)."""
    p, g = o.preprocess, o.generator
    m = g.size_multiple
    if p.crops and p.crop_size % m:
        lo, hi = (p.crop_size // m) * m, (p.crop_size // m + 1) * m
        valid = f"{lo} or {hi}" if lo > 0 else f"{hi}"
        # test.py: the generator is a trained run's, whose depth is no longer a choice
        fix = (
            "the trained run's depth"
            if o.script != "train"
            else "or use a generator with fewer downsamplings (--num_downs)"
        )
        raise OptionError(
            f"--crop_size {p.crop_size} does not fit {g.describe()}: it must be a multiple of {m} (for example "
            f"{valid}), {fix}"
        )


def crop_fits_discriminator(o: Any) -> None:
    """Crops must hold the coarsest PatchGAN scale's receptive field (other preprocessing: checked per image)."""
    p, d = o.preprocess, o.discriminator
    need(
        not p.crops or p.crop_size >= d.min_side,
        f"--crop_size {p.crop_size} is too small for --netD {d.netD} with {d.patch_layers} layers and --num_D "
        f"{d.num_D}: it needs at least {d.min_side} pixels (or fewer --n_layers_D / --num_D)",
    )


def device_preprocess_filters(o: Any) -> None:
    p = o.preprocess
    lanczos = [f"--{k} lanczos" for k in ("filter_A", "filter_B") if getattr(p, k) == "lanczos"]
    need(
        not (o.data.device_preprocess and lanczos),
        f"--device_preprocess: {', '.join(lanczos)} has no torch kernel; use bicubic",
    )


def aug_color_channels(o: Any) -> None:
    a, g = o.augment, o.generator
    jittered = [("input_nc", g.input_nc)] + ([("output_nc", g.output_nc)] if a.aug_color_on == "both" else [])
    for flag, nc in jittered:
        need(
            not a.aug_color or nc in (1, 3),
            f"--aug_color jitters brightness, contrast and colour of grey or RGB images: --{flag} is {nc} "
            "(use --aug_scale and --aug_rotate, which work on any channels)",
        )


def preview_channels_fit(o: Any) -> None:
    v, g = o.values, o.generator
    chans = v.preview_channels
    for flag, nc in (("input_nc", g.input_nc), ("output_nc", g.output_nc)):
        need(
            not chans or nc in (1, 3) or max(chans) < nc,
            f"--preview_channels {chans}: --{flag} is {nc} (channels 0 to {nc - 1})",
        )


def png_output(o: Any) -> None:
    v = o.values
    if v.output_format == "png":
        problem = png_problem("uint8" if v.output_dtype == "auto" else v.output_dtype, o.generator.output_nc)
        need(problem is None, f"--output_format png: {problem}; use tif or npy")


def syncbatch_on_cuda(o: Any) -> None:
    need(
        o.generator.norm != "syncbatch" or bool(device_ids(o.basic.gpu_ids)),
        "--norm syncbatch: SyncBatchNorm runs on CUDA only; on the CPU use --norm batch or instance",
    )


def aligned_only(o: Any) -> None:
    need(o.data.dataset_mode == "aligned", "--dataset_mode single has no targets; it is for test.py only")


def skip_nonfinite_accum(o: Any) -> None:
    need(not (o.run.accum_steps > 1 and o.optim.skip_nonfinite), "--skip_nonfinite works with --accum_steps 1 only")


def cuda_graph_clashes(o: Any) -> None:
    if o.speed.cuda_graph:
        clash = o.speed.graph_clashes()
        clash += [f"--accum_steps {o.run.accum_steps}"] if o.run.accum_steps > 1 else []
        clash += ["--skip_nonfinite"] if o.optim.skip_nonfinite else []
        # a graph captured while the global generator is fixed would keep it fixed in every later epoch
        clash += [f"--fix_global_epochs {o.optim.fix_global_epochs}"] if o.optim.fix_global_epochs else []
        need(not clash, f"--cuda_graph cannot be used with {', '.join(clash)} (bf16 and fp32 can)")


def patchgan_losses(o: Any) -> None:
    d, loss = o.discriminator, o.loss
    need(
        d.netD != "pixel" or (d.num_D == 1 and loss.lambda_feat == 0),
        "--num_D and --lambda_feat need a PatchGAN (--netD basic or n_layers), not --netD pixel",
    )


def vgg_channels(o: Any) -> None:
    nc = o.generator.output_nc
    need(o.loss.lambda_vgg == 0 or nc in (1, 3), f"--lambda_vgg compares RGB features: --output_nc 1 or 3, not {nc}")


def tile_multiple(o: Any) -> None:
    tile, m = o.translate.tile, o.generator.size_multiple
    example = max(m, (tile or 0) // m * m)
    need(
        tile is None or tile % m == 0,
        f"--tile {tile}: must be a multiple of {m}, the generator's size multiple (e.g. {example})",
    )


# (the scripts a rule applies to, the configs it reads, the rule), in the order they are checked.
def generator_traits(o: Any) -> None:
    """--lambda_first is for a generator with a first output (double_unet_*), --fix_global_epochs for a
    coarse-to-fine one (c2f_unet_*)."""
    traits, netG = o.generator.spec.traits, o.generator.netG
    first = o.loss.lambda_first
    need(
        "first_output" in traits or first == type(o.loss)().lambda_first,
        f"--lambda_first {first}: applies to generators with a first output (double_unet_*), not --netG {netG}",
    )
    fixed = o.optim.fix_global_epochs
    need(
        "coarse_to_fine" in traits or fixed == 0,
        f"--fix_global_epochs {fixed}: applies to coarse-to-fine generators (c2f_unet_*), not --netG {netG}",
    )


RULES: tuple[tuple[tuple[str, ...], tuple[str, ...], Rule], ...] = (
    (("train", "test", "translate", "export"), ("generator",), unet_only),
    (("train",), ("generator", "basic"), syncbatch_on_cuda),
    (("train",), ("data",), aligned_only),
    (("train",), ("optim", "run"), skip_nonfinite_accum),
    (("train",), ("speed", "run", "optim"), cuda_graph_clashes),
    (("train",), ("data", "preprocess"), device_preprocess_filters),
    (("train", "test"), ("preprocess", "generator"), crop_fits_generator),
    (("train",), ("preprocess", "discriminator"), crop_fits_discriminator),
    (("train",), ("augment", "generator"), aug_color_channels),
    (("train", "test", "translate"), ("values", "generator"), preview_channels_fit),
    (("train", "test", "translate"), ("values", "generator"), png_output),
    (("train",), ("loss", "discriminator"), patchgan_losses),
    (("train",), ("loss", "generator"), vgg_channels),
    (("train",), ("loss", "optim", "generator"), generator_traits),
    (("translate",), ("translate", "generator"), tile_multiple),
)


def check(opt: Any, values: bool | None = None) -> None:
    """The rules across configs that apply to opt's script, each once; OptionError naming the flags. values: only
    the rules that read the values config (True), or only the others (False): train.py checks those before it
    reads the data to settle the values, and these after."""
    for scripts, configs, rule in RULES:
        if opt.script in scripts and (values is None or values == ("values" in configs)):
            rule(opt)
