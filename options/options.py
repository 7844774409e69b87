"""Command-line options: one argparse definition per script, validated once, saved with each run."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

# Filters users may pick for resizing each side; label maps want "nearest" so no new colours appear.
RESIZE_FILTERS = ("bicubic", "bilinear", "lanczos", "nearest")
NETG_CHOICES = ("unet_128", "unet_256", "unet_512", "resnet_6blocks", "resnet_9blocks")
UNET_DEPTH = {"unet_128": 7, "unet_256": 8, "unet_512": 9}
CROP_PREPROCESS = ("resize_and_crop", "crop", "scale_width_and_crop")

# Options that define the generator; test.py takes them from the checkpoint, not the command line.
ARCHITECTURE_KEYS = (
    "input_nc",
    "output_nc",
    "ngf",
    "netG",
    "num_downs",
    "norm",
    "no_dropout",
    "direction",
    "upsample",
    "downsample",
    "attention",
    "max_mult",
    "residual",
    "spectral_norm",
    "dropout",
)
# Data options that test.py inherits from the training run unless given on its command line.
INHERITED_DATA_KEYS = ("load_size", "crop_size", "preprocess", "filter_A", "filter_B")


def _default_threads() -> int:
    return min(4, os.cpu_count() or 1)


def _add_common(p: argparse.ArgumentParser, is_train: bool) -> None:
    g = p.add_argument_group("basic")
    g.add_argument(
        "--dataroot",
        default=None,
        help="folder with train/, test/ ... sub-folders of A|B images, or A/ and B/ folders "
        "(default: a small demo set built offline on first use under datasets/demo)",
    )
    g.add_argument("--name", default="experiment_name", help="run name; files go to checkpoints_dir/name")
    g.add_argument("--checkpoints_dir", default="./checkpoints", help="where runs are stored")
    g.add_argument(
        "--gpu_ids",
        default=None,
        help="comma-separated CUDA device ids, -1 for the CPU (default: CUDA 0 if available, else CPU)",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed (default: drawn at random and saved)" if is_train else "seed for dropout (default: 0)",
    )
    g.add_argument("--model", default="pix2pix", choices=["pix2pix"], help="accepted for reference compatibility")
    g.add_argument("--verbose", action="store_true", help="print network structures and debug messages")

    g = p.add_argument_group("networks")
    g.add_argument("--input_nc", type=int, default=3, choices=[1, 3], help="channels of real_A")
    g.add_argument("--output_nc", type=int, default=3, choices=[1, 3], help="channels of real_B / fake_B")
    g.add_argument("--ngf", type=int, default=64, help="generator filters in the first conv layer")
    g.add_argument("--ndf", type=int, default=64, help="discriminator filters in the first conv layer")
    g.add_argument("--netG", default="unet_256", choices=NETG_CHOICES, help="generator architecture")
    g.add_argument(
        "--num_downs",
        type=int,
        default=None,
        help="U-Net depth (number of 2x downsamplings, >= 5); overrides the depth of --netG unet_*",
    )
    g.add_argument(
        "--netD",
        default="basic",
        choices=["basic", "n_layers", "pixel"],
        help="basic = 70x70 PatchGAN; n_layers = PatchGAN with --n_layers_D; pixel = 1x1 PatchGAN",
    )
    g.add_argument("--n_layers_D", type=int, default=3, help="layers of the n_layers discriminator")
    g.add_argument(
        "--num_D", type=int, default=1, help="PatchGAN scales (2 or 3 as in pix2pixHD; each sees a half-size input)"
    )
    g.add_argument(
        "--norm",
        default="batch",
        choices=["batch", "instance", "none", "syncbatch"],
        help="normalization layer; syncbatch shares batch statistics across torchrun processes (CUDA only)",
    )
    g.add_argument(
        "--init_type",
        default="normal",
        choices=["normal", "xavier", "kaiming", "orthogonal"],
        help="weight initialization",
    )
    g.add_argument("--init_gain", type=float, default=0.02, help="scale for normal, xavier and orthogonal init")
    g.add_argument("--no_dropout", action="store_true", help="no dropout in the generator")
    g.add_argument("--dropout", type=float, default=0.5, help="dropout rate of the U-Net's inner blocks")
    g.add_argument(
        "--upsample",
        default="transpose",
        choices=["transpose", "bilinear", "nearest", "pixelshuffle"],
        help="U-Net upsampling: the paper's transposed conv, or resize / sub-pixel then conv (no checkerboard)",
    )
    g.add_argument(
        "--downsample",
        default="conv",
        choices=["conv", "blur"],
        help="U-Net downsampling: the paper's strided conv, or a binomial blur before it (anti-aliased)",
    )
    g.add_argument(
        "--attention",
        action="store_true",
        help="attention gates on the U-Net's skip connections (Attention U-Net)",
    )
    g.add_argument(
        "--max_mult",
        type=int,
        default=8,
        help="cap on the U-Net channel multiplier (inner blocks have ngf * max_mult channels; 8 in the paper)",
    )
    g.add_argument(
        "--spectral_norm",
        default="none",
        choices=["none", "D", "G", "both"],
        help="spectral normalisation on the convolutions of D, G or both",
    )
    g.add_argument(
        "--residual",
        action="store_true",
        help="G predicts B - A and A is added back (for tasks where A and B are close, such as denoising)",
    )

    g = p.add_argument_group("speed and memory")
    g.add_argument(
        "--amp",
        default="none",
        choices=["none", "bf16", "fp16"],
        help="mixed precision (torch.autocast); fp16 adds a GradScaler per network. bf16 needs hardware "
        "support to be faster (most CPUs lack it)",
    )
    g.add_argument("--channels_last", action="store_true", help="NHWC memory layout (faster convs on GPUs)")
    if is_train:
        g.add_argument("--compile", action="store_true", help="torch.compile the networks (falls back to eager)")
        g.add_argument(
            "--grad_checkpoint",
            action="store_true",
            help="recompute activations of the U-Net generator and the PatchGAN discriminator in the backward "
            "pass instead of storing them (less memory, more time)",
        )

    g = p.add_argument_group("data")
    g.add_argument("--dataset_mode", default="aligned", choices=["aligned", "single"], help="aligned pairs or A only")
    g.add_argument("--direction", default="AtoB", choices=["AtoB", "BtoA"], help="AtoB: left half is the input")
    g.add_argument("--phase", default="train" if is_train else "test", help="sub-folder of --dataroot to read")
    g.add_argument("--batch_size", type=int, default=1, help="images per batch")
    g.add_argument("--load_size", type=int, default=286, help="scale images to this size before cropping")
    g.add_argument("--crop_size", type=int, default=256, help="then crop to this size")
    g.add_argument(
        "--preprocess",
        default="resize_and_crop",
        choices=["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"],
        help="how images are scaled and cropped",
    )
    g.add_argument("--filter_A", default="bicubic", choices=RESIZE_FILTERS, help="resampling filter for real_A (input)")
    g.add_argument(
        "--filter_B", default="bicubic", choices=RESIZE_FILTERS, help="resampling filter for real_B (target)"
    )
    g.add_argument("--no_flip", action="store_true", help="no random horizontal flips")
    g.add_argument(
        "--num_threads", type=int, default=_default_threads(), help="data loader worker processes (0 = main)"
    )
    g.add_argument("--serial_batches", action="store_true", help="take images in order, not shuffled")
    g.add_argument(
        "--skip_bad_images",
        action="store_true",
        help="decode every image first and skip unreadable ones (default: stop at the first, naming it)",
    )
    g.add_argument(
        "--max_bad_fraction",
        type=float,
        default=0.05,
        help="with --skip_bad_images, stop if more than this share of the images is unreadable",
    )
    g.add_argument("--max_dataset_size", type=int, default=None, help="use at most this many images (default: all)")


def _add_metrics(p: argparse.ArgumentParser, is_train: bool) -> None:
    g = p.add_argument_group("metrics" + (" and validation" if is_train else ""))
    g.add_argument(
        "--metrics",
        default="psnr,ssim",
        help="comma-separated: psnr, ssim, lpips, fid, kid, swd (see docs/metrics.md)",
    )
    g.add_argument("--fid_weights", default=None, help="local InceptionV3 weights file for fid and kid")
    g.add_argument("--lpips_weights", default=None, help="local backbone weights file for lpips")
    if is_train:
        g.add_argument("--val_phase", default=None, help="validate on dataroot/<val_phase> (e.g. val)")
        g.add_argument(
            "--val_split",
            type=float,
            default=0.0,
            help="hold out this seeded fraction of the training images for validation (when there is no val folder)",
        )
        g.add_argument("--val_freq", type=int, default=1, help="validate every N epochs")
        g.add_argument("--val_max", type=int, default=None, help="validate on at most N images")
        g.add_argument(
            "--best_metric",
            default=None,
            help="keep best_net_G.pth by this validation metric (default: the first of --metrics)",
        )
    else:
        g.add_argument(
            "--sort_by",
            default=None,
            help="order the page's rows by this per-image metric, worst first (default: file name order)",
        )


def _add_train(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("augmentation (off by default; same geometry for A and B)")
    g.add_argument("--aug_scale", type=float, default=0.0, help="random zoom in [1 - S, 1 + S]")
    g.add_argument("--aug_rotate", type=float, default=0.0, help="random rotation in [-D, D] degrees")
    g.add_argument(
        "--aug_color", type=float, default=0.0, help="brightness/contrast/saturation jitter (hue a quarter of it)"
    )
    g.add_argument(
        "--aug_color_on", default="input", choices=["input", "both"], help="jitter real_A only, or A and B alike"
    )

    g = p.add_argument_group("training")
    g.add_argument(
        "--gan_mode", default="vanilla", choices=["vanilla", "lsgan", "wgangp", "hinge"], help="GAN objective"
    )
    g.add_argument("--lambda_L1", type=float, default=100.0, help="weight of the L1 loss")
    g.add_argument("--lambda_gp", type=float, default=10.0, help="weight of the wgangp gradient penalty")
    g.add_argument(
        "--lambda_feat",
        type=float,
        default=0.0,
        help="weight of the discriminator feature-matching loss (pix2pixHD uses 10; 0 = off)",
    )
    g.add_argument(
        "--lambda_vgg",
        type=float,
        default=0.0,
        help="weight of the VGG19 perceptual loss (pix2pixHD uses 10; 0 = off); needs --vgg_weights or the "
        "weights in the torch hub cache",
    )
    g.add_argument(
        "--vgg_weights",
        default=None,
        help="torchvision's ImageNet VGG19 state dict (vgg19-dcbb9e9d.pth) for --lambda_vgg (never downloaded)",
    )
    g.add_argument("--lr", type=float, default=0.0002, help="initial Adam learning rate")
    g.add_argument("--lr_D", type=float, default=None, help="the discriminator's learning rate (default: --lr)")
    g.add_argument("--weight_decay", type=float, default=0.0, help="Adam weight decay (L2) for G and D")
    g.add_argument(
        "--ema_decay",
        type=float,
        default=0.0,
        help="keep an exponential moving average of G's weights with this decay (e.g. 0.999; 0 = off); "
        "test.py uses it when the checkpoint has one",
    )
    g.add_argument("--beta1", type=float, default=0.5, help="Adam beta1")
    g.add_argument("--n_epochs", type=int, default=100, help="epochs at the initial learning rate")
    g.add_argument(
        "--n_epochs_decay",
        type=int,
        default=100,
        help="epochs of linear decay (the rate reaches 0 one epoch after the last)",
    )
    g.add_argument("--lr_policy", default="linear", choices=["linear", "step", "cosine"], help="lr schedule")
    g.add_argument("--lr_decay_iters", type=int, default=50, help="step policy: multiply lr by 0.1 every N epochs")
    g.add_argument("--epoch_count", type=int, default=1, help="first epoch number of a new run")
    g.add_argument("--pool_size", type=int, default=0, help="accepted for reference compatibility; must be 0")
    g.add_argument(
        "--accum_steps",
        type=int,
        default=1,
        help="accumulate gradients over K batches per optimiser step (effective batch K x batch_size)",
    )
    g.add_argument(
        "--skip_nonfinite",
        action="store_true",
        help="skip (and count) steps whose loss is NaN or inf instead of stopping; costs a host sync per step",
    )
    g.add_argument(
        "--stop_after_iters",
        type=int,
        default=0,
        help="stop after this many iterations in this process, saving latest (0 = run to the end)",
    )

    g = p.add_argument_group("checkpoints and resume")
    g.add_argument("--continue_train", action="store_true", help="resume from checkpoints_dir/name/latest.pth")
    g.add_argument(
        "--init_from",
        default=None,
        help="start from another run's weights (a latest.pth or *_net_G.pth), loading every tensor whose name "
        "and shape match (e.g. a unet_256 into a unet_512) with fresh optimisers; what is skipped is listed",
    )
    g.add_argument(
        "--epoch",
        default="latest",
        help="with --continue_train: latest resumes the full state; a number N starts from the generator "
        "snapshot N_net_G.pth at epoch N+1 (the discriminator and optimisers start afresh)",
    )
    g.add_argument("--save_latest_freq", type=int, default=5000, help="save latest every N iterations")
    g.add_argument("--save_epoch_freq", type=int, default=5, help="save a generator snapshot every N epochs")
    g.add_argument("--save_by_iter", action="store_true", help="also keep iter_<N>_net_G.pth at each latest save")
    g.add_argument("--keep_last", type=int, default=0, help="keep only the newest N snapshots (0 = keep all)")

    g = p.add_argument_group("logging and display")
    g.add_argument("--print_freq", type=int, default=100, help="log losses every N iterations")
    g.add_argument("--display_freq", type=int, default=400, help="show images in visdom every N iterations")
    g.add_argument("--update_html_freq", type=int, default=1000, help="add images to the HTML page every N iters")
    g.add_argument("--no_html", action="store_true", help="do not write checkpoints_dir/name/web/")
    g.add_argument("--display_id", type=int, default=1, help="visdom window id; 0 turns visdom off")
    g.add_argument("--display_server", default="http://localhost", help="visdom server")
    g.add_argument("--display_port", type=int, default=8097, help="visdom port")
    g.add_argument("--display_env", default="main", help="visdom environment")
    g.add_argument("--display_winsize", type=int, default=256, help="visdom image size")
    g.add_argument("--display_ncols", type=int, default=3, help="images per row in visdom")
    g.add_argument(
        "--logger",
        default="none",
        choices=["none", "tensorboard"],
        help="also log scalars and images to TensorBoard (checkpoints_dir/name/tensorboard)",
    )


def _add_test(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("testing")
    g.add_argument("--epoch", default="latest", help="which checkpoint: latest or an epoch number")
    g.add_argument("--load_iter", type=int, default=0, help="load iter_<N>_net_G.pth instead of --epoch")
    g.add_argument("--results_dir", default="./results", help="where result pages are written")
    g.add_argument("--num_test", type=int, default=None, help="translate at most N images (default: all)")
    g.add_argument("--eval", action="store_true", help="eval mode: running batch-norm stats, no dropout")
    g.add_argument("--no_ema", action="store_true", help="use the trained G even if the checkpoint has an EMA")
    g.add_argument("--aspect_ratio", type=float, default=1.0, help="width/height of saved result images")
    g.add_argument("--display_winsize", type=int, default=256, help="image width on the HTML page")


def build_parser(is_train: bool) -> argparse.ArgumentParser:
    """The parser for train.py (is_train) or test.py."""
    p = argparse.ArgumentParser(
        prog="train.py" if is_train else "test.py",
        description=(
            "Train a pix2pix model on aligned image pairs."
            if is_train
            else "Translate images with a trained pix2pix generator and write an HTML page."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,  # test.py must know exactly which flags were given
    )
    _add_common(p, is_train)
    _add_metrics(p, is_train)
    if is_train:
        _add_train(p)
    else:
        _add_test(p)
    return p


def given_flags(argv: Sequence[str]) -> set[str]:
    """Names of the flags written on the command line (without dashes)."""
    return {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}


def parse_gpu_ids(value: str | None) -> list[int]:
    """'0,1' -> [0, 1]; '-1' -> []; None -> [0] if CUDA is available else []."""
    import torch

    if value is None:
        return [0] if torch.cuda.is_available() else []
    ids = [int(v) for v in value.split(",") if v.strip() != ""]
    return [i for i in ids if i >= 0]


def validate(p: argparse.ArgumentParser, opt: argparse.Namespace, is_train: bool) -> None:
    """Check every value before any work starts; p.error exits with status 2 naming the flag."""

    def need(cond: bool, msg: str) -> None:
        if not cond:
            p.error(msg)

    need(
        opt.name not in ("", ".", "..") and "/" not in opt.name and "\\" not in opt.name,
        f"--name {opt.name!r}: must be a plain folder name (no path separators, not '..')",
    )
    try:
        ids = parse_gpu_ids(opt.gpu_ids)
    except ValueError:
        p.error(f"--gpu_ids {opt.gpu_ids!r}: expected comma-separated integers such as 0 or 0,1, or -1 for the CPU")
    if ids:
        import torch

        need(
            torch.cuda.is_available(),
            f"--gpu_ids {opt.gpu_ids}: CUDA is not available on this machine; use --gpu_ids -1 for the CPU",
        )
        n = torch.cuda.device_count()
        need(all(i < n for i in ids), f"--gpu_ids {opt.gpu_ids}: this machine has {n} CUDA device(s), ids 0..{n - 1}")
    opt.gpu_ids_list = ids
    need(
        opt.norm != "syncbatch" or bool(ids),
        "--norm syncbatch: SyncBatchNorm runs on CUDA only; on the CPU use --norm batch or instance",
    )
    need(
        opt.phase not in ("", ".", "..") and "/" not in opt.phase and "\\" not in opt.phase,
        f"--phase {opt.phase!r}: must be a plain folder name such as train, test or val",
    )
    from util.metrics import HIGHER_IS_BETTER, parse_metrics

    try:
        opt.metric_list = parse_metrics(opt.metrics)
    except ValueError as e:
        p.error(f"--metrics {opt.metrics!r}: {e}")
    per_image = [m for m in opt.metric_list if m in ("psnr", "ssim", "lpips")]
    for flag in ("fid_weights", "lpips_weights"):
        if getattr(opt, flag) is not None:
            need(os.path.isfile(getattr(opt, flag)), f"--{flag} {getattr(opt, flag)}: no such file")
    if is_train:
        need(0 <= opt.val_split < 1, f"--val_split {opt.val_split}: must be in [0, 1)")
        need(opt.val_freq >= 1, f"--val_freq {opt.val_freq}: must be a positive integer")
        need(not (opt.val_phase and opt.val_split), "--val_phase and --val_split: give one, not both")
        if opt.val_phase is not None:
            need(
                "/" not in opt.val_phase and opt.val_phase not in ("", ".", ".."),
                f"--val_phase {opt.val_phase!r}: must be a plain folder name such as val",
            )
        if opt.val_max is not None:
            need(opt.val_max >= 1, f"--val_max {opt.val_max}: must be a positive integer")
        if not opt.metric_list:
            p.error("--metrics: name at least one of psnr, ssim, lpips, fid, kid, swd")
        if opt.best_metric is None:
            opt.best_metric = opt.metric_list[0]
        need(
            opt.best_metric in opt.metric_list,
            f"--best_metric {opt.best_metric}: must be one of --metrics ({', '.join(opt.metric_list)})",
        )
        opt.best_higher = HIGHER_IS_BETTER[opt.best_metric]
    elif opt.sort_by is not None:
        need(
            opt.sort_by in per_image,
            f"--sort_by {opt.sort_by}: must be a per-image metric of --metrics ({', '.join(per_image) or 'none'})",
        )
    need(0 <= opt.max_bad_fraction < 1, f"--max_bad_fraction {opt.max_bad_fraction}: must be in [0, 1)")

    for flag in ("ngf", "ndf", "batch_size", "load_size", "crop_size", "n_layers_D", "display_winsize"):
        need(getattr(opt, flag) >= 1, f"--{flag} {getattr(opt, flag)}: must be a positive integer")
    need(opt.num_threads >= 0, f"--num_threads {opt.num_threads}: must be 0 or more")
    need(opt.init_gain > 0, f"--init_gain {opt.init_gain}: must be positive")
    need(0 <= opt.dropout < 1, f"--dropout {opt.dropout}: must be in [0, 1)")
    need(opt.max_mult >= 1, f"--max_mult {opt.max_mult}: must be a positive integer")
    need(
        not opt.residual or opt.input_nc == opt.output_nc,
        f"--residual adds real_A to G's output: --input_nc {opt.input_nc} and --output_nc {opt.output_nc} must match",
    )
    if opt.max_dataset_size is not None:
        need(opt.max_dataset_size >= 1, f"--max_dataset_size {opt.max_dataset_size}: must be a positive integer")
    if opt.dataroot is not None:
        need(os.path.isdir(opt.dataroot), f"--dataroot {opt.dataroot}: no such folder")

    if opt.num_downs is not None:
        need(opt.num_downs >= 5, f"--num_downs {opt.num_downs}: must be 5 or more (the U-Net has 5 fixed levels)")
        need(opt.netG.startswith("unet"), f"--num_downs applies to U-Net generators only, not --netG {opt.netG}")
    if not opt.netG.startswith("unet"):
        for flag, default in (("upsample", "transpose"), ("downsample", "conv"), ("attention", False), ("max_mult", 8)):
            value = getattr(opt, flag)
            shown = f"--{flag}" if value is True else f"--{flag} {value}"
            need(value == default, f"{shown}: applies to U-Net generators only, not --netG {opt.netG}")

    if is_train:
        for flag in (
            "print_freq",
            "display_freq",
            "update_html_freq",
            "save_latest_freq",
            "save_epoch_freq",
            "epoch_count",
            "lr_decay_iters",
        ):
            need(getattr(opt, flag) >= 1, f"--{flag} {getattr(opt, flag)}: must be a positive integer")
        for flag in ("n_epochs", "n_epochs_decay", "keep_last", "stop_after_iters"):
            need(getattr(opt, flag) >= 0, f"--{flag} {getattr(opt, flag)}: must be 0 or more")
        need(opt.n_epochs + opt.n_epochs_decay >= 1, "--n_epochs + --n_epochs_decay: must be at least 1 epoch")
        need(opt.lr > 0, f"--lr {opt.lr}: must be positive")
        if opt.lr_D is not None:
            need(opt.lr_D > 0, f"--lr_D {opt.lr_D}: must be positive")
        if opt.init_from is not None:
            need(os.path.isfile(opt.init_from), f"--init_from {opt.init_from}: no such file")
            need(not opt.continue_train, "--init_from starts a new run; it cannot be used with --continue_train")
        need(opt.num_D >= 1, f"--num_D {opt.num_D}: must be a positive integer")
        need(opt.lambda_feat >= 0, f"--lambda_feat {opt.lambda_feat}: must be 0 or more")
        need(opt.lambda_vgg >= 0, f"--lambda_vgg {opt.lambda_vgg}: must be 0 or more")
        if opt.lambda_vgg > 0:  # find the weights now, not after the data set has been scanned
            from models.perceptual import WeightsMissing, find_vgg_weights

            try:
                find_vgg_weights(opt.vgg_weights)
            except WeightsMissing as e:
                p.error(str(e))
        elif opt.vgg_weights is not None:
            log.warning("--vgg_weights is not used: the perceptual loss is off (--lambda_vgg 0)")
        need(
            opt.netD != "pixel" or (opt.num_D == 1 and opt.lambda_feat == 0),
            "--num_D and --lambda_feat need a PatchGAN (--netD basic or n_layers), not --netD pixel",
        )
        need(0 <= opt.aug_scale < 1, f"--aug_scale {opt.aug_scale}: must be in [0, 1)")
        need(0 <= opt.aug_rotate <= 180, f"--aug_rotate {opt.aug_rotate}: must be in [0, 180] degrees")
        need(0 <= opt.aug_color <= 1, f"--aug_color {opt.aug_color}: must be in [0, 1]")
        need(opt.weight_decay >= 0, f"--weight_decay {opt.weight_decay}: must be 0 or more")
        need(0 <= opt.ema_decay < 1, f"--ema_decay {opt.ema_decay}: must be in [0, 1)")
        need(opt.accum_steps >= 1, f"--accum_steps {opt.accum_steps}: must be a positive integer")
        need(
            not (opt.accum_steps > 1 and opt.skip_nonfinite),
            "--skip_nonfinite works with --accum_steps 1 only",
        )
        need(0 <= opt.beta1 < 1, f"--beta1 {opt.beta1}: must be in [0, 1)")
        need(opt.lambda_L1 >= 0, f"--lambda_L1 {opt.lambda_L1}: must be 0 or more")
        need(opt.lambda_gp >= 0, f"--lambda_gp {opt.lambda_gp}: must be 0 or more")
        need(opt.pool_size == 0, f"--pool_size {opt.pool_size}: pix2pix uses no image pool; only 0 is accepted")
        need(opt.dataset_mode == "aligned", "--dataset_mode single has no targets; it is for test.py only")
        need(0 <= opt.display_port <= 65535, f"--display_port {opt.display_port}: must be 0..65535")
        check_sizes(p, opt)
        if opt.grad_checkpoint and not opt.netG.startswith("unet"):
            p.error(f"--grad_checkpoint applies to U-Net generators only, not --netG {opt.netG}")
        if opt.logger == "tensorboard":
            try:
                import torch.utils.tensorboard  # noqa: F401
            except ImportError:
                p.error("--logger tensorboard: the tensorboard package is not installed (pip install tensorboard)")
    valid_epochs = "'latest' or a number" if is_train else "'latest', 'best' or a number"
    need(
        opt.epoch == "latest" or opt.epoch.isdigit() or (not is_train and opt.epoch == "best"),
        f"--epoch {opt.epoch!r}: must be {valid_epochs}",
    )
    if opt.seed is not None:
        need(0 <= opt.seed < 2**63, f"--seed {opt.seed}: must be 0 or more")
    if not is_train:
        need(opt.aspect_ratio > 0, f"--aspect_ratio {opt.aspect_ratio}: must be positive")
        need(opt.load_iter >= 0, f"--load_iter {opt.load_iter}: must be 0 or more")
        if opt.num_test is not None:
            need(opt.num_test >= 1, f"--num_test {opt.num_test}: must be a positive integer")


def unet_depth(netG: str, num_downs: int | None) -> int | None:
    """Number of 2x downsamplings of a U-Net generator; None for other generators."""
    if not netG.startswith("unet"):
        return None
    return num_downs if num_downs is not None else UNET_DEPTH[netG]


def size_multiple(netG: str, num_downs: int | None) -> int:
    """Training crops must be a multiple of this: 2**depth for a U-Net, 4 for a ResNet generator."""
    depth = unet_depth(netG, num_downs)
    return 2**depth if depth is not None else 4


def check_sizes(p: argparse.ArgumentParser, opt: argparse.Namespace) -> None:
    """The size rule: crops must fit the generator's depth, and crops must fit inside the loaded image."""
    if opt.preprocess in CROP_PREPROCESS:
        m = size_multiple(opt.netG, opt.num_downs)
        if opt.crop_size % m:
            lo, hi = (opt.crop_size // m) * m, (opt.crop_size // m + 1) * m
            valid = f"{lo} or {hi}" if lo > 0 else f"{hi}"
            depth = unet_depth(opt.netG, opt.num_downs)
            what = f"{opt.netG} ({depth} downsamplings)" if depth else opt.netG
            p.error(
                f"--crop_size {opt.crop_size} does not fit {what}: it must be a multiple of {m} "
                f"(for example {valid}), or use a generator with fewer downsamplings (--num_downs)"
            )
    if opt.preprocess in ("resize_and_crop", "scale_width_and_crop"):
        if opt.crop_size > opt.load_size:
            p.error(
                f"--crop_size {opt.crop_size} is larger than --load_size {opt.load_size}: "
                f"the crop must fit inside the resized image (use --load_size >= {opt.crop_size})"
            )
    if opt.is_train and opt.preprocess in CROP_PREPROCESS:
        # PatchGAN: n stride-2 convs, then two 4x4 stride-1 convs that take 1 and 2 pixels off.
        # With --num_D scales the coarsest one sees the crop halved num_D - 1 times.
        n = {"basic": 3, "n_layers": opt.n_layers_D, "pixel": 0}[opt.netD]
        need_px = 2 ** (n + 2) * 2 ** (opt.num_D - 1)
        if opt.crop_size < need_px:
            p.error(
                f"--crop_size {opt.crop_size} is too small for --netD {opt.netD} with {n} layers and "
                f"--num_D {opt.num_D}: it needs at least {need_px} pixels (or fewer --n_layers_D / --num_D)"
            )


def parse(is_train: bool, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and validate the command line; exits with status 2 and a message on a bad value."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = build_parser(is_train)
    opt = p.parse_args(argv)
    opt.is_train = is_train
    validate(p, opt, is_train)
    opt.argv = argv
    opt.given = sorted(given_flags(argv))
    return opt


def option_dict(opt: argparse.Namespace) -> dict[str, Any]:
    """The user-facing options (what the parser defines), as plain JSON-able values."""
    p = build_parser(opt.is_train)
    keys = [a.dest for a in p._actions if a.dest != "help"]
    return {k: getattr(opt, k) for k in keys if hasattr(opt, k)}


def format_options(opt: argparse.Namespace) -> str:
    """A table of options, non-defaults marked with their default."""
    p = build_parser(opt.is_train)
    lines = ["----------------- Options ---------------"]
    for k, v in sorted(option_dict(opt).items()):
        default = p.get_default(k)
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


def save_options(opt: argparse.Namespace, folder: str, prefix: str) -> None:
    """Write <prefix>_opt.txt (readable) and <prefix>_opt.json (options, command, commit, versions, seed)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{prefix}_opt.txt"), "w") as f:
        f.write(format_options(opt) + "\n")
    record = {
        "options": option_dict(opt),
        "command": [sys.executable, sys.argv[0], *opt.argv],
        "git_commit": git_commit(),
        "versions": package_versions(),
        "seed": opt.seed,
    }
    with open(os.path.join(folder, f"{prefix}_opt.json"), "w") as f:
        json.dump(record, f, indent=2)
