"""Translate a phase with a trained generator: python test.py --dataroot ./datasets/facades --name facades."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from data import EpochSampler, create_dataloader, create_dataset
from data.demo import DEMO_DIR, ensure_demo_dataset
from data.image_io import data_error
from models import create_model
from options.options import ARCHITECTURE_KEYS, INHERITED_DATA_KEYS, build_parser, parse, save_options
from util import checkpoint
from util.html import HTML
from util.metrics import HIGHER_IS_BETTER, MetricSuite
from util.util import save_image, setup_logging, tensor2im

log = logging.getLogger("test")


def fail(msg: str) -> None:
    print(f"test.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def checkpoint_path(run_dir: str, epoch: str, load_iter: int) -> tuple[str, str]:
    """(file, tag): latest.pth for --epoch latest, <N>_net_G.pth, or iter_<N>_net_G.pth for --load_iter."""
    if load_iter > 0:  # the reference names these result folders <phase>_<epoch>_iter<N>
        return os.path.join(run_dir, f"iter_{load_iter}_net_G.pth"), f"{epoch}_iter{load_iter}"
    if epoch == "latest":
        return os.path.join(run_dir, "latest.pth"), "latest"
    if epoch == "best":
        return os.path.join(run_dir, "best_net_G.pth"), "best"
    return os.path.join(run_dir, f"{epoch}_net_G.pth"), epoch


def main(argv: Sequence[str] | None = None) -> int:
    opt = parse(False, argv)
    setup_logging(opt.verbose)
    run_dir = os.path.join(opt.checkpoints_dir, opt.name)
    path, tag = checkpoint_path(run_dir, opt.epoch, opt.load_iter)
    if not os.path.exists(path):
        have = sorted(f for f in os.listdir(run_dir) if f.endswith(".pth")) if os.path.isdir(run_dir) else []
        fail(
            f"no checkpoint {path} (--name {opt.name}, --epoch {opt.epoch}); "
            f"{'found: ' + ', '.join(have) if have else 'that run folder has none'}"
        )
    try:
        state = checkpoint.load(path)
    except RuntimeError as e:
        fail(str(e))
    saved = state["options"]
    weights = state["model"] if "model" in state else state
    netG_state = weights["netG"]
    if "netG_ema_avg" in weights:  # latest.pth: the averaged model's own state
        weights = {**weights, "netG_ema": {k[7:]: v for k, v in weights["netG_ema_avg"].items() if k[:7] == "module."}}
    if "netG_ema" in weights and not opt.no_ema:
        netG_state = weights["netG_ema"]
        log.info("using the generator's exponential moving average (--no_ema for the trained weights)")

    # The generator is rebuilt from the checkpoint's options; data options default to the training run's.
    defaults = build_parser(False)
    for k in ARCHITECTURE_KEYS:
        value = saved.get(k, defaults.get_default(k))  # older checkpoints lack newer switches
        if k in opt.given and getattr(opt, k) != value:
            log.warning("--%s %s ignored: the checkpoint was trained with %s", k, getattr(opt, k), value)
        setattr(opt, k, value)
    for k in (*INHERITED_DATA_KEYS, "dataroot"):
        if k not in opt.given:
            setattr(opt, k, saved[k])
    if opt.dataroot is None or (opt.dataroot == DEMO_DIR and not os.path.isdir(DEMO_DIR)):
        opt.dataroot = ensure_demo_dataset()
    if opt.preprocess in ("resize_and_crop", "scale_width_and_crop") and opt.crop_size > opt.load_size:
        fail(
            f"--crop_size {opt.crop_size} is larger than --load_size {opt.load_size}: the crop must fit inside "
            f"the resized image"
        )
    if not os.path.isdir(opt.dataroot):
        fail(f"--dataroot {opt.dataroot} (from the training run): no such folder; pass --dataroot")

    try:
        dataset = create_dataset(opt, train=False)
        dataset.check(opt.skip_bad_images, opt.max_bad_fraction, workers=max(1, opt.num_threads))
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        fail(str(e))
    n = len(dataset) if opt.num_test is None else min(opt.num_test, len(dataset))

    device = torch.device(f"cuda:{opt.gpu_ids_list[0]}" if opt.gpu_ids_list else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    # Precision and layout are this command's choice, not the training run's.
    model = create_model({**saved, "amp": opt.amp, "channels_last": opt.channels_last}, device, train=False)
    model.netG.load_state_dict(netG_state)
    # Default: train mode, as in pix2pix (dropout on, batch statistics of the test image); --eval switches.
    model.netG.train(not opt.eval)

    # Dropout is on by default (as in pix2pix), so results depend on the seed: fix it, and save it.
    opt.seed = 0 if opt.seed is None else opt.seed
    torch.manual_seed(opt.seed)
    web_dir = os.path.join(opt.results_dir, opt.name, f"{opt.phase}_{tag}")
    img_dir = os.path.join(web_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    save_options(opt, web_dir, "test")
    metrics = None
    if opt.dataset_mode == "aligned" and opt.metric_list:
        metrics = MetricSuite(opt.metric_list, device, opt.fid_weights, opt.lpips_weights, seed=opt.seed)
    elif "metrics" in opt.given:
        log.warning("--metrics ignored: --dataset_mode single has no real_B to compare with")
    sampler = EpochSampler(n, seed=0, shuffle=False)  # the first n images, in order
    # Batch 1 as in the reference: test images may differ in size, and batch norm sees one image.
    loader = create_dataloader(dataset, 1, opt.num_threads, sampler, pin_memory=device.type == "cuda")
    log.info("translating %d images from %s/%s with %s on %s", n, opt.dataroot, opt.phase, path, device)
    rows: list[Row] = []
    seen: dict[str, int] = {}
    t0 = time.perf_counter()
    try:
        for batch in tqdm(loader, desc="test", unit="img", disable=None):
            model.set_input(batch)
            with torch.no_grad():
                model.forward()
            stem = os.path.splitext(os.path.basename(model.image_paths[0]))[0]
            seen[stem] = seen.get(stem, 0) + 1
            if seen[stem] > 1:  # same file name in two sub-folders
                stem = f"{stem}_{seen[stem]}"
            visuals = model.current_visuals()
            images = {}
            for label, t in visuals.items():
                images[label] = f"{stem}_{label}.png"
                save_image(tensor2im(t), os.path.join(img_dir, images[label]), opt.aspect_ratio)
            scores = metrics.update(model.fake_B, model.real_B)[0] if metrics else {}
            rows.append(Row(stem, images, scores))
    except (RuntimeError, ValueError) as e:
        msg = data_error(e)
        if msg is None:
            raise
        log.error("%s", msg)
        return 1
    elapsed = time.perf_counter() - t0
    summary = metrics.compute() if metrics else {}
    if metrics:
        record = {"summary": summary, "per_image": {r.name: r.scores for r in rows}, "metrics": metrics.names}
        with open(os.path.join(web_dir, "metrics.json"), "w") as f:
            json.dump(record, f, indent=2)
        log.info("metrics over %d images: %s", len(rows), format_scores(summary))
    if opt.sort_by is not None and opt.sort_by in (metrics.names if metrics else []):
        rows.sort(key=lambda r: r.scores[opt.sort_by], reverse=not HIGHER_IS_BETTER[opt.sort_by])
    page_path = write_test_page(web_dir, opt, tag, rows, summary)
    log.info("%d images in %.1f s; open %s", len(rows), elapsed, page_path)
    return 0


@dataclass
class Row:
    name: str
    images: dict[str, str]  # label -> file name under images/
    scores: dict[str, float]


def format_scores(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in scores.items())


def write_test_page(web_dir: str, opt, tag: str, rows: list[Row], summary: dict[str, float]) -> str:
    """index.html: a summary at the top, then per row the name, real_A, fake_B, real_B and its metrics."""
    page = HTML(web_dir, f"Experiment = {opt.name}, Phase = {opt.phase}, Epoch = {tag}")
    page.add_header(f"{opt.name}: {opt.phase}, checkpoint {tag}, {len(rows)} images")
    if summary:
        page.add_table(summary, caption="summary over all images (docs/metrics.md says how each is computed)")
    if opt.sort_by:
        page.add_text(f"rows sorted by {opt.sort_by}, worst first")
    for r in rows:
        page.add_header(r.name)
        labels = list(r.images)
        captions = [f"{lb}  ({format_scores(r.scores)})" if lb == "fake_B" and r.scores else lb for lb in labels]
        files = [r.images[lb] for lb in labels]
        page.add_images(files, captions, files, width=opt.display_winsize)
    return page.save()


if __name__ == "__main__":
    sys.exit(main())
